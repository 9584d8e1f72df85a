"""Find objects by name: Grounding DINO boxes for a noun phrase on a frame, then SAM 2.1 box prompts -> masks.

One implementation for the demo's *Find* button / `/find` endpoint and the data engine's Segmentor:

    from videorefer.segmentation import GroundingDinoDetector, ObjectFinder, Sam2Segmenter
    finder = ObjectFinder(GroundingDinoDetector.from_pretrained("IDEA-Research/grounding-dino-base"), segmenter)
    result = finder.find(frame, "the rabbit")                  # masks on this frame (SAM 2 image model)
    result = finder.find(frame, "every car", session=session, frame_idx=3, first_obj_id=10)
    session.propagate()                                        # ... or as new objects of a session, then tracked

A phrase is checked first (`check_phrase`): empty, or longer than `MAX_PHRASE_CHARS` characters, is a ValueError.
Boxes scoring above `threshold` (best first, near-duplicates removed by non-maximum suppression, at most
`max_objects`) become SAM 2 box prompts; boxes with no area inside the frame and masks smaller than
`min_mask_fraction` of the frame are rejected with the reason kept in `FindResult.rejected`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-base"  # what the data engine's config uses by default
DEFAULT_THRESHOLD = 0.35  # Grounding DINO's usual box threshold
# Grounding DINO reads at most 256 text tokens; a noun phrase never needs more than a few words. 80 characters keeps
# the detector's input short (its attention is over image x text) and leaves room for "the small dog on the left".
MAX_PHRASE_CHARS = 80
NMS_IOU = 0.5  # boxes overlapping a better one by more than this are the same object found twice


def check_phrase(phrase: Any) -> str:
    """The phrase with whitespace collapsed, or ValueError when it is empty or over `MAX_PHRASE_CHARS` characters."""
    if not isinstance(phrase, str):
        raise ValueError(f"the phrase must be text, got {type(phrase).__name__}")
    text = re.sub(r"\s+", " ", phrase).strip().rstrip(".").strip()
    if not text:
        raise ValueError("the phrase is empty: type what to find, e.g. 'the rabbit'")
    if len(text) > MAX_PHRASE_CHARS:
        raise ValueError(f"the phrase has {len(text)} characters; the limit is {MAX_PHRASE_CHARS}")
    return text


def _check_threshold(value: float, name: str = "threshold") -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")
    return value


@dataclass
class Detections:
    """Every query's box for one phrase on one image (threshold not applied yet).

    boxes: float32 (Q, 4) x0, y0, x1, y1 in image pixels, clipped to the image.   scores: float32 (Q,) in [0, 1].
    """

    phrase: str
    boxes: np.ndarray
    scores: np.ndarray

    @property
    def best_score(self) -> float:
        return float(self.scores.max()) if len(self.scores) else 0.0

    def above(self, threshold: float, max_boxes: int | None = None, nms_iou: float = NMS_IOU) -> list[int]:
        """Indices of the boxes scoring above `threshold`, best first, after non-maximum suppression."""
        from torchvision.ops import nms

        keep = np.flatnonzero(self.scores > threshold)
        if len(keep) == 0:
            return []
        order = nms(torch.from_numpy(self.boxes[keep]), torch.from_numpy(self.scores[keep]), nms_iou).numpy()
        chosen = keep[order].tolist()  # nms returns the kept boxes by decreasing score
        return chosen if max_boxes is None else chosen[:max_boxes]


class GroundingDinoDetector:
    """Open-vocabulary boxes with transformers' `GroundingDinoForObjectDetection` (any Hub id or folder)."""

    def __init__(self, model, processor, device: str | torch.device | None = None, batch_size: int = 8):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.batch_size = int(batch_size)

    @classmethod
    def from_pretrained(cls, model_id: str = DEFAULT_DETECTOR, device: str | torch.device | None = None,
                        batch_size: int = 8, **kwargs: Any) -> GroundingDinoDetector:
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        model = GroundingDinoForObjectDetection.from_pretrained(model_id, **kwargs)
        return cls(model, AutoProcessor.from_pretrained(model_id, **kwargs), device, batch_size)

    def detect(self, image: np.ndarray, phrases: Sequence[str]) -> list[Detections]:
        """One `Detections` per phrase on one uint8 (H, W, 3) image (`batch_size` phrases per forward pass).

        A query's score is its highest token probability, as transformers' `post_process_grounded_object_detection`
        scores it; a phrase is given to the model lower-cased and ending in "." (Grounding DINO's prompt format).
        """
        from PIL import Image

        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        pil = Image.fromarray(image)
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        out: list[Detections] = []
        for start in range(0, len(phrases), self.batch_size):
            chunk = list(phrases[start:start + self.batch_size])
            texts = [f"{p.lower().rstrip('.')}." for p in chunk]
            inputs = self.processor(images=[pil] * len(chunk), text=texts, return_tensors="pt", padding=True)
            with torch.inference_mode():
                outputs = self.model(**inputs.to(self.device))
            scores = torch.sigmoid(outputs.logits.float()).amax(-1).cpu()  # (B, Q)
            cx, cy, w, h = outputs.pred_boxes.float().cpu().unbind(-1)  # (B, Q) each, relative centre and size
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * scale  # (B, Q, 4)
            boxes = torch.minimum(boxes.clamp(min=0), scale)  # clipped to the image
            out += [Detections(p, b.numpy(), s.numpy()) for p, b, s in zip(chunk, boxes, scores)]
        return out


