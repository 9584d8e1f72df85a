"""The VL3 region encoder: per mask, the crop's features at the mask cells, k-means to at most 10, then an MLP.

The crops of all masks of a batch are encoded by the vision encoder in one call (the model does that); here:
* `mask_cell_features`: the encoder features of each crop (raster order), bilinearly resized to the mask grid when
  the two differ, taken at the mask's cells in row-major order;
* `kmeans`: masks with more than `max_tokens` cells are reduced to `max_tokens` centroids, all such masks at once
  (padded); the initial centroids are drawn with an explicit `torch.Generator`, one `randperm` per mask in mask order,
  which is how the official code draws them from the global RNG (so a generator seeded like the official run
  reproduces its draws);
* `RegionEncoder.feat_linear`: Linear(C -> D), GELU (erf), Linear(D -> D) (official key `region_encoder.feat_linear`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "RegionEncoder",
    "mask_cell_features",
    "kmeans",
    "pool_region_tokens",
    "default_kmeans_generator",
    "MAX_REGION_TOKENS",
    "KMEANS_ITERATIONS",
    "DEFAULT_KMEANS_SEED",
]

MAX_REGION_TOKENS = 10
KMEANS_ITERATIONS = 20
# Seed of the generator used when the caller gives none: the same request always gives the same tokens.
DEFAULT_KMEANS_SEED = 0


def default_kmeans_generator(seed: int = DEFAULT_KMEANS_SEED) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


class RegionEncoder(nn.Module):
    def __init__(self, vision_hidden_size: int, hidden_size: int):
        super().__init__()
        self.feat_linear = nn.Sequential(
            nn.Linear(vision_hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """`(n, C)` pooled region features -> `(n, D)` region tokens."""
        return self.feat_linear(pooled.to(self.feat_linear[0].weight.dtype))


def mask_cell_features(
    features: torch.Tensor,
    grid_thw: torch.Tensor,
    mask_grids: list[torch.Tensor],
    describe_mask: Callable[[int], str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature vectors at each mask's cells: `(T, C)` float32, mask after mask, row-major; and `(K,)` counts.

    `features (M, C)`: the crops' encoder features, crop after crop, raster order; `grid_thw (K, 3)`: each crop's
    grid; `mask_grids`: K `(h_k, w_k)` masks (nonzero = selected). Like the official pooling, a cell counts when the
    masked feature is nonzero in some channel. Raises ValueError for a mask that selects no cell
    (`describe_mask(k)` says which, e.g. "mask 1 of object 0 in sample 0").
    """
    device = features.device
    grid_thw = grid_thw.to(device)
    if len(mask_grids) != grid_thw.shape[0]:
        raise ValueError(f"{len(mask_grids)} mask grids for {grid_thw.shape[0]} crops: need one mask per crop")
    sizes = (grid_thw[:, 1] * grid_thw[:, 2]).tolist()
    if sum(sizes) != features.shape[0] or (grid_thw[:, 0] != 1).any():
        raise ValueError(f"crop grids {grid_thw.tolist()} do not describe the {features.shape[0]} crop features")
    # The official pooling runs in float32 whatever the model dtype.
    features = features.float()
    mask_shapes = [tuple(m.shape) for m in mask_grids]
    grid_shapes = [tuple(g) for g in grid_thw[:, 1:].tolist()]
    if mask_shapes != grid_shapes:
        # The processor shrank a crop (its pixel budget): resize those features to their mask grid, as official.
        parts = list(torch.split(features, sizes))
        for k, (mask_shape, grid_shape) in enumerate(zip(mask_shapes, grid_shapes)):
            if mask_shape != grid_shape:
                grid = parts[k].view(1, *grid_shape, -1).permute(0, 3, 1, 2)
                parts[k] = F.interpolate(grid, size=mask_shape, mode="bilinear", align_corners=False)[0].flatten(1).T
        features = torch.cat(parts)
    flat_masks = torch.cat([m.to(device).flatten() for m in mask_grids]) > 0
    selected = flat_masks & (features != 0).any(-1)
    cells = torch.tensor([h * w for h, w in mask_shapes], device=device)
    mask_of_cell = torch.repeat_interleave(torch.arange(len(mask_grids), device=device), cells)
    counts = torch.zeros(len(mask_grids), dtype=torch.long, device=device).index_add_(0, mask_of_cell, selected.long())
    empty = torch.nonzero(counts == 0)[:, 0].tolist()
    if empty:
        names = [describe_mask(k) if describe_mask else f"mask {k}" for k in empty]
        raise ValueError(f"{', '.join(names)} selects no cell of its crop's grid after resizing: nothing to encode")
    return features[selected], counts


