"""VideoRefer-7B in vLLM: its processor output as vLLM prompt ids and tensors, and its own vision side
(`V1VisualEncoding`: SigLIP tower, STC connector, object encoder = mask pooling + temporal merge) beside vLLM's Qwen2.

The official prompt holds one out-of-vocabulary video placeholder (-201) and one `<region>` per object; vLLM needs
one prompt position per embedding, so the video placeholder becomes the connector's token count of `<region>` ids and
each object's `<region>` its token count (`min(masks, tokens_per_object)`: the temporal merge keeps that many unless
two merge scores tie exactly, which the model checks)."""

from __future__ import annotations

import torch
from vllm.model_executor.models.utils import WeightsMapper

from ...models.videorefer_qwen2.configuration import VIDEO_TOKEN_INDEX
from ...models.videorefer_qwen2.connector import STCConnector
from ...models.videorefer_qwen2.inputs import PooledRegionInputs
from ...models.videorefer_qwen2.modeling import V1VisualEncoding, VideoReferQwen2ForCausalLM
from ...models.videorefer_qwen2.object_encoder import DEFAULT_TOKENS_PER_OBJECT, ObjectEncoder
from ...models.videorefer_qwen2.vision import VisionTower
from .keys import V1_PREFIXES
from .model import FamilyVisual, VideoReferForVLLM, register_family
from .processing import VideoReferMultiModalProcessor

__all__ = ["VideoReferV1ForVLLM", "V1MultiModalProcessor"]


def object_token_counts(masks_per_object: torch.Tensor) -> torch.Tensor:
    return masks_per_object.clamp(max=DEFAULT_TOKENS_PER_OBJECT)


class V1MultiModalProcessor(VideoReferMultiModalProcessor):
    FIELDS = ("pixel_values", "masks", "mask_frames", "extra_frames", "masks_per_object")

    def item_inputs(self, out):
        config = self.info.get_hf_config()
        # the model fills the tower's settings in where it is built; the server processes requests in another process
        VideoReferQwen2ForCausalLM.resolve_checkpoint_config(config, self.info.ctx.model_config.model)
        region_id = int(config.region_id)
        ids = out["input_ids"][0].tolist()
        regions = out["region_inputs"]
        per_object = regions.masks_per_object[0]
        masks = regions.masks[0]
        frames = out["pixel_values"].shape[1]
        grid = config.vision_config.image_size // config.vision_config.patch_size
        video_tokens = STCConnector.num_tokens(frames, grid)
        counts = object_token_counts(per_object).tolist()
        if ids.count(VIDEO_TOKEN_INDEX) != 1 or ids.count(region_id) != len(counts):
            raise ValueError(f"the prompt holds {ids.count(VIDEO_TOKEN_INDEX)} video placeholders and "
                             f"{ids.count(region_id)} <region> tokens for {len(counts)} objects")
        if region_id in ids[: ids.index(VIDEO_TOKEN_INDEX)]:
            raise ValueError("the vLLM engine needs the video before the objects' <region> tokens")
        empty = masks.flatten(1).amax(1) == 0 if masks.numel() else torch.zeros(0, dtype=torch.bool)
        for k, mask_empty in enumerate(empty.split(per_object.tolist())):
            if mask_empty.any() and int(per_object[k]) > DEFAULT_TOKENS_PER_OBJECT:
                raise ValueError(f"<object{k}> has an empty mask among more than {DEFAULT_TOKENS_PER_OBJECT}: its "
                                 "merged token count depends on the features; the vLLM engine cannot lay it out")
        expanded: list[int] = []
        regions_seen = 0
        for token in ids:
            if token == VIDEO_TOKEN_INDEX:
                expanded += [region_id] * video_tokens
            elif token == region_id:
                expanded += [region_id] * counts[regions_seen]
                regions_seen += 1
            else:
                expanded.append(token)
        return torch.tensor(expanded), dict(
            pixel_values=out["pixel_values"][0], masks=masks, mask_frames=regions.mask_frames[0],
            extra_frames=regions.extra_frames[0], masks_per_object=per_object,
        )


class V1Visual(V1VisualEncoding, FamilyVisual):
    def __init__(self, config) -> None:
        super().__init__(config, vision_tower=VisionTower(config),
                         mm_projector=STCConnector(config.mm_hidden_size, config.hidden_size),
                         region_encoder=ObjectEncoder(config.mm_hidden_size, config.hidden_size))


@register_family(V1MultiModalProcessor)
class VideoReferV1ForVLLM(VideoReferForVLLM):
    visual_class = V1Visual
    model_class = VideoReferQwen2ForCausalLM
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_prefix=V1_PREFIXES)
    processor_fields = V1MultiModalProcessor.FIELDS

    def embed_item(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        """The video tokens, then every object's tokens (the prompt's order, checked by the processor)."""
        regions = PooledRegionInputs(masks_per_object=[item["masks_per_object"]], masks=[item["masks"]],
                                     mask_frames=[item["mask_frames"]], extra_frames=[item["extra_frames"]])
        features = self.visual.encode_visual(item["pixel_values"][None], regions)
        counts = features.tokens_per_object[0].cpu()
        if not torch.equal(counts, object_token_counts(item["masks_per_object"].cpu())):
            raise RuntimeError(f"the object encoder merged to {counts.tolist()} tokens per object, the prompt holds "
                               f"{object_token_counts(item['masks_per_object']).tolist()}")
        return torch.cat([features.video_tokens[0], features.object_tokens[0].to(features.video_tokens.dtype)])
