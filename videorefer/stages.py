"""What each training stage trains, from the model's `module_groups` (vision, connector, region_encoder), never from
the family's name: one rule for `train.train` (full tuning) and the training parity check.

* `region_alignment`: only the region encoder (the official v1 `stage2.sh`, `--tune_region_encoder True`).
* `instruction`: everything but the vision tower (the official v1 `stage2.5.sh` / `stage3.sh`, which set no `tune_*`
  flag; the official VL3 trainer with `llm_lr`, `mm_projector_lr` and `region_encoder_lr` set and no
  `vision_encoder_lr`). `train_vision=True` trains the vision tower too.
"""

from __future__ import annotations

from torch import nn

__all__ = ["STAGES", "OFFICIAL_STAGES", "set_trainable", "stage_of"]

STAGES = ("region_alignment", "instruction")
# How the official trainers' stages (the script, or the VL3 learning rates that were set) map to ours.
OFFICIAL_STAGES = {
    "stage2": "region_alignment",
    "stage2.5": "instruction",
    "stage3": "instruction",
    "llm+projector+region_encoder (vision frozen)": "instruction",
}


def stage_of(name: str) -> str:
    """Our stage for one of ours or an official stage name (`OFFICIAL_STAGES`); `ValueError` names the unknown."""
    if name in STAGES:
        return name
    if name in OFFICIAL_STAGES:
        return OFFICIAL_STAGES[name]
    raise ValueError(f"unknown training stage {name!r}: ours are {STAGES}, official ones {sorted(OFFICIAL_STAGES)}")


def set_trainable(model: nn.Module, stage: str, train_vision: bool = False) -> nn.Module:
    """Mark the parameters `stage` trains (`requires_grad`) and freeze the rest; returns `model`."""
    stage = stage_of(stage)
    groups = model.module_groups
    model.requires_grad_(False)
    if stage == "region_alignment":
        model.get_submodule(groups["region_encoder"]).requires_grad_(True)
    else:
        model.requires_grad_(True)
        model.get_submodule(groups["vision"]).requires_grad_(train_vision)
    return model
