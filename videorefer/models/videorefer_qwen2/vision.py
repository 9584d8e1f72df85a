"""The SigLIP vision tower and the resolution of its configuration.

The official checkpoints store the tower's weights under `model.vision_tower.vision_tower.vision_model.*` but their
code ignores them and downloads `mm_vision_tower` again. We keep the same module nesting (so the keys load as they
are) and use the weights from the checkpoint; `mm_vision_tower` is only read for the tower's configuration and image
preprocessing, resolved against the checkpoint folder when it is a relative path.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from ...compat.siglip import check_supported, run_encoder_layers
from .configuration import VideoReferQwen2Config

__all__ = ["VisionTower", "resolve_vision_config", "resolve_vision_path", "KNOWN_VISION_TOWERS"]

# Configurations of towers used by published checkpoints, so that a checkpoint whose config only names its tower
# loads without fetching that tower's repository (the weights are in the checkpoint itself).
KNOWN_VISION_TOWERS: dict[str, dict] = {
    "google/siglip-so400m-patch14-384": dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    ),
}


def resolve_vision_path(tower: str, checkpoint: str | os.PathLike | None) -> str:
    """A local folder for `tower` if one exists (relative to the checkpoint folder, then as given), else `tower`."""
    candidates = []
    if checkpoint is not None and os.path.isdir(checkpoint) and not os.path.isabs(tower):
        candidates.append(Path(checkpoint) / tower)
    candidates.append(Path(tower))
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate)
    return tower


def resolve_vision_config(config: VideoReferQwen2Config, checkpoint: str | os.PathLike | None = None) -> None:
    """Fill `config.vision_config` in from `config.mm_vision_tower` if it is missing."""
    if config.vision_config is not None:
        return
    tower = config.mm_vision_tower
    if not tower:
        raise ValueError("the config has neither `vision_config` nor `mm_vision_tower`: cannot build the vision tower")
    path = resolve_vision_path(tower, checkpoint)
    if os.path.isdir(path):
        config.vision_config = SiglipVisionConfig.from_pretrained(path)
    elif tower in KNOWN_VISION_TOWERS:
        config.vision_config = SiglipVisionConfig(**KNOWN_VISION_TOWERS[tower])
    else:
        try:
            config.vision_config = SiglipVisionConfig.from_pretrained(tower)
        except OSError as error:
            raise ValueError(
                f"cannot find the vision tower {tower!r} named by the config: not a folder next to the checkpoint "
                f"and not reachable on the Hub ({error})"
            ) from error
    if config.vision_config.hidden_size != config.mm_hidden_size:
        raise ValueError(
            f"the vision tower's hidden size {config.vision_config.hidden_size} differs from mm_hidden_size "
            f"{config.mm_hidden_size}"
        )


class VisionTower(nn.Module):
    """SigLIP features of frames: the output of layer `mm_vision_select_layer`, all patches, no post-layernorm."""

    def __init__(self, config: VideoReferQwen2Config):
        super().__init__()
        check_supported()  # the forward runs SigLIP's layers itself
        if config.vision_config is None:
            raise ValueError("config.vision_config is not set; load the model with from_pretrained or set it")
        # An extra `vision_model` level keeps the official key names (`vision_tower.vision_model.*`): transformers 5
        # flattened `SiglipVisionModel` itself.
        self.vision_tower = nn.Module()
        self.vision_tower.vision_model = SiglipVisionModel(config.vision_config)
        layers = config.vision_config.num_hidden_layers
        select = config.mm_vision_select_layer
        # hidden_states[0] is the embedding output, hidden_states[i] the output of layer i.
        self.num_layers_used = select + layers + 1 if select < 0 else select
        if not 0 <= self.num_layers_used <= layers:
            raise ValueError(f"mm_vision_select_layer {select} is outside a tower of {layers} layers")

    @property
    def grid_size(self) -> int:
        config = self.vision_tower.vision_model.config
        return config.image_size // config.patch_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`(n, 3, S, S)` frames to `(n, patches, C)` features. Layers after the selected one are not run."""
        model = self.vision_tower.vision_model
        dtype = model.embeddings.patch_embedding.weight.dtype
        hidden = model.embeddings(pixel_values.to(dtype))
        return run_encoder_layers(model.encoder.layers[: self.num_layers_used], hidden)