def kmeans(
    points: torch.Tensor,
    counts: torch.Tensor,
    num_clusters: int = MAX_REGION_TOKENS,
    iterations: int = KMEANS_ITERATIONS,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    atol: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched k-means over padded point sets: `points (B, N, C)`, `counts (B,)` valid rows each (>= num_clusters).

    Per set, as the official `kmeans_fast`: initial centroids = points at `randperm(n)[:k]` (drawn from `generator`,
    set after set; or `generator[i]` for set i); then up to `iterations` times: assign each point to the nearest centroid (squared L2, first
    index on ties), move each centroid to its points' mean (an empty cluster keeps its centroid), and stop once
    `allclose(old, new, atol)` (the old centroids are kept). Returns `(B, k, C)` centroids and `(B, k)` long init
    indices.
    """
    b, n, _ = points.shape
    if generator is None:
        generator = default_kmeans_generator()
    generators = [generator] * b if isinstance(generator, torch.Generator) else list(generator)
    if len(generators) != b:
        raise ValueError(f"{len(generators)} generators for {b} point sets")
    if (counts < num_clusters).any():
        raise ValueError(f"k-means needs at least {num_clusters} points per set, got counts {counts.tolist()}")
    # Sequential draws per set: this is what makes a seeded generator reproduce the official global-RNG draws.
    init = torch.stack(
        [torch.randperm(int(c), generator=g, device=g.device)[:num_clusters] for c, g in zip(counts.tolist(), generators)]
    ).to(points.device)
    centroids = torch.gather(points, 1, init[..., None].expand(-1, -1, points.shape[-1]))
    valid = torch.arange(n, device=points.device)[None, :] < counts[:, None].to(points.device)  # (B, N)
    cluster_ids = torch.arange(num_clusters, device=points.device)
    done = torch.zeros(b, dtype=torch.bool, device=points.device)
    for _ in range(iterations):
        distances = ((points[:, :, None, :] - centroids[:, None, :, :]) ** 2).sum(-1)  # (B, N, k)
        labels = distances.argmin(-1)  # (B, N)
        members = ((labels[..., None] == cluster_ids) & valid[..., None]).to(points.dtype)  # (B, N, k)
        sizes = members.sum(1)  # (B, k)
        means = members.transpose(1, 2) @ points / sizes.clamp(min=1)[..., None]
        new = torch.where(sizes[..., None] > 0, means, centroids)
        close = (new - centroids).abs() <= atol + 1e-5 * new.abs()
        converged = close.flatten(1).all(-1)
        update = ~done & ~converged
        centroids = torch.where(update[:, None, None], new, centroids)
        done |= converged
        if done.all():
            break
    return centroids, init


def pool_region_tokens(
    cell_features: torch.Tensor,
    counts: torch.Tensor,
    max_tokens: int = MAX_REGION_TOKENS,
    generator: torch.Generator | None = None,
    iterations: int = KMEANS_ITERATIONS,
    mask_sample: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Per mask: its cell features if at most `max_tokens`, else `max_tokens` k-means centroids.

    `cell_features (T, C)` mask after mask, `counts (K,)`. Returns the pooled features `(R, C)` mask after mask,
    tokens per mask `(K,)` = min(count, max_tokens), and the k-means inputs (one `(n, C)` per reduced mask; for tests
    and the parity tool).

    With `generator=None`, each sample (`mask_sample (K,)`: the sample of each mask) draws from its own generator
    seeded `DEFAULT_KMEANS_SEED`, so a sample's tokens do not depend on the other samples of its batch; a given
    `generator` is shared by all masks in order (the official behaviour, for parity).
    """
    device = cell_features.device
    counts = counts.to(device)
    starts = torch.cumsum(counts, 0) - counts
    tokens_per_mask = counts.clamp(max=max_tokens)
    reduced = torch.nonzero(counts > max_tokens)[:, 0]
    mask_of_cell = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    position = torch.arange(cell_features.shape[0], device=device) - starts[mask_of_cell]
    # Rows of the output: masks kept as they are copy their cells; reduced masks get their centroids.
    out_starts = torch.cumsum(tokens_per_mask, 0) - tokens_per_mask
    pooled = cell_features.new_empty((int(tokens_per_mask.sum()), cell_features.shape[-1]))
    kept_cells = counts[mask_of_cell] <= max_tokens
    pooled[out_starts[mask_of_cell[kept_cells]] + position[kept_cells]] = cell_features[kept_cells]
    kmeans_inputs: list[torch.Tensor] = []
    if len(reduced):
        rank = torch.full((len(counts),), -1, dtype=torch.long, device=device)
        rank[reduced] = torch.arange(len(reduced), device=device)
        padded = cell_features.new_zeros((len(reduced), int(counts[reduced].max()), cell_features.shape[-1]))
        in_reduced = ~kept_cells
        padded[rank[mask_of_cell[in_reduced]], position[in_reduced]] = cell_features[in_reduced]
        generators: torch.Generator | list[torch.Generator] | None = generator
        if generator is None:
            samples = mask_sample[reduced].tolist() if mask_sample is not None else [0] * len(reduced)
            per_sample = {s: default_kmeans_generator() for s in set(samples)}
            generators = [per_sample[s] for s in samples]
        centroids, _ = kmeans(padded, counts[reduced], max_tokens, iterations, generators)
        rows = out_starts[reduced][:, None] + torch.arange(max_tokens, device=device)
        pooled[rows.flatten()] = centroids.flatten(0, 1)
        kmeans_inputs = list(torch.split(cell_features[in_reduced], counts[reduced].tolist()))
    return pooled, tokens_per_mask, kmeans_inputs
