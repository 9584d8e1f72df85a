"""The vLLM engine's tests: they run in the vLLM venv (`.venv-vllm`, made by `scripts/vllm_venv.sh`), started by
`tests/test_vllm_engine.py` from the main suite, or directly:

    VLLM_ENABLE_V1_MULTIPROCESSING=0 OMP_NUM_THREADS=1 .venv-vllm/bin/python -m pytest -q tests/vllm_engine

One engine per family is started once per session and shared. Without vLLM installed, tests/conftest.py leaves
this folder out."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: starts in ~5 s
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")


@pytest.fixture(scope="session")
def vl3_pair(tmp_path_factory):
    """(transformers VideoRefer, vLLM VideoRefer) on one tiny VL3 checkpoint (head size 32, answers that depend on the
    input: initializer range 0.2)."""
    yield from _pair("vl3", tmp_path_factory)


@pytest.fixture(scope="session")
def v1_pair(tmp_path_factory):
    yield from _pair("v1", tmp_path_factory)


def _pair(family: str, tmp_path_factory):
    from videorefer import VideoRefer
    from videorefer.testing.tiny import ENGINE_SIZES, build_tiny

    length = 8192 if family == "vl3" else 1024  # VL3's benchmark frames take ~5000 tokens (tests/.../test_bench_engine)
    folder = build_tiny(family, tmp_path_factory.mktemp(f"engine-{family}"), initializer_range=0.2,
                        max_position_embeddings=length, **ENGINE_SIZES)
    reference = VideoRefer.from_pretrained(folder, device="cpu")
    reference.reuse_prefix_cache = False
    served = VideoRefer.from_pretrained(folder, engine="vllm",
                                        engine_args=dict(max_model_len=length, enforce_eager=True))
    yield reference, served
    served.engine.close()
