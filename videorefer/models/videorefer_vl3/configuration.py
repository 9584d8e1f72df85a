"""Configuration of VideoRefer-VL3 models (VideoLLaMA3-based; `model_type = "videollama3_qwen2"`).

The field names are those of the official checkpoints' `config.json` (`Videollama3Qwen2Config`), so a published
config loads unchanged. The one addition is `vision_config`: the NaViT SigLIP encoder's configuration (transformers'
`VideoLlama3VisionConfig`), written into the config when a model is saved so that a saved folder is self-contained.
Official configs only name the encoder (`vision_encoder`, a folder relative to the checkpoint or a Hub id);
`resolve_vision_config` fills `vision_config` in from there, offline for the published encoder id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import AutoConfig, Qwen2Config, VideoLlama3VisionConfig
from transformers.configuration_utils import SubConfigSpec

__all__ = [
    "VideoReferVL3Config",
    "KNOWN_VISION_ENCODERS",
    "KNOWN_ENCODER_PREPROCESSORS",
    "resolve_vision_path",
    "resolve_vision_config",
    "resolve_token_ids",
    "VL3_IMAGE_TOKEN",
    "VL3_REGION_TOKEN",
]

# Tokens the official tokenizer setup adds: `<image>` marks one video/image token, `<REGION>` one region token.
VL3_IMAGE_TOKEN = "<image>"
VL3_REGION_TOKEN = "<REGION>"

# The published encoder's settings, so that a checkpoint naming it loads without its repository (the weights are in
# the checkpoint itself). Values of `DAMO-NLP-SG/VL3-SigLIP-NaViT`'s config.json / preprocessor_config.json.
_PUBLISHED_ENCODER = "DAMO-NLP-SG/VL3-SigLIP-NaViT"
KNOWN_VISION_ENCODERS: dict[str, dict[str, Any]] = {
    _PUBLISHED_ENCODER: dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        num_channels=3,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        attention_dropout=0.0,
    ),
}
KNOWN_ENCODER_PREPROCESSORS: dict[str, dict[str, Any]] = {
    _PUBLISHED_ENCODER: dict(
        do_convert_rgb=True,
        do_normalize=True,
        do_rescale=True,
        do_resize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        max_tokens=16384,
        min_tokens=16,
        patch_size=14,
        resample=3,
        rescale_factor=1 / 255,
    ),
}
# Keys of the official encoder config (`DAMOVLVisionConfig`) that `VideoLlama3VisionConfig` shares.
_ENCODER_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_channels", "patch_size",
    "hidden_act", "layer_norm_eps", "attention_dropout",
)
SUPPORTED_PROJECTORS = ("mlp2x_gelu",)


class VideoReferVL3Config(Qwen2Config):
    model_type = "videollama3_qwen2"
    # Declared as a sub-config so that `attn_implementation` given to `from_pretrained` reaches the vision encoder.
    sub_configs_defaults = {"vision_config": SubConfigSpec(VideoLlama3VisionConfig, optional=True)}

    def __init__(
        self,
        vision_encoder: str | None = _PUBLISHED_ENCODER,
        mm_vision_encoder: str | None = None,
        mm_hidden_size: int = 1152,
        mm_projector_type: str = "mlp2x_gelu",
        spatial_merge_size: int = 2,
        mm_max_length: int = 10240,
        use_token_compression: bool = True,
        image_token_index: int | None = None,
        region_token_index: int | None = None,
        mm_vision_select_layer: int = -1,
        mm_vision_select_feature: str = "patch",
        image_aspect_ratio: str = "square",
        vision_config: dict[str, Any] | VideoLlama3VisionConfig | None = None,
        **kwargs: Any,
    ):
        self.vision_encoder = vision_encoder
        # Official configs carry both names with the same value; either alone is accepted.
        self.mm_vision_encoder = mm_vision_encoder if mm_vision_encoder is not None else vision_encoder
        if self.vision_encoder is None:
            self.vision_encoder = self.mm_vision_encoder
        self.mm_hidden_size = mm_hidden_size
        self.mm_projector_type = mm_projector_type
        self.spatial_merge_size = spatial_merge_size
        self.mm_max_length = mm_max_length
        self.use_token_compression = use_token_compression
        # The official loader re-sets both from the tokenizer at run time; configs written by train.py carry them.
        self.image_token_index = image_token_index
        self.region_token_index = region_token_index
        # Read by nothing at inference (the encoder's post-layernorm output is always used); kept for round trips.
        self.mm_vision_select_layer = mm_vision_select_layer
        self.mm_vision_select_feature = mm_vision_select_feature
        self.image_aspect_ratio = image_aspect_ratio
        if isinstance(vision_config, dict):
            vision_config = VideoLlama3VisionConfig(**vision_config)
        self.vision_config = vision_config
        super().__init__(**kwargs)
        self._check_supported()

    def _check_supported(self) -> None:
        if self.mm_projector_type not in SUPPORTED_PROJECTORS:
            raise ValueError(
                f"mm_projector_type {self.mm_projector_type!r} is not supported "
                f"(only {', '.join(SUPPORTED_PROJECTORS)})"
            )
        if not self.use_token_compression:
            raise ValueError(
                "use_token_compression=False is not supported: the official model only runs with token compression "
                "(its other branch returns nothing)"
            )
        if self.spatial_merge_size < 1:
            raise ValueError(f"spatial_merge_size must be >= 1, got {self.spatial_merge_size}")
        if self.mm_max_length < 1:
            raise ValueError(f"mm_max_length must be >= 1, got {self.mm_max_length}")
        if self.vision_config is not None and self.vision_config.hidden_size != self.mm_hidden_size:
            raise ValueError(
                f"the vision encoder's hidden size {self.vision_config.hidden_size} differs from mm_hidden_size "
                f"{self.mm_hidden_size}"
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load a config and fill `vision_config` in from the encoder it names (see `resolve_vision_config`)."""
        result = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        resolve_vision_config(config, pretrained_model_name_or_path)
        return result

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.vision_config, VideoLlama3VisionConfig):
            output["vision_config"] = self.vision_config.to_dict()
        return output


