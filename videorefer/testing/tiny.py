"""Tiny random checkpoints of each model family, by a short name (`v1`: VideoRefer-7B's architecture, `vl3`:
VideoRefer-VideoLLaMA3's), for tests, the synthetic training run and offline demos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["TINY_FAMILIES", "build_tiny"]


def _v1(folder: str | os.PathLike, **kwargs) -> Path:
    from .tiny_model import build_tiny_videorefer

    return build_tiny_videorefer(folder, **kwargs)


def _vl3(folder: str | os.PathLike, **kwargs) -> Path:
    from .tiny_vl3 import build_tiny_vl3

    return build_tiny_vl3(folder, **kwargs)


TINY_FAMILIES: dict[str, Callable[..., Path]] = {"v1": _v1, "vl3": _vl3}


def build_tiny(family: str, folder: str | os.PathLike, **kwargs) -> Path:
    """Write a tiny random checkpoint of `family` (`v1` or `vl3`) to `folder`; `kwargs` go to its builder."""
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}; choose one of {sorted(TINY_FAMILIES)}")
    return TINY_FAMILIES[family](folder, **kwargs)
