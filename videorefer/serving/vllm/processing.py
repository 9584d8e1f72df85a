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

__all__ = ["VideoReferProcessingInfo", "VideoReferDummyInputs", "VideoReferMultiModalProcessor", "request_prompt",
           "embed_token_ids"]

#: The config attributes naming the ids on a request's embedding positions, per family (`model_type`); the first is
#: also the request's placeholder. VL3: `<image>` (video tokens), `<REGION>`; v1: `<region>` for both (its video
#: tokens have no id of their own: the official placeholder is the out-of-vocabulary -201).
EMBED_TOKEN_ATTRIBUTES = {
    "videollama3_qwen2": ("image_token_index", "region_token_index"),
    "videorefer_qwen2": ("region_id",),
}


def embed_token_ids(config: Any) -> list[int]:
    """The embedding-position ids of `config`'s family (the first: the request placeholder)."""
    if config.model_type not in EMBED_TOKEN_ATTRIBUTES:
        raise ValueError(f"the vLLM plugin serves {sorted(EMBED_TOKEN_ATTRIBUTES)}, not {config.model_type!r}")
    return [int(getattr(config, name)) for name in EMBED_TOKEN_ATTRIBUTES[config.model_type]]


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
        return self.embed_token_ids()[0]

    def embed_token_ids(self) -> list[int]:
        return embed_token_ids(self.get_hf_config())


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


class VideoReferMultiModalProcessor(BaseMultiModalProcessor[VideoReferProcessingInfo]):
    """Each item through the family's processor; `item_inputs` (per family) turns its output into the prompt ids vLLM
    runs and one tensor per field (`FIELDS`) for the model's `embed_multimodal`."""

    FIELDS: tuple[str, ...] = ()

    def item_inputs(self, out: BatchFeature) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        processor = self.info.family_processor
        fields: dict[str, list[torch.Tensor]] = {name: [] for name in ("vr_ids", *self.FIELDS)}
        for item in hf_data[f"{MODALITY}s"]:
            objects = item["objects"]
            text, history = processor.region_conversation(item["text"], item.get("history") or None, objects)
            out = processor(item["video"], text, objects, history=history or None,
                            allow_empty_masks=bool(item.get("allow_empty_masks")))
            ids, tensors = self.item_inputs(out)
            fields["vr_ids"].append(ids)
            for name in self.FIELDS:
                fields[name].append(tensors[name])
        return BatchFeature(fields)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]):
        return {name: MultiModalFieldConfig.batched(MODALITY) for name in ("vr_ids", *self.FIELDS)}

    def _get_prompt_updates(self, mm_items: MultiModalDataItems, hf_processor_mm_kwargs: Mapping[str, object],
                            out_mm_kwargs: MultiModalKwargsItems) -> Sequence[PromptUpdate]:
        embed_ids = self.info.embed_token_ids()

        def replacement(item_idx: int) -> PromptUpdateDetails:
            ids = out_mm_kwargs[MODALITY][item_idx]["vr_ids"].data.tolist()
            return PromptUpdateDetails.select_token_ids(ids, embed_ids)

        return [PromptReplacement(modality=MODALITY, target=[self.info.placeholder_id()], replacement=replacement)]
