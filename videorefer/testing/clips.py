"""Small random clips with a moving object, for tests that compare two paths on the same request."""

from __future__ import annotations

import numpy as np

__all__ = ["moving_square_clip"]


def moving_square_clip(seed: int, frames: int = 10, h: int = 56, w: int = 64) -> tuple[np.ndarray, dict]:
    """A random uint8 video `(frames, h, w, 3)` and an object: a square moving right and down, one mask per frame."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
    masks = {}
    for t in range(frames):
        mask = np.zeros((h, w), bool)
        mask[8 + t: 30 + t, 4 + 3 * t: 26 + 3 * t] = True
        masks[t] = mask
    return video, masks
