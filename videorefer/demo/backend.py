"""Loading the models once per server: settings from the command line and environment, tiny mode, `spaces.GPU`.

Environment variables (the command-line flags override them):

| variable | flag | default |
| --- | --- | --- |
| `VIDEOREFER_MODEL` | `--model` | `videorefer.api.DEFAULT_MODEL_ID` (VideoRefer-VL3 7B); either family's checkpoint |
| `VIDEOREFER_QUANTIZATION` | `--quantization` | `none` (`8bit`, `4bit`) |
| `VIDEOREFER_SAM2` | `--sam2` | `facebook/sam2.1-hiera-large` |
| `VIDEOREFER_DEVICE` | `--device` | `cuda` when available, else `cpu` |
| `VIDEOREFER_TINY` | `--tiny [vl3\|v1]` | off: random tiny models built in code, no download (`--tiny`: VL3) |
| `VIDEOREFER_MAX_MODEL_FRAMES` | `--max-model-frames` | `16`: the most frames the model reads (VL3: 1 fps, capped) |
| `VIDEOREFER_DETECTOR` | `--detector` | `IDEA-Research/grounding-dino-base` (*Find* by name; `none`: no Find) |
| `VIDEOREFER_SERVER` | `--server URL` | off: answers come from a VideoRefer server (`python -m videorefer.serve`) |
| `VIDEOREFER_ENGINE` | `--engine` | `transformers` (`vllm`: in-process vLLM, needs the vLLM venv) |
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from videorefer.api import DEFAULT_MODEL_ID

from videorefer.testing.tiny import TINY_FAMILIES  # `--tiny` alone builds the first

from .limits import Limits

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
MAX_MODEL_FRAMES = 16  # the demo's cap on VL3's 1-fps sampling (a 2-minute video would otherwise give 120 frames)
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-base"  # as the data engine's Segmentor
QUANTIZATIONS = ("none", "8bit", "4bit")


def gpu(fn: Callable) -> Callable:
    """Kept for callers of the old name: `zerogpu.gpu` (with a duration policy) is the one to use."""
    from .zerogpu import gpu as zerogpu_gpu

    return zerogpu_gpu(fn)


@dataclass
class Settings:
    """Everything the command line and environment choose."""

    model: str = DEFAULT_MODEL_ID
    quantization: str = "none"
    sam2: str = DEFAULT_SAM2
    device: str | None = None
    tiny: bool | str = False  # True or "vl3" / "v1": random tiny models of that family (True: the default one)
    host: str = "127.0.0.1"
    port: int = 7860
    max_new_tokens: int = 512
    limits: Limits = field(default_factory=Limits)
    detector: str = DEFAULT_DETECTOR  # Grounding DINO for Find by name ("none": the page has no Find)
    find_threshold: float = 0.35  # the Find box threshold the page starts with and /find uses by default
    max_model_frames: int = MAX_MODEL_FRAMES  # cap on the frames a family that samples by time reads
    server: str | None = None  # a VideoRefer server's URL: answers come from there (segmentation stays here)
    engine: str = "transformers"  # the in-process engine when there is no server ("vllm": in-process vLLM)
    answer_slots: int = 32  # concurrent answers handed to an engine that batches (a server, vLLM)

    @property
    def tiny_family(self) -> str | None:
        """"vl3" / "v1" in tiny mode, else None."""
        if self.tiny is True:
            return TINY_FAMILIES[0]
        if not self.tiny:
            return None
        family = str(self.tiny).strip().lower()
        if family not in TINY_FAMILIES:
            raise ValueError(f"--tiny takes one of {', '.join(TINY_FAMILIES)} (or nothing: {TINY_FAMILIES[0]}), "
                             f"got {self.tiny!r}")
        return family


def _env_tiny() -> bool | str:
    """`VIDEOREFER_TINY`: 1 / true / yes / on (the default family), vl3, v1; anything else is off."""
    value = os.environ.get("VIDEOREFER_TINY", "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    return value if value in TINY_FAMILIES else False


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Read `Settings` from `argv` (default: sys.argv) with environment variables as defaults."""
    env = os.environ.get
    base = Limits()
    parser = argparse.ArgumentParser(description="VideoRefer demo: point at objects in a video and chat about them.")
    parser.add_argument("--model", default=env("VIDEOREFER_MODEL", Settings.model), help="model id or folder")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=env("VIDEOREFER_QUANTIZATION", "none"))
    parser.add_argument("--sam2", default=env("VIDEOREFER_SAM2", DEFAULT_SAM2), help="SAM 2.1 checkpoint id or folder")
    parser.add_argument("--device", default=env("VIDEOREFER_DEVICE") or None, help="cuda, cuda:1, cpu (default: auto)")
    parser.add_argument("--tiny", nargs="?", const=TINY_FAMILIES[0], default=_env_tiny(), choices=TINY_FAMILIES,
                        type=str.lower,
                        help="random tiny models built in code (tests, CI, no weights): answers are gibberish; "
                             f"the family: {', '.join(TINY_FAMILIES)} (default {TINY_FAMILIES[0]})")
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--detector", default=env("VIDEOREFER_DETECTOR", DEFAULT_DETECTOR),
                        help="Grounding DINO id or folder for Find by name ('none' to leave Find out)")
    parser.add_argument("--find-threshold", type=float, default=Settings.find_threshold)
    parser.add_argument("--max-model-frames", type=int,
                        default=int(env("VIDEOREFER_MAX_MODEL_FRAMES", str(MAX_MODEL_FRAMES))),
                        help="the most frames a family that samples by time (VL3: 1 fps) reads from a video")
    parser.add_argument("--max-file-mb", type=float, default=base.max_file_mb)
    parser.add_argument("--max-seconds", type=float, default=base.max_seconds)
    parser.add_argument("--scrub-frames", type=int, default=base.scrub_frames)
    parser.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                        help="any other limit of videorefer.demo.limits.Limits (repeatable), e.g. --limit max_fps=30")
    parser.add_argument("--server", default=env("VIDEOREFER_SERVER") or None, metavar="URL",
                        help="answer through a VideoRefer server (python -m videorefer.serve) instead of a model here")
    parser.add_argument("--engine", choices=("transformers", "vllm"), default=env("VIDEOREFER_ENGINE", "transformers"),
                        help="the in-process engine (vllm: needs the vLLM venv, scripts/vllm_venv.sh)")
    parser.add_argument("--answer-slots", type=int, default=Settings.answer_slots,
                        help="concurrent answers handed to a server or vLLM (they batch them)")
    args = parser.parse_args(argv)
    limits = Limits(max_file_mb=args.max_file_mb, max_seconds=args.max_seconds, scrub_frames=args.scrub_frames,
                    **_limit_overrides(args.limit, parser))
    return Settings(
        model=args.model, quantization=args.quantization, sam2=args.sam2, device=args.device, tiny=args.tiny,
        host=args.host, port=args.port, max_new_tokens=args.max_new_tokens, limits=limits,
        detector=args.detector, find_threshold=args.find_threshold, max_model_frames=args.max_model_frames,
        server=args.server, engine=args.engine, answer_slots=args.answer_slots,
    )


