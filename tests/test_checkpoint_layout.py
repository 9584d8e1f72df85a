"""Our model's tensors are named and shaped exactly as the official checkpoints'."""

from __future__ import annotations

import json

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from conftest import OFFICIAL_TINY
from videorefer import VideoReferQwen2Config, VideoReferQwen2ForCausalLM
from videorefer.testing.tiny_model import videorefer_7b_config


def read_shapes(path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in path.read_text().splitlines():
        name, shape = line.split("\t")
        shapes[name] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    return shapes


def test_7b_names_and_shapes_match_the_official_model():
    expected = read_shapes(OFFICIAL_TINY / "videorefer7b_param_shapes.tsv")
    assert len(expected) == 904
    with torch.device("meta"):
        model = VideoReferQwen2ForCausalLM(videorefer_7b_config())
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {n: s for n, s in ours.items() if expected[n] != s} == {}
    summary = json.loads((OFFICIAL_TINY / "videorefer7b_param_summary.json").read_text())
    assert sum(t.numel() for t in model.state_dict().values()) == summary["total_params"]


def test_tiny_fixture_names_and_shapes_match():
    expected = read_shapes(OFFICIAL_TINY / "tiny_param_shapes.tsv")
    model = VideoReferQwen2ForCausalLM.from_pretrained(OFFICIAL_TINY)
    assert {n: tuple(t.shape) for n, t in model.state_dict().items()} == expected


def test_import_registers_auto_classes(tmp_path):
    config = AutoConfig.from_pretrained(OFFICIAL_TINY)
    assert isinstance(config, VideoReferQwen2Config)
    model = AutoModelForCausalLM.from_pretrained(OFFICIAL_TINY)
    assert isinstance(model, VideoReferQwen2ForCausalLM)


def test_every_tensor_is_loaded_from_the_checkpoint():
    from safetensors.torch import load_file

    stored = load_file(OFFICIAL_TINY / "model.safetensors")
    model = VideoReferQwen2ForCausalLM.from_pretrained(OFFICIAL_TINY)
    loaded = model.state_dict()
    # The vision tower's weights come from the checkpoint, not from a re-download.
    for name, tensor in stored.items():
        assert torch.equal(loaded[name], tensor), name


def test_save_and_reload_round_trip(tmp_path):
    model = VideoReferQwen2ForCausalLM.from_pretrained(OFFICIAL_TINY)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "videorefer_qwen2" and "vision_config" in saved
    again = VideoReferQwen2ForCausalLM.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_tiny_model_with_smooth_positions_loads_them(tmp_path):
    """The synthetic task's tiny model: the tower's position embeddings are the 2-D sin/cos table, saved and loaded
    through from_pretrained, and nearby patches get more similar embeddings than distant ones."""
    from videorefer.testing.tiny_model import build_tiny_videorefer, sincos_position_embeddings

    folder = build_tiny_videorefer(tmp_path / "tiny", image_size=112, smooth_positions=True)
    model = VideoReferQwen2ForCausalLM.from_pretrained(folder)
    table = model.model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight.detach()
    assert torch.equal(table, sincos_position_embeddings(8, 32))
    # The patch position is readable from the embedding: a linear map fitted on half of the patches (checkerboard)
    # gives the other half's (x, y) to a tenth of a patch; random embeddings give no usable position.
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    position = torch.stack([xs.flatten(), ys.flatten()], 1)  # (64, 2)
    fit = (xs + ys).flatten() % 2 == 0

    def held_out_error(embeddings: torch.Tensor) -> float:
        design = torch.cat([embeddings, torch.ones(64, 1)], 1).double()
        solution = torch.linalg.lstsq(design[fit], position[fit].double()).solution
        return float((design[~fit] @ solution - position[~fit]).abs().max())

    assert held_out_error(table) < 0.1
    assert held_out_error(torch.randn(64, 32, generator=torch.Generator().manual_seed(0))) > 1.0
    plain = VideoReferQwen2ForCausalLM.from_pretrained(build_tiny_videorefer(tmp_path / "plain", image_size=112))
    assert not torch.equal(plain.model.vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight, table)
