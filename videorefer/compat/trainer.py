"""transformers' `Trainer` checkpoint hooks, taken over for checkpoints that hold only part of the model.

Stage 1 of VideoRefer trains only the object encoder; its checkpoints hold that module alone (`region_encoder.bin`),
as the official code's do. `Trainer` has no public hook for what a checkpoint holds, so `PartialCheckpointTrainer`
overrides the private `_save(output_dir, state_dict)` and `_load_from_checkpoint(resume_from_checkpoint, model)` and
hands over to two public methods a subclass implements: `save_model_files` and `load_model_files`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import Trainer

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "PartialCheckpointTrainer", "PRIVATE_HOOKS"]

ADAPTER = "videorefer/compat/trainer.py"
FEATURE = "encoder-only training checkpoints (train.train)"
#: The private `Trainer` methods overridden, with the parameters they are called with.
PRIVATE_HOOKS = {"_save": ["output_dir", "state_dict"], "_load_from_checkpoint": ["resume_from_checkpoint", "model"]}


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
