"""The spatial-temporal object encoder: mask pooling, temporal token merge and the projection MLP.

This is the one implementation used by inference, training and benchmarks. Both public functions are
vectorised: no Python loop over frames or objects.

Semantics follow the official VideoRefer `MaskExtractor` exactly (see tests/fixtures/official-tiny):
* masks are resized bilinearly (align_corners=False) straight from their own resolution to the patch grid and
  every cell with a value > 0 counts (so masks dilate slightly);
* pooling is sum(feature * mask) / (sum(mask) + 1e-8), computed in float32 (an empty mask gives zeros);
* an object seen on more than `keep` frames has its per-frame tokens merged into at most `keep` contiguous runs,
  cut where adjacent tokens are least similar, each run averaged.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["mask_pooling", "mask_cells", "temporal_merge", "temporal_merge_padded", "ObjectEncoder"]

# Hard-coded in the official code (`region_token_num` is never read from the config).
DEFAULT_TOKENS_PER_OBJECT = 4


@functools.lru_cache(maxsize=64)
def _bilinear_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices `(out, 2)` of bilinear resizing (align_corners=False) and whether each has a weight > 0.

    The weights come from `F.interpolate` itself (on a one-hot basis), so which source pixels count is exactly what
    resizing the whole mask would use.
    """
    basis = torch.eye(in_size).reshape(1, in_size, in_size, 1)
    weights = F.interpolate(basis, size=(out_size, 1), mode="bilinear", align_corners=False)[0, :, :, 0].T
    taps = min(2, in_size)
    values, indices = weights.topk(taps, dim=1)  # (out, taps): bilinear reads at most two source pixels per axis
    if taps == 1:
        values, indices = torch.cat([values, values * 0], 1), torch.cat([indices, indices], 1)
    return indices, values > 0


