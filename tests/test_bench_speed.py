"""The GPU speed bench's random real-shape checkpoints, shrunk by their override variables: they save in the official
layout and load and answer through the public API (the GPU run itself needs a GPU)."""

import json

import numpy as np
import torch

from bench.speed import build_random_7b
from bench.speed_vl3 import build_random_vl3
from videorefer import VideoRefer

SMALL_LLM = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2)


def answers(folder) -> str:
    vr = VideoRefer.from_pretrained(folder, device="cpu")
    video = np.random.default_rng(0).integers(0, 255, (6, 56, 56, 3), dtype=np.uint8)
    mask = np.zeros((56, 56), bool)
    mask[10:40, 10:40] = True
    return vr.ask(video, [{2: mask}], "What is <object0>?", max_new_tokens=3)


def test_random_vl3_2b_shape_shrunk(tmp_path, monkeypatch):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    monkeypatch.setenv("BENCH_VL3_OVERRIDES", json.dumps(dict(vocab_size=512, vision=vision, **SMALL_LLM)))
    folder = build_random_vl3(tmp_path / "vl3", "2b", torch.float32, "cpu")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "videollama3_qwen2" and config["tie_word_embeddings"] is True
    assert config["mm_hidden_size"] == 32
    assert isinstance(answers(folder), str)


def test_random_videorefer_7b_shape_shrunk(tmp_path, monkeypatch):
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56)
    overrides = dict(vocab_size=512, mm_hidden_size=32, vision_config=vision, **SMALL_LLM)
    monkeypatch.setenv("BENCH_7B_OVERRIDES", json.dumps(overrides))
    folder = build_random_7b(tmp_path / "v1", torch.float32, "cpu")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "videorefer_qwen2"
    assert isinstance(answers(folder), str)
