"""The five stages as resumable passes over the videos: each loads its model once and writes one line per video.

A stage handles the videos of its shard that have no record yet (or a failed one with `retry_failed`), `batch_size`
videos at a time, and appends each video's record as soon as its batch is done. Records always carry `id`, `video`,
`status` (`ok` | `failed` | `skipped`) and `seconds`; object lists keep the Analyzer's noun order, so object `k` is
the same object in every stage.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any, Callable

import numpy as np

from videorefer.video_io import load_video

from . import agents
from .backends import ChatBackend, make_backend
from .config import BackendConfig, EngineConfig
from .inputs import VideoItem
from .store import STAGES, StageStore
from .structured import ask_json

__all__ = ["Engine", "NEEDS"]

NEEDS = {"analyze": (), "annotate": ("analyze",), "segment": ("analyze",), "review": ("annotate", "segment"),
         "refine": ("annotate", "review")}


def _resize(frame: np.ndarray, longest: int) -> np.ndarray:
    from PIL import Image

    h, w = frame.shape[:2]
    scale = longest / max(h, w)
    if scale >= 1:
        return frame
    return np.asarray(Image.fromarray(frame).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                    Image.BICUBIC))


class Engine:
    """Runs stages for a list of videos into an output folder. Models are built on first use (one per stage pass).

    `segmentor` / `captioner` may be passed in (tests, notebooks); otherwise they are built from the config.
    """

    def __init__(self, config: EngineConfig, out: str, shard: tuple[int, int] | None = None,
                 workers: int | None = None, progress: bool = True, segmentor: Any = None, captioner: Any = None):
        self.config, self.out, self.shard = config, out, shard
        self.workers = workers or config.workers
        self.progress = progress
        self._segmentor, self._captioner = segmentor, captioner
        self._backends: dict[str, ChatBackend] = {}

    # ------------------------------------------------------------------------------------------------- models
    def backend(self, name: str, config: BackendConfig) -> ChatBackend:
        if name not in self._backends:
            self._backends[name] = make_backend(config, self.workers)
        return self._backends[name]

    def _ask(self, name: str, config: BackendConfig, conversations: list, validators: list) -> list:
        return ask_json(self.backend(name, config), conversations, validators, config.retries, config.backoff)

    @property
    def segmentor(self):
        if self._segmentor is None:
            from .segmentor import Segmentor

            self._segmentor = Segmentor(self.config.segmentor)
        return self._segmentor

    @property
    def captioner(self):
        if self._captioner is None:
            from .captioner import VideoReferCaptioner

            r = self.config.reviewer
            self._captioner = VideoReferCaptioner(r.captioner, r.captioner_device, r.captioner_quantization,
                                                  r.captioner_max_new_tokens, engine=r.captioner_engine)
        return self._captioner

    # ------------------------------------------------------------------------------------------------ running
    def run_stage(self, stage: str, items: list[VideoItem], retry_failed: bool = False) -> dict[str, int]:
        """Process the videos of `items` that this stage has not finished. Returns counts for the log."""
        store = StageStore(self.out, stage, self.shard)
        done = store.records()
        upstream = {name: StageStore(self.out, name).records() for name in NEEDS[stage]}
        todo, not_ready = [], []
        for item in items:
            record = done.get(item.id)
            if record is not None and not (retry_failed and record["status"] == "failed"):
                continue
            (todo if all(item.id in upstream[n] for n in NEEDS[stage]) else not_ready).append(item)
        if not_ready:
            print(f"[data_engine] {stage}: {len(not_ready)} video(s) wait for stage(s) {NEEDS[stage]}",
                  file=sys.stderr)
        handler: Callable = getattr(self, f"_{stage}")
        size = self.config.batch_size
        with store.writer() as writer, _progress(stage, len(todo), self.progress) as bar:
            for start in range(0, len(todo), size):
                batch = todo[start:start + size]
                runnable = [it for it in batch if all(upstream[n][it.id]["status"] == "ok" for n in NEEDS[stage])]
                began = time.perf_counter()
                results = dict(zip([it.id for it in runnable], handler(runnable, upstream))) if runnable else {}
                share = (time.perf_counter() - began) / max(1, len(runnable))
                for item in batch:
                    if item.id in results:
                        record = {"id": item.id, "video": item.video, **results[item.id], "seconds": round(share, 3)}
                    else:
                        failed = [n for n in NEEDS[stage] if upstream[n][item.id]["status"] != "ok"]
                        record = {"id": item.id, "video": item.video, "status": "skipped",
                                  "reason": f"stage {failed[0]} did not succeed", "seconds": 0.0}
                    writer.write(record)
                bar.update(len(batch))
        return {"processed": len(todo), "waiting": len(not_ready), "done_before": len(items) - len(todo) -
                len(not_ready)}

    def run(self, items: list[VideoItem], stages: tuple[str, ...] = STAGES, retry_failed: bool = False) -> None:
        for stage in stages:
            counts = self.run_stage(stage, items, retry_failed)
            print(f"[data_engine] {stage}: processed {counts['processed']}, already done {counts['done_before']}, "
                  f"waiting {counts['waiting']}", file=sys.stderr)

    # ------------------------------------------------------------------------------------------------- stages
    def _analyze(self, batch: list[VideoItem], upstream: dict) -> list[dict]:
        cfg = self.config
        validate = functools.partial(agents.validate_nouns, max_objects=cfg.max_objects)
        outcomes = self._ask("analyzer", cfg.analyzer, [agents.analyzer_messages(it.caption) for it in batch],
                             [validate] * len(batch))
        return [{"status": "ok", "caption": it.caption, "objects": o.value, "attempts": o.attempts} if o.ok else
                {"status": "failed", "caption": it.caption, **o.failure()} for it, o in zip(batch, outcomes)]

    def _load(self, item: VideoItem):
        return load_video(item.video, self.config.num_frames)

    def _annotate(self, batch: list[VideoItem], upstream: dict) -> list[dict]:
        cfg = self.config
        records: list[dict] = [{} for _ in batch]
        requests: list[tuple[int, int]] = []
        conversations: list[list[dict]] = []
        for b, item in enumerate(batch):
            nouns = upstream["analyze"][item.id]["objects"]
            try:
                video = self._load(item)
            except ValueError as err:
                records[b] = {"status": "failed", "error": f"video: {err}"}
                continue
            frames = [_resize(f, cfg.frame_size) for f in video.frames]
            times = [i / video.fps if video.fps else None for i in video.frame_indices]
            records[b] = {"status": "ok", "frame_indices": video.frame_indices, "objects": [None] * len(nouns)}
            for k, noun in enumerate(nouns):
                requests.append((b, k))
                conversations.append(agents.annotator_messages(item.caption, noun, frames, times))
        outcomes = self._ask("annotator", cfg.annotator, conversations,
                             [agents.validate_annotation] * len(conversations))
        for (b, k), outcome in zip(requests, outcomes):
            noun = upstream["analyze"][batch[b].id]["objects"][k]
            records[b]["objects"][k] = ({"noun": noun, "status": "ok", **outcome.value} if outcome.ok else
                                        {"noun": noun, "status": "failed", **outcome.failure()})
        return records

    def _segment(self, batch: list[VideoItem], upstream: dict) -> list[dict]:
        records = []
        for item in batch:
            nouns = upstream["analyze"][item.id]["objects"]
            try:
                video = self._load(item)
            except ValueError as err:
                records.append({"status": "failed", "error": f"video: {err}"})
                continue
            result = self.segmentor.segment(video.frames, video.frame_indices, nouns)
            records.append({"status": "ok", "height": video.height, "width": video.width,
                            "total_frames": video.total_frames, "frame_indices": video.frame_indices, **result})
        return records

    def _review(self, batch: list[VideoItem], upstream: dict) -> list[dict]:
        records: list[dict] = []
        requests: list[tuple[int, int]] = []
        conversations: list[list[dict]] = []
        for b, item in enumerate(batch):
            annotated = upstream["annotate"][item.id]["objects"]
            segmented = upstream["segment"][item.id]
            objects: list[dict] = []
            for k, (ann, seg) in enumerate(zip(annotated, segmented["objects"])):
                entry: dict[str, Any] = {"noun": ann["noun"]}
                if ann["status"] != "ok":
                    entry.update(decision="skipped", reason="annotation failed")
                elif seg["status"] != "ok":
                    entry.update(decision="skipped", reason=seg["reason"])
                else:
                    try:
                        caption = self.captioner.describe(item.video, seg["annotation"], segmented["height"],
                                                          segmented["width"])
                    except ValueError as err:
                        entry.update(decision="failed", reason=f"region captioner: {err}")
                    else:
                        entry["region_caption"] = caption
                        requests.append((b, k))
                        conversations.append(agents.reviewer_messages(ann["noun"], ann, caption))
                objects.append(entry)
            records.append({"status": "ok", "objects": objects})
        outcomes = self._ask("reviewer", self.config.reviewer.llm, conversations,
                             [agents.validate_review] * len(conversations))
        for (b, k), outcome in zip(requests, outcomes):
            entry = records[b]["objects"][k]
            if outcome.ok:
                entry.update(decision="keep" if outcome.value["match"] else "reject", reason=outcome.value["reason"])
            else:
                entry.update(decision="failed", reason=outcome.failure()["error"], reply=outcome.failure()["reply"])
        return records

    def _refine(self, batch: list[VideoItem], upstream: dict) -> list[dict]:
        qa = self.config.refiner.qa
        records: list[dict] = []
        requests: list[tuple[int, int]] = []
        conversations: list[list[dict]] = []
        for b, item in enumerate(batch):
            annotated = upstream["annotate"][item.id]["objects"]
            objects: list[dict] = []
            for k, review in enumerate(upstream["review"][item.id]["objects"]):
                if review["decision"] == "keep":
                    requests.append((b, k))
                    conversations.append(agents.refiner_messages(review["noun"], annotated[k], qa))
                    objects.append({"noun": review["noun"]})
                else:
                    objects.append({"noun": review["noun"], "status": "skipped", "reason": "not kept by the reviewer"})
            records.append({"status": "ok", "objects": objects})
        validate = functools.partial(agents.validate_refined, qa=qa)
        outcomes = self._ask("refiner", self.config.refiner.llm, conversations, [validate] * len(conversations))
        for (b, k), outcome in zip(requests, outcomes):
            entry = records[b]["objects"][k]
            entry.update({"status": "ok", **outcome.value} if outcome.ok else {"status": "failed", **outcome.failure()})
        return records


class _progress:
    """A tqdm bar (or nothing) usable as a context manager."""

    def __init__(self, stage: str, total: int, enabled: bool):
        self.bar = None
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=stage, unit="video")

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def __enter__(self) -> "_progress":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
