"""How each family's official evaluation asks VideoRefer-Bench: its Bench-Q question, its Bench-D question, its frames.

The two families were evaluated differently by their authors, and a benchmark run is only comparable with the
published numbers when it repeats that protocol:

* VideoRefer-7B (official `inference_videorefer_q_bench.py` / `_d_bench.py`): 8 frames sampled uniformly; Bench-Q
  writes each object as `<objectN>[<region>]`; Bench-D asks `DESCRIBE_PROMPT`.
* VideoRefer-VL3 (official `videorefer_videollama3/evaluation/infer_videorefer_q.py` / `infer_videorefer_d.py`):
  time-based sampling, 1 fps for Bench-Q and 4 fps for Bench-D, at most 768 frames; Bench-Q keeps the question's
  plain `<region>` (VL3 adds its own brackets) and puts the video before the text; Bench-D asks
  `DESCRIBE_PROMPT_VL3`, whose `<video>` comes after the text.

Both: in single mode each object keeps only its mask on the item's `frame_idx`; the Bench-Q question is the question,
a space, the options joined by spaces, then `BENCH_Q_SUFFIX`; answers are scored by the same rules.

Each family's processor carries its protocol as the class attribute `bench_protocol` (the one place per family);
`bench` reads it from the loaded model and never asks which family it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .prompts import DESCRIBE_PROMPT, DESCRIBE_PROMPT_VL3, REGION_PLACEHOLDER

__all__ = ["FrameSampling", "BenchProtocol", "BENCH_Q_SUFFIX", "VIDEOREFER_7B_PROTOCOL", "VIDEOREFER_VL3_PROTOCOL"]

BENCH_Q_SUFFIX = ". Answer with the option's letter from the given choices directly."
TASKS = ("question", "describe")


@dataclass(frozen=True)
class FrameSampling:
    """Frames a benchmark item is answered on: `num_frames` sampled uniformly (`fps` None), or sampled at `fps` frames
    per second with at most `num_frames` of them. The frames an item's masks are on are decoded besides."""

    num_frames: int
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")

    def with_num_frames(self, num_frames: int | None) -> "FrameSampling":
        """This sampling with another frame count (uniform) or cap (time-based); None keeps it."""
        return self if num_frames is None else FrameSampling(int(num_frames), self.fps)

    def load_video_kwargs(self) -> dict:
        """Keyword arguments of the family processor's `load_video` that sample these frames."""
        return {"num_frames": self.num_frames, **({"fps": self.fps} if self.fps is not None else {})}

    def __str__(self) -> str:
        if self.fps is None:
            return f"{self.num_frames} frames sampled uniformly"
        return f"{self.fps:g} fps, at most {self.num_frames} frames"


@dataclass(frozen=True)
class BenchProtocol:
    """One family's official VideoRefer-Bench protocol (see the module docstring)."""

    name: str
    region_placeholder: str  # how a Bench-Q question's `<region>` is written for this family
    describe_prompt: str  # the Bench-D question
    question_frames: FrameSampling  # Bench-Q
    describe_frames: FrameSampling  # Bench-D

    def bench_q_question(self, question: str, options: Sequence[str]) -> str:
        """The official Bench-Q question: question (regions written the family's way), options, instruction."""
        question = question.replace(REGION_PLACEHOLDER, self.region_placeholder)
        return question + " " + " ".join(options) + BENCH_Q_SUFFIX

    def frames(self, task: str) -> FrameSampling:
        """The frame sampling of `task`: "question" (Bench-Q) or "describe" (Bench-D)."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        return self.question_frames if task == "question" else self.describe_frames


VIDEOREFER_7B_PROTOCOL = BenchProtocol(
    name="VideoRefer-7B",
    region_placeholder=f"[{REGION_PLACEHOLDER}]",
    describe_prompt=DESCRIBE_PROMPT,
    question_frames=FrameSampling(8),
    describe_frames=FrameSampling(8),
)

VIDEOREFER_VL3_PROTOCOL = BenchProtocol(
    name="VideoRefer-VL3",
    region_placeholder=REGION_PLACEHOLDER,
    describe_prompt=DESCRIBE_PROMPT_VL3,
    question_frames=FrameSampling(768, fps=1.0),
    describe_frames=FrameSampling(768, fps=4.0),
)
