"""Differential frame pruning (VideoLLaMA3's token compression): drop video tokens that did not change.

For a video of more than one frame, each merged token (an m x m block of patches) of frame t is compared with the
same token of frame t-1 on the normalised pixel values: kept iff `mean|x_t - x_{t-1}| * 255 > threshold` (strict).
The first frame keeps every token; a frame left with none keeps its token 0. Images and one-frame videos keep all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .vision import segment_rows

__all__ = ["FramePruning", "frame_pruning", "PRUNING_THRESHOLD"]

# The official threshold: one raw grey level is 2/255 after normalising to [-1, 1], so 0.1 is a mean change of
# 0.05 grey levels over the token's pixels.
PRUNING_THRESHOLD = 0.1


@dataclass
class FramePruning:
    keep: torch.Tensor  # (n_tokens,) bool over every merged token of the batch, in frame order
    difference: torch.Tensor  # (n_tokens,) float: the statistic; NaN where there is no previous frame


def frame_pruning(
    pixel_values: torch.Tensor,
    grid_thw: torch.Tensor,
    merge_sizes: torch.Tensor,
    frames_per_sample: torch.Tensor,
    threshold: float = PRUNING_THRESHOLD,
) -> FramePruning:
    """Which merged tokens of the batch's frames survive pruning.

    `pixel_values (P, 3*14*14)`: every frame's patches, frames concatenated sample after sample, each frame in the
    processor's m x m-grouped order (so consecutive m*m rows form one merged token); `grid_thw (F, 3)`,
    `merge_sizes (F,)`, `frames_per_sample (b,)` (images count as one-frame samples). Pass the pixel values in the
    model's dtype: the official statistic is computed in it.
    """
    device = pixel_values.device
    grid_thw, merge_sizes = grid_thw.to(device), merge_sizes.to(device)
    frames_per_sample = frames_per_sample.to(device)
    n_frames = grid_thw.shape[0]
    if int(frames_per_sample.sum()) != n_frames:
        raise ValueError(
            f"frames_per_sample {frames_per_sample.tolist()} adds up to {int(frames_per_sample.sum())}, "
            f"but grid_thw has {n_frames} frames"
        )
    patches = grid_thw.prod(-1)
    if int(patches.sum()) != pixel_values.shape[0]:
        raise ValueError(f"grid_thw describes {int(patches.sum())} patches but pixel_values has {pixel_values.shape[0]}")
    tokens = torch.div(patches, merge_sizes**2, rounding_mode="floor")
    patch_start = torch.cumsum(patches, 0) - patches
    token_start = torch.cumsum(tokens, 0) - tokens
    sample = torch.repeat_interleave(torch.arange(len(frames_per_sample), device=device), frames_per_sample)
    first_frame = (torch.cumsum(frames_per_sample, 0) - frames_per_sample)[sample]
    compared = (frames_per_sample[sample] > 1) & (torch.arange(n_frames, device=device) != first_frame)
    if compared.any():
        previous = torch.nonzero(compared)[:, 0] - 1
        same = (grid_thw[compared] == grid_thw[previous]).all(-1) & (merge_sizes[compared] == merge_sizes[previous])
        if not same.all():
            raise ValueError("all frames of a video must have the same grid size and merge size")

    total = int(tokens.sum())
    difference = pixel_values.new_full((total,), float("nan"), dtype=torch.float32)
    keep = torch.ones(total, dtype=torch.bool, device=device)
    # One pass per distinct merge size (the video merge size, in practice), not per frame.
    for m in torch.unique(merge_sizes[compared]).tolist():
        frames = torch.nonzero(compared & (merge_sizes == m))[:, 0]
        current = segment_rows(patch_start[frames], patches[frames])
        earlier = segment_rows(patch_start[frames - 1], patches[frames])
        width = m * m * pixel_values.shape[-1]
        x_now = pixel_values[current].reshape(-1, width)  # (tokens, m*m*588): one merged token per row
        x_before = pixel_values[earlier].reshape(-1, width)
        stat = (x_now - x_before).abs().mean(dim=-1) * 255
        rows = segment_rows(token_start[frames], tokens[frames])
        difference[rows] = stat.float()
        keep[rows] = stat > threshold
    # A frame whose tokens were all dropped keeps its first one.
    frame_of_token = torch.repeat_interleave(torch.arange(n_frames, device=device), tokens, output_size=total)
    kept_per_frame = torch.zeros(n_frames, dtype=torch.long, device=device).index_add_(0, frame_of_token, keep.long())
    keep[token_start[kept_per_frame == 0]] = True
    return FramePruning(keep, difference)
