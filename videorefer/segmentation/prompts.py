"""User prompts on one frame for one object, validated against the frame size.

Coordinates are pixels of the original frame, `x` right and `y` down (as SAM 2 and the web app use them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FramePrompt:
    """Everything the user gave for one object on one frame.

    points: float32 (N, 2) xy pixels, or None.   labels: int64 (N,) 1 = positive, 0 = negative, or None.
    box: float32 (4,) x0, y0, x1, y1 pixels, or None.   mask: bool (H, W) brush mask, or None.
    as_drawn: use `mask` as the object's mask verbatim (True) or as a mask prompt that SAM refines (False).
    """

    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None
    as_drawn: bool = False

    @property
    def is_drawn_mask(self) -> bool:
        """True when the frame's mask is exactly the user's drawing (no model involved)."""
        return self.mask is not None and self.as_drawn and self.points is None and self.box is None

    def merged_with(self, other: FramePrompt) -> FramePrompt:
        """Add `other`'s points / box to this prompt (a drawn mask becomes a mask prompt that the clicks refine)."""
        points, labels = self.points, self.labels
        if other.points is not None:
            points = other.points if points is None else np.concatenate([points, other.points])
            labels = other.labels if labels is None else np.concatenate([labels, other.labels])
        box = other.box if other.box is not None else self.box
        return replace(self, points=points, labels=labels, box=box, as_drawn=False)


def validate_points(points: Any, labels: Any, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Check clicks: (N, 2) finite xy inside the frame [0, W] x [0, H] and (N,) labels in {0, 1}."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]  # one click given as [x, y]
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) == 0:
        raise ValueError(f"points must be a non-empty (N, 2) array of [x, y] pixels, got shape {pts.shape}")
    lab = np.asarray(labels)
    if lab.ndim == 0:
        lab = lab[None]
    if lab.shape != (len(pts),):
        raise ValueError(f"labels must have shape ({len(pts)},) to match the points, got {lab.shape}")
    if lab.dtype == np.bool_:
        lab = lab.astype(np.int64)
    if not np.isin(lab, (0, 1)).all():
        raise ValueError("labels must be 1 (positive click) or 0 (negative click)")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite numbers")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > width) | (pts[:, 1] < 0) | (pts[:, 1] > height)
    if outside.any():
        raise ValueError(f"points {pts[outside].tolist()} are outside the {width}x{height} (WxH) frame")
    return pts, lab.astype(np.int64)


def validate_box(box: Any, height: int, width: int) -> np.ndarray:
    """Check a box [x0, y0, x1, y1] in pixels: finite, inside the frame and with positive width and height."""
    arr = np.asarray(box, dtype=np.float32).reshape(-1)
    if arr.shape != (4,):
        raise ValueError(f"box must be [x0, y0, x1, y1], got {np.asarray(box).shape} values")
    if not np.isfinite(arr).all():
        raise ValueError("box must contain finite numbers")
    x0, y0, x1, y1 = arr.tolist()
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {arr.tolist()} is empty: need x1 > x0 and y1 > y0")
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise ValueError(f"box {arr.tolist()} is outside the {width}x{height} (WxH) frame")
    return arr


def validate_mask(mask: Any, height: int, width: int, allow_empty: bool) -> np.ndarray:
    """Check a brush mask: (H, W) at the frame's resolution, binary; return it as bool."""
    arr = np.asarray(mask)
    if arr.shape != (height, width):
        raise ValueError(f"brush mask must have the frame's size ({height}, {width}), got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("brush mask must be bool or contain only 0 and 1")
        arr = arr.astype(bool)
    if not allow_empty and not arr.any():
        raise ValueError("brush mask is empty: nothing to use as a mask prompt (use as_drawn=True to mark absence)")
    return arr


def prompt_from_dict(spec: Mapping[str, Any], height: int, width: int) -> FramePrompt:
    """Validate `{"points", "labels", "box", "mask", "as_drawn"}` (all optional, labels default to positive).

    A brush mask may come with clicks / a box (SAM refines them together) unless it is to be kept as drawn.
    """
    if isinstance(spec, FramePrompt):
        return spec
    pts = lab = box = mask = None
    as_drawn = bool(spec.get("as_drawn", False))
    if spec.get("points") is not None:
        labels = spec.get("labels")
        if labels is None:
            labels = np.ones(len(np.atleast_2d(np.asarray(spec["points"]))), dtype=np.int64)
        pts, lab = validate_points(spec["points"], labels, height, width)
    if spec.get("box") is not None:
        box = validate_box(spec["box"], height, width)
    if spec.get("mask") is not None:
        if as_drawn and (pts is not None or box is not None):
            raise ValueError("a mask kept as drawn cannot be combined with points or a box")
        mask = validate_mask(spec["mask"], height, width, allow_empty=as_drawn)
    if pts is None and box is None and mask is None:
        raise ValueError("a prompt needs points, a box or a mask")
    return FramePrompt(pts, lab, box, mask, as_drawn)
