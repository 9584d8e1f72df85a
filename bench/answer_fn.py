"""The default answer function of the benchmark runners (our ``videorefer`` package, any engine) and the helpers it
shares with them: loading ``--answer-fn`` functions, an official annotation decoded for the model."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable

from videorefer.bench_protocol import VIDEOREFER_7B_PROTOCOL, BenchProtocol, FrameSampling

DEFAULT_PROTOCOL = VIDEOREFER_7B_PROTOCOL  # an answer function's protocol when it names none


def load_answer_fn(spec: str) -> Callable[..., str]:
    """Import ``"package.module:function"`` (used by ``--answer-fn`` to evaluate other models or test doubles)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--answer-fn must look like 'module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attr)


def annotation_to_model_objects(annotation: list, height: int, width: int, total_frames: int) -> tuple[list, int]:
    """Decode an official annotation for the model; a null segmentation becomes an all-zero mask, as officially.

    The official inference scripts keep every annotated frame and feed ``np.zeros((h, w))`` where the segmentation
    is ``null`` (the object's pooled feature on that frame is then zero); ``videorefer.regions.annotation_to_objects``
    leaves such frames out, so they are put back here. Returns ``(objects, number of empty masks)``.
    """
    import numpy as np
    from videorefer.regions import annotation_to_objects

    objects = annotation_to_objects(annotation, height=height, width=width, num_frames=total_frames)
    empty = 0
    for obj, per_frame in zip(objects, annotation):
        for key in per_frame:
            frame = int(key)
            if frame not in obj:
                obj[frame] = np.zeros((height, width), dtype=bool)
            if not obj[frame].any():
                empty += 1
    return [dict(sorted(obj.items())) for obj in objects], empty


class VideoReferAnswerFn:
    """The default ``answer_fn``: our ``videorefer`` package (its processor and region encoder), loaded once.

    Its ``protocol`` is the loaded family's official one (``processor.bench_protocol``): the runners write the
    questions and pick the frames by it. The prompt is passed verbatim; the i-th ``<region>`` is the i-th object of
    ``annotation``. Single/multi mode is already applied to ``annotation`` by the runner (single: only the
    ``frame_idx`` mask), so the model sees exactly the masks it should. Items whose masks include an empty one
    (null in the official data) are answered with ``allow_empty_masks=True`` and counted in ``empty_mask_items``.
    """

    def __init__(self, model: Any, name: str | None = None, **generation: Any):
        self.model = model  # a videorefer.VideoRefer
        self.name = name  # what prediction files record as the model (``from_pretrained``: the path or Hub id)
        self.generation = generation
        self.empty_mask_items = 0
        self._decoded: tuple[tuple, Any] | None = None  # the last decoded video (questions come grouped by video)

    @classmethod
    def from_pretrained(cls, model_path: str, generation: dict | None = None, **load_kwargs: Any) -> VideoReferAnswerFn:
        from videorefer import VideoRefer  # lazy: scoring and judging do not load a model

        return cls(VideoRefer.from_pretrained(model_path, **load_kwargs), name=str(model_path), **(generation or {}))

    @property
    def protocol(self) -> BenchProtocol:
        """The loaded family's official benchmark protocol."""
        return getattr(self.model.processor, "bench_protocol", DEFAULT_PROTOCOL)

    def load_video(self, video_path: str, frames_needed: list[int], sampling: FrameSampling) -> Any:
        """The family's frames of ``video_path`` under ``sampling`` plus ``frames_needed``; the last one is kept."""
        import dataclasses

        key = (video_path, tuple(frames_needed), sampling)
        if self._decoded is not None and self._decoded[0] == key:
            return self._decoded[1]
        video = self.model.processor.load_video(video_path, frames_needed, **sampling.load_video_kwargs())
        if video.key is not None:  # the API caches by this key: the same file sampled otherwise is another video
            video = dataclasses.replace(video, key=f"{video.key}|{sampling}")
        self._decoded = (key, video)
        return video

    def _inputs(self, video_path: str, annotation: list, num_frames: int, fps: float | None) -> tuple[Any, list, int]:
        from videorefer.video_io import video_info

        total, _fps, height, width = video_info(video_path)
        objects, empty = annotation_to_model_objects(annotation, height, width, total)
        if empty:
            self.empty_mask_items += 1
            print(f"[bench] {video_path}: {empty} empty/null mask(s), fed as zero masks (official behaviour)",
                  file=sys.stderr)
        frames_needed = sorted({frame for obj in objects for frame in obj})
        return self.load_video(video_path, frames_needed, FrameSampling(num_frames, fps)), objects, empty

    def __call__(self, video_path: str, annotation: list, question: str, mode: str, num_frames: int,
                 fps: float | None = None) -> str:
        video, objects, empty = self._inputs(video_path, annotation, num_frames, fps)
        return self.model.ask(video, objects, question, allow_empty_masks=empty > 0, **self.generation)

    @property
    def submit_size(self) -> int:
        """How many items the model takes at once (1: one after another; an engine that batches: many)."""
        return getattr(self.model, "submit_size", 1)

    def answer_many(self, calls: list[tuple], fps: float | None = None) -> list[str]:
        """``__call__``'s answers for many ``(video_path, annotation, question, mode, num_frames)``, submitted at once."""
        inputs = [(*self._inputs(path, annotation, num_frames, fps), question)
                  for path, annotation, question, _mode, num_frames in calls]
        return self.model.ask_batch([(video, objects, question) for video, objects, _, question in inputs],
                                    allow_empty_masks=any(empty for _, _, empty, _ in inputs), **self.generation)

    def summary(self) -> str:
        return f"{self.empty_mask_items} item(s) had an empty or null mask (fed as a zero mask, as officially)"


def videorefer_answer_fn(model_path: str, **load_kwargs: Any) -> VideoReferAnswerFn:
    """Load ``videorefer.VideoRefer`` once and return the default answer function (see ``VideoReferAnswerFn``)."""
    return VideoReferAnswerFn.from_pretrained(model_path, **load_kwargs)
