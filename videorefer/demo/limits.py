"""What the demo accepts: video formats, file size, duration, resolution, question length, object count.

Every check raises `DemoError` with a message meant for the visitor (shown as `gr.Error` in the page and returned as
the error text over the API).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from videorefer.prompts import UnknownObjectError, check_object_tags

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # image mode: a one-frame video (image_mode.py)
MAX_IMAGE_SIDE = 4096  # pixels on an image's longer side (a 16 MP photo fits; SAM 2 and the model resize far below)


class DemoError(ValueError):
    """A problem with the visitor's input (or the model) worth showing to them as is."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one request may ask for (all configurable on the command line)."""

    max_file_mb: float = 100.0
    max_seconds: float = 120.0
    max_long_side: int = 1920
    max_short_side: int = 1080
    max_question_chars: int = 1000
    max_objects: int = 8
    scrub_frames: int = 32  # frames decoded once per video for the slider and for tracking

    def describe(self) -> str:
        """The limits as one line of Markdown for the page."""
        return (
            f"**Limits:** {', '.join(s.lstrip('.') for s in VIDEO_SUFFIXES)} · up to {self.max_file_mb:g} MB · "
            f"up to {self.max_seconds:g} s · up to {self.max_long_side}×{self.max_short_side} px · "
            f"{self.scrub_frames} frames are sampled for pointing and tracking · "
            f"images: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} up to {MAX_IMAGE_SIDE} px · "
            f"up to {self.max_objects} objects · "
            f"questions up to {self.max_question_chars} characters."
        )


@dataclass(frozen=True)
class VideoInfo:
    """What the demo knows about an accepted video."""

    path: str
    total_frames: int
    fps: float | None
    height: int
    width: int

    @property
    def seconds(self) -> float | None:
        return self.total_frames / self.fps if self.fps else None


def check_video(path: str | os.PathLike | None, limits: Limits) -> VideoInfo:
    """Accept a video file or raise `DemoError` saying why not (format, size, decodability, length, resolution)."""
    from videorefer.video_io import video_info

    if path is None or str(path) == "":
        raise DemoError("Please upload a video first (or pick the example).")
    file = Path(path)
    if not file.is_file():
        raise DemoError("The video file could not be found; please upload it again.")
    from .image_mode import check_image  # an image is a one-frame video

    if file.suffix.lower() in IMAGE_SUFFIXES:
        return check_image(file, limits)
    if file.suffix.lower() not in VIDEO_SUFFIXES:
        raise DemoError(
            f"'{file.name}' is not a supported video: use one of {', '.join(VIDEO_SUFFIXES)} "
            f"(or an image: {', '.join(IMAGE_SUFFIXES)})."
        )
    size_mb = file.stat().st_size / 1e6
    if size_mb > limits.max_file_mb:
        raise DemoError(f"The file is {size_mb:.1f} MB; the limit is {limits.max_file_mb:g} MB.")
    _probe(file)
    try:
        total, fps, height, width = video_info(str(file))
    except Exception as error:  # decoders raise many kinds of errors on broken files
        message = _short(error).replace(str(file), file.name)
        raise DemoError(f"'{file.name}' could not be read as a video (is it corrupt?): {message}") from None
    if total <= 0:
        raise DemoError(f"'{file.name}' has no frames.")
    info = VideoInfo(str(file), int(total), fps, int(height), int(width))
    if info.seconds is not None and info.seconds > limits.max_seconds:
        raise DemoError(f"The video lasts {info.seconds:.1f} s; the limit is {limits.max_seconds:g} s. Please trim it.")
    if info.seconds is None and total > limits.max_seconds * 30:
        raise DemoError(f"The video has {total} frames; the limit is {int(limits.max_seconds * 30)}.")
    long_side, short_side = max(height, width), min(height, width)
    if long_side > limits.max_long_side or short_side > limits.max_short_side:
        raise DemoError(
            f"The video is {width}×{height} px; the limit is {limits.max_long_side}×{limits.max_short_side}. "
            "Please downscale it."
        )
    return info


def check_question(question: str | None, num_objects: int, limits: Limits) -> str:
    """A stripped question that names only existing objects, or `DemoError`."""
    text = (question or "").strip()
    if not text:
        raise DemoError("Please type a question.")
    if len(text) > limits.max_question_chars:
        raise DemoError(f"The question has {len(text)} characters; the limit is {limits.max_question_chars}.")
    if num_objects == 0:
        raise DemoError("Point at an object first: click on the frame to create <object0>.")
    try:
        check_object_tags(text, num_objects)
    except UnknownObjectError as error:
        have = "<object0>" if num_objects == 1 else f"<object0> … <object{num_objects - 1}>"
        raise DemoError(f"The question names <object{error.index}>, but only {have} exist.") from None
    return text


def _probe(file: Path) -> None:
    """Open the container with PyAV: a clear message for files that are not videos or hold no video frames."""
    import av

    try:
        with av.open(str(file)) as container:
            if not container.streams.video:
                raise DemoError(f"'{file.name}' has no video frames.")
            stream = container.streams.video[0]
            if not stream.frames and next(iter(container.decode(video=0)), None) is None:
                raise DemoError(f"'{file.name}' has no video frames.")
    except DemoError:
        raise
    except Exception as error:
        raise DemoError(f"'{file.name}' could not be read as a video (is it corrupt?): "
                         f"{_short(error).replace(str(file), file.name)}") from None


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\] \S+: ")


def _short(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message, without decoder log prefixes, at most `limit` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = _DECORD_PREFIX.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
