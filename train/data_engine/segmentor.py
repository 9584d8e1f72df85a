"""The Segmentor agent: objects found by name on a key frame, then tracked with SAM 2.

Finding is `videorefer.segmentation.ObjectFinder`, the same code as the demo's *Find* button: for each noun, Grounding
DINO (transformers' `GroundingDinoForObjectDetection`) looks for `"<noun>."` on the key frame, and the best box above
`box_threshold` prompts SAM 2 (`videorefer.segmentation.Sam2Segmenter`) on that frame; the object is then tracked over
the video's sampled frames. Nouns without a box, with a box of no area or with a tiny mask are dropped with the reason
recorded.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from videorefer.regions import objects_to_annotation
from videorefer.segmentation.grounding import Detections, GroundingDinoDetector, ObjectFinder, check_phrase

from .config import SegmentorConfig

__all__ = ["Detections", "GroundingDinoDetector", "Segmentor", "key_frame_position"]


def key_frame_position(num_sampled: int, which: str) -> int:
    """Position (in the sampled frames) of the frame that gets the box prompt."""
    return {"first": 0, "middle": num_sampled // 2, "last": num_sampled - 1}[which]


class Segmentor:
    """Grounding DINO + SAM 2 over a video's sampled frames (`detector`: anything with
    `detect(image, nouns) -> list[Detections]`)."""

    def __init__(self, config: SegmentorConfig, detector: Any = None, segmenter: Any = None):
        from videorefer.segmentation import Sam2Segmenter

        self.config = config
        detector = detector or GroundingDinoDetector.from_pretrained(config.detector, config.device,
                                                                     config.batch_size)
        segmenter = segmenter or Sam2Segmenter.from_pretrained(config.sam2, device=config.device)
        self.finder = ObjectFinder(detector, segmenter, threshold=config.box_threshold, max_objects=1,
                                   min_mask_fraction=config.min_mask_fraction)

    def segment(self, frames: np.ndarray, frame_indices: Sequence[int], nouns: Sequence[str]) -> dict:
        """Ground and track `nouns` in the sampled `frames` (uint8 (t, H, W, 3), raw indices `frame_indices`).

        Returns `{"key_frame": raw index, "objects": [{"noun", "status": "ok" | "dropped", "reason"?, "box", "score",
        "annotation": {"<raw frame>": {"segmentation": RLE}}}]}` in the order of `nouns`.
        """
        key = key_frame_position(len(frames), self.config.key_frame)
        unusable = {}  # noun -> why it cannot be a phrase (empty, too long): dropped, the others still run
        for noun in nouns:
            try:
                check_phrase(noun)
            except ValueError as error:
                unusable[noun] = str(error)
        usable = [noun for noun in nouns if noun not in unusable]
        session = self.finder.segmenter.init_state(frames)
        found = self.finder.find_all(frames[key], usable, session=session, frame_idx=key) if usable else []
        results = dict(zip(usable, found))
        tracked = session.propagate() if session.obj_ids else {}
        objects: list[dict] = []
        for noun in nouns:
            entry: dict[str, Any] = {"noun": noun, "score": 0.0, "box": None}
            result = results.get(noun)
            if result is None:
                entry.update(status="dropped", reason=f"not grounded: {unusable[noun]}")
            elif not result.objects:
                reason = "; ".join(result.rejected) or (f"no box above box_threshold {self.config.box_threshold} "
                                                         f"(best score {result.best_score:.3f})")
                entry.update(status="dropped", reason=f"not grounded: {reason}")
            else:
                found = result.objects[0]
                by_raw = {int(frame_indices[pos]): mask for pos, mask in tracked[found.obj_id].items()}
                entry.update(status="ok", box=found.box, score=round(found.score, 4),
                             annotation=objects_to_annotation([by_raw])[0])
            objects.append(entry)
        return {"key_frame": int(frame_indices[key]), "objects": objects}
