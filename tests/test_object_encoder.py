"""The object encoder's two functions against straightforward loop implementations of the same math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from videorefer.models.videorefer_qwen2.object_encoder import ObjectEncoder, mask_pooling, temporal_merge, temporal_merge_padded
from videorefer.testing.reference import loop_mask_pooling as pooling_loop
from videorefer.testing.reference import loop_object_encoder
from videorefer.testing.reference import loop_temporal_merge as merge_loop


@pytest.mark.parametrize(
    "n,h,w,c,H,W",
    [(1, 4, 4, 8, 48, 64), (5, 27, 27, 16, 72, 96), (3, 13, 7, 4, 13, 7), (2, 8, 8, 3, 5, 9), (2, 27, 27, 4, 480, 640),
     (3, 6, 5, 4, 1, 1), (2, 4, 4, 2, 1, 30), (2, 27, 27, 3, 54, 27)],
)
def test_mask_pooling_matches_loop(n, h, w, c, H, W):
    gen = torch.Generator().manual_seed(n * 100 + h)
    features = torch.randn(n, h, w, c, generator=gen)
    masks = torch.rand(n, H, W, generator=gen) > 0.7
    ours = mask_pooling(features, masks.to(torch.uint8))
    assert ours.shape == (n, c)
    torch.testing.assert_close(ours, pooling_loop(features, masks), atol=1e-5, rtol=1e-5)


def test_sparse_and_dense_sums_agree():
    from videorefer.models.videorefer_qwen2.object_encoder import _sum_selected

    gen = torch.Generator().manual_seed(5)
    features = torch.randn(6, 49, 16, generator=gen)
    selected = torch.rand(6, 49, generator=gen) > 0.8
    selected[2] = False  # an empty mask
    expected = torch.stack([features[i][selected[i]].sum(0) for i in range(6)])
    for sparse in (True, False):
        torch.testing.assert_close(_sum_selected(features, selected, sparse), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.float32])
def test_mask_cells_equal_resizing_the_whole_mask(dtype):
    from videorefer.models.videorefer_qwen2.object_encoder import mask_cells

    gen = torch.Generator().manual_seed(11)
    for (H, W), (h, w) in [((720, 1280), (27, 27)), ((48, 64), (4, 4)), ((7, 300), (27, 13)), ((27, 27), (27, 27))]:
        # Sparse specks make the result depend on exactly which pixels are read.
        masks = torch.rand(6, H, W, generator=gen) > 0.995
        resized = F.interpolate(masks.float()[None], size=(h, w), mode="bilinear", align_corners=False)[0] > 0
        assert torch.equal(mask_cells(masks.to(dtype), h, w), resized)


def test_mask_pooling_empty_mask_gives_zeros_and_bool_equals_uint8():
    features = torch.randn(2, 4, 4, 6)
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[1, 5:20, 5:20] = True
    pooled = mask_pooling(features, masks)
    assert torch.equal(pooled[0], torch.zeros(6))
    assert pooled[1].abs().sum() > 0
    torch.testing.assert_close(pooled, mask_pooling(features, masks.to(torch.uint8)))


def test_mask_pooling_shape_errors():
    with pytest.raises(ValueError, match="feature grids"):
        mask_pooling(torch.randn(2, 4, 4, 3), torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(n, h, w, c\)"):
        mask_pooling(torch.randn(4, 4, 3), torch.ones(3, 8, 8))


@pytest.mark.parametrize("k,keep,c", [(1, 4, 8), (4, 4, 8), (5, 4, 8), (8, 4, 32), (16, 4, 16), (16, 2, 5), (9, 1, 3)])
def test_temporal_merge_matches_loop(k, keep, c):
    gen = torch.Generator().manual_seed(k * 10 + keep)
    tokens = torch.randn(k, c, generator=gen)
    ours = temporal_merge(tokens, keep)
    expected = merge_loop(tokens, keep)
    assert ours.shape == expected.shape
    assert ours.shape[0] == min(k, keep)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_temporal_merge_keeps_contiguous_runs():
    # Frames 0-2 nearly identical, 3-5 nearly identical, 6 and 7 distinct: with keep=4 the runs are kept together.
    base = torch.eye(4)
    tokens = torch.stack([base[0], base[0] * 1.01, base[0], base[1], base[1], base[1] * 0.99, base[2], base[3]])
    merged = temporal_merge(tokens, keep=4)
    torch.testing.assert_close(merged, torch.stack([tokens[0:3].mean(0), tokens[3:6].mean(0), base[2], base[3]]))


def test_padded_merge_equals_single_merges():
    gen = torch.Generator().manual_seed(3)
    lengths = [1, 7, 3, 16, 5]
    tokens = [torch.randn(n, 12, generator=gen) for n in lengths]
    padded = torch.zeros(len(lengths), max(lengths), 12)
    for j, t in enumerate(tokens):
        padded[j, : t.shape[0]] = t
    merged, counts = temporal_merge_padded(padded, torch.tensor(lengths), keep=4)
    for j, t in enumerate(tokens):
        torch.testing.assert_close(merged[j, : counts[j]], merge_loop(t, 4), atol=1e-6, rtol=1e-5)


def test_object_encoder_equals_per_object_loop():
    gen = torch.Generator().manual_seed(7)
    per_object = [1, 8, 3, 6]
    features = torch.randn(sum(per_object), 5, 5, 16, generator=gen)
    masks = torch.rand(sum(per_object), 30, 40, generator=gen) > 0.5
    encoder = ObjectEncoder(16, 24).eval()
    tokens, counts = encoder(features, masks, torch.tensor(per_object))
    assert counts.tolist() == [min(n, 4) for n in per_object]
    torch.testing.assert_close(tokens, loop_object_encoder(encoder, features, masks, per_object), atol=1e-5, rtol=1e-5)
