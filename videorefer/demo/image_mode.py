"""Images in the demo: a photo is a one-frame video everywhere (page, `/segment`, `/find`, `/describe`, `/ask`).

Upload checks (`check_image`): a supported suffix, at most `Limits.max_file_mb`, decodable by Pillow, at most
`MAX_IMAGE_SIDE` pixels on its longer side. Phone photos are turned upright from their EXIF orientation.

Answering goes through one function, `ask_image_stream`: a model family that answers images natively (VideoRefer-VL3)
provides `ask_image_stream(image, regions, question, ...)` and is used as is; otherwise the image is given as a
one-frame video (VideoRefer-7B). That is what the official v1 code does with an image: its `mm_infer(modal="image")`
passes a (1, C, H, W) tensor and `encode_images_or_videos` expands it to `num_frames` identical frames before the
spatial-temporal connector; our processor samples `num_frames` frames from a one-frame video, which repeats that frame
the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .limits import IMAGE_SUFFIXES, MAX_IMAGE_SIDE, DemoError, Limits, VideoInfo


def is_image(path: str | os.PathLike | None) -> bool:
    """True for a path with an image suffix (the demo's image mode)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_image(path: str | os.PathLike, limits: Limits) -> VideoInfo:
    """Accept an image as a one-frame video, or raise `DemoError` saying why not (size, decodability, resolution)."""
    return open_image(path, limits)[0]


def open_image(path: str | os.PathLike, limits: Limits) -> tuple[VideoInfo, np.ndarray]:
    """Check an image and decode it in the same open: its `VideoInfo` (one frame) and its upright uint8 (H, W, 3)
    pixels; `DemoError` saying why not (size, decodability, resolution)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    if not file.is_file():
        raise DemoError("The image file could not be found; please upload it again.")
    size_mb = file.stat().st_size / 1e6
    if size_mb > limits.max_file_mb:
        raise DemoError(f"The file is {size_mb:.1f} MB; the limit is {limits.max_file_mb:g} MB.")
    try:
        with Image.open(file) as image:  # reads the header only: the size is known before any pixel is decoded
            width, height = _upright_size(image)
            if max(width, height) > MAX_IMAGE_SIDE:
                raise DemoError(f"The image is {width}×{height} px; the limit is {MAX_IMAGE_SIDE} px on the longer "
                                "side. Please downscale it.")
            pixels = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except DemoError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise DemoError(f"'{file.name}' could not be read as an image (is it corrupt?): "
                        f"{str(error).replace(str(file), file.name)[:160]}") from None
    return VideoInfo(str(file), 1, None, int(height), int(width)), pixels


def _upright_size(image) -> tuple[int, int]:
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation: 5-8 swap width and height
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W, 3), upright."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def ask_image_stream(
    backend, image: str | os.PathLike | np.ndarray, regions: Sequence[dict[int, np.ndarray]], question: str,
    history: Sequence[tuple[str, str]] = (), stop_event=None,
) -> Iterator[str]:
    """Stream the answer about `regions` (masks on frame 0) of an image (a path or its decoded (H, W, 3) pixels):
    natively when the model family answers images, otherwise as a one-frame video."""
    image = image if isinstance(image, np.ndarray) else load_image(image)
    native = getattr(backend.model, "ask_image_stream", None)
    if native is not None:
        masks = [region[0] for region in regions]
        yield from native(image, masks, question, history=list(history) or None, stop_event=stop_event)
        return
    yield from backend.model.ask_stream(image[None], list(regions), question, history=list(history) or None,
                                        stop_event=stop_event)
