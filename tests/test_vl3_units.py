"""VL3's vectorised pieces against straightforward loop versions on random inputs: frame pruning, the region
encoder's cell selection and its batched k-means; plus k-means determinism."""

from __future__ import annotations

import pytest
import torch

from videorefer.models.videorefer_vl3.frame_pruning import frame_pruning
from videorefer.models.videorefer_vl3.region_encoder import (
    default_kmeans_generator,
    kmeans,
    mask_cell_features,
    pool_region_tokens,
)
from videorefer.models.videorefer_vl3.vision import spatial_downsample
from videorefer.testing.reference_vl3 import loop_frame_pruning, loop_kmeans, loop_mask_cells, loop_region_pooling

PATCH = 3 * 14 * 14


def random_batch(seed: int):
    """Three samples: a 4-frame video (some tokens unchanged, one frame fully unchanged), an image, a 3-frame video
    with another grid; pixel values on the normalised scale, changes around the threshold."""
    g = torch.Generator().manual_seed(seed)
    grids, merges, frames, pixels = [], [], [4, 1, 3], []
    # Sample 0: 4 frames of 4x6 patches (6 merged tokens each).
    base = torch.rand(24, PATCH, generator=g) * 2 - 1
    video = [base]
    for t in range(1, 4):
        frame = video[-1].clone()
        if t != 2:  # frame 2 repeats frame 1 exactly: fully pruned, keeps token 0
            changed = torch.randperm(6, generator=g)[: int(torch.randint(1, 5, (1,), generator=g))]
            for token in changed.tolist():
                # Mean change per token straddling 0.1/255: some kept, some not.
                scale = float(torch.rand(1, generator=g)) * 2 * 0.1 / 255 * 2
                frame[token * 4 : token * 4 + 4] += scale * torch.sign(torch.randn(4, PATCH, generator=g))
        video.append(frame)
    pixels += video
    grids += [[1, 4, 6]] * 4
    merges += [2] * 4
    # Sample 1: an image of 3x5 patches, merge 1.
    pixels.append(torch.rand(15, PATCH, generator=g))
    grids.append([1, 3, 5])
    merges.append(1)
    # Sample 2: 3 frames of 2x4 patches.
    first = torch.rand(8, PATCH, generator=g)
    pixels += [first, first + 0.01 * torch.randn(8, PATCH, generator=g), first.clone()]
    grids += [[1, 2, 4]] * 3
    merges += [2] * 3
    return torch.cat(pixels), torch.tensor(grids), torch.tensor(merges), torch.tensor(frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frame_pruning_matches_the_loop_version(seed):
    pixels, grids, merges, frames = random_batch(seed)
    result = frame_pruning(pixels, grids, merges, frames)
    expected = loop_frame_pruning(pixels, grids, merges, frames.tolist())
    assert result.keep.tolist() == expected
    # The cases the loop covers do occur: something pruned, a fully-unchanged frame keeping its token 0.
    assert not all(expected)
    frame2 = result.keep[12:18]
    assert frame2.tolist() == [True, False, False, False, False, False]
    # The image and every first frame keep all their tokens; the statistic is NaN there.
    assert result.keep[:6].all() and result.keep[24:39].all()
    assert torch.isnan(result.difference[:6]).all() and not torch.isnan(result.difference[6:24]).any()


def test_frame_pruning_refuses_inconsistent_inputs():
    pixels, grids, merges, frames = random_batch(0)
    with pytest.raises(ValueError, match="frames_per_sample"):
        frame_pruning(pixels, grids, merges, torch.tensor([4, 1, 2]))
    with pytest.raises(ValueError, match="patches"):
        frame_pruning(pixels[:-1], grids, merges, frames)
    bad = grids.clone()
    bad[2] = torch.tensor([1, 2, 12])  # same patch count, different grid inside one video
    with pytest.raises(ValueError, match="same grid"):
        frame_pruning(pixels, bad, merges, frames)


def test_spatial_downsample_is_the_2x2_mean_in_raster_order():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2 * 24 + 15, 8, generator=g)
    grids = torch.tensor([[1, 4, 6], [1, 4, 6], [1, 3, 5]])
    out = spatial_downsample(features, grids, torch.tensor([2, 2, 1]))
    assert out.shape == (6 + 6 + 15, 8)
    # Frame 1, merged token (row 1, col 2) = processor block 1*3+2 = 5: its 4 patches are rows 24+20..24+23.
    assert torch.allclose(out[6 + 5], features[24 + 20 : 24 + 24].mean(0), atol=1e-6)
    assert torch.equal(out[12:], features[48:])  # merge 1: unchanged, raster order


