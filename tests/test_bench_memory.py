"""bench.memory: weight memory per quantisation, computed from the official tensor listings."""

import math

import pytest

from bench.memory import LISTINGS, QUANTISED, read_listing, weight_bytes


def test_toy_listing_by_hand(tmp_path):
    listing = tmp_path / "shapes.tsv"
    listing.write_text(
        "model.embed_tokens.weight\t[10, 8]\n"
        "model.layers.0.self_attn.q_proj.weight\t[8, 8]\n"
        "model.layers.0.self_attn.q_proj.bias\t[8]\n"
        "model.layers.0.mlp.down_proj.weight\t(8, 128)\n"
    )
    shapes = read_listing(listing)
    assert weight_bytes(shapes, None) == 2 * (80 + 64 + 8 + 1024)
    # 8-bit: one byte per quantised weight plus a float32 scale per output row; the rest stays bf16.
    assert weight_bytes(shapes, "8bit") == 2 * (80 + 8) + (64 + 8 * 4) + (1024 + 8 * 4)
    # 4-bit: half a byte per weight, one byte per 64-weight block, four bytes per 256 blocks.
    assert weight_bytes(shapes, "4bit") == 2 * (80 + 8) + (32 + 1 + 4) + (512 + 16 + 4)
    with pytest.raises(ValueError, match="'3bit'"):
        weight_bytes(shapes, "3bit")


@pytest.mark.parametrize("model_id", sorted(LISTINGS))
def test_published_models(model_id):
    shapes = read_listing(LISTINGS[model_id])
    params = sum(math.prod(s) for s in shapes.values())
    quantised = [name for name in shapes if QUANTISED.match(name)]
    assert len(quantised) == 28 * 7  # every real model has 28 decoder layers of 7 linear weights
    assert weight_bytes(shapes, None) == 2 * params
    assert weight_bytes(shapes, "4bit") < weight_bytes(shapes, "8bit") < weight_bytes(shapes, None)
