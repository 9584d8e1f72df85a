"""The API's caches: decoded videos and visual features of recent requests (`VisualCache`), and the language
model's key/value cache of the last conversation (`PrefixCache`), with the keys they are found by."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .compat import cache as compat_cache
from .regions import ObjectMasks
from .video_io import Video, VideoSource

__all__ = ["VisualCache", "PrefixCache", "source_key", "objects_key", "nbytes"]


class VisualCache:
    """A small LRU of decoded videos and visual tokens, keyed by video source and masks: at most `size` entries and,
    when `max_bytes` is set, at most that many bytes of arrays and tensors (`nbytes`); an entry larger than
    `max_bytes` alone is not kept."""

    def __init__(self, size: int = 4, max_bytes: int | None = None):
        self.size = size
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._bytes: dict[str, int] = {}
        self._lock = threading.Lock()  # the demo serves several visitors from threads

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached arrays and tensors."""
        with self._lock:
            return sum(self._bytes.values())

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        size = nbytes(value) if self.max_bytes is not None else 0
        with self._lock:
            self._items.pop(key, None)
            self._bytes.pop(key, None)
            if self.max_bytes is not None and size > self.max_bytes:
                return
            self._items[key], self._bytes[key] = value, size
            while len(self._items) > self.size or (
                self.max_bytes is not None and sum(self._bytes.values()) > self.max_bytes
            ):
                oldest, _ = self._items.popitem(last=False)
                self._bytes.pop(oldest, None)

    def drop(self, matching: str) -> int:
        """Remove every entry whose key contains `matching` (e.g. a video's `source_key`); returns how many."""
        with self._lock:
            stale = [key for key in self._items if matching in key]
            for key in stale:
                del self._items[key]
                self._bytes.pop(key, None)
        return len(stale)


def nbytes(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays and torch tensors in `value` (nested in tuples, lists, dicts, dataclasses and plain
    objects' attributes), each counted once."""
    seen = _seen if _seen is not None else set()
    total, stack = 0, [value]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None or isinstance(item, (str, bytes, int, float, bool, torch.nn.Module)):
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            total += item.nbytes
        elif isinstance(item, torch.Tensor):
            total += item.element_size() * item.nelement()
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        elif hasattr(item, "__dict__"):
            stack.extend(vars(item).values())
    return total


class PrefixCache:
    """The language model's key/value cache of the last conversation, reused by a follow-up question.

    A follow-up prompt repeats the previous prompt and answer (same video tokens, same object tokens, same text) and
    adds a new question: only the new tokens need the language model. Prefixes are compared on the spliced input
    embeddings, so any change of video, objects or text before a position invalidates the cache from there on.
    """

    def __init__(self) -> None:
        self.embeds: torch.Tensor | None = None  # (L, d): the prompt and the answer of the last call
        self.cache: Any = None
        self.lock = threading.Lock()
        self.reused_tokens = 0  # positions the last `take` served from the cache

    def clear(self) -> None:
        with self.lock:
            self.cache = self.embeds = None

    def take(self, embeds: torch.Tensor, room: int) -> Any:
        """The cache cropped to the longest prefix shared with `embeds` `(1, L, d)`, or None. Leaves it empty."""
        with self.lock:
            cache, previous = self.cache, self.embeds
            self.cache = self.embeds = None
            self.reused_tokens = 0
        if cache is None or embeds.shape[0] != 1:
            return None
        cached = int(cache.get_seq_length())
        n = min(cached, previous.shape[0], embeds.shape[1] - 1)  # at least one new position yields the next logits
        shared = int((previous[:n] == embeds[0, :n]).all(-1).long().cumprod(0).sum()) if n > 0 else 0
        max_len = compat_cache.max_length(cache)  # -1: grows without bound
        if shared == 0 or (max_len > 0 and embeds.shape[1] + room > max_len):
            return None
        compat_cache.keep_first(cache, shared)
        self.reused_tokens = shared
        return cache

    def store(self, embeds: torch.Tensor, answer_embeds: torch.Tensor, cache: Any) -> None:
        with self.lock:
            self.embeds = torch.cat([embeds[0], answer_embeds])
            self.cache = cache

    def snapshot(self) -> tuple[torch.Tensor | None, Any]:
        """A copy of the stored conversation (embeddings and key/value cache), for `restore`."""
        with self.lock:
            return self.embeds, copy.deepcopy(self.cache)

    def restore(self, snapshot: tuple[torch.Tensor | None, Any]) -> None:
        """Put back what `snapshot` took (a copy of it: the snapshot can be restored again)."""
        with self.lock:
            self.embeds, self.cache = snapshot[0], copy.deepcopy(snapshot[1])


def source_key(video: VideoSource | Video) -> str | None:
    """A key for a video that stays the same across calls, or None when it cannot be had cheaply."""
    if isinstance(video, Video):
        return video.key
    if isinstance(video, (str, os.PathLike)) and os.path.exists(video):
        stat = os.stat(video)
        return f"{os.path.abspath(video)}:{stat.st_mtime_ns}:{stat.st_size}"
    if isinstance(video, np.ndarray):
        return "array:" + hashlib.blake2b(np.ascontiguousarray(video).data, digest_size=16).hexdigest()
    return None


def objects_key(objects: Sequence[ObjectMasks]) -> str:
    """A digest of the objects' masks; a mask given as COCO RLE or polygons is digested in that form."""
    digest = hashlib.blake2b(digest_size=16)
    for k, obj in enumerate(objects):
        for frame in sorted(obj):
            value = obj[frame]
            if isinstance(value, (Mapping, list, tuple)):
                digest.update(f"{k}:{frame}:coco:{json.dumps(value, sort_keys=True, default=str)}".encode())
                continue
            mask = np.ascontiguousarray(np.asarray(value, dtype=bool))
            digest.update(f"{k}:{frame}:{mask.shape}".encode())
            digest.update(np.packbits(mask).tobytes())
    return digest.hexdigest()
