"""Running on Hugging Face Spaces and ZeroGPU: where the models go, and how long each GPU call may hold a GPU.

On a ZeroGPU Space (`SPACES_ZERO_GPU=true`) a GPU is lent to one decorated function call at a time. Each call asks
for a `duration` (seconds) up front: too short and the call is aborted, too long and the visitor waits behind others
and spends more of their quota. `gpu_duration` is the one policy that turns a call's work (frames x objects when
tracking, new tokens when answering) into that request, clamped to what ZeroGPU accepts. Off Spaces, `gpu` returns
the function unchanged.

The models are loaded at import onto `cuda` (ZeroGPU's `spaces` package keeps them in CPU memory and moves them to
the lent GPU inside each decorated call), so `default_device()` says `cuda` on a ZeroGPU Space even though no GPU is
visible outside a call.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable


# ZeroGPU's limits (https://huggingface.co/docs/hub/spaces-zerogpu): 60 s when no duration is given; requests above
# a few minutes are refused ("ZeroGPU illegal duration"), so we never ask for more than 300 s.
ZEROGPU_MIN_SECONDS = 10
ZEROGPU_MAX_SECONDS = 300

# Estimated cost of each unit of work on a ZeroGPU slice (an H200 MIG slice), with a margin: the first call of a
# process also moves the weights onto the GPU (counted in the base).
BASE_SECONDS = 10.0  # weights onto the GPU, one SAM 2 / vision encoding, Python overhead
SECONDS_PER_TRACK_STEP = 0.15  # one SAM 2.1-large video step (one object on one frame, bf16)
SECONDS_PER_FRAME_ENCODING = 0.1  # one SAM 2 image encoding (shared by all objects on a frame)
SECONDS_PER_NEW_TOKEN = 0.06  # a 7B model in bf16 writes ~20-40 tokens/s; the question's prefill is in the base
SECONDS_PER_PROMPT = 1.0  # one click / box / brush mask through SAM 2

WORK_KINDS = ("segment", "track", "answer")


def on_space() -> bool:
    """True inside a Hugging Face Space (the platform sets `SPACE_ID`)."""
    return bool(os.environ.get("SPACE_ID"))


def on_zero_gpu() -> bool:
    """True on a ZeroGPU Space (what `spaces.GPU` itself checks)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def default_device() -> str:
    """`cuda` on a ZeroGPU Space (models are placed there at import) or when a GPU is visible, else `cpu`."""
    if on_zero_gpu():
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_duration(kind: str, *, frames: int = 1, objects: int = 1, new_tokens: int = 0, prompts: int = 1) -> int:
    """Seconds to ask ZeroGPU for one call, from the work it does, within ZeroGPU's limits.

    - `segment`: `prompts` clicks / boxes / brush masks through SAM 2 (each on one frame).
    - `track`: every object on every frame: `frames` image encodings plus `frames * objects` tracking steps.
    - `answer`: encode the video and the objects (in the base) and write up to `new_tokens` tokens.
    """
    if kind not in WORK_KINDS:
        raise ValueError(f"kind must be one of {', '.join(WORK_KINDS)}, got {kind!r}")
    for name, value in (("frames", frames), ("objects", objects), ("new_tokens", new_tokens), ("prompts", prompts)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if kind == "segment":
        seconds = BASE_SECONDS + SECONDS_PER_PROMPT * prompts
    elif kind == "track":
        seconds = BASE_SECONDS + SECONDS_PER_FRAME_ENCODING * frames + SECONDS_PER_TRACK_STEP * frames * objects
    else:
        seconds = BASE_SECONDS + SECONDS_PER_NEW_TOKEN * new_tokens
    return int(min(ZEROGPU_MAX_SECONDS, max(ZEROGPU_MIN_SECONDS, math.ceil(seconds))))


def gpu(fn: Callable | None = None, *, duration: Callable[..., int] | int | None = None) -> Any:
    """`spaces.GPU(fn, duration=duration)` on ZeroGPU; `fn` unchanged elsewhere. Use as `@gpu` or
    `@gpu(duration=...)`, where `duration` is seconds or a function of `fn`'s arguments (ZeroGPU calls it before each
    call), normally built on `gpu_duration`.

    On ZeroGPU the call runs in a forked worker: its arguments are pickled (see `shared_by_reference`) and whatever it
    changes in them stays there, so a decorated function returns what it changed.
    """
    if fn is None:
        return functools.partial(gpu, duration=duration)
    if not on_zero_gpu():
        return fn
    import spaces

    return spaces.GPU(fn, duration=duration)


# ------------------------------------------------------------------------------ pickling the shared models by name
_SHARED: dict[int, Any] = {}


def _shared(key: int) -> Any:
    return _SHARED[key]


def shared_by_reference(*objects: Any) -> None:
    """Pickle these (process-wide, read-only) objects as a reference to themselves.

    ZeroGPU pickles a GPU function's arguments for its forked worker, which already holds the models (forked after
    they were loaded). A visitor's state refers to the models (the SAM 2 session holds its segmenter); without this
    every call would copy the weights through a pipe.
    """
    import copyreg

    for obj in objects:
        _SHARED[id(obj)] = obj
        copyreg.pickle(type(obj), _reduce_shared)


def _reduce_shared(obj: Any) -> Any:
    if id(obj) not in _SHARED:  # another instance of a registered class: pickle it as usual
        return obj.__reduce_ex__(4)
    return _shared, (id(obj),)


def import_spaces_first() -> Any:
    """Import `spaces` before torch touches CUDA, as ZeroGPU requires; None when it is not installed."""
    try:
        import spaces
    except ImportError:
        return None
    return spaces


# ------------------------------------------------------------------------------------------ concurrency
ZEROGPU_SLOTS = 2  # ZeroGPU lends each call its own GPU; a few calls at once keep the queue short for everyone


def model_devices(*modules: Any) -> set[str]:
    """The devices (`"cpu"`, `"cuda:0"`, ...) holding the weights of these torch modules."""
    devices = set()
    for module in modules:
        for parameter in module.parameters():
            devices.add(str(parameter.device) if parameter.device.type != "cuda" else f"cuda:{parameter.device.index or 0}")
    return devices


def gpu_slots(devices: set[str]) -> int:
    """How many model calls may run at once: on ZeroGPU a few (each call gets a GPU of its own); otherwise one per
    CUDA device the models occupy (the video LLM and SAM 2 on different GPUs can work side by side; on one GPU they
    take turns, which keeps memory bounded and each answer fast); 1 on the CPU."""
    if on_zero_gpu():
        return ZEROGPU_SLOTS
    return max(1, len({d for d in devices if d.startswith("cuda")}))
