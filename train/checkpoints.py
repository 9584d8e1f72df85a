"""Saving what training produces: the stage-1 object-encoder weights, full models and peft adapters.

* `region_encoder.bin` is what the official stage 1 writes: a `torch.save`d state dict of the object encoder alone,
  keys as in the whole model (`model.region_encoder.feat_linear.0.weight`, ...). The official code loads it by
  keeping what follows `region_encoder.` in each key; `load_region_encoder` does the same, so files from either side
  load into either model.
* A full model is saved in the official layout (`config.json`, safetensors, tokenizer, image-processor settings),
  loadable by `VideoReferQwen2ForCausalLM.from_pretrained` / `VideoRefer.from_pretrained`.
* A LoRA / QLoRA run saves its peft adapter (object encoder and connector included as `modules_to_save`) and, on
  request, the adapter merged into an unquantised copy of the base model, in the official layout.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

__all__ = [
    "REGION_ENCODER_FILE",
    "REGION_ENCODER_PREFIX",
    "region_encoder_state_dict",
    "save_region_encoder",
    "load_region_encoder",
    "save_full_model",
    "copy_vision_folder",
    "save_merged_adapter",
]

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
