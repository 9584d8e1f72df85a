"""Tiny random checkpoints of each model family, by a short name (`v1`: VideoRefer-7B's architecture, `vl3`:
VideoRefer-VideoLLaMA3's), for tests, the synthetic training run and offline demos."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["TINY_FAMILIES", "ENGINE_SIZES", "build_tiny", "tiny_checkpoint", "TINY_DIR_ENV"]

#: Where `tiny_checkpoint` keeps the tiny models it builds (default `~/.cache/videorefer/tiny`).
TINY_DIR_ENV = "VIDEOREFER_TINY_DIR"
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


def _builder_version() -> str:
    """A hash of the builders' source: a cached tiny model built by other code is rebuilt."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("tiny.py", "tiny_model.py", "tiny_vl3.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


def tiny_checkpoint(family: str) -> Path:
    """The tiny random checkpoint of `family` (`vl3` or `v1`, seed 0) that `--tiny` means on every command line:
    built once into `$VIDEOREFER_TINY_DIR/<family>-<version>` (default `~/.cache/videorefer/tiny`) and reused, so that
    an adapter trained on it and a later merge or benchmark run name the same base folder."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny model family {family!r}; choose one of {', '.join(TINY_FAMILIES)}")
    root = Path(os.environ.get(TINY_DIR_ENV) or Path.home() / ".cache" / "videorefer" / "tiny")
    target = root / f"{family}-{_builder_version()}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=root))
    try:
        build_tiny(family, staging / "model", seed=0)
        try:
            os.replace(staging / "model", target)  # atomic: a concurrent build of the same model wins or loses whole
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
