"""Saving what training produces: the stage-1 object-encoder weights, full models and peft adapters.

* `region_encoder.bin` is what the official stage 1 writes: a `torch.save`d state dict of the object encoder alone,
  keys as in the whole model (`model.region_encoder.feat_linear.0.weight`, ...). The official code loads it by
  keeping what follows `region_encoder.` in each key; `load_region_encoder` does the same, so files from either side
  load into either model.
* A full model is saved in the official layout (`config.json`, safetensors, tokenizer, image-processor settings),
  loadable by `VideoReferQwen2ForCausalLM.from_pretrained` / `VideoRefer.from_pretrained`.
* A LoRA / QLoRA run saves its peft adapter (object encoder and connector included as `modules_to_save`) and, on
  request, the adapter merged into an unquantised copy of the base model, in the official layout.

A kill at any moment never leaves something that passes for complete: checkpoints are written under a staging name
and renamed into place (`videorefer.compat.trainer`), so `checkpoint-N` only ever names a finished one; the final
outputs are written to `FINAL_STAGING` and moved into `output_dir` file by file, then `FINISHED_FILE` is written
(atomically) last. `last_complete_checkpoint` is what a rerun resumes from; `finished_run` tells a finished run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from videorefer.compat.trainer import STAGING_DIR, checkpoint_steps
from videorefer.data.atomic import publish_dir, remove_dir, write_json_atomic

__all__ = [
    "REGION_ENCODER_FILE",
    "REGION_ENCODER_PREFIX",
    "region_encoder_state_dict",
    "save_region_encoder",
    "load_region_encoder",
    "save_full_model",
    "copy_vision_folder",
    "save_merged_adapter",
    "FINISHED_FILE",
    "FINAL_STAGING",
    "last_complete_checkpoint",
    "finished_run",
    "publish_outputs",
    "mark_finished",
    "start_over",
]

logger = logging.getLogger(__name__)
FINISHED_FILE = "training_finished.json"  # written last, once every final output is in place
FINAL_STAGING = ".final-staging"  # the final outputs are written here, then moved into output_dir
TRAINER_STATE = "trainer_state.json"  # the last file Trainer writes into a checkpoint

REGION_ENCODER_FILE = "region_encoder.bin"
REGION_ENCODER_PREFIX = "model.region_encoder."
_KEYWORD = "region_encoder."


def region_encoder_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The object encoder's tensors of a whole-model state dict, keyed `model.region_encoder.*` as the official file.

    Works on plain models and on peft-wrapped ones (`base_model.model.model.region_encoder.modules_to_save.default.*`).
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if _KEYWORD not in key or ".original_module." in key:
            continue
        local = key.split(_KEYWORD, 1)[1].replace("modules_to_save.default.", "")
        out[REGION_ENCODER_PREFIX + local] = value.detach().cpu().clone()
    return out


def save_region_encoder(
    output_dir: str | os.PathLike, model: nn.Module | None = None, state_dict: Mapping[str, torch.Tensor] | None = None
) -> Path:
    """Write `region_encoder.bin` (from `state_dict`, e.g. gathered by DeepSpeed, else from `model`)."""
    if state_dict is None:
        if model is None:
            raise ValueError("give the model or its state dict")
        state_dict = model.state_dict()
    weights = region_encoder_state_dict(state_dict)
    if not weights:
        raise ValueError("the state dict holds no region_encoder tensors")
    path = Path(output_dir) / REGION_ENCODER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(weights, path)
    return path


def load_region_encoder(model: nn.Module, path: str | os.PathLike) -> None:
    """Load an official or our `region_encoder.bin` (a file, or a folder holding one) into `model`'s object encoder."""
    path = Path(path)
    if path.is_dir():
        path = path / REGION_ENCODER_FILE
    if not path.is_file():
        raise ValueError(f"no {REGION_ENCODER_FILE} at {path}")
    weights = torch.load(path, map_location="cpu", weights_only=True)
    local = {k.split(_KEYWORD, 1)[1]: v for k, v in weights.items() if _KEYWORD in k}
    if not local:
        raise ValueError(f"{path} holds no tensors whose keys contain {_KEYWORD!r} (got {sorted(weights)[:3]}...)")
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    encoder = base.model.region_encoder
    target = encoder.modules_to_save["default"] if hasattr(encoder, "modules_to_save") else encoder
    target.load_state_dict(local, strict=True)  # strict: a wrong file must not load silently


