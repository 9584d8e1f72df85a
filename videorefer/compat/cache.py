"""transformers' KV caches: shortening a cache to a prefix, and its maximum length.

The API reuses the cache of the previous answer for a follow-up question that repeats it (`videorefer.api`'s prefix
cache): the cache is cut back to the longest shared prefix. transformers 5 spells that `Cache.crop(-count)` (a
negative count of tokens to remove; a positive value means something else in older releases and is refused now), and
`Cache.get_max_length()` is -1 for a cache that grows without bound.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "keep_first", "max_length"]

ADAPTER = "videorefer/compat/cache.py"
FEATURE = "reusing the previous answer's KV cache (videorefer.api)"


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless `Cache.crop(tokens_to_remove)` and `Cache.get_max_length()` exist."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    from transformers import Cache

    crop = getattr(Cache, "crop", None)
    parameters = [] if crop is None else [name for name in inspect.signature(crop).parameters if name != "self"]
    require(parameters == ["tokens_to_remove"], FEATURE, ADAPTER, f"has Cache.crop({', '.join(parameters)})")
    require(callable(getattr(Cache, "get_max_length", None)), FEATURE, ADAPTER, "has no Cache.get_max_length()")


def keep_first(cache: Any, length: int) -> Any:
    """Shorten `cache` in place to its first `length` positions (every layer); returns it."""
    check_supported()
    current = int(cache.get_seq_length())
    if not 0 <= length <= current:
        raise ValueError(f"cannot keep {length} positions of a cache holding {current}")
    if length < current:
        cache.crop(length - current)  # negative: the number of positions to remove from the end
    return cache


def max_length(cache: Any) -> int:
    """The most positions `cache` can hold; -1 when it grows without bound."""
    return int(cache.get_max_length())