def resolve_vision_path(encoder: str, checkpoint: str | os.PathLike | None) -> str:
    """A local folder for `encoder` if one exists (relative to the checkpoint folder, then as given), else `encoder`.

    The official code resolves a relative encoder folder against the working directory; resolving it against the
    checkpoint folder first makes a checkpoint loadable from anywhere.
    """
    candidates = []
    if checkpoint is not None and os.path.isdir(checkpoint) and not os.path.isabs(encoder):
        candidates.append(Path(checkpoint) / encoder)
    candidates.append(Path(encoder))
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return str(candidate)
    return encoder


def resolve_vision_config(config: VideoReferVL3Config, checkpoint: str | os.PathLike | None = None) -> None:
    """Fill `config.vision_config` in from `config.vision_encoder` if it is missing.

    Order: an encoder folder (next to the checkpoint or as given), then the published encoder's settings known offline.
    """
    if config.vision_config is not None:
        return
    encoder = config.vision_encoder or config.mm_vision_encoder
    if not encoder:
        raise ValueError("the config has neither `vision_config` nor `vision_encoder`: cannot build the vision encoder")
    path = resolve_vision_path(encoder, checkpoint)
    if os.path.isdir(path):
        saved = json.loads((Path(path) / "config.json").read_text())
        settings = {key: saved[key] for key in _ENCODER_KEYS if key in saved}
    elif encoder in KNOWN_VISION_ENCODERS:
        settings = dict(KNOWN_VISION_ENCODERS[encoder])
    else:
        raise ValueError(
            f"cannot find the vision encoder {encoder!r} named by the config: not a folder next to the checkpoint, "
            f"not a folder, and not a known encoder id ({', '.join(KNOWN_VISION_ENCODERS)})"
        )
    vision_config = VideoLlama3VisionConfig(**settings)
    vision_config._attn_implementation = config._attn_implementation
    config.vision_config = vision_config
    config._check_supported()


def resolve_token_ids(config: VideoReferVL3Config, checkpoint: str | os.PathLike | None) -> None:
    """Fill `image_token_index` / `region_token_index` in from the checkpoint's tokenizer files when the config lacks
    them (the official loader takes them from the tokenizer at run time). Reads `added_tokens.json` or the added tokens
    of `tokenizer.json`; leaves them unset when neither names the token."""
    if config.image_token_index is not None and config.region_token_index is not None:
        return
    if checkpoint is None or not os.path.isdir(checkpoint):
        return
    folder = Path(checkpoint)
    added: dict[str, int] = {}
    if (folder / "tokenizer.json").is_file():
        tokens = json.loads((folder / "tokenizer.json").read_text()).get("added_tokens", [])
        added.update({token["content"]: int(token["id"]) for token in tokens})
    if (folder / "added_tokens.json").is_file():
        added.update(json.loads((folder / "added_tokens.json").read_text()))
    if config.image_token_index is None:
        config.image_token_index = added.get(VL3_IMAGE_TOKEN)
    if config.region_token_index is None:
        config.region_token_index = added.get(VL3_REGION_TOKEN)


AutoConfig.register(VideoReferVL3Config.model_type, VideoReferVL3Config, exist_ok=True)
