"""VideoRefer-7B: SigLIP vision tower + STC connector + object encoder + Qwen2, as a transformers causal LM.

Module names follow the official checkpoints (`model.vision_tower.vision_tower.*`, `model.mm_projector.*`,
`model.region_encoder.*`), so their weights load without renaming: no key conversion is needed at all.

Visual inputs beyond the text (produced by `VideoReferProcessor`, its `visual_keys`):
* `pixel_values` `(b, t, 3, S, S)`: the sampled video frames;
* `region_inputs`: a `PooledRegionInputs` (inputs.py), the objects' masks and the frames they lie on.
The video placeholder id in `input_ids` is replaced by the video tokens, each `<region>` token by its object's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen2ForCausalLM, Qwen2Model

from ...compat.qwen2 import init_causal_lm
from ..base import SplicedCausalLMMixin
from ...prompts import IGNORE_LABEL
from .configuration import VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .connector import STCConnector
from .inputs import PooledRegionInputs
from .object_encoder import ObjectEncoder
from .vision import VisionTower, resolve_vision_config

__all__ = ["VideoReferQwen2Model", "VideoReferQwen2ForCausalLM", "V1VisualEncoding", "VisualFeatures"]


@dataclass
class VisualFeatures:
    """What the vision side contributes to one batch: reusable across questions about the same video and regions."""

    video_tokens: torch.Tensor  # (b, n_video_tokens, hidden)
    object_tokens: list[torch.Tensor]  # per sample: (m_i, hidden), all objects' tokens, object-major
    tokens_per_object: list[torch.Tensor]  # per sample: (o_i,)
    # Intermediates for tests and the parity tool.
    frame_features: torch.Tensor | None = None  # (b*t + sum m_i, patches, C)
    pooled: list[torch.Tensor] | None = None
    merged: list[torch.Tensor] | None = None


class VideoReferQwen2Model(Qwen2Model):
    config_class = VideoReferQwen2Config

    def __init__(self, config: VideoReferQwen2Config):
        super().__init__(config)
        self.vision_tower = VisionTower(config)
        self.mm_projector = STCConnector(config.mm_hidden_size, config.hidden_size)
        self.region_encoder = ObjectEncoder(config.mm_hidden_size, config.hidden_size)
        self.post_init()


class V1VisualEncoding:
    """VideoRefer-7B's vision side as a mixin: `encode_visual` on any module whose `model` holds `vision_tower`,
    `mm_projector` and `region_encoder` (the causal LM here; the vLLM plugin's model, `videorefer.serving.vllm`,
    which runs these same modules beside vLLM's own Qwen2)."""

    def encode_visual(
        self, pixel_values: torch.Tensor, region_inputs: PooledRegionInputs | None = None
    ) -> VisualFeatures:
        """Video tokens and object tokens. The vision tower runs once on every distinct frame.

        `pixel_values` `(b, t, 3, S, S)`; `region_inputs` for the same b samples (None: no objects). Both may be on
        any device and in any float dtype: they are moved to the vision tower's.
        """
        inner = self.model
        b, t = pixel_values.shape[:2]
        if region_inputs is not None:
            if region_inputs.batch_size != b:
                raise ValueError(f"region inputs for {region_inputs.batch_size} samples but {b} videos")
            region_inputs = region_inputs.to(pixel_values.device)
        extra = [p for p in (region_inputs.extra_frames if region_inputs else []) if p.shape[0] > 0]
        frames = torch.cat([pixel_values.flatten(0, 1), *extra]) if extra else pixel_values.flatten(0, 1)
        features = inner.vision_tower(frames)  # (b*t + m, patches, C)
        video_tokens = inner.mm_projector(features[: b * t].reshape(b, t, *features.shape[1:]))
        object_tokens, counts, pooled_all, merged_all = [], [], [], []
        grid = inner.vision_tower.grid_size
        n_extra = [p.shape[0] for p in region_inputs.extra_frames] if region_inputs else [0] * b
        extra_start = [b * t + sum(n_extra[:i]) for i in range(b)]  # row of sample i's first extra frame
        for i in range(b):  # samples, not objects: each sample's objects are pooled and merged at once
            if region_inputs is None or region_inputs.masks[i].shape[0] == 0:
                object_tokens.append(video_tokens.new_zeros((0, video_tokens.shape[-1])))
                counts.append(torch.zeros(0, dtype=torch.long, device=video_tokens.device))
                continue
            local = region_inputs.mask_frames[i].to(features.device)
            rows = torch.where(local < t, i * t + local, extra_start[i] + local - t)
            grids = features[rows].reshape(-1, grid, grid, features.shape[-1])  # (k, h, w, C)
            masks = region_inputs.masks[i].to(features.device)
            pooled, merged, per_object = inner.region_encoder.pool_and_merge(
                grids, masks, region_inputs.masks_per_object[i]
            )
            object_tokens.append(inner.region_encoder.project(merged))
            counts.append(per_object)
            pooled_all.append(pooled)
            merged_all.append(merged)
        return VisualFeatures(video_tokens, object_tokens, counts, features, pooled_all, merged_all)


class VideoReferQwen2ForCausalLM(SplicedCausalLMMixin, V1VisualEncoding, Qwen2ForCausalLM):
    config_class = VideoReferQwen2Config
    _no_split_modules = ["Qwen2DecoderLayer", "VisionTower", "STCConnector", "ObjectEncoder"]
    # Quantisation leaves these in full precision: the vision side, the object encoder and the output layer.
    visual_keys = ("pixel_values", "region_inputs")  # forward / generate take these (base.SplicedCausalLMMixin)
    full_precision_modules = ["model.vision_tower", "model.mm_projector", "model.region_encoder", "lm_head"]
    # Named parts that training stages freeze or train (train.train reads these, never the family's name).
    module_groups = {"vision": "model.vision_tower", "connector": "model.mm_projector",
                     "region_encoder": "model.region_encoder"}
    # The config key naming the vision tower (a Hub id, or a folder next to the weights in the tiny layout).
    vision_folder_key = "mm_vision_tower"

    def __init__(self, config: VideoReferQwen2Config):
        init_causal_lm(self, config, lambda: VideoReferQwen2Model(config))  # not Qwen2ForCausalLM's: no plain Qwen2Model

    # ------------------------------------------------------------------ loading
    resolve_checkpoint_config = staticmethod(resolve_vision_config)  # the tower's settings, from its folder or id

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load an official or a saved checkpoint, every tensor included (the vision tower's too)."""
        config = cls.checkpoint_config(pretrained_model_name_or_path, config, kwargs)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)

    @property
    def region_token_index(self) -> int:
        """Id of `<region>` (see `VideoReferQwen2Config.region_id`)."""
        return self.config.region_id

    # ------------------------------------------------------------------ splicing
    def splice_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        visual: VisualFeatures,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Replace the video placeholder and `<region>` tokens by visual tokens.

        Returns `inputs_embeds (b, L', d)`, `attention_mask (b, L')`, `position_ids (b, L')`, `labels (b, L')`.
        """
        region_id = self.region_token_index
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embed = self.get_input_embeddings()
        text_embeds = embed(input_ids.clamp(min=0))  # placeholders embedded as id 0, then replaced
        rows, masks, label_rows = [], [], []
        for i in range(input_ids.shape[0]):
            ids = input_ids[i]
            is_video = ids == VIDEO_TOKEN_INDEX
            is_region = ids == region_id
            n_video, n_region = int(is_video.sum()), int(is_region.sum())
            counts = visual.tokens_per_object[i].to(ids.device)
            if n_video != 1:
                raise ValueError(f"sample {i} has {n_video} video placeholders in its input ids; exactly 1 is needed")
            if n_region != counts.numel():
                raise ValueError(
                    f"sample {i} has {n_region} <region> tokens but {counts.numel()} objects: each object needs one"
                )
            video = visual.video_tokens[i]
            objects = visual.object_tokens[i]
            L = ids.shape[0]
            lengths = torch.ones_like(ids)
            lengths[is_video] = video.shape[0]
            lengths[is_region] = counts
            # Row of `sources` where each input position's block starts.
            base = torch.arange(L, device=ids.device)
            base[is_video] = L
            base[is_region] = L + video.shape[0] + torch.cumsum(counts, 0) - counts
            block_start = torch.cumsum(lengths, 0) - lengths
            total = int(lengths.sum())
            index = torch.repeat_interleave(base, lengths, output_size=total)
            index += torch.arange(total, device=ids.device) - torch.repeat_interleave(block_start, lengths, output_size=total)
            sources = torch.cat([text_embeds[i], video.to(text_embeds.dtype), objects.to(text_embeds.dtype)])
            rows.append(sources[index])
            masks.append(torch.repeat_interleave(attention_mask[i], lengths, output_size=total))
            if labels is not None:
                special = torch.repeat_interleave(is_video | is_region, lengths, output_size=total)
                spread = torch.repeat_interleave(labels[i], lengths, output_size=total)
                label_rows.append(spread.masked_fill(special, IGNORE_LABEL))
        longest = max(r.shape[0] for r in rows)

        def pad(x: torch.Tensor, value) -> torch.Tensor:
            shape = (longest - x.shape[0], *x.shape[1:])
            filler = x.new_full(shape, value)
            return torch.cat([filler, x] if padding_side == "left" else [x, filler])

        inputs_embeds = torch.stack([pad(r, 0) for r in rows])
        attention = torch.stack([pad(m, 0) for m in masks])
        position_ids = (attention.long().cumsum(-1) - 1).clamp(min=0)
        spliced_labels = torch.stack([pad(l, IGNORE_LABEL) for l in label_rows]) if labels is not None else None
        return inputs_embeds, attention, position_ids, spliced_labels
