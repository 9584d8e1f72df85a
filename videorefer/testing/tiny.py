"""Tiny random checkpoints of each model family, by a short name (`v1`: VideoRefer-7B's architecture, `vl3`:
VideoRefer-VideoLLaMA3's), for tests, the synthetic training run and offline demos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["TINY_FAMILIES", "ENGINE_SIZES", "build_tiny"]

#: Language-model sizes for engines that need a head size of at least 32 (vLLM's CPU attention takes 32, 64, 80, ...):
#: `build_tiny(family, folder, **ENGINE_SIZES)`; the default tiny models have head size 16.
ENGINE_SIZES = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2)


def _v1(folder: str | os.PathLike, **kwargs) -> Path:
    from .tiny_model import build_tiny_videorefer

    return build_tiny_videorefer(folder, **kwargs)


def _vl3(folder: str | os.PathLike, **kwargs) -> Path:
    from .tiny_vl3 import build_tiny_vl3

    return build_tiny_vl3(folder, **kwargs)


_BUILDERS: dict[str, Callable[..., Path]] = {"vl3": _vl3, "v1": _v1}
# The short names, the default first: the family of `videorefer.api.DEFAULT_MODEL_ID` (the demo's and the mini
# benchmark's plain `--tiny`).
TINY_FAMILIES: tuple[str, ...] = tuple(_BUILDERS)


def build_tiny(family: str, folder: str | os.PathLike, **kwargs) -> Path:
    """Write a tiny random checkpoint of `family` (`vl3` or `v1`) to `folder`; `kwargs` go to its builder."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny model family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    return _BUILDERS[family](folder, **kwargs)
