"""The NaViT SigLIP vision encoder (transformers' `VideoLlama3VisionModel`), the projector, and 2x2 downsampling.

The official checkpoints store the encoder under `model.vision_encoder.vision_encoder.vision_model.*`; `VisionEncoder`
nests transformers' `VideoLlama3VisionModel` at exactly that path, whose own parameter names (`embeddings.*`,
`encoder.layers.N.*`, `post_layernorm`) are the official ones, so no key is renamed. The encoder's weights come from
the checkpoint itself (the official code reloads them from the encoder folder; both hold the same values).

Patch order: frames come in the processor's 2x2-grouped order (merge 2: 2x2 blocks in raster order, the 4 patches of
a block row-major), crops and images in raster order (merge 1). Every frame / crop is its own attention segment.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn
from transformers import VideoLlama3VisionModel
from transformers.models.video_llama_3.modeling_video_llama_3 import VideoLlama3Projector
from transformers.vision_utils import get_vision_attention_seqlens, get_vision_position_ids

from .configuration import VideoReferVL3Config

__all__ = ["VisionEncoder", "build_projector", "spatial_downsample", "segment_rows"]


class VisionEncoder(nn.Module):
    """`vision_encoder.vision_model` = transformers' `VideoLlama3VisionModel` (the official key path)."""

    def __init__(self, config: VideoReferVL3Config):
        super().__init__()
        if config.vision_config is None:
            raise ValueError("config.vision_config is not set; load the model with from_pretrained or set it")
        # One extra level keeps the official key names: the official wrapper (`DAMOVLVisionEncoder`) holds a
        # `DAMOVLVisionModel` whose parameters sit under `vision_model`.
        self.vision_encoder = nn.Module()
        self.vision_encoder.vision_model = VideoLlama3VisionModel(config.vision_config)

    @property
    def model(self) -> VideoLlama3VisionModel:
        return self.vision_encoder.vision_model

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embeddings.patch_embedding.weight.dtype

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, merge_sizes: torch.Tensor) -> torch.Tensor:
        """`(P, 3*14*14)` patches of all frames/crops -> `(P, C)` post-layernorm features, same order.

        `grid_thw (F, 3)` long and `merge_sizes (F,)` long describe each frame/crop; the merge size sets the patch
        order the RoPE positions follow. This is `VideoLlama3VisionModel.forward` without its final downsampling,
        which the parity checks and the region encoder need undone.
        """
        model = self.model
        grid_thw = grid_thw.to(pixel_values.device)
        merge_sizes = merge_sizes.to(pixel_values.device)
        position_ids = get_vision_position_ids(grid_thw, merge_sizes)  # (P, 2): row, column of each patch
        cu_seqlens, max_seqlen = get_vision_attention_seqlens(grid_thw, model.config)
        hidden = model.embeddings(pixel_values.to(self.dtype))
        position_embeddings = model.rotary_pos_emb(hidden, position_ids)
        hidden = model.encoder(
            hidden, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, position_embeddings=position_embeddings
        ).last_hidden_state
        return model.post_layernorm(hidden)


def build_projector(config: VideoReferVL3Config) -> VideoLlama3Projector:
    """`mlp2x_gelu`: Linear(C -> D), GELU (erf), Linear(D -> D) as `readout.{0,2}` (transformers' own projector)."""
    sizes = SimpleNamespace(
        vision_config=SimpleNamespace(hidden_size=config.mm_hidden_size),
        text_config=SimpleNamespace(hidden_size=config.hidden_size),
    )
    return VideoLlama3Projector(sizes)


def segment_rows(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Concatenated `arange(start, start + length)` for each segment: `(sum lengths,)` long, no Python loop."""
    total = int(lengths.sum())
    offsets = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(total, device=lengths.device) - torch.repeat_interleave(offsets, lengths, output_size=total)
    return torch.repeat_interleave(starts, lengths, output_size=total) + within


def spatial_downsample(features: torch.Tensor, grid_thw: torch.Tensor, merge_sizes: torch.Tensor) -> torch.Tensor:
    """Merge each frame's m x m patch blocks: `(P, C)` in processor order -> `(sum_f ceil(h/m)*ceil(w/m), C)` raster.

    As the official code: un-group to raster `(c, h, w)`, then bilinear interpolation (align_corners=False) to
    `(ceil(h/m), ceil(w/m))`; for even sizes that is the 2x2 mean, up to rounding, so the same op is used for exact
    parity. Frames of equal (h, w, m) are interpolated together; merge 1 is the identity.
    """
    grid_thw = grid_thw.to(features.device)
    merge_sizes = merge_sizes.to(features.device)
    h, w = grid_thw[:, 1], grid_thw[:, 2]
    if (grid_thw[:, 0] != 1).any():
        raise ValueError(f"each frame/crop needs its own grid row with t = 1, got grid_thw {grid_thw.tolist()}")
    if ((h % merge_sizes) != 0).any() or ((w % merge_sizes) != 0).any():
        raise ValueError(f"grid sizes {grid_thw.tolist()} are not multiples of their merge sizes {merge_sizes.tolist()}")
    patches = h * w
    out_h = torch.div(h + merge_sizes - 1, merge_sizes, rounding_mode="floor")
    out_w = torch.div(w + merge_sizes - 1, merge_sizes, rounding_mode="floor")
    tokens = out_h * out_w
    patch_start = torch.cumsum(patches, 0) - patches
    token_start = torch.cumsum(tokens, 0) - tokens
    output = features.new_empty((int(tokens.sum()), features.shape[-1]))
    shapes = torch.stack([h, w, merge_sizes], dim=1)
    # Loop over distinct frame shapes (one per video), not over frames.
    for shape in torch.unique(shapes, dim=0).tolist():
        gh, gw, m = shape
        frames = torch.nonzero((shapes == shapes.new_tensor(shape)).all(-1))[:, 0]
        rows = patch_start[frames][:, None] + torch.arange(gh * gw, device=features.device)
        x = features[rows]  # (n, gh*gw, C)
        if m > 1:
            n, c = x.shape[0], x.shape[-1]
            x = x.view(n, gh // m, gw // m, m, m, c).permute(0, 1, 3, 2, 4, 5).reshape(n, gh, gw, c)
            x = F.interpolate(x.permute(0, 3, 1, 2), size=(math.ceil(gh / m), math.ceil(gw / m)), mode="bilinear")
            x = x.permute(0, 2, 3, 1).reshape(n, -1, c)
        targets = token_start[frames][:, None] + torch.arange(x.shape[1], device=features.device)
        output[targets.flatten()] = x.flatten(0, 1)
    return output
