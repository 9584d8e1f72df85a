"""What the demo accepts: video formats, file size, duration, resolution, question length, object count.

Every check raises `DemoError` with a message meant for the visitor (shown as `gr.Error` in the page and returned as
the error text over the API).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

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
    """Accept a video file (or an image: a one-frame video) or raise `DemoError` saying why not (format, size,
    decodability, length, resolution). Opens the file once (`decode.VideoFile`); use `VideoFile` itself to decode
    frames in the same open."""
    from .decode import VideoFile

    with VideoFile(path, limits) as video:
        return video.info


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


_DECORD_PREFIX = re.compile(r"^\[[\d:]+\] \S+: ")


def _short(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message, without decoder log prefixes, at most `limit` characters."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = _DECORD_PREFIX.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_frame_index(frame_index: Any, info: VideoInfo) -> int:
    """`frame_index` as an int inside the video, else `DemoError` saying what is wrong."""
    try:
        frame_index = int(frame_index)
    except (TypeError, ValueError):
        raise DemoError(f"frame_index must be an integer, got {frame_index!r}") from None
    if not 0 <= frame_index < info.total_frames:
        raise DemoError(f"frame_index {frame_index} is outside the video (0..{info.total_frames - 1}).")
    return frame_index


def check_regions(doc: dict, info: VideoInfo, limits: Limits, what: str = "The regions") -> tuple[list, list[str]]:
    """The objects and names of a saved-regions document, checked against the video of `info`: readable, at least one
    object and at most `limits.max_objects`, every mask on a frame of the video and of its size. `what` names the
    source in messages ("The regions", "The regions file")."""
    from videorefer.regions import objects_from_json

    try:
        objects, names = objects_from_json(doc)
    except ValueError as error:
        raise DemoError(f"{what} could not be read: {error}") from None
    if not objects:
        raise DemoError(f"{what} hold no object.")
    if len(objects) > limits.max_objects:
        raise DemoError(f"{what} hold {len(objects)} objects; at most {limits.max_objects} are allowed.")
    for k, obj in enumerate(objects):
        if not obj:
            raise DemoError(f"<object{k}> has no mask on any frame.")
        for frame, mask in obj.items():
            if frame >= info.total_frames:
                raise DemoError(f"<object{k}> has a mask on frame {frame}, but the video has {info.total_frames} frames.")
            if mask.shape != (info.height, info.width):
                raise DemoError(
                    f"<object{k}>'s mask on frame {frame} is {mask.shape[1]}×{mask.shape[0]}, "
                    f"the video is {info.width}×{info.height}."
                )
    return objects, names
