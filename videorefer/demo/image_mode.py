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
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from .limits import IMAGE_SUFFIXES, MAX_IMAGE_SIDE, DemoError, Limits, VideoInfo


def is_image(path: str | os.PathLike | None) -> bool:
    """True for a path with an image suffix (the demo's image mode)."""
    return isinstance(path, (str, os.PathLike)) and Path(path).suffix.lower() in IMAGE_SUFFIXES


def check_image(path: str | os.PathLike, limits: Limits) -> VideoInfo:
    """Accept an image as a one-frame video, or raise `DemoError` saying why not (size, decodability, resolution)."""
    from PIL import Image, UnidentifiedImageError

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
            image.load()
    except DemoError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise DemoError(f"'{file.name}' could not be read as an image (is it corrupt?): "
                        f"{str(error).replace(str(file), file.name)[:160]}") from None
    return VideoInfo(str(file), 1, None, int(height), int(width))


def _upright_size(image) -> tuple[int, int]:
    width, height = image.size
    orientation = image.getexif().get(0x0112, 1)  # EXIF Orientation: 5-8 swap width and height
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W, 3), upright."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def read_frames(source, indices: Iterable[int]) -> np.ndarray:
    """`videorefer.video_io.read_frames`, also for an image (its only frame is 0): (len(indices), H, W, 3) uint8."""
    indices = list(indices)
    if not is_image(source):
        from videorefer.video_io import read_frames as read_video_frames

        return read_video_frames(source, indices)
    if any(i != 0 for i in indices):
        raise ValueError(f"an image has one frame (0), not {sorted(set(indices) - {0})}")
    image = load_image(source)
    return np.repeat(image[None], len(indices), axis=0)


def ask_image_stream(
    backend, image_path: str, regions: Sequence[dict[int, np.ndarray]], question: str,
    history: Sequence[tuple[str, str]] = (), stop_event=None,
) -> Iterator[str]:
    """Stream the answer about `regions` (masks on frame 0) of an image: natively when the model family answers
    images, otherwise as a one-frame video."""
    image = load_image(image_path)
    native = getattr(backend.model, "ask_image_stream", None)
    if native is not None:
        masks = [region[0] for region in regions]
        yield from native(image, masks, question, history=list(history) or None, stop_event=stop_event)
        return
    yield from backend.model.ask_stream(image[None], list(regions), question, history=list(history) or None,
                                        stop_event=stop_event)
