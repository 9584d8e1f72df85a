"""The model families the package knows, by the `model_type` of their checkpoints' `config.json`.

Each family's package (`videorefer/models/<name>/__init__.py`) calls `register_family` once; that also registers its
classes with transformers' `AutoConfig`, `AutoModelForCausalLM` and `AutoProcessor`. Code above the models (the API,
the demo, training, benchmarks) asks `family_for_checkpoint` which classes to load and then talks to them only through
the family contract (docs/ARCHITECTURE.md), never by family name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor, PretrainedConfig

__all__ = ["Family", "register_family", "family_for", "family_for_checkpoint", "registered_families"]


@dataclass(frozen=True)
class Family:
    """One model family: what a checkpoint's `model_type` loads."""

    name: str  # how people call it, e.g. "VideoRefer-7B"
    model_type: str  # the `model_type` of its checkpoints' config.json
    config_class: type
    model_class: type
    processor_class: type


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make `family` loadable by `model_type`, here and through transformers' Auto classes."""
    known = _FAMILIES.get(family.model_type)
    if known is not None and known != family:
        raise ValueError(f"model_type {family.model_type!r} is already registered by {known.name}")
    _FAMILIES[family.model_type] = family
    AutoConfig.register(family.model_type, family.config_class, exist_ok=True)
    AutoModelForCausalLM.register(family.config_class, family.model_class, exist_ok=True)
    AutoProcessor.register(family.config_class, family.processor_class, exist_ok=True)
    return family


def registered_families() -> dict[str, Family]:
    """`model_type` -> family, in registration order."""
    return dict(_FAMILIES)


def family_for(model_type: str | None) -> Family:
    """The family of `model_type`; `ValueError` listing the supported ones when there is none."""
    if model_type in _FAMILIES:
        return _FAMILIES[model_type]
    supported = ", ".join(f"{t!r} ({f.name})" for t, f in _FAMILIES.items()) or "none registered"
    raise ValueError(f"model_type {model_type!r} is not a VideoRefer model family; supported: {supported}")


def family_for_checkpoint(path: str | os.PathLike, **hub_kwargs) -> Family:
    """The family of a checkpoint (folder or Hub id), from its config.json's `model_type`."""
    config, _ = PretrainedConfig.get_config_dict(str(path), **hub_kwargs)
    return family_for(config.get("model_type"))