def mask_cells(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Which cells of an `(h, w)` grid a mask covers: `interpolate(mask, (h, w), bilinear) > 0`, as bool `(n, h, w)`.

    A resized cell is a weighted sum of at most 2x2 non-negative mask pixels, so it is > 0 exactly when one of the
    pixels with a positive weight is > 0: only those pixels are read, never the whole mask as floats.
    """
    if masks.is_floating_point() and bool((masks < 0).any()):  # the shortcut needs non-negative masks
        grid = F.interpolate(masks.float().unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]
        return grid > 0
    rows, row_ok = (t.to(masks.device) for t in _bilinear_taps(masks.shape[1], h))
    cols, col_ok = (t.to(masks.device) for t in _bilinear_taps(masks.shape[2], w))
    picked = masks.index_select(1, rows.reshape(-1)).index_select(2, cols.reshape(-1)) > 0  # (n, h*2, w*2)
    picked = picked.reshape(-1, h, 2, w, 2) & row_ok[None, :, :, None, None] & col_ok[None, None, None, :, :]
    return picked.any(dim=4).any(dim=2)


def mask_pooling(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Average the patch features inside each mask.

    Args:
        features: `(n, h, w, c)` float, the patch grid of the frame each mask lies on.
        masks: `(n, H, W)` bool / uint8 / float, any resolution.

    Returns:
        `(n, c)` in the dtype of `features`; rows of masks that select no cell are zeros.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (n, h, w, c), got shape {tuple(features.shape)}")
    if masks.ndim != 3:
        raise ValueError(f"masks must be (n, H, W), got shape {tuple(masks.shape)}")
    if features.shape[0] != masks.shape[0]:
        raise ValueError(f"got {features.shape[0]} feature grids but {masks.shape[0]} masks")
    n, h, w, _ = features.shape
    if n == 0:
        return features.new_zeros((0, features.shape[-1]))
    selected = mask_cells(masks.to(features.device), h, w).reshape(n, h * w)  # (n, h*w)
    summed = _sum_selected(features.reshape(n, h * w, -1), selected, sparse=not features.is_cuda)  # (n, c) float32
    return (summed / (selected.sum(dim=1, keepdim=True).float() + 1e-8)).to(features.dtype)


def _sum_selected(features: torch.Tensor, selected: torch.Tensor, sparse: bool) -> torch.Tensor:
    """Sum of `features (n, p, c)` over the cells `selected (n, p)` of each row, in float32 `(n, c)`.

    On a CPU memory traffic dominates, so a sparse (CSR) product reads only the selected cells (masks usually cover a
    small part of the frame); on a GPU one dense batched product is faster.
    """
    n, p, c = features.shape
    if not sparse:
        return torch.bmm(selected.unsqueeze(1).float(), features.float()).squeeze(1)
    cells = selected.reshape(-1).nonzero().squeeze(1)  # (s,) flat indices into n*p
    rows = torch.cat([cells.new_zeros(1), selected.sum(dim=1).cumsum(0)])
    values = torch.ones(cells.numel(), dtype=torch.float32, device=features.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        matrix = torch.sparse_csr_tensor(rows, cells, values, size=(n, n * p))
        return matrix @ features.reshape(n * p, c).float()


def temporal_merge_padded(
    tokens: torch.Tensor, lengths: torch.Tensor, keep: int = DEFAULT_TOKENS_PER_OBJECT
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the per-frame tokens of many objects at once.

    Args:
        tokens: `(o, k, c)`, object `j`'s tokens in `tokens[j, :lengths[j]]`, in time order; the rest is padding.
        lengths: `(o,)` number of valid tokens per object (>= 1).
        keep: tokens kept per object.

    Returns:
        merged `(o, keep', c)` with `keep' = min(keep, k)`, object `j`'s tokens in `merged[j, :counts[j]]`,
        and `counts (o,)`.
    """
    o, k, c = tokens.shape
    device = tokens.device
    lengths = lengths.to(device=device, dtype=torch.long)
    if o == 0:
        return tokens.new_zeros((0, min(keep, k), c)), lengths
    steps = torch.arange(k, device=device)
    if k > 1:
        sims = F.cosine_similarity(tokens[:, :-1], tokens[:, 1:], dim=-1)  # (o, k-1)
        valid = steps[: k - 1].unsqueeze(0) < (lengths - 1).unsqueeze(1)  # (o, k-1)
        # The threshold is the r-th largest similarity of each object, r = length - keep.
        ranked = sims.masked_fill(~valid, float("-inf")).sort(dim=1, descending=True).values
        r = (lengths - keep).clamp(min=1)
        threshold = ranked.gather(1, (r - 1).clamp(max=k - 2).unsqueeze(1))  # (o, 1)
        cut = valid & (sims < threshold) & (lengths > keep).unsqueeze(1)  # cut between i and i+1
        group = torch.cat([torch.zeros(o, 1, dtype=torch.long, device=device), cut.long().cumsum(1)], dim=1)
    else:
        group = torch.zeros(o, 1, dtype=torch.long, device=device)
    # Objects with at most `keep` tokens are not merged: every token is its own group.
    group = torch.where((lengths > keep).unsqueeze(1), group, steps.unsqueeze(0))
    in_object = steps.unsqueeze(0) < lengths.unsqueeze(1)  # (o, k)
    counts = group.masked_fill(~in_object, 0).amax(dim=1) + 1  # (o,)
    out_len = min(keep, k)
    flat_group = (torch.arange(o, device=device).unsqueeze(1) * out_len + group.clamp(max=out_len - 1))
    flat_group = flat_group.masked_fill(~in_object, o * out_len)  # padding goes to a dump slot
    sums = tokens.new_zeros((o * out_len + 1, c), dtype=torch.float32)
    sums.index_add_(0, flat_group.reshape(-1), tokens.reshape(-1, c).float())
    sizes = torch.zeros(o * out_len + 1, device=device, dtype=torch.float32)
    sizes.index_add_(0, flat_group.reshape(-1), torch.ones(o * k, device=device))
    merged = (sums[:-1] / sizes[:-1].clamp(min=1).unsqueeze(1)).reshape(o, out_len, c)
    return merged.to(tokens.dtype), counts


def temporal_merge(tokens: torch.Tensor, keep: int = DEFAULT_TOKENS_PER_OBJECT) -> torch.Tensor:
    """Reduce one object's per-frame tokens `(k, c)` (time order) to at most `keep` rows.

    When `k > keep`: cosine similarity of each adjacent pair; the threshold is the `(k - keep)`-th largest; the
    sequence is cut between pairs whose similarity is below it and each contiguous run is averaged.
    """
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be (k, c), got shape {tuple(tokens.shape)}")
    if tokens.shape[0] <= keep:
        return tokens
    merged, counts = temporal_merge_padded(tokens.unsqueeze(0), torch.tensor([tokens.shape[0]]), keep)
    return merged[0, : int(counts[0])]


class ObjectEncoder(nn.Module):
    """Official `MaskExtractor` ("pooling" region encoder): pooled, merged, projected object tokens.

    Parameter names match the official checkpoint: `feat_linear.0` and `feat_linear.2`.
    """

    def __init__(self, vision_hidden_size: int, hidden_size: int, tokens_per_object: int = DEFAULT_TOKENS_PER_OBJECT):
        super().__init__()
        self.tokens_per_object = tokens_per_object
        self.feat_linear = nn.Sequential(
            nn.Linear(vision_hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def pool_and_merge(
        self, features: torch.Tensor, masks: torch.Tensor, masks_per_object: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pool each mask and merge each object's tokens.

        Args:
            features: `(n, h, w, c)` patch grids, one per mask.
            masks: `(n, H, W)` masks, object-major (all masks of object 0 in time order, then object 1, ...).
            masks_per_object: `(o,)` how many of the `n` masks belong to each object.

        Returns:
            pooled `(n, c)`, merged `(m, c)` (all objects' merged tokens, object-major), tokens per object `(o,)`.
        """
        pooled = mask_pooling(features, masks)  # (n, c)
        masks_per_object = masks_per_object.to(pooled.device, torch.long)
        o = masks_per_object.numel()
        k = int(masks_per_object.max()) if o else 0
        starts = torch.cumsum(masks_per_object, 0) - masks_per_object
        steps = torch.arange(k, device=pooled.device)
        in_object = steps.unsqueeze(0) < masks_per_object.unsqueeze(1)  # (o, k)
        index = (starts.unsqueeze(1) + steps.unsqueeze(0)).clamp(max=max(pooled.shape[0] - 1, 0))
        padded = pooled[index] * in_object.unsqueeze(-1)  # (o, k, c)
        merged, counts = temporal_merge_padded(padded, masks_per_object, self.tokens_per_object)
        keep_rows = torch.arange(merged.shape[1], device=pooled.device).unsqueeze(0) < counts.unsqueeze(1)
        return pooled, merged[keep_rows], counts

    def project(self, merged: torch.Tensor) -> torch.Tensor:
        """`(m, C)` merged features to `(m, hidden)` object tokens."""
        return self.feat_linear(merged.to(self.feat_linear[0].weight.dtype))

    def forward(
        self, features: torch.Tensor, masks: torch.Tensor, masks_per_object: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Object tokens `(m, hidden)` object-major, and the number of tokens of each object `(o,)`."""
        _, merged, counts = self.pool_and_merge(features, masks, masks_per_object)
        return self.project(merged), counts
