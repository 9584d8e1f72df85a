"""The Segmentor agent: text-prompted boxes on a key frame (Grounding DINO), then masks tracked with SAM 2.

For each noun, Grounding DINO (transformers' `GroundingDinoForObjectDetection`) looks for `"<noun>."` on the key
frame; the best box above `box_threshold` prompts SAM 2 (`videorefer.segmentation.Sam2Segmenter`) on that frame and
the object is tracked over the video's sampled frames. Nouns without a box, with a degenerate box or with a tiny mask
are dropped with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from videorefer.regions import objects_to_annotation

from .config import SegmentorConfig

__all__ = ["Detection", "GroundingDinoDetector", "Segmentor", "key_frame_position"]


@dataclass
class Detection:
    """The best box for one noun (None when nothing passed the thresholds) and the best score seen."""

    box: list[float] | None
    score: float
    best_score: float


def key_frame_position(num_sampled: int, which: str) -> int:
    """Position (in the sampled frames) of the frame that gets the box prompt."""
    return {"first": 0, "middle": num_sampled // 2, "last": num_sampled - 1}[which]


class GroundingDinoDetector:
    """Open-vocabulary boxes with transformers' Grounding DINO (any Hub id or folder)."""

    def __init__(self, model_id: str, device: str | None = None, box_threshold: float = 0.35,
                 text_threshold: float = 0.25, batch_size: int = 8):
        import torch
        from transformers import AutoProcessor, GroundingDinoForObjectDetection

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.processor = AutoProcessor.from_pretrained(model_id)
        self.model = GroundingDinoForObjectDetection.from_pretrained(model_id).to(self.device).eval()
        self.box_threshold, self.text_threshold, self.batch_size = box_threshold, text_threshold, batch_size

    def detect(self, image: np.ndarray, nouns: Sequence[str]) -> list[Detection]:
        """One `Detection` per noun on one uint8 (H, W, 3) image (nouns batched `batch_size` at a time)."""
        import torch
        from PIL import Image

        pil = Image.fromarray(image)
        height, width = image.shape[:2]
        out: list[Detection] = []
        for start in range(0, len(nouns), self.batch_size):
            chunk = [f"{noun}." for noun in nouns[start:start + self.batch_size]]
            inputs = self.processor(images=[pil] * len(chunk), text=chunk, return_tensors="pt", padding=True)
            inputs = inputs.to(self.device)
            with torch.inference_mode():
                outputs = self.model(**inputs)
            best_scores = torch.sigmoid(outputs.logits.float()).amax(dim=(1, 2)).tolist()
            results = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=self.box_threshold, text_threshold=self.text_threshold,
                target_sizes=[(height, width)] * len(chunk))
            for result, best in zip(results, best_scores):
                scores = result["scores"]
                if len(scores) == 0:
                    out.append(Detection(None, 0.0, float(best)))
                    continue
                k = int(scores.argmax())
                box = [float(v) for v in result["boxes"][k].tolist()]
                out.append(Detection(box, float(scores[k]), float(best)))
        return out


def _clip_box(box: list[float], height: int, width: int) -> list[float] | None:
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    return [round(v, 2) for v in (x0, y0, x1, y1)]


class Segmentor:
    """Grounding DINO + SAM 2 over a video's sampled frames."""

    def __init__(self, config: SegmentorConfig, detector: Any = None, segmenter: Any = None):
        from videorefer.segmentation import Sam2Segmenter

        self.config = config
        self.detector = detector or GroundingDinoDetector(
            config.detector, config.device, config.box_threshold, config.text_threshold, config.batch_size)
        self.segmenter = segmenter or Sam2Segmenter.from_pretrained(config.sam2, device=config.device)

    def segment(self, frames: np.ndarray, frame_indices: Sequence[int], nouns: Sequence[str]) -> dict:
        """Ground and track `nouns` in the sampled `frames` (uint8 (t, H, W, 3), raw indices `frame_indices`).

        Returns `{"key_frame": raw index, "objects": [{"noun", "status": "ok" | "dropped", "reason"?, "box", "score",
        "annotation": {"<raw frame>": {"segmentation": RLE}}}]}` in the order of `nouns`.
        """
        height, width = frames.shape[1:3]
        key = key_frame_position(len(frames), self.config.key_frame)
        detections = self.detector.detect(frames[key], list(nouns)) if nouns else []
        objects: list[dict] = []
        session = None
        for k, (noun, det) in enumerate(zip(nouns, detections)):
            entry: dict[str, Any] = {"noun": noun, "score": round(det.score, 4), "box": None}
            box = _clip_box(det.box, height, width) if det.box is not None else None
            if det.box is None:
                entry.update(status="dropped", reason=f"not grounded: no box above box_threshold "
                                                      f"{self.config.box_threshold} (best score {det.best_score:.3f})")
            elif box is None:
                entry.update(status="dropped", reason=f"not grounded: degenerate box {det.box}")
            else:
                if session is None:
                    session = self.segmenter.init_state(frames)
                entry["box"] = box
                mask = session.add_box(key, k, box)
                fraction = float(mask.mean())
                if fraction < self.config.min_mask_fraction or not mask.any():
                    session.remove_object(k)
                    entry.update(status="dropped", reason=f"mask too small on the key frame ({fraction:.5f} of the "
                                                          f"frame < min_mask_fraction {self.config.min_mask_fraction})")
                else:
                    entry["status"] = "ok"
            objects.append(entry)
        tracked = session.propagate() if session is not None and session.obj_ids else {}
        for k, entry in enumerate(objects):
            if entry["status"] != "ok":
                continue
            by_raw: dict[int, np.ndarray] = {}
            for position, mask in tracked[k].items():
                by_raw[int(frame_indices[position])] = mask
            entry["annotation"] = objects_to_annotation([by_raw])[0]
        return {"key_frame": int(frame_indices[key]), "objects": objects}
