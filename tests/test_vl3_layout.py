"""VideoRefer-VL3's tensors are named and shaped exactly as the official checkpoints' (7B, 2B and the tiny fixture)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from conftest import FIXTURES
from videorefer.models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM
from videorefer.testing.tiny_vl3 import videorefer_vl3_config

VL3_TINY = FIXTURES / "official-vl3-tiny"


def read_shapes(path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        name, shape = line.split("\t")
        shapes[name] = tuple(int(x) for x in shape.strip("[]()").split(",") if x.strip())
    return shapes


@pytest.mark.parametrize("size, tensors", [("7b", 783), ("2b", 782)])
def test_real_sizes_have_the_official_names_shapes_and_totals(size, tensors):
    expected = read_shapes(VL3_TINY / f"videorefer_vl3_{size}_param_shapes.tsv")
    assert len(expected) == tensors
    with torch.device("meta"):
        model = VideoReferVL3ForCausalLM(videorefer_vl3_config(size))
    # Tied weights (2B's lm_head) are one tensor, as in the listing.
    ours = {name: tuple(p.shape) for name, p in model.named_parameters()}
    ours.update({name: tuple(b.shape) for name, b in model.named_buffers() if name in model.state_dict()})
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {n: s for n, s in ours.items() if expected[n] != s} == {}
    summary = json.loads((VL3_TINY / "videorefer_vl3_param_summary.json").read_text())[f"videorefer_vl3_{size}"]
    assert sum(p.numel() for p in model.parameters()) == summary["total_params"]
    assert model.config.tie_word_embeddings == summary["tie_word_embeddings"]


def test_fixture_checkpoint_loads_every_tensor_unchanged():
    """No missing, unexpected or renamed key: our state dict equals the official file, value for value."""
    model = AutoModelForCausalLM.from_pretrained(VL3_TINY)
    assert isinstance(model, VideoReferVL3ForCausalLM)
    with safe_open(VL3_TINY / "model.safetensors", "pt") as official:
        keys = set(official.keys())
        ours = model.state_dict()
        assert set(ours) == keys
        assert all(torch.equal(ours[k], official.get_tensor(k)) for k in keys)
    assert read_shapes(VL3_TINY / "tiny_param_shapes.tsv") == {k: tuple(v.shape) for k, v in ours.items()}


def test_saved_model_is_self_contained(tmp_path):
    """A saved folder carries the encoder's configuration: it loads without the encoder folder."""
    model = VideoReferVL3ForCausalLM.from_pretrained(VL3_TINY)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "videollama3_qwen2"
    assert saved["vision_config"]["hidden_size"] == 32
    reloaded = VideoReferVL3ForCausalLM.from_pretrained(tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_published_encoder_id_is_known_offline():
    config = videorefer_vl3_config("2b")
    vision = config.vision_config
    assert (vision.hidden_size, vision.intermediate_size, vision.num_hidden_layers, vision.num_attention_heads) == (
        1152, 4304, 27, 16
    )
    assert (vision.patch_size, vision.hidden_act, vision.layer_norm_eps) == (14, "gelu_pytorch_tanh", 1e-6)


def test_unsupported_settings_are_refused():
    from videorefer.models.videorefer_vl3.configuration import VideoReferVL3Config, resolve_vision_config

    with pytest.raises(ValueError, match="mm_projector_type"):
        VideoReferVL3Config(mm_projector_type="linear")
    with pytest.raises(ValueError, match="use_token_compression"):
        VideoReferVL3Config(use_token_compression=False)
    config = VideoReferVL3Config(vision_encoder="no/such-encoder")
    with pytest.raises(ValueError, match="no/such-encoder"):
        resolve_vision_config(config)
