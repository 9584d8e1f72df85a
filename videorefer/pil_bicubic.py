"""Pillow <= 12's bicubic resize of uint8 images, reimplemented so that paper-era pixels do not depend on the Pillow
installed.

Both model families resize frames with PIL's bicubic filter, as the official code does. Pillow 13 changed the order of
its two resampling passes, which moves pixels by up to 17 grey levels for a resize that shrinks one side and grows the
other. `resize_bicubic` uses Pillow itself when it is a paper-era version (fast, C) and this reimplementation of its
fixed-point algorithm (`Resample.c` of Pillow <= 12) otherwise; the tests check the two agree bit for bit.

The algorithm: per axis, for output position x the centre `(x + 0.5) * scale`, taps from `int(centre - support + 0.5)`
to `int(centre + support + 0.5)` (clipped), support `2 * max(scale, 1)`, weights Keys' cubic (a = -0.5) normalised to
sum 1, then rounded to 22-bit fixed point; each pass sums `pixel * weight` from `2**21` and keeps bits 22..29 (clipped
to 0..255). Horizontal pass first (only over the rows the vertical pass reads), then vertical; an axis whose size does
not change is not resampled.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL
from PIL import Image

__all__ = ["resize_bicubic", "resize_bicubic_reference", "PAPER_ERA_PILLOW"]

PAPER_ERA_PILLOW = 13  # the first Pillow whose bicubic differs
_PRECISION_BITS = 32 - 8 - 2
_SUPPORT = 2.0


def _pillow_is_paper_era() -> bool:
    return int(PIL.__version__.split(".")[0]) < PAPER_ERA_PILLOW


PARALLEL_RESIZE_PIXELS = 256 * 256  # frames at least this large are resized in a thread pool (PIL frees the GIL)
REFERENCE_CHUNK = 16  # frames per numpy pass: bounds the int32 intermediates


def resize_bicubic(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """`(n, H, W, C)` uint8 -> `(n, height, width, C)` uint8, with the pixels of Pillow <= 12's bicubic."""
    if images.shape[1:3] == (height, width):
        return images.copy()
    if not _pillow_is_paper_era():
        chunks = range(0, len(images), REFERENCE_CHUNK)
        return np.concatenate([resize_bicubic_reference(images[i : i + REFERENCE_CHUNK], height, width) for i in chunks])

    def one(image: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))

    large = images.shape[1] * images.shape[2] >= PARALLEL_RESIZE_PIXELS and len(images) > 1
    return np.stack(list(_pool().map(one, images)) if large else [one(image) for image in images])


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="videorefer-bicubic")


def _cubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(first tap (out,), taps (out,), fixed-point weights (out, k))` of one axis, as Pillow's `precompute_coeffs`."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _SUPPORT * filter_scale
    ksize = int(math.ceil(support)) * 2 + 1
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.trunc(centre - support + 0.5).astype(np.int64).clip(min=0)  # (int) in C: toward zero
    last = np.minimum(np.trunc(centre + support + 0.5).astype(np.int64), in_size)
    taps = last - first
    offsets = np.arange(ksize)
    valid = offsets[None, :] < taps[:, None]
    inverse = 1.0 / filter_scale
    weights = np.where(valid, _cubic((offsets[None, :] + first[:, None] - centre[:, None] + 0.5) * inverse), 0.0)
    total = _sequential_sum(weights)
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    scaled = weights * (1 << _PRECISION_BITS)
    fixed = np.where(weights < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled)).astype(np.int64)
    return first, taps, fixed


def _sequential_sum(weights: np.ndarray) -> np.ndarray:
    total = np.zeros(weights.shape[0])
    for k in range(weights.shape[1]):  # left to right, as the C loop (a handful of taps)
        total = total + weights[:, k]
    return total


def _apply(images: np.ndarray, axis: int, first: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """One fixed-point pass along `axis` (1: vertical, 2: horizontal) with taps from `first` and weights `fixed`."""
    n_in = images.shape[axis]
    # int32 as in C: |sum| <= 2**21 + 255 * sum|weights| < 2**31 for the cubic's lobes.
    out_shape = images.shape[:axis] + (len(first),) + images.shape[axis + 1 :]
    acc = np.full(out_shape, 1 << (_PRECISION_BITS - 1), dtype=np.int32)
    shape = [1] * images.ndim
    shape[axis] = len(first)
    for k in range(fixed.shape[1]):  # a few taps; each step is one vectorised gather over all images
        index = np.minimum(first + k, n_in - 1)
        acc += np.take(images, index, axis=axis).astype(np.int32) * fixed[:, k].astype(np.int32).reshape(shape)
    return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def resize_bicubic_reference(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """The numpy reimplementation of Pillow <= 12's bicubic (any Pillow installed)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be (n, H, W, C) uint8, got {images.shape} {images.dtype}")
    _, in_h, in_w, _ = images.shape
    out = images
    first_v, taps_v, fixed_v = _coefficients(in_h, height)
    if in_w != width:
        top, bottom = int(first_v[0]), int(first_v[-1] + taps_v[-1])  # only the rows the vertical pass reads
        first_h, _, fixed_h = _coefficients(in_w, width)
        out = _apply(out[:, top:bottom], 2, first_h, fixed_h)
        first_v = first_v - top
    if in_h != height:
        out = _apply(out, 1, first_v, fixed_v)
    return out
