"""Straightforward loop implementations of the object encoder's math: the reference for tests and the baseline
for `bench.speed`. One object and one frame at a time, exactly as the official code's description reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["loop_mask_pooling", "loop_temporal_merge", "loop_object_encoder"]


def loop_mask_pooling(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """`(n, h, w, c)` features, `(n, H, W)` masks -> `(n, c)` float32: each mask resized, cells > 0 averaged."""
    n, h, w, c = features.shape
    out = torch.zeros(n, c, dtype=torch.float32, device=features.device)
    for i in range(n):
        grid = F.interpolate(masks[i][None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        selected = grid > 0
        if selected.any():
            out[i] = features[i][selected].float().mean(0)
    return out


def loop_temporal_merge(tokens: torch.Tensor, keep: int) -> torch.Tensor:
    """One object's `(k, c)` tokens merged into at most `keep` contiguous runs, cut at the least similar pairs."""
    k = tokens.shape[0]
    if k <= keep:
        return tokens
    sims = [float(F.cosine_similarity(tokens[i], tokens[i + 1], dim=0)) for i in range(k - 1)]
    threshold = sorted(sims, reverse=True)[k - keep - 1]
    groups, current = [], []
    for i in range(k - 1):
        current.append(tokens[i])
        if sims[i] < threshold:
            groups.append(torch.stack(current).mean(0))
            current = []
    current.append(tokens[k - 1])
    groups.append(torch.stack(current).mean(0))
    return torch.stack(groups)


def loop_object_encoder(encoder, features: torch.Tensor, masks: torch.Tensor, per_object: list[int]) -> torch.Tensor:
    """`ObjectEncoder.forward`'s tokens, computed object by object (pool each frame, merge, project)."""
    out, start = [], 0
    for n in per_object:
        pooled = loop_mask_pooling(features[start : start + n], masks[start : start + n])
        out.append(encoder.project(loop_temporal_merge(pooled, encoder.tokens_per_object)))
        start += n
    return torch.cat(out)
