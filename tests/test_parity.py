"""`python -m videorefer.parity` against the official fixture, and that it notices a wrong model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from conftest import OFFICIAL_TINY

ROOT = Path(__file__).resolve().parents[1]


def run_parity(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "videorefer.parity", str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def logits_diff(output: str) -> float:
    line = next(l for l in output.splitlines() if l.startswith("logits max"))
    return float(line.split(":")[1].split()[0])


def test_parity_with_the_official_code():
    result = run_parity(OFFICIAL_TINY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PARITY OK" in result.stdout
    assert logits_diff(result.stdout) <= 1e-4
    assert "greedy ids match:              True" in result.stdout


def test_parity_fails_when_the_object_encoder_differs(tmp_path):
    folder = tmp_path / "perturbed"
    shutil.copytree(OFFICIAL_TINY, folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.region_encoder.feat_linear.2.weight"] += 0.05 * torch.randn_like(weights["model.region_encoder.feat_linear.2.weight"])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    result = run_parity(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PARITY FAILED" in result.stdout
    assert logits_diff(result.stdout) > 1e-4


def test_parity_rejects_a_folder_that_is_not_a_parity_case(tmp_path):
    result = run_parity(tmp_path)
    assert result.returncode == 2
    assert "not a parity folder" in result.stderr
