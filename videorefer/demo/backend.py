"""Loading the models once per server: settings from the command line and environment, tiny mode, `spaces.GPU`.

Environment variables (the command-line flags override them):

| variable | flag | default |
| --- | --- | --- |
| `VIDEOREFER_MODEL` | `--model` | `DAMO-NLP-SG/VideoRefer-7B` |
| `VIDEOREFER_QUANTIZATION` | `--quantization` | `none` (`8bit`, `4bit`) |
| `VIDEOREFER_SAM2` | `--sam2` | `facebook/sam2.1-hiera-large` |
| `VIDEOREFER_DEVICE` | `--device` | `cuda` when available, else `cpu` |
| `VIDEOREFER_TINY` | `--tiny` | off: random tiny models built in code, no download |
| `VIDEOREFER_DETECTOR` | `--detector` | `IDEA-Research/grounding-dino-base` (*Find* by name; `none`: no Find) |
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from .limits import Limits

DEFAULT_SAM2 = "facebook/sam2.1-hiera-large"
DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-base"  # as the data engine's Segmentor
QUANTIZATIONS = ("none", "8bit", "4bit")


def gpu(fn: Callable) -> Callable:
    """Kept for callers of the old name: `zerogpu.gpu` (with a duration policy) is the one to use."""
    from .zerogpu import gpu as zerogpu_gpu

    return zerogpu_gpu(fn)


@dataclass
class Settings:
    """Everything the command line and environment choose."""

    model: str = "DAMO-NLP-SG/VideoRefer-7B"
    quantization: str = "none"
    sam2: str = DEFAULT_SAM2
    device: str | None = None
    tiny: bool = False
    host: str = "127.0.0.1"
    port: int = 7860
    max_new_tokens: int = 512
    limits: Limits = field(default_factory=Limits)
    detector: str = DEFAULT_DETECTOR  # Grounding DINO for Find by name ("none": the page has no Find)
    find_threshold: float = 0.35  # the Find box threshold the page starts with and /find uses by default


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Read `Settings` from `argv` (default: sys.argv) with environment variables as defaults."""
    env = os.environ.get
    base = Limits()
    parser = argparse.ArgumentParser(description="VideoRefer demo: point at objects in a video and chat about them.")
    parser.add_argument("--model", default=env("VIDEOREFER_MODEL", Settings.model), help="model id or folder")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=env("VIDEOREFER_QUANTIZATION", "none"))
    parser.add_argument("--sam2", default=env("VIDEOREFER_SAM2", DEFAULT_SAM2), help="SAM 2.1 checkpoint id or folder")
    parser.add_argument("--device", default=env("VIDEOREFER_DEVICE") or None, help="cuda, cuda:1, cpu (default: auto)")
    parser.add_argument("--tiny", action="store_true", default=_env_flag("VIDEOREFER_TINY"),
                        help="random tiny models built in code (tests, CI, no weights): answers are gibberish")
    parser.add_argument("--host", default=env("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--detector", default=env("VIDEOREFER_DETECTOR", DEFAULT_DETECTOR),
                        help="Grounding DINO id or folder for Find by name ('none' to leave Find out)")
    parser.add_argument("--find-threshold", type=float, default=Settings.find_threshold)
    parser.add_argument("--max-file-mb", type=float, default=base.max_file_mb)
    parser.add_argument("--max-seconds", type=float, default=base.max_seconds)
    parser.add_argument("--scrub-frames", type=int, default=base.scrub_frames)
    args = parser.parse_args(argv)
    limits = Limits(max_file_mb=args.max_file_mb, max_seconds=args.max_seconds, scrub_frames=args.scrub_frames)
    return Settings(
        model=args.model, quantization=args.quantization, sam2=args.sam2, device=args.device, tiny=args.tiny,
        host=args.host, port=args.port, max_new_tokens=args.max_new_tokens, limits=limits,
        detector=args.detector, find_threshold=args.find_threshold,
    )


@dataclass
class Backend:
    """The loaded models, shared by every session (read-only after start)."""

    model: Any  # videorefer.VideoRefer
    segmenter: Any  # videorefer.segmentation.Sam2Segmenter
    settings: Settings
    label: str
    finder: Any = None  # videorefer.segmentation.ObjectFinder (Find by name), None when no detector is configured

    @property
    def tiny(self) -> bool:
        return self.settings.tiny

    @property
    def num_frames(self) -> int:
        """Frames the video LLM samples from a video."""
        return int(self.model.processor.num_frames)

    @property
    def gpu_slots(self) -> int:
        """Concurrent model calls, from the devices the models' weights are actually on (`zerogpu.gpu_slots`)."""
        from .zerogpu import gpu_slots, model_devices

        return gpu_slots(model_devices(self.model.model, self.segmenter.model))


def load_backend(settings: Settings) -> Backend:
    """Load VideoRefer and SAM 2.1 once (in tiny mode: build random tiny ones in a temporary folder first)."""
    from videorefer import VideoRefer
    from videorefer.segmentation import Sam2Segmenter

    model_id, sam2_id = settings.model, settings.sam2
    quantization = None if settings.quantization == "none" else settings.quantization
    if settings.tiny:
        from videorefer.testing.tiny_model import build_tiny_videorefer
        from videorefer.testing.tiny_sam2 import build_tiny_sam2

        folder = tempfile.mkdtemp(prefix="videorefer-tiny-")
        model_id = str(build_tiny_videorefer(os.path.join(folder, "videorefer")))
        sam2_id = build_tiny_sam2(os.path.join(folder, "sam2"))
        label = "TINY RANDOM MODELS (built in code, untrained): answers and masks are meaningless"
    else:
        label = f"{model_id} ({settings.quantization}) + {sam2_id}"
    from .zerogpu import default_device

    device = settings.device or default_device()  # `cuda` on a ZeroGPU Space: models are placed there at import
    model = VideoRefer.from_pretrained(model_id, quantization=quantization, device=device)
    model.generation_defaults["max_new_tokens"] = 48 if settings.tiny else settings.max_new_tokens
    segmenter = Sam2Segmenter.from_pretrained(sam2_id, device=device)
    backend = Backend(model=model, segmenter=segmenter, settings=settings, label=label)
    backend.finder = _load_finder(settings, segmenter, device, folder if settings.tiny else None)
    return backend


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
