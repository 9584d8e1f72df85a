"""What the demo accepts: video formats, file size, duration, resolution, question length, object count.

Every check raises `DemoError` with a message meant for the visitor (shown as `gr.Error` in the page and returned as
the error text over the API).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from typing import Any, Sequence

from videorefer.prompts import REGION_PLACEHOLDER, UnknownObjectError, check_object_tags

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".gif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # image mode: a one-frame video (image_mode.py)
MAX_IMAGE_SIDE = 4096  # pixels on an image's longer side (a 16 MP photo fits; SAM 2 and the model resize far below)


class DemoError(ValueError):
    """A problem with the visitor's input (or the model) worth showing to them as is."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what one request (page event or API call) may ask for: the one place they live. The page shows
    `describe()`, the README lists them all (`rows()`); the API and the page check the same values."""

    # the upload
    max_file_mb: float = 100.0
    max_seconds: float = 120.0
    max_fps: float = 60.0  # frames per second; with max_seconds it bounds the frames a file may hold
    max_long_side: int = 1920
    max_short_side: int = 1080
    scrub_frames: int = 32  # frames decoded once per video for the slider and for tracking
    # what a request holds
    max_question_chars: int = 1000
    max_history_turns: int = 10
    max_history_chars: int = 8000  # questions and answers of the history together
    max_objects: int = 8
    max_name_chars: int = 40
    max_points: int = 32  # clicks of one /segment call, or of one object on one frame of the page
    max_listed_masks: int = 1024  # masks a regions document may list
    max_masks: int = 128  # masks decoded for one request (after those on frames the request does not use are left out)
    max_extra_frames: int = 8  # frames outside the decoded frames that masks may be on (each is decoded)
    max_json_mb: float = 16.0  # a JSON input (regions, history, points), and an uploaded regions file
    max_json_depth: int = 8
    # time per request
    decode_seconds: float = 60.0
    segment_seconds: float = 30.0
    track_seconds: float = 120.0
    # memory
    session_mb: int = 1024  # one visitor's decoded frames and masks
    sessions_mb: int = 4096  # every visitor's together (the longest idle ones are closed first)
    session_idle_minutes: float = 10.0  # a visitor idle this long is closed (frames and masks freed)
    visual_cache_mb: int = 1024  # the model's cache of decoded videos and visual features

    @property
    def max_frames(self) -> int:
        """The most frames a video file may hold (`max_seconds` at `max_fps`)."""
        return int(self.max_seconds * self.max_fps)

    def describe(self) -> str:
        """The limits as one line of Markdown for the page."""
        return (
            f"**Limits:** {', '.join(s.lstrip('.') for s in VIDEO_SUFFIXES)} · up to {self.max_file_mb:g} MB · "
            f"up to {self.max_seconds:g} s at {self.max_fps:g} fps · up to {self.max_long_side}×{self.max_short_side} px"
            f" · {self.scrub_frames} frames are sampled for pointing and tracking · "
            f"images: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} up to {MAX_IMAGE_SIDE} px · "
            f"up to {self.max_objects} objects · questions up to {self.max_question_chars} characters, "
            f"history up to {self.max_history_turns} turns · an idle visitor is closed after "
            f"{self.session_idle_minutes:g} min."
        )

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) of every limit, for the README's table (`tests/test_hostile_checks.py` checks it)."""
        return [(f.name, f"{getattr(self, f.name):g}") for f in fields(self)]


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


# ChatML's and the prompt grammar's region placeholder; the tokenizer adds its own (`reserved`)
CHAT_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
PLACEHOLDERS = (REGION_PLACEHOLDER,)  # a visitor names objects; only a laid-out question may hold these
_CHAT_LIKE = re.compile(r"<\|[^<>|\s]{1,40}\|>")  # any `<|...|>`: Qwen's special tokens look like this


def reserved_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's added tokens (chat-template specials, `<image>`, `<region>`, ...), longest first: text a
    visitor sends may not hold them (`check_text`); object tags are the visitor's to use."""
    from videorefer.prompts import OBJECT_TAG

    added = [token.content for token in tokenizer.added_tokens_decoder.values()]
    added += list(getattr(tokenizer, "all_special_tokens", []))
    return tuple(sorted({t for t in added if t and not OBJECT_TAG.fullmatch(t)}, key=len, reverse=True))


