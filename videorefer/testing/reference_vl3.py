"""Straightforward loop versions of VL3's frame pruning and region encoder: the reference for tests and the baseline
for `bench.speed`. One sample, frame, token, mask and point at a time, as the official code's description reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["loop_frame_pruning", "loop_mask_cells", "loop_kmeans", "loop_region_pooling", "loop_region_encoder"]


def loop_frame_pruning(
    pixel_values: torch.Tensor,
    grid_thw: torch.Tensor,
    merge_sizes: torch.Tensor,
    frames_per_sample: list[int],
    threshold: float = 0.1,
) -> list[bool]:
    """Keep flag of every merged token of the batch, frame after frame."""
    keep: list[bool] = []
    row = 0
    frame = 0
    for count in frames_per_sample:
        previous = None
        for index in range(count):
            t, h, w = (int(x) for x in grid_thw[frame])
            m = int(merge_sizes[frame])
            patches = pixel_values[row : row + t * h * w]
            tokens = patches.reshape(t * h * w // (m * m), -1)  # consecutive m*m patches form one merged token
            flags = []
            for j in range(tokens.shape[0]):
                if count == 1 or index == 0:
                    flags.append(True)
                else:
                    change = float((tokens[j] - previous[j]).abs().mean()) * 255
                    flags.append(change > threshold)
            if not any(flags):
                flags[0] = True
            keep.extend(flags)
            previous = tokens
            row += t * h * w
            frame += 1
    return keep


def loop_mask_cells(features: torch.Tensor, grid_thw: torch.Tensor, mask_grids: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per mask: the crop's feature vectors at the mask's cells, row-major (features resized to the mask grid first
    when the sizes differ)."""
    out = []
    row = 0
    for k, mask in enumerate(mask_grids):
        _, h, w = (int(x) for x in grid_thw[k])
        grid = features[row : row + h * w].float().reshape(h, w, -1)
        row += h * w
        if tuple(mask.shape) != (h, w):
            grid = F.interpolate(grid.permute(2, 0, 1)[None], size=tuple(mask.shape), mode="bilinear",
                                 align_corners=False)[0].permute(1, 2, 0)
        cells = []
        for y in range(mask.shape[0]):
            for x in range(mask.shape[1]):
                if mask[y, x] > 0 and bool((grid[y, x] != 0).any()):
                    cells.append(grid[y, x])
        out.append(torch.stack(cells) if cells else grid.new_zeros((0, grid.shape[-1])))
    return out


def loop_kmeans(
    tokens: torch.Tensor, num_clusters: int, iterations: int, generator: torch.Generator, atol: float = 1e-6
) -> torch.Tensor:
    """One point set: random initial centroids, then assign / average point by point until nothing moves."""
    n = tokens.shape[0]
    centroids = tokens[torch.randperm(n, generator=generator)[:num_clusters]].clone()
    for _ in range(iterations):
        labels = []
        for i in range(n):
            best, best_distance = 0, None
            for j in range(num_clusters):
                distance = float(((tokens[i] - centroids[j]) ** 2).sum())
                if best_distance is None or distance < best_distance:
                    best, best_distance = j, distance
            labels.append(best)
        new = centroids.clone()
        for j in range(num_clusters):
            members = [tokens[i] for i in range(n) if labels[i] == j]
            if members:
                new[j] = torch.stack(members).mean(0)
        if torch.allclose(centroids, new, atol=atol):
            break
        centroids = new
    return centroids


def loop_region_pooling(
    cells: list[torch.Tensor], max_tokens: int, iterations: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """Per mask: its cells if at most `max_tokens`, else `max_tokens` k-means centroids (draws in mask order)."""
    return [c if c.shape[0] <= max_tokens else loop_kmeans(c, max_tokens, iterations, generator) for c in cells]


def loop_region_encoder(model, region_inputs, generator: torch.Generator) -> torch.Tensor:
    """Region tokens `(R, D)` with one encoder call per crop: the baseline the batched encoder is timed against."""
    encoder = model.model.vision_encoder
    device = encoder.model.embeddings.patch_embedding.weight.device
    pixels = region_inputs.pixel_values.to(device, encoder.dtype)
    grid_thw = region_inputs.grid_thw.to(device)
    pooled = []
    row = 0
    for k, mask in enumerate(region_inputs.mask_grids):
        size = int(grid_thw[k].prod())
        features = encoder(pixels[row : row + size], grid_thw[k : k + 1], torch.ones(1, dtype=torch.long, device=device))
        row += size
        cells = loop_mask_cells(features, grid_thw[k : k + 1], [mask.to(device)])
        pooled.extend(loop_region_pooling(cells, 10, 20, generator))
    return model.model.region_encoder(torch.cat(pooled))
