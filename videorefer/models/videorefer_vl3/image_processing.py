"""VL3 pixel preprocessing, as the official VideoRefer-VideoLLaMA3 processor computes it.

* `smart_resize`: the official rule (multiples of `factor` by Python's half-to-even `round`, then into the pixel
  budget; sides shorter than `factor` are first scaled up to it). transformers' `video_llama_3.smart_resize` lacks
  that first step, so it is reimplemented here.
* `preprocess_images`: bicubic resize of uint8 frames with Pillow <= 12's pixels whatever Pillow is installed
  (`videorefer.pil_bicubic`: Pillow 13 changed them by up to 17 grey levels), x/255 in
  float64 then float32, (x - 0.5) / 0.5, cut into 14x14 patches of 588 values `(C, 14, 14)`. Frames use the 2x2-grouped
  patch order (merge 2, factor 28); crops and images the raster order (merge 1, factor 14). This is what transformers'
  `VideoLlama3ImageProcessorPil` computes one image at a time; here a whole video is normalised and patchified at once.
* `crop_regions`: the official `resize_image_mask`: a box around each mask, scaled so the mask covers about 10 patch
  cells, resized with OpenCV's linear filter; the mask resized to the crop's patch grid with torch's uint8 bilinear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from videorefer.pil_bicubic import resize_bicubic

__all__ = [
    "PATCH_SIZE",
    "MIN_PIXELS",
    "smart_resize",
    "pixel_budget",
    "preprocess_images",
    "patchify",
    "RegionCrops",
    "crop_regions",
    "crop_scale",
]

PATCH_SIZE = 14
MIN_PIXELS = 56 * 56  # DAMOVLImageProcessor's default; the checkpoints' preprocessor_config.json does not change it
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
CROP_MARGIN = 2 * PATCH_SIZE  # the mask's box grows by two patches on every side
TARGET_MASK_PIXELS = 10 * PATCH_SIZE**2  # crops are scaled so that the mask covers ~10 patch cells ...
MAX_MASK_PIXELS = 100 * PATCH_SIZE**2  # ... and large masks are shrunk to at most ~100 cells
MAX_ASPECT_RATIO = 200


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """`(h, w)`, multiples of `factor` with `min_pixels <= h*w <= max_pixels`, aspect ratio kept about the same."""
    if height <= 0 or width <= 0:
        raise ValueError(f"cannot resize an image of size {height}x{width}")
    if height < factor or width < factor:
        scale = factor / min(height, width)
        height, width = round(scale * height), round(scale * width)
    elif max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(f"an image of {height}x{width} has an aspect ratio over {MAX_ASPECT_RATIO}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar <= 0 or w_bar <= 0:
        raise ValueError(f"a pixel budget of {max_pixels} is too small for an image of {height}x{width}")
    return h_bar, w_bar


def pixel_budget(mm_max_length: int, spatial_merge_size: int, merge_size: int, num_images: int) -> int:
    """Most pixels each of `num_images` images may keep (the official image processor's `max_pixels // num_images`).

    The checkpoint's budget is `mm_max_length` merged tokens, `mm_max_length * spatial_merge_size² * 14²` pixels; an
    image patchified with a smaller `merge_size` (crops, still images: 1) gets `(merge_size / spatial_merge_size)²`
    of it. Frames of a video (merge 2) share the whole budget, the crops of a request share a quarter.
    """
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}")
    full = mm_max_length * spatial_merge_size**2 * PATCH_SIZE**2
    return int(int(full / (spatial_merge_size / merge_size) ** 2) // num_images)


def patchify(pixels: np.ndarray, merge_size: int) -> np.ndarray:
    """`(n, C, H, W)` float32 -> `(n * gh * gw, C * 14 * 14)`: per image, merge_size² blocks in raster order, the
    patches of a block row-major (merge 1: plain raster order)."""
    n, c, h, w = pixels.shape
    gh, gw = h // PATCH_SIZE, w // PATCH_SIZE
    m = merge_size
    if gh % m or gw % m or h % PATCH_SIZE or w % PATCH_SIZE:
        raise ValueError(f"{h}x{w} is not a multiple of {PATCH_SIZE * m}")
    blocks = pixels.reshape(n, c, gh // m, m, PATCH_SIZE, gw // m, m, PATCH_SIZE)
    blocks = blocks.transpose(0, 2, 5, 3, 6, 1, 4, 7)  # (n, gh/m, gw/m, m, m, C, 14, 14)
    return np.ascontiguousarray(blocks).reshape(n * gh * gw, c * PATCH_SIZE * PATCH_SIZE)


def preprocess_images(
    images: np.ndarray | list[np.ndarray],
    merge_size: int,
    max_pixels: int,
    min_pixels: int = MIN_PIXELS,
    image_mean: tuple[float, ...] = IMAGE_MEAN,
    image_std: tuple[float, ...] = IMAGE_STD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images `(H_i, W_i, 3)` uint8 (a video: `(n, H, W, 3)`) -> `pixel_values (P, 588)` float32 and
    `grid_thw (n, 3)` long.

    Each image is resized to `smart_resize(factor=14 * merge_size)` with (Pillow <= 12's) bicubic; same-size images
    (a video's frames) are resized, normalised and patchified together.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4:
        groups = [images]
    else:
        groups = [np.asarray(image)[None] for image in images]
    patches, grids = [], []
    factor = PATCH_SIZE * merge_size
    mean = np.asarray(image_mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(image_std, dtype=np.float32).reshape(1, -1, 1, 1)
    for group in groups:
        if group.ndim != 4 or group.shape[-1] != 3 or group.dtype != np.uint8:
            raise ValueError(f"images must be (H, W, 3) uint8, got {group.shape[1:]} {group.dtype}")
        height, width = smart_resize(group.shape[1], group.shape[2], factor, min_pixels, max_pixels)
        resized = resize_bicubic(group, height, width)
        # x/255 in float64 then float32, then (x - mean) / std in float32: the official order of roundings.
        scaled = (resized.astype(np.float64) * (1 / 255)).astype(np.float32).transpose(0, 3, 1, 2)
        patches.append(patchify((scaled - mean) / std, merge_size))
        grids.extend([[1, height // PATCH_SIZE, width // PATCH_SIZE]] * len(group))
    return torch.from_numpy(np.concatenate(patches)), torch.tensor(grids, dtype=torch.long)


# ----------------------------------------------------------------------------------------------------------- regions
@dataclass
class RegionCrops:
    """Per mask k: `crops[k]` `(H'_k, W'_k, 3)` uint8 (multiples of 14), `mask_grids[k]` `(H'_k/14, W'_k/14)` uint8."""

    crops: list[np.ndarray]
    mask_grids: list[torch.Tensor]

    @property
    def cells(self) -> list[int]:
        return [int(grid.sum()) for grid in self.mask_grids]


def crop_scale(areas: np.ndarray) -> np.ndarray:
    """`(K,)` mask areas in pixels -> `(K,)` float64 scale factors of the official crop rule.

    `ceil(sqrt(1960 / area))` (an integer: small masks grow to ~10 cells); masks over 19600 pixels shrink by
    `1 / sqrt(area / 19600)`. Divisions in float32 as the official code does them on torch tensors.
    """
    areas32 = np.asarray(areas, dtype=np.float32)
    grow = np.ceil(np.sqrt((np.float32(TARGET_MASK_PIXELS) / areas32).astype(np.float64)))
    ratio = ((areas32 / np.float32(PATCH_SIZE**2)) / np.float32(100)).astype(np.float64)
    shrink = 1 / np.sqrt(ratio)
    return np.where((grow == 1) & (ratio > 1), shrink, grow)


def crop_regions(images: np.ndarray, masks: np.ndarray) -> RegionCrops:
    """The official `resize_image_mask` for K masks: `images` `(K, H, W, 3)` uint8 (the frame each mask is on),
    `masks` `(K, H, W)` with 0/1 values (an empty mask stands for the whole frame).

    Box = the mask's rows/columns +-28 px, clipped to `[0, H-1]` / `[0, W-1]`, end exclusive; crop size
    `ceil(side * scale / 14) * 14`; the crop resized with `cv2.resize` (linear); the box's mask resized to the
    crop's patch grid with `F.interpolate(bilinear)` on uint8, whose 0/1 results are torch's uint8 kernel's.
    """
    import cv2

    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3 or images.shape[:3] != masks.shape:
        raise ValueError(f"masks {masks.shape} do not match the frames {images.shape[:3]}")
    k, h, w = masks.shape
    empty = ~masks.reshape(k, -1).any(axis=1)
    masks = masks | empty[:, None, None]
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (K, H), (K, W)
    top, left = rows.argmax(axis=1), cols.argmax(axis=1)
    bottom, right = h - 1 - rows[:, ::-1].argmax(axis=1), w - 1 - cols[:, ::-1].argmax(axis=1)
    r0, c0 = np.maximum(0, top - CROP_MARGIN), np.maximum(0, left - CROP_MARGIN)
    r1, c1 = np.minimum(h - 1, bottom + CROP_MARGIN), np.minimum(w - 1, right + CROP_MARGIN)
    scale = crop_scale(masks.reshape(k, -1).sum(axis=1))
    crop_h = _ceil_to_patch((r1 - r0) * scale)
    crop_w = _ceil_to_patch((c1 - c0) * scale)
    if (crop_h <= 0).any() or (crop_w <= 0).any() or (r1 <= r0).any() or (c1 <= c0).any():
        raise ValueError(f"frames of {h}x{w} are too small to crop a region from")
    crops, grids = [], []
    masks_u8 = torch.from_numpy(masks.view(np.uint8))
    for i in range(k):  # crops differ in size: one resize each
        box_pixels = np.ascontiguousarray(images[i, r0[i] : r1[i], c0[i] : c1[i]])
        crops.append(cv2.resize(box_pixels, (int(crop_w[i]), int(crop_h[i]))))  # INTER_LINEAR, as the official call
        box = masks_u8[i, r0[i] : r1[i], c0[i] : c1[i]]
        size = (int(crop_h[i]) // PATCH_SIZE, int(crop_w[i]) // PATCH_SIZE)
        grids.append(F.interpolate(box[None, None], size=size, mode="bilinear", align_corners=False)[0, 0])
    return RegionCrops(crops, grids)


def _ceil_to_patch(sizes: np.ndarray) -> np.ndarray:
    """`ceil(size / 14) * 14`, with the official mix of exact integers (integer scales) and float64."""
    return (np.ceil(np.asarray(sizes, dtype=np.float64) / PATCH_SIZE) * PATCH_SIZE).astype(np.int64)