def random_crops(seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = [(5, 6), (4, 4), (6, 7), (3, 5)]
    features = torch.randn(sum(h * w for h, w in shapes), 16, generator=g)
    grid_thw = torch.tensor([[1, h, w] for h, w in shapes])
    masks = [(torch.rand(h, w, generator=g) < 0.6).to(torch.uint8) for h, w in shapes]
    masks[1] = torch.zeros(4, 4, dtype=torch.uint8)
    masks[1][1:3, 1:4] = 1  # 6 cells: kept as they are
    return features, grid_thw, masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_cells_match_the_loop_version(seed):
    features, grid_thw, masks = random_crops(seed)
    masks[3] = (torch.rand(4, 6, generator=torch.Generator().manual_seed(seed)) < 0.7).to(torch.uint8)
    masks[3][0, 0] = 1  # crop 3's mask grid differs from its feature grid: features are resized
    cells, counts = mask_cell_features(features, grid_thw, masks)
    expected = loop_mask_cells(features, grid_thw, masks)
    assert counts.tolist() == [e.shape[0] for e in expected]
    assert torch.allclose(cells, torch.cat(expected), atol=1e-6)


def test_a_mask_without_cells_is_refused_by_name():
    features, grid_thw, masks = random_crops(0)
    masks[2] = torch.zeros_like(masks[2])
    with pytest.raises(ValueError, match="mask 2 of object 1"):
        mask_cell_features(features, grid_thw, masks, lambda k: f"mask {k} of object {k // 2}")


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pooling_and_batched_kmeans_match_the_loop_version(seed):
    features, grid_thw, masks = random_crops(seed)
    cells, counts = mask_cell_features(features, grid_thw, masks)
    assert (counts > 10).sum() >= 2 and (counts <= 10).any()
    pooled, per_mask, inputs = pool_region_tokens(cells, counts, generator=default_kmeans_generator(seed))
    expected = loop_region_pooling(list(torch.split(cells, counts.tolist())), 10, 20, default_kmeans_generator(seed))
    assert per_mask.tolist() == [e.shape[0] for e in expected]
    assert torch.allclose(pooled, torch.cat(expected), atol=1e-5)
    assert len(inputs) == int((counts > 10).sum())


def test_kmeans_stops_at_the_iteration_limit_like_the_loop_version():
    g = torch.Generator().manual_seed(5)
    points = torch.randn(2, 40, 4, generator=g)
    counts = torch.tensor([40, 31])
    for iterations in (1, 2, 20):
        centroids, _ = kmeans(points, counts, 10, iterations, default_kmeans_generator(7))
        shared = default_kmeans_generator(7)
        expected = [loop_kmeans(points[i, : counts[i]], 10, iterations, shared) for i in range(2)]
        assert torch.allclose(centroids, torch.stack(expected), atol=1e-5)


def test_kmeans_is_deterministic():
    g = torch.Generator().manual_seed(0)
    points = torch.randn(3, 25, 8, generator=g)
    counts = torch.tensor([25, 18, 12])
    first, init_a = kmeans(points, counts)
    second, init_b = kmeans(points, counts)  # default: a fresh fixed-seed generator each call
    assert torch.equal(first, second) and torch.equal(init_a, init_b)
    seeded_a, _ = kmeans(points, counts, generator=default_kmeans_generator(11))
    seeded_b, _ = kmeans(points, counts, generator=default_kmeans_generator(11))
    assert torch.equal(seeded_a, seeded_b)
    # The global RNG plays no part.
    torch.manual_seed(123)
    third, _ = kmeans(points, counts)
    assert torch.equal(first, third)
    _, other_init = kmeans(points, counts, generator=default_kmeans_generator(12))
    assert not torch.equal(init_a, other_init)
    with pytest.raises(ValueError, match="at least 10"):
        kmeans(points, torch.tensor([25, 18, 9]))