def check_text(text: str, what: str, reserved: Sequence[str] = (), laid_out: bool = False) -> str:
    """`text` unchanged, or `DemoError` when it holds a chat-template token (`CHAT_TOKENS`, anything shaped `<|...|>`,
    or one of `reserved`: the tokenizer's added tokens, `Backend.reserved_tokens`) that would let a visitor forge a
    turn or a placeholder. `laid_out`: `PLACEHOLDERS` are allowed (a server's client may send a question it laid out
    itself, as the Python API accepts; the processor checks their count)."""
    allowed = PLACEHOLDERS if laid_out else ()
    found = next((token for token in (*CHAT_TOKENS, *PLACEHOLDERS, *reserved)
                  if token and token not in allowed and token in text), None)
    if found is None and (match := _CHAT_LIKE.search(text)):
        found = match.group()
    if found is not None:
        raise DemoError(f"{what} contains {found!r}, which the chat template reserves; please remove it.")
    return text


def _check_tags(text: str, num_objects: int, what: str) -> None:
    try:
        check_object_tags(text, num_objects)
    except UnknownObjectError as error:
        have = "<object0>" if num_objects == 1 else f"<object0> … <object{num_objects - 1}>"
        raise DemoError(f"{what} names <object{error.index}>, but only {have} exist.") from None


def check_question(
    question: Any, num_objects: int, limits: Limits, reserved: Sequence[str] = (), laid_out: bool = False
) -> str:
    """A stripped question that names only existing objects and holds no reserved token, or `DemoError`."""
    if question is not None and not isinstance(question, str):
        raise DemoError(f"The question must be text, got {type(question).__name__}.")
    text = (question or "").strip()
    if not text:
        raise DemoError("Please type a question.")
    if len(text) > limits.max_question_chars:
        raise DemoError(f"The question has {len(text)} characters; the limit is {limits.max_question_chars}.")
    if num_objects == 0:
        raise DemoError("Point at an object first: click on the frame to create <object0>.")
    _check_tags(text, num_objects, "The question")
    return check_text(text, "The question", reserved, laid_out)


def check_history(
    history: Any, num_objects: int, limits: Limits, reserved: Sequence[str] = (), laid_out: bool = False
) -> list[tuple[str, str]]:
    """`history` ([[question, answer], ...] of strings) within `max_history_turns` turns and `max_history_chars`
    characters, naming only existing objects, without reserved tokens; else `DemoError` saying what to change."""
    history = history or []
    if not isinstance(history, (list, tuple)) or not all(
        isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn) for turn in history
    ):
        raise DemoError('history must be a list of [question, answer] pairs of strings, e.g. [["Q?", "A."]].')
    if len(history) > limits.max_history_turns:
        raise DemoError(f"The history has {len(history)} turns; the limit is {limits.max_history_turns}: "
                        "send only the latest turns.")
    chars = sum(len(q) + len(a) for q, a in history)
    if chars > limits.max_history_chars:
        raise DemoError(f"The history has {chars} characters; the limit is {limits.max_history_chars}: "
                        "send fewer or shorter turns.")
    for n, (question, answer) in enumerate(history):
        for text, part in ((question, "question"), (answer, "answer")):
            what = f"The history's turn {n} ({part})"
            _check_tags(text, num_objects, what)
            check_text(text, what, reserved, laid_out)
    return [(q, a) for q, a in history]


def recent_history(history: Sequence[tuple[str, str]], limits: Limits) -> list[tuple[str, str]]:
    """The latest turns of a page chat that fit `max_history_turns` and `max_history_chars` (older turns stay on the
    page but are no longer sent to the model)."""
    kept: list[tuple[str, str]] = []
    chars = 0
    for question, answer in reversed(list(history)[-limits.max_history_turns:]):
        chars += len(question) + len(answer)
        if chars > limits.max_history_chars:
            break
        kept.append((question, answer))
    return kept[::-1]


def check_name(name: Any, limits: Limits, reserved: Sequence[str] = (), what: str = "An object's name") -> str:
    """A stripped object name of 1 to `max_name_chars` characters without reserved tokens, or `DemoError`."""
    text = str(name if name is not None else "").strip()
    if not text or len(text) > limits.max_name_chars:
        raise DemoError(f"{what} needs 1 to {limits.max_name_chars} characters, got {len(text)}.")
    return check_text(text, what, reserved)


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
    except (TypeError, ValueError, OverflowError):
        raise DemoError(f"frame_index must be an integer, got {str(frame_index)[:40]!r}") from None
    if not 0 <= frame_index < info.total_frames:
        raise DemoError(f"frame_index {frame_index} is outside the video (0..{info.total_frames - 1}).")
    return frame_index
