"""The vLLM engine's tests (tests/vllm_engine/) from the main suite: they need vLLM, which pins its own torch, so they
run in a venv of their own (`.venv-vllm`, made or brought up to date here by `scripts/vllm_venv.sh`: 1-4 min from
PyPI, 3.6 GB) as a subprocess whose pytest result is this test's. `VIDEOREFER_VLLM_TESTS=skip` skips them (e.g.
offline, where the venv cannot be made); any other failure, the venv's included, fails here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VIDEOREFER_VLLM_VENV", ROOT / ".venv-vllm"))


def test_the_vllm_engine_tests_pass_in_their_venv():
    if os.environ.get("VIDEOREFER_VLLM_TESTS") == "skip":
        pytest.skip("VIDEOREFER_VLLM_TESTS=skip")
    made = subprocess.run(["bash", str(ROOT / "scripts" / "vllm_venv.sh"), str(VENV)], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, f"could not make {VENV}:\n{made.stdout[-3000:]}\n{made.stderr[-3000:]}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([str(VENV / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/vllm_engine"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=1200)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    print(f"tests/vllm_engine in {VENV.name}: {summary}", file=sys.stderr)
    assert run.returncode == 0, f"tests/vllm_engine failed in {VENV}:\n{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
