"""The official checkpoint layout -> the plugin's module names (one place for every family).

The plugin's model holds vLLM's Qwen2 as `language_model` (its own `model.*` and `lm_head`) and the family's vision
side as `visual` (with the official names below it, so the family's modules load as the official code names them).
"""

from __future__ import annotations

__all__ = ["VL3_PREFIXES", "V1_PREFIXES"]

#: VideoRefer-VL3 (`videollama3_qwen2`): official prefix -> plugin prefix.
VL3_PREFIXES = {
    "model.vision_encoder.": "visual.model.vision_encoder.",
    "model.mm_projector.": "visual.model.mm_projector.",
    "model.region_encoder.": "visual.model.region_encoder.",
    "model.": "language_model.model.",
    "lm_head.": "language_model.lm_head.",
}

#: VideoRefer-7B (`videorefer_qwen2`): official prefix -> plugin prefix.
V1_PREFIXES = {
    "model.vision_tower.": "visual.model.vision_tower.",
    "model.mm_projector.": "visual.model.mm_projector.",
    "model.region_encoder.": "visual.model.region_encoder.",
    "model.": "language_model.model.",
    "lm_head.": "language_model.lm_head.",
}
