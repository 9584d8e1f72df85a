"""`VL3RegionInputs`: what VL3's region encoder needs for a batch (the crops to re-encode and their mask grids)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from videorefer.region_inputs import RegionInputs

__all__ = ["VL3RegionInputs"]


@dataclass
class VL3RegionInputs(RegionInputs):
    """Region inputs of VL3 for a batch of b samples holding K masks in all (mask order = `<REGION>` block order).

    * `masks_per_object[i]` `(o_i,)` long: masks of each object of sample i (one mask per frame the object is on).
    * `pixel_values` `(M, 588)` float: all crops' 14x14 patches concatenated, each crop in raster order
      (M = sum over crops of h_k * w_k).
    * `grid_thw` `(K, 3)` long: `(1, h_k, w_k)` patch grid of each crop.
    * `mask_grids`: K uint8 tensors `(h_k, w_k)`, the mask of each crop resized to its patch grid.
    * `masks_per_sample` `(b,)` long: how many of the K masks belong to each sample.
    """

    pixel_values: torch.Tensor
    grid_thw: torch.Tensor
    mask_grids: list[torch.Tensor]
    masks_per_sample: torch.Tensor

    _concatenated: tuple[str, ...] = dataclasses.field(
        default=("pixel_values", "grid_thw", "masks_per_sample"), init=False, repr=False, compare=False
    )
    _floating: tuple[str, ...] = dataclasses.field(default=("pixel_values",), init=False, repr=False, compare=False)

    @property
    def tokens_per_mask(self) -> torch.Tensor:
        """`(K,)` long: region tokens of each mask, `min(10, cells of its mask grid)`."""
        if not self.mask_grids:
            return torch.zeros(0, dtype=torch.long)
        cells = torch.stack([(grid > 0).sum() for grid in self.mask_grids])
        return cells.clamp(max=MAX_REGION_TOKENS).long()


# The official region encoder keeps at most this many tokens per mask (k-means beyond it).
MAX_REGION_TOKENS = 10
