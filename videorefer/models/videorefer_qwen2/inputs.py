"""`PooledRegionInputs`: VideoRefer-7B's region inputs, masks to pool on the vision tower's patch grids.

VideoRefer-7B pools each object mask over the features of the frame it lies on. A mask may lie on one of the sampled
video frames (whose features the video tokens come from too) or on an extra frame that was decoded only for the
object encoder; extra frames are carried here as pixel values and go through the vision tower with the video.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...region_inputs import RegionInputs

__all__ = ["PooledRegionInputs"]


@dataclass
class PooledRegionInputs(RegionInputs):
    """Per sample i of a batch whose videos have `t` sampled frames each:

    * `masks[i]` `(k_i, H_i, W_i)` uint8, object-major (object 0's masks in time order, then object 1's, ...), at the
      video's resolution (the model resizes them to the patch grid);
    * `mask_frames[i]` `(k_i,)` long, the frame each mask lies on: `< t` a sampled frame, `>= t` row `j - t` of
      `extra_frames[i]`;
    * `extra_frames[i]` `(m_i, 3, S, S)` float, pixel values of the frames masks lie on that were not sampled;
    * `masks_per_object[i]` `(o_i,)` long (from `RegionInputs`).
    """

    masks: list[torch.Tensor] = dataclasses.field(default_factory=list)
    mask_frames: list[torch.Tensor] = dataclasses.field(default_factory=list)
    extra_frames: list[torch.Tensor] = dataclasses.field(default_factory=list)

    _floating: tuple[str, ...] = dataclasses.field(default=("extra_frames",), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lengths = {len(self.masks_per_object), len(self.masks), len(self.mask_frames), len(self.extra_frames)}
        if len(lengths) != 1:
            raise ValueError(
                f"region inputs of different batch sizes: masks_per_object {len(self.masks_per_object)}, masks "
                f"{len(self.masks)}, mask_frames {len(self.mask_frames)}, extra_frames {len(self.extra_frames)}"
            )
        for i, (masks, frames, counts) in enumerate(zip(self.masks, self.mask_frames, self.masks_per_object)):
            # The sum is checked where it is free (on the CPU, where processors build these), not after a move.
            counted = int(counts.sum()) if counts.device.type == "cpu" else masks.shape[0]
            if masks.shape[0] != frames.shape[0] or masks.shape[0] != counted:
                raise ValueError(
                    f"sample {i}: {masks.shape[0]} masks, {frames.shape[0]} mask frames and "
                    f"{counted} masks counted over its objects must agree"
                )
