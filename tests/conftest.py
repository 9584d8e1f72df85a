"""Shared test fixtures. Tests run offline on tiny random models built in code."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures"
if importlib.util.find_spec("vllm") is None:
    collect_ignore = ["vllm_engine"]  # run in their own venv, started by tests/test_vllm_engine.py
OFFICIAL_TINY = FIXTURES / "official-tiny"


@pytest.fixture(scope="session", autouse=True)
def tiny_models_in_a_temporary_folder(tmp_path_factory):
    """`--tiny` on a command line builds its model once into $VIDEOREFER_TINY_DIR: a fresh folder per session."""
    from videorefer.testing.tiny import TINY_DIR_ENV

    saved = os.environ.get(TINY_DIR_ENV)
    os.environ[TINY_DIR_ENV] = str(tmp_path_factory.mktemp("tiny-cache"))
    yield
    if saved is None:
        os.environ.pop(TINY_DIR_ENV, None)
    else:
        os.environ[TINY_DIR_ENV] = saved


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


@pytest.fixture(scope="session")
def serve_demo():
    """`with serve_demo(family, limits, server=None) as (url, backend):` the demo on a tiny model of `family` ("vl3" /
    "v1"), live on a free local port, closed afterwards; with `server` (a URL) its answers come from that server."""
    from contextlib import contextmanager

    @contextmanager
    def serve(family: str, limits, server: str | None = None):
        import app
        from videorefer.demo.backend import Settings, load_backend
        from videorefer.demo.testing import free_port

        settings = Settings(tiny=family, device="cpu", port=free_port(), limits=limits, server=server)
        backend = load_backend(settings)
        demo = app.launch(settings, backend=backend, prevent_thread_lock=True, quiet=True)
        try:
            yield f"http://127.0.0.1:{settings.port}/", backend
        finally:
            demo.close()

    return serve


@pytest.fixture(scope="session")
def tiny_vllm_server(tmp_path_factory):
    """A VideoRefer server (`python -m videorefer.serve --tiny vl3`) for the session, run by the vLLM venv's python
    (made or brought up to date by scripts/vllm_venv.sh, as tests/test_vllm_engine.py does); killed at the end.
    `VIDEOREFER_VLLM_TESTS=skip` skips the tests that need it."""
    import subprocess

    from videorefer.demo.testing import free_port
    from videorefer.testing.server_process import ServerProcess

    if os.environ.get("VIDEOREFER_VLLM_TESTS") == "skip":
        pytest.skip("VIDEOREFER_VLLM_TESTS=skip")
    root = Path(__file__).resolve().parents[1]
    venv = Path(os.environ.get("VIDEOREFER_VLLM_VENV", root / ".venv-vllm"))
    made = subprocess.run(["bash", str(root / "scripts" / "vllm_venv.sh"), str(venv)], cwd=root,
                          capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, f"could not make {venv}:\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}"
    server = ServerProcess(["--tiny", "vl3", "--enforce-eager"], free_port(),
                           tmp_path_factory.mktemp("vllm-server") / "server.log", python=str(venv / "bin" / "python"),
                           cwd=root)
    with server:
        yield server
