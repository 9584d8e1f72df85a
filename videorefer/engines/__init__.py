"""Who runs the language model behind `videorefer.VideoRefer`: a choice of the caller, not of the code above it.

`VideoRefer.from_pretrained(..., engine="transformers")` (the default) answers with this process's transformers model
(generate + prefix cache; what ZeroGPU Spaces run). `engine="vllm"` answers through vLLM (`engines.vllm.VLLMEngine`:
continuous batching, paged attention, prefix caching, tensor parallel). `engines.remote.connect(url)` answers through a
VideoRefer server (`python -m videorefer.serve`) over HTTP. All give the same `describe` / `ask` / `ask_stream` /
`ask_batch`; the demo, the benchmarks and the data engine never ask which one they hold.

An engine other than transformers implements `Engine`: it receives `Request`s whose video is already decoded by the
family's processor (`VideoRefer` does that, with the same frame settings and caches as the transformers path).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

__all__ = ["ENGINES", "Engine", "Request", "load_engine"]

ENGINES = ("transformers", "vllm")


@dataclass
class Request:
    """One question about objects in a decoded video (or a still (H, W, 3) image)."""

    video: Any
    objects: Sequence[Any]
    question: str
    history: Sequence[tuple[str, str]] = field(default_factory=list)
    allow_empty_masks: bool = False


class Engine(Protocol):
    submit_size: int  # how many requests a caller should hand over at once

    def answer(self, requests: Sequence[Request], **generation: Any) -> list[str]:
        """Every request's answer, all submitted at once (a refused request raises; see `VideoRefer.ask_batch`)."""

    def stream(self, request: Request, stop_event: threading.Event | None = None, **generation: Any) -> Iterator[str]:
        """The answer as it grows."""

    def close(self) -> None:
        """Free the engine's memory (and its workers)."""


def load_engine(name: str, model_id: str, processor: Any, **engine_args: Any) -> Engine:
    """The engine `name` ("vllm") for the checkpoint `model_id` (its family's `processor` already loaded)."""
    if name == "vllm":
        from .vllm import VLLMEngine

        return VLLMEngine(model_id, processor, **engine_args)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
