"""Configuration of VideoRefer-7B style models (`model_type = "videorefer_qwen2"`).

The field names are those of the official checkpoints' `config.json`, so a published config loads unchanged. The one
addition is `vision_config`: the SigLIP vision tower's configuration, written into the config when a model is saved so
that a saved folder is self-contained. Official configs only name the tower (`mm_vision_tower`, a Hub id or a path);
`resolve_vision_config` (vision.py) fills `vision_config` in from there when the model is loaded.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2Config, SiglipVisionConfig

from ...prompts import REGION_PLACEHOLDER, VIDEO_PLACEHOLDER

__all__ = ["VideoReferQwen2Config", "VIDEO_TOKEN_INDEX", "REGION_TOKEN", "VIDEO_PLACEHOLDER"]

# The official code marks the video in input ids with a negative placeholder id, replaced by the video tokens.
VIDEO_TOKEN_INDEX = -201
# VideoRefer-7B's tokenizer has the region placeholder itself as a token: one `<region>` token per object.
REGION_TOKEN = REGION_PLACEHOLDER


class VideoReferQwen2Config(Qwen2Config):
    model_type = "videorefer_qwen2"

    def __init__(
        self,
        mm_vision_tower: str | None = "google/siglip-so400m-patch14-384",
        mm_hidden_size: int = 1152,
        mm_projector_type: str = "stc_connector_v35",
        mm_region_encoder_type: str = "pooling",
        mm_vision_select_layer: int = -2,
        mm_vision_select_feature: str = "patch",
        image_aspect_ratio: str = "square",
        num_frames: int = 16,
        vision_config: dict[str, Any] | SiglipVisionConfig | None = None,
        region_token_index: int | None = None,
        **kwargs: Any,
    ):
        self.mm_vision_tower = mm_vision_tower
        self.mm_hidden_size = mm_hidden_size
        self.mm_projector_type = mm_projector_type
        self.mm_region_encoder_type = mm_region_encoder_type
        self.mm_vision_select_layer = mm_vision_select_layer
        self.mm_vision_select_feature = mm_vision_select_feature
        self.image_aspect_ratio = image_aspect_ratio
        self.num_frames = num_frames
        if isinstance(vision_config, dict):
            vision_config = SiglipVisionConfig(**vision_config)
        self.vision_config = vision_config
        # Not in official configs: the tokenizer decides (`<region>`); kept here once known.
        self.region_token_index = region_token_index
        super().__init__(**kwargs)
        self._check_supported()

    @property
    def region_id(self) -> int:
        """Id of `<region>`: `region_token_index` once known, else the last row of the vocabulary (the official
        tokenizer setup adds `<region>` last)."""
        return self.vocab_size - 1 if self.region_token_index is None else self.region_token_index

    def _check_supported(self) -> None:
        if self.mm_projector_type != "stc_connector_v35":
            raise ValueError(f"mm_projector_type {self.mm_projector_type!r} is not supported (only 'stc_connector_v35')")
        if self.mm_region_encoder_type != "pooling":
            raise ValueError(f"mm_region_encoder_type {self.mm_region_encoder_type!r} is not supported (only 'pooling')")
        if self.mm_vision_select_feature != "patch":
            raise ValueError(
                f"mm_vision_select_feature {self.mm_vision_select_feature!r} is not supported (only 'patch')"
            )
        if self.image_aspect_ratio not in ("square", None):
            raise ValueError(f"image_aspect_ratio {self.image_aspect_ratio!r} is not supported (only 'square')")

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.vision_config, SiglipVisionConfig):
            output["vision_config"] = self.vision_config.to_dict()
        return output
