"""What the plugin's models of both families share: vLLM's own Qwen2 as `language_model` (paged attention, continuous
batching, prefix caching, tensor parallel) and the family's vision side as `visual`, loaded from the official
checkpoint through the family's prefix map (`keys`). A family subclass names its `visual_class`, `hf_to_vllm_mapper`,
`processor_fields` and embeds one item (`embed_item`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, maybe_prefix

from . import MODALITY

__all__ = ["VideoReferForVLLM", "FamilyVisual", "register_family"]


class FamilyVisual(nn.Module):
    """A family's vision modules under `model.<name>`, the official names, for its `*VisualEncoding` mixin (whose
    `encode_visual` is the transformers model's own)."""

    def __init__(self, config: Any, **modules: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.model = nn.Module()
        for name, module in modules.items():
            setattr(self.model, name, module)


def register_family(processor_class: type) -> Any:
    """The class decorator registering a family's plugin model with vLLM's multimodal registry."""
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from .processing import VideoReferDummyInputs, VideoReferProcessingInfo

    return MULTIMODAL_REGISTRY.register_processor(processor_class, info=VideoReferProcessingInfo,
                                                  dummy_inputs=VideoReferDummyInputs)


def _as_list(value: Any) -> list[torch.Tensor]:
    return list(value) if isinstance(value, (list, tuple)) else list(value.unbind(0))


class VideoReferForVLLM(nn.Module, SupportsMultiModal):
    visual_class: type[nn.Module]
    model_class: Any  # the family's transformers model (its `resolve_checkpoint_config`)
    hf_to_vllm_mapper: WeightsMapper  # the official layout -> ours (`keys`)
    processor_fields: tuple[str, ...]

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality == MODALITY:
            return None
        raise ValueError(f"VideoRefer takes {MODALITY!r} items, not {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.model_class.resolve_checkpoint_config(config, vllm_config.model_config.model)
        config.vision_config._attn_implementation = "eager"  # the transformers path's features exactly
        self.config = config
        with self._mark_tower_model(vllm_config, MODALITY):
            self.visual = self.visual_class(config)
        with self._mark_language_model(vllm_config):
            self.language_model = Qwen2ForCausalLM(vllm_config=vllm_config,
                                                   prefix=maybe_prefix(prefix, "language_model"))
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_item(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """`(n, d)`: the item's tokens for the embedding positions of its prompt ids (`item["vr_ids"]`), in order."""
        raise NotImplementedError

    def embed_multimodal(self, **kwargs: object) -> list[torch.Tensor]:
        """One tensor per item. Each item is encoded alone, so its tokens (and VL3's k-means, seeded per sample) do not
        depend on what else is batched."""
        if kwargs.get("vr_ids") is None:
            return []
        columns = {name: _as_list(kwargs[name]) for name in ("vr_ids", *self.processor_fields)}
        return [self.embed_item({name: values[i] for name, values in columns.items()})
                for i in range(len(columns["vr_ids"]))]

    def get_language_model(self) -> nn.Module:
        return self.language_model

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)
