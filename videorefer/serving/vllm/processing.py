"""vLLM's multimodal processor for VideoRefer: one `videorefer` item per request, processed by the family's own
processor.

A request is `{"prompt_token_ids": [placeholder], "multi_modal_data": {"videorefer": item}}` with `item` a dict:
`video` (anything the family's processor takes: a path, frames, a decoded `Video` (the API decodes first, with its
frame settings), a still (H, W, 3) image for VL3),
`objects` (`[{frame: mask}, ...]`), `text` (the question, `<object0>` ...), `history` (earlier (question, answer)
turns) and `allow_empty_masks`. `request_prompt` builds it. The family's processor lays out the whole prompt (chat
template, timestamps, `<image>` and `<REGION>` tokens); the processor here replaces the request's one placeholder
token with those ids, marking the `<image>` and `<REGION>` positions for the model's embeddings. Frame pruning is
decided here (it depends only on the pixels), so the prompt holds the video tokens that survive it, as the
transformers path's spliced sequence does.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import MultiModalDataItems, MultiModalDataParser, ProcessorBatchItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
    PromptUpdateDetails,
)

from . import MODALITY

__all__ = ["VideoReferProcessingInfo", "VideoReferDummyInputs", "VideoReferMultiModalProcessor", "request_prompt"]


def request_prompt(placeholder_id: int, video: Any, objects: Sequence[Any], text: str,
                   history: Sequence[tuple[str, str]] | None = None, allow_empty_masks: bool = False,
                   uuid: str | None = None) -> dict[str, Any]:
    """A vLLM prompt for one question about `objects` in `video` (`uuid`: a stable key of video + objects + text,
    used by vLLM's caches instead of hashing the frames)."""
    item = dict(video=video, objects=list(objects), text=text, history=list(history or []),
                allow_empty_masks=allow_empty_masks)
    prompt: dict[str, Any] = {"prompt_token_ids": [placeholder_id], "multi_modal_data": {MODALITY: item}}
    if uuid is not None:
        prompt["multi_modal_uuids"] = {MODALITY: [uuid]}
    return prompt


class RequestItems(ProcessorBatchItems):
    def __init__(self, data: Any) -> None:
        super().__init__(data if isinstance(data, list) else [data], MODALITY)


class VideoReferDataParser(MultiModalDataParser):
    def _get_subparsers(self):
        return {**super()._get_subparsers(), MODALITY: RequestItems}


class VideoReferProcessingInfo(BaseProcessingInfo):
    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {MODALITY: 1}

    def get_data_parser(self) -> MultiModalDataParser:
        return VideoReferDataParser(expected_hidden_size=self._get_expected_hidden_size())

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        return {MODALITY: seq_len}

    @functools.cached_property
    def family_processor(self) -> Any:
        """The family's own processor, loaded from the checkpoint folder."""
        from ...families import family_for_checkpoint

        path = self.ctx.model_config.model
        return family_for_checkpoint(path).processor_class.from_pretrained(path)

    def placeholder_id(self) -> int:
        return int(self.get_hf_config().image_token_index)

    def embed_token_ids(self) -> list[int]:
        config = self.get_hf_config()
        return [int(config.image_token_index), int(config.region_token_index)]


class VideoReferDummyInputs(BaseDummyInputsBuilder[VideoReferProcessingInfo]):
    """A small video with one object, for vLLM's start-up profiling."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return self.info.get_tokenizer().decode([self.info.placeholder_id()]) * mm_counts.get(MODALITY, 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Any = None):
        if not mm_counts.get(MODALITY, 0):
            return {}
        video = np.zeros((4, 56, 56, 3), np.uint8)
        mask = np.zeros((56, 56), bool)
        mask[8:40, 8:40] = True
        return {MODALITY: [dict(video=video, objects=[{0: mask}], text="What is <object0>?", history=[],
                                allow_empty_masks=False)]}


def _flat(values: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in values]) if values else torch.zeros(0, dtype=torch.uint8)


class VideoReferMultiModalProcessor(BaseMultiModalProcessor[VideoReferProcessingInfo]):
    """Each item through the family's processor, then frame pruning; fields are one tensor per item."""

    FIELDS = ("vr_ids", "pixel_values", "grid_thw", "merge_sizes", "region_pixel_values", "region_grid_thw",
              "region_mask_cells", "masks_per_object")

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        from ...models.videorefer_vl3.frame_pruning import frame_pruning

        processor = self.info.family_processor
        dtype = self.info.ctx.model_config.dtype
        image_id, _ = self.info.embed_token_ids()
        fields: dict[str, list[torch.Tensor]] = {name: [] for name in self.FIELDS}
        for item in hf_data[f"{MODALITY}s"]:
            objects = item["objects"]
            text, history = processor.region_conversation(item["text"], item.get("history") or None, objects)
            out = processor(item["video"], text, objects, history=history or None,
                            allow_empty_masks=bool(item.get("allow_empty_masks")))
            ids = out["input_ids"][0]
            pruning = frame_pruning(out["pixel_values"].to(dtype), out["grid_thw"], out["merge_sizes"],
                                    out["frames_per_sample"])
            keep = torch.ones_like(ids, dtype=torch.bool)
            keep[ids == image_id] = pruning.keep.cpu()
            regions = out["region_inputs"]
            fields["vr_ids"].append(ids[keep])
            fields["pixel_values"].append(out["pixel_values"])
            fields["grid_thw"].append(out["grid_thw"])
            fields["merge_sizes"].append(out["merge_sizes"])
            fields["region_pixel_values"].append(regions.pixel_values)
            fields["region_grid_thw"].append(regions.grid_thw)
            fields["region_mask_cells"].append(_flat([g.to(torch.uint8) for g in regions.mask_grids]))
            fields["masks_per_object"].append(regions.masks_per_object[0])
        return BatchFeature(fields)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return {name: MultiModalFieldConfig.batched(MODALITY) for name in self.FIELDS}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        embed_ids = self.info.embed_token_ids()

        def replacement(item_idx: int) -> PromptUpdateDetails:
            ids = out_mm_kwargs[MODALITY][item_idx]["vr_ids"].data.tolist()
            return PromptUpdateDetails.select_token_ids(ids, embed_ids)

        return [PromptReplacement(modality=MODALITY, target=[self.info.placeholder_id()], replacement=replacement)]
