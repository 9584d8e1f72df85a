"""One object's SAM 2 memory over a *timeline* (the sorted raw frames it is tracked on), on top of transformers'
`Sam2VideoInferenceSession` (set up through `videorefer.compat.sam2`, which owns the stand-in attributes).

Why one inference session per object: SAM 2 tracks every object with its own memory bank, so an object's masks
depend only on its own prompts and timeline. Keeping them apart lets a session re-track just the object whose prompt
changed, and makes results independent of which other objects exist. The expensive part, the image encoder, is shared
through a `FeatureStore` keyed by raw frame index.

Why a timeline rather than the raw video: tracking through only the frames the model will see (plus the prompted
frames) is SAM 2 on a lower-frame-rate video; the model's memory uses "previous frames" by position, so positions
on the timeline (0..n-1) are what it is given.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..compat.sam2 import timeline_session
from .prompts import FramePrompt

if TYPE_CHECKING:
    from .segmenter import Sam2Segmenter

_OBJ = 0  # each inference session holds a single object


class FeatureStore:
    """Small LRU of SAM 2 vision features keyed by raw frame index, shared by all objects of a video."""

    def __init__(self, size: int = 4):
        self.size = max(1, int(size))
        self._items: OrderedDict[int, dict] = OrderedDict()

    def get(self, raw: int) -> dict | None:
        if raw not in self._items:
            return None
        self._items.move_to_end(raw)
        return self._items[raw]

    def put(self, raw: int, features: dict) -> None:
        self._items[raw] = features
        self._items.move_to_end(raw)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()


class _TimelineCache:
    """Stands in for `Sam2VideoInferenceCache`: the model asks by timeline position, the store is keyed by raw frame."""

    def __init__(self, store: FeatureStore, timeline: list[int]):
        self.store, self.timeline = store, timeline

    def get_vision_features(self, frame_idx: int) -> dict | None:
        return self.store.get(self.timeline[frame_idx])

    def cache_vision_features(self, frame_idx: int, features: dict) -> None:
        self.store.put(self.timeline[frame_idx], dict(features))

    def clear_all(self) -> None:  # the store outlives any one object's session
        pass


class _TimelineFrames(Mapping):
    """Pixel values (3, S, S) of the timeline's frames, made on demand: the model only asks on a feature-cache miss,
    so a long video is never held preprocessed in memory."""

    def __init__(self, segmenter: Sam2Segmenter, frames: np.ndarray, timeline: list[int]):
        self.segmenter, self.frames, self.timeline = segmenter, frames, timeline

    def __getitem__(self, pos: int) -> torch.Tensor:
        return self.segmenter.preprocess_frame(self.frames[self.timeline[pos]])

    def __len__(self) -> int:
        return len(self.timeline)

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.timeline)))


class ObjectTracker:
    """SAM 2 state for one object on one timeline.

    `prompts` are the object's prompts by raw frame; `mask_inputs` the masks to feed on frames whose prompt is a mask
    (the drawing, or the SAM-refined brush mask), which are also returned verbatim for those frames.
    Call `condition(raw)` for every prompted frame first, then `track(raw, reverse)` outward from `start`.
    """

    def __init__(
        self,
        segmenter: Sam2Segmenter,
        frames: np.ndarray,
        store: FeatureStore,
        timeline: list[int],
        prompts: Mapping[int, FramePrompt],
        mask_inputs: Mapping[int, np.ndarray],
    ):
        self.segmenter, self.prompts, self.mask_inputs = segmenter, prompts, mask_inputs
        self.timeline = timeline
        self.position = {raw: pos for pos, raw in enumerate(timeline)}
        self.start = min(prompts)  # tracking runs forward and backward from the first prompted frame
        self.height, self.width = frames.shape[1:3]
        self.session = timeline_session(segmenter.processor, segmenter.device, self.height, self.width,
                                        _TimelineFrames(segmenter, frames, timeline), _TimelineCache(store, timeline))

    def condition(self, raw: int) -> np.ndarray:
        """Run the prompted frame `raw` as a conditioning frame (no memory needed); return its bool mask (H, W)."""
        prompt, pos = self.prompts[raw], self.position[raw]
        processor = self.segmenter.processor
        if raw in self.mask_inputs:
            processor.add_inputs_to_inference_session(
                self.session, frame_idx=pos, obj_ids=_OBJ, input_masks=self.mask_inputs[raw]
            )
        else:
            processor.add_inputs_to_inference_session(
                self.session,
                frame_idx=pos,
                obj_ids=_OBJ,
                input_points=None if prompt.points is None else [[prompt.points.tolist()]],
                input_labels=None if prompt.labels is None else [[prompt.labels.tolist()]],
                input_boxes=None if prompt.box is None else [[prompt.box.tolist()]],
            )
        mask = self._step(pos, reverse=False)
        return self.mask_inputs[raw].copy() if raw in self.mask_inputs else mask

    def track(self, raw: int, reverse: bool) -> np.ndarray:
        """Track onto the unprompted frame `raw` from the memory built so far; return its bool mask (H, W)."""
        return self._step(self.position[raw], reverse)

    def _step(self, pos: int, reverse: bool) -> np.ndarray:
        with self.segmenter.inference_context():
            out = self.segmenter.model(inference_session=self.session, frame_idx=pos, reverse=reverse)
        return self.segmenter.postprocess_masks(out.pred_masks, self.height, self.width)[0]
