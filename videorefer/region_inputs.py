"""`RegionInputs`: what a model family's region encoder needs besides the text, for a whole batch.

Processors build one per sample; `collate` joins samples into a batch; the model, the API, the training collator and
the benchmarks pass it around whole instead of parallel per-sample lists. Each family subclasses it with its own
tensors (VideoRefer-7B: masks on frames to pool; VL3: crops to re-encode and mask grids) and keeps the one field
every family has: `masks_per_object`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

__all__ = ["RegionInputs"]

R = TypeVar("R", bound="RegionInputs")


@dataclass
class RegionInputs:
    """Base: per sample i, `masks_per_object[i]` `(o_i,)` long — how many masks (frames) each object has.

    Subclasses add fields that are either per-sample lists of tensors (moved with `to`, joined by `collate` as lists)
    or batch-level tensors (listed in `_concatenated`, joined by `torch.cat`).
    """

    masks_per_object: list[torch.Tensor]

    _concatenated: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)
    # Fields holding pixel data: `to(device, dtype)` casts these; others keep their dtype (masks, indices).
    _floating: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)

    @property
    def batch_size(self) -> int:
        return len(self.masks_per_object)

    @property
    def num_objects(self) -> list[int]:
        return [int(m.numel()) for m in self.masks_per_object]

    def to(self: R, device: torch.device | str, dtype: torch.dtype | None = None) -> R:
        """A copy on `device`; pixel fields cast to `dtype` when given."""
        changes = {}
        for f in dataclasses.fields(self):
            if not f.init:
                continue
            value = getattr(self, f.name)
            cast = dtype if f.name in self._floating else None
            changes[f.name] = _move(value, device, cast)
        return dataclasses.replace(self, **changes)

    @classmethod
    def collate(cls: type[R], items: Sequence[R]) -> R:
        """One batch from per-sample inputs, in order."""
        if not items:
            raise ValueError("collate needs at least one sample")
        kinds = {type(item) for item in items}
        if len(kinds) != 1:
            raise ValueError(f"cannot batch region inputs of different families: {sorted(k.__name__ for k in kinds)}")
        joined = {}
        for f in dataclasses.fields(items[0]):
            if not f.init:
                continue
            values = [getattr(item, f.name) for item in items]
            if f.name in items[0]._concatenated:
                joined[f.name] = torch.cat(values)
            else:
                joined[f.name] = [x for value in values for x in value]
        return type(items[0])(**joined)


def _move(value, device, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(device, dtype) if dtype is not None else value.to(device)
    if isinstance(value, list):
        return [_move(v, device, dtype) for v in value]
    return value