def _limit_overrides(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """`--limit NAME=VALUE` pairs as `Limits` keyword arguments (the field's type: int or float)."""
    types = {f.name: f.type for f in dataclasses.fields(Limits)}
    out: dict[str, Any] = {}
    for item in items:
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name not in types or not value:
            parser.error(f"--limit takes NAME=VALUE with NAME one of {', '.join(types)}; got {item!r}")
        try:
            out[name] = int(value) if types[name] in (int, "int") else float(value)
        except ValueError:
            parser.error(f"--limit {name} takes a number, got {value!r}")
    return out


@dataclass
class Backend:
    """The loaded models, shared by every session (read-only after start)."""

    model: Any  # videorefer.VideoRefer
    segmenter: Any  # videorefer.segmentation.Sam2Segmenter
    settings: Settings
    label: str
    finder: Any = None  # videorefer.segmentation.ObjectFinder (Find by name), None when no detector is configured
    model_id: str = ""  # the checkpoint that answers (in tiny mode: the folder built)

    @property
    def tiny(self) -> bool:
        return self.settings.tiny_family is not None

    @property
    def family(self) -> str:
        """The loaded model's family name (e.g. "VideoRefer-VL3"), from its config's `model_type`."""
        from videorefer.families import family_for

        named = getattr(self.model, "family_name", None)  # a model answering through an engine knows its family
        return named or family_for(self.model.base_model.config.model_type).name

    @functools.cached_property
    def reserved_tokens(self) -> tuple[str, ...]:
        """What a visitor's text may not hold (`limits.reserved_tokens` of the loaded tokenizer)."""
        from .limits import reserved_tokens

        return reserved_tokens(self.model.processor.tokenizer)

    def model_frames(self, info: Any) -> tuple[list[int], list[float] | None]:
        """`(raw frame indices, timestamps or None)` the loaded family samples from the video of `info`
        (`VideoInfo`), asked of its processor (`sample_frames`): never assumed."""
        cap = self.settings.max_model_frames
        return self.model.processor.sample_frames(info.total_frames, info.fps, max_frames=cap)

    @property
    def max_model_frames(self) -> int:
        """The most frames the model reads from any video the demo accepts (for GPU durations)."""
        return len(self.model.processor.sample_frames(10**6, 30.0, max_frames=self.settings.max_model_frames)[0])

    def region_policy(self) -> str:
        """How an object's masks on several frames reach the model, in words for the page (asked of the processor's
        `region_conversation`: one placeholder per mask, or one per object)."""
        from videorefer.prompts import REGION_PLACEHOLDER

        text, _ = self.model.processor.region_conversation("What is <object0>?", None, [{0: None, 1: None}])
        if text.count(REGION_PLACEHOLDER) > 1:
            return "one region per mask: each selected frame of an object is its own region"
        return "one region per object: its masks on the selected frames are pooled together"

    def model_card(self) -> str:
        """Which model answers and how it reads a video, one Markdown line for the page."""
        return (f"**Model:** {self.family} (`{self.model_id}`) · reads {self.frame_policy()} · "
                f"multi-frame objects: {self.region_policy()}.")

    def frame_policy(self) -> str:
        """How the model reads a video, in words for the page (asked of the processor, as `model_frames`)."""
        cap = self.max_model_frames
        short, timestamps = self.model.processor.sample_frames(40, 10.0, max_frames=self.settings.max_model_frames)
        if timestamps is None:  # a fixed count, spread over the video
            return f"{cap} frames spread evenly over the video"
        per_second = len(short) / 4
        return f"{per_second:g} frame{'' if per_second == 1 else 's'} per second, at most {cap} frames"

    @property
    def gpu_slots(self) -> int:
        """Concurrent model calls, from the devices the models' weights are actually on (`zerogpu.gpu_slots`)."""
        from .zerogpu import gpu_slots, model_devices

        return gpu_slots(model_devices(*(m for m in (self.model.model, self.segmenter.model) if m is not None)))

    def concurrency(self) -> tuple[dict, dict]:
        """Gradio concurrency of `(GPU work here, answering)`: one group while this process's model answers; with an
        engine that batches (a server, vLLM) answers get their own group of `answer_slots`."""
        gpu = dict(concurrency_id="gpu", concurrency_limit=self.gpu_slots)
        if self.model.engine is None:
            return gpu, gpu
        return gpu, dict(concurrency_id="answer", concurrency_limit=self.settings.answer_slots)


def load_backend(settings: Settings) -> Backend:
    """Load VideoRefer and SAM 2.1 once (in tiny mode: build random tiny ones in a temporary folder first)."""
    from videorefer import VideoRefer
    from videorefer.segmentation import Sam2Segmenter

    model_id, sam2_id = settings.model, settings.sam2
    quantization = None if settings.quantization == "none" else settings.quantization
    tiny = settings.tiny_family
    if tiny is not None:
        from videorefer.testing.tiny import ENGINE_SIZES, build_tiny
        from videorefer.testing.tiny_sam2 import build_tiny_sam2

        folder = tempfile.mkdtemp(prefix="videorefer-tiny-")
        sizes = ENGINE_SIZES if settings.engine == "vllm" else {}  # vLLM's CPU attention: head size >= 32
        model_id = str(build_tiny(tiny, os.path.join(folder, f"videorefer-{tiny}"), **sizes))
        sam2_id = build_tiny_sam2(os.path.join(folder, "sam2"))
    from .zerogpu import default_device

    device = settings.device or default_device()  # `cuda` on a ZeroGPU Space: models are placed there at import
    model = _load_answering_model(settings, model_id, quantization, device)
    model.generation_defaults["max_new_tokens"] = 48 if tiny else settings.max_new_tokens
    model.cache.max_bytes = int(settings.limits.visual_cache_mb * 2**20)  # decoded videos and visual features
    segmenter = Sam2Segmenter.from_pretrained(sam2_id, device=device)
    shown_id = f"tiny random {tiny} model, built in code" if tiny is not None else str(model_id)
    if settings.server:
        shown_id = f"served by {settings.server}"
    backend = Backend(model=model, segmenter=segmenter, settings=settings, label="", model_id=shown_id)
    if tiny is not None:
        backend.label = (f"TINY RANDOM MODELS (built in code, untrained): a tiny {backend.family} answers; answers and "
                         "masks are meaningless")
    else:
        backend.label = f"{backend.family} · {model_id} ({settings.quantization}) + {sam2_id}"
    backend.finder = _load_finder(settings, segmenter, device, folder if tiny else None)
    return backend


def _load_answering_model(settings: Settings, model_id: str, quantization: str | None, device: str) -> Any:
    """The `VideoRefer` that answers: through the server of `--server`, in-process vLLM, or transformers here."""
    from videorefer import VideoRefer

    if settings.server:
        from videorefer.engines.remote import connect

        return connect(settings.server)
    if settings.engine == "vllm":
        from videorefer.families import family_for_checkpoint

        model = VideoRefer.from_pretrained(model_id, engine="vllm")
        model.family_name = family_for_checkpoint(model_id).name
        return model
    return VideoRefer.from_pretrained(model_id, quantization=quantization, device=device)


def _load_finder(settings: Settings, segmenter: Any, device: str, tiny_folder: str | None) -> Any:
    """Grounding DINO + the shared SAM 2.1 for Find by name (a random tiny Grounding DINO in tiny mode)."""
    from videorefer.segmentation import GroundingDinoDetector, ObjectFinder

    if settings.detector.strip().lower() == "none":
        return None
    detector_id = settings.detector
    if tiny_folder is not None:
        from videorefer.testing.tiny_grounding_dino import build_tiny_grounding_dino

        detector_id = build_tiny_grounding_dino(os.path.join(tiny_folder, "grounding-dino"))
    detector = GroundingDinoDetector.from_pretrained(detector_id, device=device)
    return ObjectFinder(detector, segmenter, threshold=settings.find_threshold, max_objects=settings.limits.max_objects)
