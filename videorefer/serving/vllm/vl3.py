"""VideoRefer-VL3 in vLLM: vLLM's own Qwen2 (paged attention, continuous batching, prefix caching, tensor parallel)
beside VL3's own vision side (`VL3VisualEncoding`: NaViT encoder, projector, frame pruning, crops, k-means, region
encoder), loaded from the official checkpoint through `keys.VL3_PREFIXES`."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal
from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM
from vllm.model_executor.models.utils import AutoWeightsLoader, WeightsMapper, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY

from ...models.videorefer_vl3.inputs import VL3RegionInputs
from ...models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM, VL3VisualEncoding
from ...models.videorefer_vl3.region_encoder import RegionEncoder
from ...models.videorefer_vl3.vision import VisionEncoder, build_projector
from . import MODALITY
from .keys import VL3_PREFIXES
from .processing import VideoReferDummyInputs, VideoReferMultiModalProcessor, VideoReferProcessingInfo

__all__ = ["VideoReferVL3ForVLLM"]


class VL3Visual(VL3VisualEncoding, nn.Module):
    """VL3's vision side under the official names (`model.vision_encoder`, `model.mm_projector`,
    `model.region_encoder`): `encode_visual` is the transformers model's own."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.model = nn.Module()
        self.model.vision_encoder = VisionEncoder(config)
        self.model.mm_projector = build_projector(config)
        self.model.region_encoder = RegionEncoder(config.vision_config.hidden_size, config.hidden_size)


def _as_list(value) -> list[torch.Tensor]:
    return list(value) if isinstance(value, (list, tuple)) else list(value.unbind(0))


@MULTIMODAL_REGISTRY.register_processor(
    VideoReferMultiModalProcessor, info=VideoReferProcessingInfo, dummy_inputs=VideoReferDummyInputs
)
class VideoReferVL3ForVLLM(nn.Module, SupportsMultiModal):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix=VL3_PREFIXES)

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality == MODALITY:
            return None
        raise ValueError(f"VideoRefer-VL3 takes {MODALITY!r} items, not {modality!r}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        VideoReferVL3ForCausalLM.resolve_checkpoint_config(config, vllm_config.model_config.model)
        config.vision_config._attn_implementation = "eager"  # the official features exactly (SDPA: ~1e-6)
        self.config = config
        with self._mark_tower_model(vllm_config, MODALITY):
            self.visual = VL3Visual(config)
        with self._mark_language_model(vllm_config):
            self.language_model = Qwen2ForCausalLM(vllm_config=vllm_config,
                                                   prefix=maybe_prefix(prefix, "language_model"))
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    def embed_multimodal(self, **kwargs: object) -> list[torch.Tensor]:
        """One `(n_embed, d)` tensor per item: its kept video tokens on the `<image>` positions and its region tokens
        on the `<REGION>` positions of the item's prompt ids, in order. Each item is encoded alone, so its k-means
        (seeded per sample) and tokens do not depend on what else is batched."""
        if kwargs.get("vr_ids") is None:
            return []
        image_id, region_id = int(self.config.image_token_index), int(self.config.region_token_index)
        columns = {name: _as_list(kwargs[name]) for name in VideoReferMultiModalProcessor.FIELDS}
        outputs = []
        for i, ids in enumerate(columns["vr_ids"]):
            grids = columns["region_grid_thw"][i]
            sizes = (grids[:, 1] * grids[:, 2]).tolist()
            mask_grids = [cells.reshape(int(g[1]), int(g[2]))
                          for cells, g in zip(columns["region_mask_cells"][i].split(sizes), grids)]
            regions = VL3RegionInputs(
                masks_per_object=[columns["masks_per_object"][i]], pixel_values=columns["region_pixel_values"][i],
                grid_thw=grids, mask_grids=mask_grids, masks_per_sample=torch.tensor([len(mask_grids)]),
            )
            grid_thw = columns["grid_thw"][i]
            features = self.visual.encode_visual(
                pixel_values=columns["pixel_values"][i], grid_thw=grid_thw, merge_sizes=columns["merge_sizes"][i],
                frames_per_sample=torch.tensor([grid_thw.shape[0]]), region_inputs=regions,
            )
            embed_ids = ids[(ids == image_id) | (ids == region_id)]
            out = features.video_tokens.new_zeros((embed_ids.shape[0], features.video_tokens.shape[-1]))
            out[embed_ids == image_id] = features.video_tokens[features.token_keep]
            out[embed_ids == region_id] = features.region_tokens.to(out.dtype)
            outputs.append(out)
        return outputs

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
