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