def copy_vision_folder(base_path: str | os.PathLike, output_dir: Path, tower: str | None) -> None:
    """Checkpoints that name their vision tower by a relative folder (the tiny model) keep it beside the weights."""
    if tower and not os.path.isabs(tower) and (Path(base_path) / tower / "config.json").is_file():
        target = output_dir / tower
        if not target.exists():
            shutil.copytree(Path(base_path) / tower, target)


def save_full_model(model: nn.Module, processor, output_dir: str | os.PathLike, base_path: str | os.PathLike,
                    state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
    """Official layout: config + safetensors + tokenizer + image settings (+ the tower folder when it is relative)."""
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir, state_dict=state_dict)
    processor.save_pretrained(output_dir)
    copy_vision_folder(base_path, output_dir, getattr(model.config, model.vision_folder_key, None))
    return output_dir


def save_merged_adapter(base_path: str | os.PathLike, adapter_dir: str | os.PathLike, output_dir: str | os.PathLike,
                        dtype: torch.dtype = torch.float32) -> Path:
    """Merge a LoRA adapter into an unquantised copy of the base model (on the CPU) and save the official layout."""
    from videorefer.adapters import load_adapter
    from videorefer.api import load_model_and_processor

    base, processor = load_model_and_processor(base_path, device="cpu", dtype=dtype)
    merged = load_adapter(base, adapter_dir, base_path).merge_and_unload()
    return save_full_model(merged, processor, output_dir, base_path)


# ---------------------------------------------------------------------------------------------------- kill-safe runs
def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The highest-numbered `checkpoint-N` in `output_dir` that is complete (holds the trainer state, which `Trainer`
    writes last); incomplete ones (from a version that wrote checkpoints in place) are named in a warning."""
    for step, path in sorted(checkpoint_steps(output_dir).items(), reverse=True):
        if os.path.isfile(os.path.join(path, TRAINER_STATE)):
            return path
        logger.warning("ignoring %s: incomplete (no %s; the run was killed while writing it)", path, TRAINER_STATE)
    return None


def finished_run(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The record `mark_finished` wrote when the run in `output_dir` finished, None when it has not."""
    path = Path(output_dir) / FINISHED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def publish_outputs(staging: str | os.PathLike, output_dir: str | os.PathLike) -> list[str]:
    """Move every file and folder of `staging` into `output_dir` (each move atomic), then remove `staging`."""
    staging, output_dir = Path(staging), Path(output_dir)
    names = sorted(entry.name for entry in staging.iterdir())
    for name in names:
        source, target = staging / name, output_dir / name
        if source.is_dir():
            publish_dir(source, target)
        else:
            with open(source, "rb") as file:
                os.fsync(file.fileno())
            os.replace(source, target)
    remove_dir(staging)
    return names


def mark_finished(output_dir: str | os.PathLike, global_step: int, outputs: list[str]) -> Path:
    return write_json_atomic(Path(output_dir) / FINISHED_FILE, {
        "global_step": int(global_step), "outputs": outputs, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def start_over(output_dir: str | os.PathLike) -> None:
    """A run that starts from the base model in `output_dir` (`resume=false`, or nothing complete to resume from):
    an earlier run's finished marker, staged outputs and checkpoints go first, so none of them is ever taken for
    this run's (a later resume would otherwise pick an old, higher-numbered checkpoint)."""
    output_dir = Path(output_dir)
    marker = output_dir / FINISHED_FILE
    if marker.is_file():
        marker.unlink()
    remove_dir(output_dir / FINAL_STAGING)
    remove_dir(output_dir / STAGING_DIR)
    old = sorted(checkpoint_steps(output_dir).items())
    if old:
        logger.warning("starting over in %s: removing the earlier run's %s", output_dir,
                       ", ".join(os.path.basename(path) for _, path in old))
    for _, path in old:
        remove_dir(path)
