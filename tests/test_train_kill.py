"""Training survives SIGKILL at any moment: a run killed while writing a checkpoint, right after one appears, at a
random moment during training and while writing its final outputs, each time rerun with the same command, ends with
the losses and weights of an uninterrupted run; a partial checkpoint is never resumed from; a finished run rerun
changes nothing."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from train.checkpoints import FINAL_STAGING, FINISHED_FILE, last_complete_checkpoint
from videorefer.compat.trainer import STAGING_DIR, checkpoint_steps
from videorefer.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "train" / "configs" / "synthetic_tiny.yaml"
STEPS, SAVE_EVERY = 10, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from videorefer.testing.tiny import build_tiny

    folder = tmp_path_factory.mktemp("kill")
    synthetic.generate(folder / "task", n_train=3, n_heldout=1, seed=0, size=48, num_frames=8)
    return build_tiny("v1", folder / "tiny"), folder / "task" / "train.json"


def command(setup, out: Path) -> list[str]:
    checkpoint, data = setup
    return [sys.executable, "-m", "train.train", str(CONFIG), f"model_name_or_path={checkpoint}", f"data_path={data}",
            f"output_dir={out}", "per_device_train_batch_size=2", f"max_steps={STEPS}", f"save_steps={SAVE_EVERY}",
            "save_total_limit=2", "logging_steps=1", "warmup_steps=0", "num_frames=4", "disable_tqdm=true"]


def launch(setup, out: Path, log: Path, trigger=None, timeout: float = 120) -> bool:
    """Run the training command; SIGKILL it the moment `trigger()` is true. True when it was killed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as sink:
        process = subprocess.Popen(command(setup, out), cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while process.poll() is None:
            if trigger is not None and trigger():
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return True
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"the run took over {timeout} s: {log.read_text()[-2000:]}")
            time.sleep(0.001)
    assert process.returncode == 0, log.read_text()[-3000:]
    return False


def appears(path_of) -> callable:
    """A trigger that fires once `path_of()` (a path, or None) names something that did not exist at the start."""
    before = {str(p) for p in path_of()}
    return lambda: any(str(p) not in before for p in path_of())


def staged_checkpoints(out: Path) -> list[Path]:
    return list((out / STAGING_DIR).glob("checkpoint-*")) if (out / STAGING_DIR).is_dir() else []


def published_checkpoints(out: Path) -> list[Path]:
    return [Path(p) for p in checkpoint_steps(out).values()]


def delayed(trigger, seconds: float):
    fired: list[float] = []

    def check() -> bool:
        if not fired and trigger():
            fired.append(time.monotonic())
        return bool(fired) and time.monotonic() - fired[0] >= seconds

    return check


def losses(out: Path) -> dict[int, float]:
    state = json.loads((out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


def test_sigkill_at_any_moment_then_rerun_equals_an_uninterrupted_run(setup, tmp_path):
    from train.train import load_config, run

    reference, out = tmp_path / "reference", tmp_path / "killed"
    run(load_config(CONFIG, command(setup, reference)[4:]))  # uninterrupted, in this process
    rng = random.Random(0)
    triggers = [
        ("while writing a checkpoint", lambda: appears(lambda: staged_checkpoints(out))),
        ("right after a checkpoint appears", lambda: appears(lambda: published_checkpoints(out))),
        ("at a random moment of training", lambda: delayed(appears(lambda: published_checkpoints(out)),
                                                           rng.uniform(0.0, 0.4))),
        ("while writing the final outputs", lambda: appears(lambda: [out / FINAL_STAGING] * (out / FINAL_STAGING).exists())),
    ]
    kills = 0
    for k, (moment, make_trigger) in enumerate(triggers):
        if (out / FINISHED_FILE).is_file():  # the last kill landed as the run was exiting, after it had finished
            break
        expected = last_complete_checkpoint(out) if out.exists() else None
        log = tmp_path / f"run{k}.log"
        killed = launch(setup, out, log, make_trigger())
        kills += killed
        text = log.read_text()
        if expected is not None:  # it went on from the last complete checkpoint, and said so
            assert f"resuming from {expected} (the last complete checkpoint)" in text, (moment, text[-2000:])
        for folder in published_checkpoints(out):  # whatever it was doing, no checkpoint-N is partial
            assert (folder / "trainer_state.json").is_file() and (folder / "model.safetensors").is_file(), moment
        if not killed:
            break
    assert kills >= 3, "the runs ended before most of the kill moments came"
    if not (out / FINISHED_FILE).is_file():
        launch(setup, out, tmp_path / "last.log")

    assert losses(out) == pytest.approx(losses(reference), rel=1e-6, abs=1e-7)
    ours, theirs = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert torch.equal(ours[key], theirs[key]), key

    # Rerunning the finished run says so and changes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    launch(setup, out, tmp_path / "again.log")
    assert "holds a finished run: nothing to do" in (tmp_path / "again.log").read_text()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps


def test_an_incomplete_checkpoint_is_never_resumed_from(tmp_path, caplog):
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4" / "config.json").write_text("{}")  # what an in-place writer left when killed
    (tmp_path / STAGING_DIR / "checkpoint-6").mkdir(parents=True)
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert "checkpoint-4: incomplete" in caplog.text
    assert last_complete_checkpoint(tmp_path / "missing") is None


def test_starting_over_removes_the_earlier_runs_checkpoints_and_marker(tmp_path, caplog):
    """`resume=false`: an earlier run's checkpoint-10 must not outlive the new run's checkpoint-2 (a later resume
    would take it), nor its finished marker claim the new run."""
    from train.checkpoints import start_over

    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (tmp_path / FINISHED_FILE).write_text("{}")
    (tmp_path / FINAL_STAGING).mkdir()
    (tmp_path / "model.safetensors").write_text("the earlier run's model, replaced when this run finishes")
    start_over(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert "removing the earlier run's checkpoint-10" in caplog.text
