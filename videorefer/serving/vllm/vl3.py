"""VideoRefer-VL3 in vLLM: its processor output as vLLM prompt ids and tensors, and its own vision side
(`VL3VisualEncoding`: NaViT encoder, projector, frame pruning, crops, k-means, region encoder) beside vLLM's Qwen2."""

from __future__ import annotations

import torch
from vllm.model_executor.models.utils import WeightsMapper

from ...models.videorefer_vl3.frame_pruning import frame_pruning
from ...models.videorefer_vl3.inputs import VL3RegionInputs
from ...models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM, VL3VisualEncoding
from ...models.videorefer_vl3.region_encoder import RegionEncoder
from ...models.videorefer_vl3.vision import VisionEncoder, build_projector
from .keys import VL3_PREFIXES
from .model import FamilyVisual, VideoReferForVLLM, register_family
from .processing import VideoReferMultiModalProcessor

__all__ = ["VideoReferVL3ForVLLM", "VL3MultiModalProcessor"]


def _flat(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in values]) if values else torch.zeros(0, dtype=torch.uint8)


class VL3MultiModalProcessor(VideoReferMultiModalProcessor):
    """VL3's processor output -> the prompt without the `<image>` tokens frame pruning drops (it depends only on the
    pixels, so it is decided here, as the transformers path's splice drops them), and the tensors of the region
    inputs (mask grids flattened: their shapes are the crops' grids)."""

    FIELDS = ("pixel_values", "grid_thw", "merge_sizes", "region_pixel_values", "region_grid_thw",
              "region_mask_cells", "masks_per_object")

    def item_inputs(self, out):
        image_id = self.info.placeholder_id()
        ids = out["input_ids"][0]
        pruning = frame_pruning(out["pixel_values"].to(self.info.ctx.model_config.dtype), out["grid_thw"],
                                out["merge_sizes"], out["frames_per_sample"])
        keep = torch.ones_like(ids, dtype=torch.bool)
        keep[ids == image_id] = pruning.keep.cpu()
        regions = out["region_inputs"]
        return ids[keep], dict(
            pixel_values=out["pixel_values"], grid_thw=out["grid_thw"], merge_sizes=out["merge_sizes"],
            region_pixel_values=regions.pixel_values, region_grid_thw=regions.grid_thw,
            region_mask_cells=_flat([g.to(torch.uint8) for g in regions.mask_grids]),
            masks_per_object=regions.masks_per_object[0],
        )


class VL3Visual(VL3VisualEncoding, FamilyVisual):
    def __init__(self, config) -> None:
        super().__init__(config, vision_encoder=VisionEncoder(config), mm_projector=build_projector(config),
                         region_encoder=RegionEncoder(config.vision_config.hidden_size, config.hidden_size))


@register_family(VL3MultiModalProcessor)
class VideoReferVL3ForVLLM(VideoReferForVLLM):
    visual_class = VL3Visual
    model_class = VideoReferVL3ForCausalLM
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix=VL3_PREFIXES)
    processor_fields = VL3MultiModalProcessor.FIELDS

    def embed_item(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """The kept video tokens on the `<image>` positions, the region tokens on the `<REGION>` positions."""
        image_id, region_id = int(self.config.image_token_index), int(self.config.region_token_index)
        grids = item["region_grid_thw"]
        sizes = (grids[:, 1] * grids[:, 2]).tolist()
        mask_grids = [cells.reshape(int(g[1]), int(g[2])) for cells, g in zip(item["region_mask_cells"].split(sizes),
                                                                              grids)]
        regions = VL3RegionInputs(
            masks_per_object=[item["masks_per_object"]], pixel_values=item["region_pixel_values"], grid_thw=grids,
            mask_grids=mask_grids, masks_per_sample=torch.tensor([len(mask_grids)]),
        )
        features = self.visual.encode_visual(
            pixel_values=item["pixel_values"], grid_thw=item["grid_thw"], merge_sizes=item["merge_sizes"],
            frames_per_sample=torch.tensor([item["grid_thw"].shape[0]]), region_inputs=regions,
        )
        ids = item["vr_ids"]
        embed_ids = ids[(ids == image_id) | (ids == region_id)]
        out = features.video_tokens.new_zeros((embed_ids.shape[0], features.video_tokens.shape[-1]))
        out[embed_ids == image_id] = features.video_tokens[features.token_keep]
        out[embed_ids == region_id] = features.region_tokens.to(out.dtype)
        return out
