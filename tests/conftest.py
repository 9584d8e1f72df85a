"""Shared test fixtures. Tests run offline on tiny random models built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL_TINY = FIXTURES / "official-tiny"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A random tiny VideoRefer checkpoint in the official layout (built once per test session)."""
    from videorefer.testing.tiny_model import build_tiny_videorefer

    return build_tiny_videorefer(tmp_path_factory.mktemp("tiny-videorefer"))


@pytest.fixture(scope="session")
def tiny_videorefer(tiny_checkpoint):
    from videorefer import VideoRefer

    return VideoRefer.from_pretrained(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def tiny_vl3_checkpoint(tmp_path_factory) -> Path:
    """A random tiny VideoRefer-VL3 checkpoint in the official layout (built once per test session)."""
    from videorefer.testing.tiny_vl3 import build_tiny_vl3

    return build_tiny_vl3(tmp_path_factory.mktemp("tiny-vl3"))


@pytest.fixture(scope="session", params=["v1", "vl3"])
def family_checkpoint(request) -> Path:
    """A tiny checkpoint of each model family in turn: tests that take it run once per family."""
    name = "tiny_checkpoint" if request.param == "v1" else "tiny_vl3_checkpoint"
    return request.getfixturevalue(name)
