"""Adapters for the library internals VideoRefer relies on, one module per touch point, each with `check_supported()`.

transformers keeps its private methods, session attributes and call conventions free to change between minor
releases. Every place where we depend on one goes through a module here, so that an upgrade breaks in one named place
with a clear message instead of deep inside a forward pass:

- `sam2`: transformers' SAM 2 video inference session fed a timeline of frames and a shared feature store
  (attributes replaced by stand-ins), and an image-model shell built on the meta device around the video model's
  modules (with the video model's attention setting).
- `siglip`: SigLIP encoder layers called one by one, positionally (to stop at the selected layer).
- `cache`: dropping tokens from the end of a KV cache (`Cache.crop` with a negative count), its maximum length.
- `qwen2`: `Qwen2ForCausalLM`'s own `__init__` replaced (it would build a plain `Qwen2Model` we do not want).
- `generation`: the repetition penalty on generated tokens only, for every row of a left-padded batch.
- `trainer`: `Trainer._save` / `Trainer._load_from_checkpoint` taken over for encoder-only checkpoints.

`TRANSFORMERS_SUPPORTED` is the tested range, also pinned in `pyproject.toml` and `requirements.txt`.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = ["TRANSFORMERS_SUPPORTED", "UnsupportedVersionError", "installed_version", "require_version"]

#: The transformers releases the adapters were tested with (the test suite and the parity fixtures pass on them).
TRANSFORMERS_SUPPORTED = ">=5.24,<5.25"


class UnsupportedVersionError(RuntimeError):
    """An installed library does not have the internals an adapter relies on."""


@functools.cache
def installed_version(distribution: str) -> str:
    """The installed version of `distribution` (e.g. "transformers"); "not installed" when it is missing."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def require_version(distribution: str, supported: str, feature: str, adapter: str) -> None:
    """Raise `UnsupportedVersionError` naming the installed and the supported versions unless they match."""
    installed = installed_version(distribution)
    try:
        ok = Version(installed) in SpecifierSet(supported)
    except ValueError:  # "not installed" or a version string packaging cannot parse
        ok = False
    if not ok:
        raise UnsupportedVersionError(
            f"{feature} relies on {distribution} internals tested with {distribution}{supported}, but "
            f"{distribution} {installed} is installed: install a supported version (pip install "
            f"'{distribution}{supported}') or update {adapter} and its test for the new release"
        )


def require(condition: bool, feature: str, adapter: str, missing: str) -> None:
    """Raise `UnsupportedVersionError` when a structural check on the installed library fails."""
    if not condition:
        raise UnsupportedVersionError(
            f"{feature}: the installed transformers {installed_version('transformers')} {missing} (supported: "
            f"transformers{TRANSFORMERS_SUPPORTED}); update {adapter} and its test for this release"
        )
