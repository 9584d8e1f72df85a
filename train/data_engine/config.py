"""The data engine's configuration: one YAML or JSON file, validated into dataclasses with clear errors.

Layout (every key optional except the agents' `model`; see `configs/local.yaml` and `configs/endpoint.yaml`)::

    num_frames: 16            # frames sampled per video (annotator images, tracked masks)
    max_objects: 6            # nouns kept per caption (the Analyzer's first ones)
    frame_size: 448           # longest side of the frames sent to the Annotator
    llm_defaults: {...}       # merged into every agent's backend block below (e.g. one endpoint url for all)
    analyzer:  {backend: endpoint | local, model: ..., url: ..., api_key_env: ..., ...}
    annotator: {backend: ..., model: ...}                       # a VLM
    segmentor: {detector: IDEA-Research/grounding-dino-base, sam2: facebook/sam2.1-hiera-large, ...}
    reviewer:  {captioner: DAMO-NLP-SG/VideoRefer-7B, llm: {backend: ..., model: ...}}
    refiner:   {qa: 1, llm: {backend: ..., model: ...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

__all__ = ["BackendConfig", "SegmentorConfig", "ReviewerConfig", "RefinerConfig", "EngineConfig", "load_config"]

BACKENDS = ("endpoint", "local")


@dataclass
class BackendConfig:
    """One chat model: an OpenAI-compatible endpoint or a local transformers model (any Hub id or folder)."""

    model: str
    backend: str = "endpoint"
    url: str | None = None  # endpoint: base URL, e.g. http://127.0.0.1:8000/v1
    api_key_env: str | None = None  # endpoint: environment variable holding the API key
    timeout: float = 120.0  # endpoint: seconds per request
    temperature: float = 0.0
    max_tokens: int = 1024
    json_mode: bool = False  # endpoint: send response_format={"type": "json_object"} (vLLM, OpenAI)
    retries: int = 3  # attempts per request in total (HTTP errors and malformed replies alike)
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled each time
    device: str | None = None  # local: cuda / cpu (default: cuda when available)
    dtype: str | None = None  # local: bfloat16 / float16 / float32
    vision: bool = False  # local: load with AutoModelForImageTextToText (set for the Annotator)
    trust_remote_code: bool = False  # local
    extra: dict[str, Any] = field(default_factory=dict)  # endpoint: more request body fields

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.model:
            raise ValueError("every agent needs a 'model' (a Hub id, a folder, or the endpoint's model name)")
        if self.backend == "endpoint" and not self.url:
            raise ValueError(f"the endpoint backend of model {self.model!r} needs a 'url'")
        if self.retries < 1:
            raise ValueError(f"retries counts attempts and must be >= 1, got {self.retries}")


@dataclass
class SegmentorConfig:
    """Grounding DINO (text -> boxes on a key frame) + SAM 2 (box -> masks, tracked over the sampled frames)."""

    detector: str = "IDEA-Research/grounding-dino-base"
    sam2: str = "facebook/sam2.1-hiera-large"
    box_threshold: float = 0.35
    text_threshold: float = 0.25  # unused since boxes are chosen by box_threshold alone (it only picked label words)
    key_frame: str = "middle"  # which sampled frame gets the box prompt: first | middle | last
    min_mask_fraction: float = 0.0005  # masks smaller than this fraction of the key frame are dropped
    device: str | None = None
    batch_size: int = 8  # nouns per Grounding DINO forward pass

    def __post_init__(self) -> None:
        if self.key_frame not in ("first", "middle", "last"):
            raise ValueError(f"segmentor.key_frame must be first, middle or last, got {self.key_frame!r}")
        for name in ("box_threshold", "text_threshold", "min_mask_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"segmentor.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class ReviewerConfig:
    """A region captioner (a VideoRefer checkpoint of either family, e.g. DAMO-NLP-SG/VideoRefer-VideoLLaMA3-2B)
    describes each mask; an LLM judges whether it matches."""

    llm: BackendConfig
    captioner: str = "DAMO-NLP-SG/VideoRefer-7B"
    captioner_device: str | None = None
    captioner_quantization: str | None = None  # None | 8bit | 4bit
    captioner_engine: str = "transformers"  # or "vllm" (README: Serving with vLLM; run in .venv-vllm)
    captioner_max_new_tokens: int = 256


@dataclass
class RefinerConfig:
    """Merges dynamics and appearance into the final captions (and `qa` multiple-choice questions per object)."""

    llm: BackendConfig
    qa: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.qa <= 5:
            raise ValueError(f"refiner.qa (questions per object) must be in 0..5, got {self.qa}")


@dataclass
class EngineConfig:
    analyzer: BackendConfig
    annotator: BackendConfig
    reviewer: ReviewerConfig
    refiner: RefinerConfig
    segmentor: SegmentorConfig = field(default_factory=SegmentorConfig)
    num_frames: int = 16
    max_objects: int = 6
    frame_size: int = 448
    workers: int = 4  # concurrent requests per endpoint agent
    batch_size: int = 8  # videos handled together per step (local LLMs generate them as one batch)

    def __post_init__(self) -> None:
        for name in ("num_frames", "max_objects", "frame_size", "workers", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def _backend(data: Any, defaults: Mapping[str, Any], where: str) -> BackendConfig:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping with at least 'model', got {type(data).__name__}")
    return _build(BackendConfig, {**defaults, **data}, where)


def config_from_dict(data: Mapping[str, Any]) -> EngineConfig:
    """Validate a parsed config document."""
    data = dict(data)
    defaults = data.pop("llm_defaults", {}) or {}
    for name in ("analyzer", "annotator", "reviewer", "refiner"):
        if name not in data:
            raise ValueError(f"the config needs an '{name}' section")
    out: dict[str, Any] = {
        "analyzer": _backend(data.pop("analyzer"), defaults, "analyzer"),
        "annotator": _backend(data.pop("annotator"), defaults, "annotator"),
    }
    for name, cls in (("reviewer", ReviewerConfig), ("refiner", RefinerConfig)):
        section = dict(data.pop(name) or {})
        if "llm" not in section:
            raise ValueError(f"{name} needs an 'llm' block (the chat model that {name}s)")
        section["llm"] = _backend(section["llm"], defaults, f"{name}.llm")
        out[name] = _build(cls, section, name)
    if "segmentor" in data:
        out["segmentor"] = _build(SegmentorConfig, data.pop("segmentor") or {}, "segmentor")
    return _build(EngineConfig, {**data, **out}, "config")


def load_config(path: str | Path) -> EngineConfig:
    """Read a `.yaml` / `.yml` / `.json` config file."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    else:
        raise ValueError(f"config must be .yaml, .yml or .json, got {path.name}")
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: the config must be a mapping at the top level")
    try:
        return config_from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
