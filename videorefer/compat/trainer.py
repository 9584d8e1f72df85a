"""transformers' `Trainer` checkpoint hooks, taken over for checkpoints that hold only part of the model and for
checkpoints that are never seen half-written.

Stage 1 of VideoRefer trains only the object encoder; its checkpoints hold that module alone (`region_encoder.bin`),
as the official code's do. `Trainer` has no public hook for what a checkpoint holds, so `PartialCheckpointTrainer`
overrides the private `_save(output_dir, state_dict)` and `_load_from_checkpoint(resume_from_checkpoint, model)` and
hands over to two public methods a subclass implements: `save_model_files` and `load_model_files`.

`Trainer` writes `checkpoint-N` in place, file after file, so a kill during the save leaves a folder that looks like a
checkpoint and is not. Here `_save_checkpoint(model, trial)` has `Trainer` write it into a staging folder
(`STAGING_DIR/checkpoint-N`, by answering the private `_get_output_dir(trial)` with the staging folder meanwhile),
then renames the finished folder to `checkpoint-N` (`videorefer.data.atomic.publish_dir`) and removes checkpoints
beyond `save_total_limit`, oldest first, each renamed away before it is deleted.
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import torch
from transformers import Trainer

from ..data.atomic import publish_dir, remove_dir
from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "PartialCheckpointTrainer", "PRIVATE_HOOKS", "STAGING_DIR", "CHECKPOINT_PATTERN",
           "checkpoint_steps"]

STAGING_DIR = ".checkpoint-staging"  # inside output_dir; never matches CHECKPOINT_PATTERN
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")

ADAPTER = "videorefer/compat/trainer.py"
FEATURE = "encoder-only training checkpoints (train.train)"
#: The private `Trainer` methods overridden, with the parameters they are called with.
PRIVATE_HOOKS = {
    "_save": ["output_dir", "state_dict"],
    "_load_from_checkpoint": ["resume_from_checkpoint", "model"],
    "_save_checkpoint": ["model", "trial"],
    "_get_output_dir": ["trial"],
}


def checkpoint_steps(folder: str | os.PathLike) -> dict[int, str]:
    """`{step: path}` of the `checkpoint-N` folders in `folder` (none when it does not exist)."""
    if not os.path.isdir(folder):
        return {}
    found = (CHECKPOINT_PATTERN.match(name) for name in os.listdir(folder))
    return {int(m.group(1)): os.path.join(folder, m.group(0)) for m in found
            if m and os.path.isdir(os.path.join(folder, m.group(0)))}


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless `Trainer` has the private hooks with the tested parameters."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    for name, parameters in PRIVATE_HOOKS.items():
        method = getattr(Trainer, name, None)
        found = None if method is None else [p for p in inspect.signature(method).parameters if p != "self"]
        require(found == parameters, FEATURE, ADAPTER,
                f"has Trainer.{name}({', '.join(found or [])}), not ({', '.join(parameters)})"
                if found is not None else f"has no Trainer.{name}")


class PartialCheckpointTrainer(Trainer):
    """A `Trainer` whose subclass may write and read the model's part of a checkpoint itself.

    `save_model_files(output_dir, state_dict)` and `load_model_files(folder, model)` return True when they handled
    it; False (the default) leaves it to `Trainer`. Optimizer, scheduler and trainer state are `Trainer`'s as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        check_supported()
        super().__init__(*args, **kwargs)
        self._staging: str | None = None

    def save_model_files(self, output_dir: str, state_dict: dict | None) -> bool:
        return False

    def load_model_files(self, folder: str, model: torch.nn.Module) -> bool:
        return False

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if not self.save_model_files(output_dir or self.args.output_dir, state_dict):
            super()._save(output_dir, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        if not self.load_model_files(resume_from_checkpoint, model if model is not None else self.model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _get_output_dir(self, trial: Any) -> str:
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        run_dir = super()._get_output_dir(trial)
        staging = os.path.join(run_dir, STAGING_DIR)
        name = f"checkpoint-{self.state.global_step}"
        if self.args.should_save:
            remove_dir(staging)  # what a kill during an earlier save left
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # every process has written its part
        best = self.state.best_model_checkpoint
        if best and os.path.dirname(os.path.abspath(best)) == os.path.abspath(staging):  # as it will be named
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staging, name, "trainer_state.json"))
        if self.args.should_save:
            publish_dir(os.path.join(staging, name), os.path.join(run_dir, name))
            remove_dir(staging)
            self._remove_old_checkpoints(run_dir)
        self.accelerator.wait_for_everyone()

    def _remove_old_checkpoints(self, run_dir: str) -> None:
        limit = self.args.save_total_limit
        steps = sorted(checkpoint_steps(run_dir))
        if not limit or limit <= 0 or len(steps) <= limit:
            return
        best = os.path.abspath(self.state.best_model_checkpoint or "")
        current = self.state.global_step  # the one just written always stays
        doomed = [os.path.join(run_dir, f"checkpoint-{step}") for step in steps if step != current]
        doomed = [path for path in doomed if os.path.abspath(path) != best][: len(steps) - limit]
        for path in doomed:
            remove_dir(path)
