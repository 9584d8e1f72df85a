"""Per-video segmentation state: prompts and masks for every object, with SAM 2 predictor-style verbs.

The web app keeps one `SegmentationSession` per user session. Masks are returned in the contract's *object* type:
`{obj_id: {raw_frame_idx: bool (H, W)}}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._tracking import FeatureStore, ObjectTracker
from .prompts import FramePrompt, prompt_from_dict, validate_box, validate_mask, validate_points

if TYPE_CHECKING:
    from .segmenter import Sam2Segmenter

ProgressCallback = Callable[[int, int], None]  # (steps done, steps in total)


class SegmentationSession:
    """Prompts, masks and tracking for one video (created by `Sam2Segmenter.init_state`).

    Every `add_*` verb replaces (or, with `clear=False`, extends) one object's prompt on one frame and returns that
    object's mask on that frame at once. `propagate` then tracks each object whose prompts changed since it was last
    tracked on the same frames, forward and backward from its first prompted frame; the other objects keep their masks.
    """

    def __init__(self, segmenter: Sam2Segmenter, frames: np.ndarray):
        self.segmenter = segmenter
        self.frames = frames  # uint8 (T, H, W, 3)
        self.num_frames, self.height, self.width = (int(v) for v in frames.shape[:3])
        self._store = FeatureStore(segmenter.feature_cache_size)
        self._prompts: dict[int, dict[int, FramePrompt]] = {}  # obj -> raw frame -> prompt
        self._mask_inputs: dict[int, dict[int, np.ndarray]] = {}  # obj -> frame -> drawn / refined brush mask
        self._masks: dict[int, dict[int, np.ndarray]] = {}  # obj -> frame -> current mask
        self._version: dict[int, int] = {}  # bumped on every prompt change
        self._tracked: dict[int, tuple] = {}  # obj -> (version, timeline) of its current tracked masks

    # -------------------------------------------------------------------------------------------------- queries
    @property
    def obj_ids(self) -> list[int]:
        return list(self._prompts)

    @property
    def masks(self) -> dict[int, dict[int, np.ndarray]]:
        """Current masks of every object (prompted frames right after `add_*`, all tracked frames after
        `propagate`)."""
        return {obj: dict(frames) for obj, frames in self._masks.items()}

    @property
    def nbytes(self) -> int:
        """Bytes this session holds: its frames, masks, drawn masks and cached SAM 2 features (any device)."""
        from videorefer.caches import nbytes

        return nbytes([self.frames, self._masks, self._mask_inputs, self._store._items])

    def prompts(self, obj_id: int) -> dict[int, FramePrompt]:
        """The object's prompts by frame."""
        return dict(self._prompts[self._known(obj_id)])

    # ---------------------------------------------------------------------------------------------------- verbs
    def add_points(
        self, frame_idx: int, obj_id: int, points: Any, labels: Any = None, clear: bool = True
    ) -> np.ndarray:
        """Clicks `points` (N, 2) xy pixels with `labels` (N,) 1 = positive / 0 = negative (default all positive).
        `clear=False` adds them to the frame's existing prompt instead of replacing it. Returns the mask (H, W)."""
        frame_idx, obj_id = self._frame(frame_idx), self._obj(obj_id)
        if labels is None:
            labels = np.ones(len(np.atleast_2d(np.asarray(points))), dtype=np.int64)
        pts, lab = validate_points(points, labels, self.height, self.width)
        return self._set(frame_idx, obj_id, FramePrompt(points=pts, labels=lab), clear)

    def add_box(self, frame_idx: int, obj_id: int, box: Any, clear: bool = True) -> np.ndarray:
        """A box [x0, y0, x1, y1] in pixels (`clear=False` keeps the frame's clicks). Returns the mask (H, W)."""
        frame_idx, obj_id = self._frame(frame_idx), self._obj(obj_id)
        return self._set(frame_idx, obj_id, FramePrompt(box=validate_box(box, self.height, self.width)), clear)

    def add_mask(self, frame_idx: int, obj_id: int, mask: Any, as_drawn: bool = False) -> np.ndarray:
        """A brush mask (H, W). By default SAM refines it (mask prompt); `as_drawn=True` keeps it exactly as drawn
        (an empty drawing marks the object as absent there). Replaces the frame's prompt. Returns the mask (H, W)."""
        frame_idx, obj_id = self._frame(frame_idx), self._obj(obj_id)
        arr = validate_mask(mask, self.height, self.width, allow_empty=as_drawn)
        return self._set(frame_idx, obj_id, FramePrompt(mask=arr, as_drawn=bool(as_drawn)), clear=True)

    def add_prompts(self, frame_idx: int, prompts: Mapping[int, Mapping[str, Any]]) -> dict[int, np.ndarray]:
        """Several objects on one frame: `{obj_id: {"points", "labels", "box", "mask", "as_drawn"}}` (keys optional;
        a brush mask with clicks / a box is refined by SAM with them).
        Everything is validated before anything changes; clicks and boxes share one encoding of the frame.
        Returns `{obj_id: mask}`."""
        frame_idx = self._frame(frame_idx)
        checked: dict[int, FramePrompt] = {}
        for obj_id, spec in prompts.items():
            obj_id = self._obj(obj_id)
            try:
                checked[obj_id] = prompt_from_dict(spec, self.height, self.width)
            except ValueError as err:
                raise ValueError(f"object {obj_id}: {err}") from None
        return {obj_id: self._set(frame_idx, obj_id, p, clear=True) for obj_id, p in checked.items()}

    def remove_object(self, obj_id: int) -> None:
        """Forget an object (its prompts and masks); the other objects are untouched."""
        obj_id = self._known(obj_id)
        for table in (self._prompts, self._mask_inputs, self._masks, self._version, self._tracked):
            table.pop(obj_id, None)

    def reset(self) -> None:
        """Forget every object; the video (and its cached image features) stays."""
        for table in (self._prompts, self._mask_inputs, self._masks, self._version, self._tracked):
            table.clear()

    def propagate(
        self, frame_indices: Iterable[int] | None = None, progress: ProgressCallback | None = None
    ) -> dict[int, dict[int, np.ndarray]]:
        """Track every object through `frame_indices` (default: every frame), forward and backward from its first
        prompted frame, and return `{obj_id: {frame_idx: bool (H, W)}}` over those frames plus its prompted frames.

        With a subset, SAM 2 sees only those frames (like a lower frame-rate video): fast, but less accurate across
        large motions than `frame_indices=None`. Only objects whose prompts or frames changed are re-tracked.
        `progress(done, total)` is called after each model step.
        """
        wanted = sorted({self._frame(i) for i in frame_indices}) if frame_indices is not None else None
        if frame_indices is not None and not wanted:
            raise ValueError("frame_indices is empty")
        wanted = wanted if wanted is not None else list(range(self.num_frames))
        trackers: dict[int, ObjectTracker] = {}
        keys: dict[int, tuple] = {}
        for obj, prompts in self._prompts.items():
            timeline = sorted(set(wanted) | set(prompts))
            keys[obj] = (self._version[obj], tuple(timeline))
            if self._tracked.get(obj) != keys[obj]:
                trackers[obj] = ObjectTracker(
                    self.segmenter, self.frames, self._store, timeline, prompts, self._mask_inputs.get(obj, {})
                )
        steps = self._plan(trackers)
        results: dict[int, dict[int, np.ndarray]] = {obj: {} for obj in trackers}
        for done, (obj, raw, kind) in enumerate(steps, start=1):
            tracker = trackers[obj]
            results[obj][raw] = tracker.condition(raw) if kind == "cond" else tracker.track(raw, kind == "reverse")
            if progress is not None:
                progress(done, len(steps))
        for obj, masks in results.items():
            self._masks[obj] = dict(sorted(masks.items()))
            self._tracked[obj] = keys[obj]
        return self.masks

    # -------------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _plan(trackers: Mapping[int, ObjectTracker]) -> list[tuple[int, int, str]]:
        """Order the model steps so that objects visit the same frame back to back (one image encoding per frame):
        all prompted frames first, then a forward sweep, then a backward sweep."""
        steps: list[tuple[int, int, str]] = []
        frames = sorted({raw for t in trackers.values() for raw in t.timeline})
        for raw in frames:
            steps += [(obj, raw, "cond") for obj, t in trackers.items() if raw in t.prompts]
        for raw in frames:
            steps += [
                (obj, raw, "forward")
                for obj, t in trackers.items()
                if raw > t.start and raw in t.position and raw not in t.prompts
            ]
        for raw in reversed(frames):
            steps += [(obj, raw, "reverse") for obj, t in trackers.items() if raw < t.start and raw in t.position]
        return steps

    def _set(self, frame_idx: int, obj_id: int, prompt: FramePrompt, clear: bool) -> np.ndarray:
        """Store the prompt, compute the object's mask on that frame alone, and mark the object for re-tracking."""
        previous = self._prompts.get(obj_id, {}).get(frame_idx)
        if not clear and previous is not None:
            prompt = previous.merged_with(prompt)
        mask_input = None
        if prompt.is_drawn_mask:
            mask_input = prompt.mask
        elif prompt.mask is not None:  # brush mask as a prompt (with any clicks): refined once by SAM
            mask_input = self.segmenter.segment_image(self.frames[frame_idx], {obj_id: prompt})[obj_id]
        if mask_input is not None:
            mask = mask_input.copy()
        else:  # clicks / box: the video model's conditioning step, exactly what tracking will start from
            single = ObjectTracker(self.segmenter, self.frames, self._store, [frame_idx], {frame_idx: prompt}, {})
            mask = single.condition(frame_idx)
        self._prompts.setdefault(obj_id, {})[frame_idx] = prompt
        inputs = self._mask_inputs.setdefault(obj_id, {})
        if mask_input is not None:
            inputs[frame_idx] = mask_input
        else:
            inputs.pop(frame_idx, None)
        self._version[obj_id] = self._version.get(obj_id, 0) + 1
        self._tracked.pop(obj_id, None)
        self._masks.setdefault(obj_id, {})[frame_idx] = mask
        return mask.copy()

    def _frame(self, frame_idx: Any) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise ValueError(f"frame index must be an int, got {frame_idx!r}")
        if not 0 <= frame_idx < self.num_frames:
            raise ValueError(f"frame index {frame_idx} is out of range for a video of {self.num_frames} frames")
        return int(frame_idx)

    @staticmethod
    def _obj(obj_id: Any) -> int:
        if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer)):
            raise ValueError(f"object id must be an int, got {obj_id!r}")
        return int(obj_id)

    def _known(self, obj_id: Any) -> int:
        obj_id = self._obj(obj_id)
        if obj_id not in self._prompts:
            raise ValueError(f"unknown object id {obj_id} (known: {self.obj_ids})")
        return obj_id