@dataclass
class FoundObject:
    """One object found by name: its box prompt, the detector's score and SAM 2's mask on the frame."""

    box: list[float]  # x0, y0, x1, y1 pixels
    score: float
    mask: np.ndarray  # bool (H, W)
    obj_id: int | None = None  # the session's object id, when found into a session


@dataclass
class FindResult:
    """What `ObjectFinder.find` saw for one phrase."""

    phrase: str
    threshold: float
    best_score: float  # the best box score before the threshold (how close the phrase came)
    objects: list[FoundObject] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # why boxes above the threshold were not kept

    def miss_message(self) -> str:
        """'no object matching 'unicorn' on this frame (best score 0.21, threshold 0.35)'."""
        why = f"; {'; '.join(self.rejected)}" if self.rejected else ""
        return (f"no object matching '{self.phrase}' on this frame (best score {self.best_score:.2f}, "
                f"threshold {self.threshold:.2f}{why})")


class ObjectFinder:
    """Text -> boxes (Grounding DINO) -> masks (SAM 2.1 box prompts), on one frame of a video or on an image."""

    def __init__(self, detector: GroundingDinoDetector, segmenter, threshold: float = DEFAULT_THRESHOLD,
                 max_objects: int = 8, min_mask_fraction: float = 0.0, nms_iou: float = NMS_IOU):
        self.detector, self.segmenter = detector, segmenter
        self.threshold = _check_threshold(threshold)
        self.min_mask_fraction = _check_threshold(min_mask_fraction, "min_mask_fraction")
        self.max_objects, self.nms_iou = int(max_objects), float(nms_iou)

    def find(self, frame: np.ndarray, phrase: str, **kwargs: Any) -> FindResult:
        """`find_all` for one phrase."""
        return self.find_all(frame, [phrase], **kwargs)[0]

    def find_all(
        self, frame: np.ndarray, phrases: Sequence[str], threshold: float | None = None,
        max_objects: int | None = None, session=None, frame_idx: int | None = None, first_obj_id: int = 0,
    ) -> list[FindResult]:
        """Find each phrase on `frame` (uint8 (H, W, 3)); every phrase is checked before the detector runs.

        Without `session` the masks come from SAM 2's image model (one encoding of the frame for all boxes). With a
        `SegmentationSession` and `frame_idx` (the frame's index in it), every object found is added to the session
        as a box prompt on that frame, with ids `first_obj_id, first_obj_id + 1, ...` in the order found, so that
        `session.propagate()` tracks it; its mask is the session's (what tracking starts from).
        """
        phrases = [check_phrase(p) for p in phrases]
        threshold = self.threshold if threshold is None else _check_threshold(threshold)
        limit = self.max_objects if max_objects is None else int(max_objects)
        if limit < 1:
            raise ValueError(f"max_objects must be at least 1, got {limit}")
        frame = np.asarray(frame)
        if session is not None:  # the masks come from the session's frame: it must be the frame searched
            if not isinstance(frame_idx, (int, np.integer)) or not 0 <= frame_idx < session.num_frames or \
                    not np.array_equal(session.frames[frame_idx], frame):
                raise ValueError(f"with a session, frame_idx must be the index of `frame` in the session, got "
                                 f"{frame_idx!r}")
        height, width = frame.shape[:2]
        detections = self.detector.detect(frame, phrases) if phrases else []
        results, prompts = [], {}  # prompts: (phrase index, box index) -> box
        for k, det in enumerate(detections):
            result, kept = FindResult(det.phrase, threshold, det.best_score), 0
            for i in det.above(threshold, None, self.nms_iou):
                x0, y0, x1, y1 = (float(v) for v in det.boxes[i])
                if x1 - x0 < 1 or y1 - y0 < 1:
                    result.rejected.append(f"box {[round(v, 1) for v in (x0, y0, x1, y1)]} has no area in the frame")
                elif kept < limit:
                    prompts[(k, i)], kept = [round(v, 2) for v in (x0, y0, x1, y1)], kept + 1
            results.append(result)
        masks = self._masks(frame, list(prompts.values()), session, frame_idx, first_obj_id)
        for j, (((k, i), box), mask) in enumerate(zip(prompts.items(), masks)):
            fraction = float(mask.mean())
            obj_id = first_obj_id + j if session is not None else None
            if not mask.any() or fraction < self.min_mask_fraction:
                results[k].rejected.append(f"mask too small ({fraction:.5f} of the frame < min_mask_fraction "
                                           f"{self.min_mask_fraction})")
                if session is not None:
                    session.remove_object(obj_id)
                continue
            results[k].objects.append(FoundObject(box, float(detections[k].scores[i]), mask, obj_id))
        return results

    def _masks(self, frame, boxes, session, frame_idx, first_obj_id) -> list[np.ndarray]:
        if not boxes:
            return []
        specs = {first_obj_id + j: {"box": box} for j, box in enumerate(boxes)}
        if session is None:
            out = self.segmenter.segment_image(frame, specs)
        else:
            out = session.add_prompts(frame_idx, specs)
        return [out[obj] for obj in specs]


def find_objects(frame: np.ndarray, phrase: str, detector: GroundingDinoDetector, segmenter,
                 threshold: float = DEFAULT_THRESHOLD, max_objects: int = 8) -> list[FoundObject]:
    """The objects matching `phrase` on `frame` (their `mask`: bool (H, W)); [] when nothing scores above
    `threshold`. ValueError for an empty phrase or one over `MAX_PHRASE_CHARS` characters."""
    return ObjectFinder(detector, segmenter, threshold, max_objects).find(frame, phrase).objects
