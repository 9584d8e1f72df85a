"""VideoRefer-VL3: NaViT SigLIP encoder + MLP projector + frame pruning + region encoder + Qwen2, as a causal LM.

Module names follow the official checkpoints (`model.vision_encoder.vision_encoder.vision_model.*`,
`model.mm_projector.readout.{0,2}`, `model.region_encoder.feat_linear.{0,2}`), so their weights load as they are:
no key is renamed.

Visual inputs (all produced by the VL3 processor; a batch is the concatenation of its samples):
* `pixel_values (P, 3*14*14)`: every frame / image patch, frames in the processor's 2x2-grouped order;
* `grid_thw (F, 3)` per frame/image; `merge_sizes (F,)` long (2 for a video frame, 1 for an image);
* `frames_per_sample (b,)` long;
* `region_inputs`: a `RegionInputs` subclass with `pixel_values (M, 588)` (every crop's patches, raster order),
  `grid_thw (K, 3)` per crop, `mask_grids` (K uint8 `(h_k, w_k)` masks on the crops' patch grids),
  `masks_per_sample (b,)` long and `masks_per_object` (per sample `(o_i,)`).
`input_ids (b, L)` hold one `<image>` per merged video token (before pruning) and one `<REGION>` per region token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2ForCausalLM, Qwen2Model

from ...compat.qwen2 import init_causal_lm
from ..base import SplicedCausalLMMixin
from ...prompts import IGNORE_LABEL
from .configuration import VideoReferVL3Config, resolve_token_ids, resolve_vision_config
from .frame_pruning import frame_pruning
from .region_encoder import RegionEncoder, mask_cell_features, pool_region_tokens
from .vision import VisionEncoder, build_projector, spatial_downsample

__all__ = [
    "VideoReferVL3Model", "VideoReferVL3ForCausalLM", "VL3VisualEncoding", "VL3VisualFeatures", "greedy_generation_config",
]

VISUAL_KEYS = ("pixel_values", "grid_thw", "merge_sizes", "frames_per_sample", "region_inputs")


@dataclass
class VL3VisualFeatures:
    """What the vision side contributes to one batch: reusable across questions about the same video and regions."""

    video_tokens: torch.Tensor  # (n_tokens, D): every merged frame token of the batch, before pruning
    token_keep: torch.Tensor  # (n_tokens,) bool: survives frame pruning
    video_tokens_per_sample: torch.Tensor  # (b,) long, before pruning
    region_tokens: torch.Tensor  # (R, D): every mask's tokens, mask after mask
    region_tokens_per_mask: torch.Tensor  # (K,) long
    region_tokens_per_sample: torch.Tensor  # (b,) long
    # Intermediates for tests and the parity tool (filled only with `encode_visual(..., return_intermediates=True)`:
    # the encoder features of every frame would otherwise stay alive as long as these features are reused).
    extras: dict[str, Any] = field(default_factory=dict)


def greedy_generation_config(generation_config: GenerationConfig, config: VideoReferVL3Config) -> GenerationConfig:
    """The official inference settings on top of a checkpoint's generation config: greedy, its repetition penalty
    kept, eos = its eos ids (`<|im_end|>`, `<|endoftext|>`)."""
    generation_config.do_sample = False
    generation_config.temperature = None
    generation_config.top_p = None
    generation_config.top_k = None
    if generation_config.eos_token_id is None:
        generation_config.eos_token_id = config.eos_token_id
    if generation_config.pad_token_id is None:
        eos = generation_config.eos_token_id
        generation_config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return generation_config


class VideoReferVL3Model(Qwen2Model):
    config_class = VideoReferVL3Config

    def __init__(self, config: VideoReferVL3Config):
        super().__init__(config)
        self.vision_encoder = VisionEncoder(config)
        self.mm_projector = build_projector(config)
        self.region_encoder = RegionEncoder(config.vision_config.hidden_size, config.hidden_size)
        self.post_init()


class VL3VisualEncoding:
    """VL3's vision side as a mixin: `encode_visual` on any module whose `model` holds `vision_encoder`,
    `mm_projector` and `region_encoder` and whose `config` has `hidden_size` (the causal LM here; the vLLM plugin's
    model, `videorefer.serving.vllm`, which runs these same modules beside vLLM's own Qwen2)."""

    def encode_visual(
        self,
        pixel_values: torch.Tensor | None = None,
        grid_thw: torch.Tensor | None = None,
        merge_sizes: torch.Tensor | None = None,
        frames_per_sample: torch.Tensor | None = None,
        region_inputs=None,
        kmeans_generator: torch.Generator | None = None,
        return_intermediates: bool = False,
    ) -> VL3VisualFeatures:
        """Video tokens with their pruning mask, and region tokens. All crops go through the encoder in one call.

        `kmeans_generator`: draws the k-means initial centroids, shared by all masks in order (as the official global
        RNG); by default each sample uses a generator with a fixed seed, so results are deterministic.
        """
        inner = self.model
        encoder = inner.vision_encoder
        extras: dict[str, Any] = {}
        device = encoder.model.embeddings.patch_embedding.weight.device
        batch = self._batch_size(frames_per_sample, region_inputs)
        if pixel_values is not None:
            if grid_thw is None or merge_sizes is None or frames_per_sample is None:
                raise ValueError("pixel_values need grid_thw, merge_sizes and frames_per_sample")
            pixel_values = pixel_values.to(device, encoder.dtype)
            grid_thw, merge_sizes = grid_thw.to(device), merge_sizes.to(device)
            frames_per_sample = frames_per_sample.to(device)
            if grid_thw.shape[0] != merge_sizes.shape[0]:
                raise ValueError(f"{grid_thw.shape[0]} grids but {merge_sizes.shape[0]} merge sizes")
            features = encoder(pixel_values, grid_thw, merge_sizes)  # (P, C)
            downsampled = spatial_downsample(features, grid_thw, merge_sizes)  # (n_tokens, C)
            video_tokens = inner.mm_projector(downsampled)
            pruning = frame_pruning(pixel_values, grid_thw, merge_sizes, frames_per_sample)
            tokens_per_frame = grid_thw.prod(-1) // merge_sizes**2
            sample_of_frame = torch.repeat_interleave(torch.arange(batch, device=device), frames_per_sample)
            per_sample = torch.zeros(batch, dtype=torch.long, device=device)
            per_sample.index_add_(0, sample_of_frame, tokens_per_frame)
            extras.update(vision_features=features, downsampled=downsampled, pixel_difference=pruning.difference)
            keep = pruning.keep
        else:
            video_tokens = torch.zeros((0, self.config.hidden_size), device=device, dtype=encoder.dtype)
            keep = torch.zeros(0, dtype=torch.bool, device=device)
            per_sample = torch.zeros(batch, dtype=torch.long, device=device)
        regions, per_mask, regions_per_sample = self._encode_regions(region_inputs, batch, kmeans_generator, extras)
        return VL3VisualFeatures(
            video_tokens, keep, per_sample, regions, per_mask, regions_per_sample, extras if return_intermediates else {}
        )

    @staticmethod
    def _batch_size(frames_per_sample, region_inputs) -> int:
        if frames_per_sample is not None:
            return int(frames_per_sample.numel())
        if region_inputs is not None:
            return region_inputs.batch_size
        raise ValueError("no visual input: give pixel_values (with frames_per_sample) or region_inputs")

    def _encode_regions(self, region_inputs, batch: int, generator, extras: dict):
        inner = self.model
        encoder = inner.vision_encoder
        device = encoder.model.embeddings.patch_embedding.weight.device
        dtype = encoder.dtype
        if region_inputs is None or len(region_inputs.mask_grids) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return (
                torch.zeros((0, self.config.hidden_size), device=device, dtype=dtype),
                empty,
                torch.zeros(batch, dtype=torch.long, device=device),
            )
        masks_per_sample = region_inputs.masks_per_sample.to(device)
        if masks_per_sample.numel() != batch:
            raise ValueError(f"region inputs describe {masks_per_sample.numel()} samples, the batch has {batch}")
        n_masks = len(region_inputs.mask_grids)
        if int(masks_per_sample.sum()) != n_masks:
            raise ValueError(f"masks_per_sample {masks_per_sample.tolist()} adds up to {int(masks_per_sample.sum())}, "
                             f"but there are {n_masks} mask grids")
        grid_thw = region_inputs.grid_thw.to(device)
        crop_pixels = region_inputs.pixel_values.to(device, dtype)
        # One encoder call for every crop of the batch; each crop is its own attention segment, raster order.
        crop_features = encoder(crop_pixels, grid_thw, torch.ones(n_masks, dtype=torch.long, device=device))
        mask_sample = torch.repeat_interleave(torch.arange(batch, device=device), masks_per_sample)
        cells, counts = mask_cell_features(
            crop_features, grid_thw, list(region_inputs.mask_grids), lambda k: self._describe_mask(region_inputs, k)
        )
        pooled, per_mask, kmeans_inputs, kmeans_init = pool_region_tokens(
            cells, counts, generator=generator, mask_sample=mask_sample
        )
        region_tokens = inner.region_encoder(pooled.to(dtype))
        per_sample = torch.zeros(batch, dtype=torch.long, device=device).index_add_(0, mask_sample, per_mask)
        extras.update(crop_features=crop_features, kmeans_inputs=kmeans_inputs, kmeans_init=kmeans_init, pooled=pooled)
        return region_tokens, per_mask, per_sample

    @staticmethod
    def _describe_mask(region_inputs, k: int) -> str:
        """'mask j of object o in sample i' for the k-th mask of the batch (error messages only)."""
        sample_counts = region_inputs.masks_per_sample.tolist()
        for sample, count in enumerate(sample_counts):
            if k < count:
                per_object = region_inputs.masks_per_object[sample].tolist()
                for obj, masks in enumerate(per_object):
                    if k < masks:
                        return f"mask {k} of object {obj} in sample {sample}"
                    k -= masks
                return f"mask {k} in sample {sample}"
            k -= count
        return f"mask {k}"


class VideoReferVL3ForCausalLM(SplicedCausalLMMixin, VL3VisualEncoding, Qwen2ForCausalLM):
    config_class = VideoReferVL3Config
    _no_split_modules = ["Qwen2DecoderLayer", "VideoLlama3VisionEncoderLayer"]
    # Quantisation leaves these in full precision: the vision side, the region encoder and the output layer.
    full_precision_modules = ["model.vision_encoder", "model.mm_projector", "model.region_encoder", "lm_head"]
    # Named parts that training stages freeze or train (train.train reads these, never the family's name).
    module_groups = {"vision": "model.vision_encoder", "connector": "model.mm_projector",
                     "region_encoder": "model.region_encoder"}
    # The config key naming the vision encoder (a folder next to the weights in the tiny and official layouts).
    vision_folder_key = "vision_encoder"
    visual_keys = VISUAL_KEYS
    visual_options = ("kmeans_generator",)

    def __init__(self, config: VideoReferVL3Config):
        init_causal_lm(self, config, lambda: VideoReferVL3Model(config))  # not Qwen2ForCausalLM's: no plain Qwen2Model

    # ------------------------------------------------------------------ loading
    @staticmethod
    def resolve_checkpoint_config(config: VideoReferVL3Config, path) -> None:
        """The encoder's settings (its folder or the published id) and the `<image>` / `<REGION>` ids."""
        resolve_vision_config(config, path)
        resolve_token_ids(config, path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Load an official or a saved checkpoint; generation defaults become the official greedy settings."""
        config = cls.checkpoint_config(pretrained_model_name_or_path, config, kwargs)
        if kwargs.get("attn_implementation") is None and _flash_attention_fits(kwargs.get("dtype")):
            kwargs["attn_implementation"] = "flash_attention_2"
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        greedy_generation_config(model.generation_config, model.config)
        return model

    def _token_id(self, name: str) -> int:
        value = getattr(self.config, name)
        if value is None:
            raise ValueError(f"config.{name} is not set: set it from the tokenizer before running the model")
        return int(value)

    # ------------------------------------------------------------------ splicing
    def splice_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        visual: VL3VisualFeatures,
        labels: torch.Tensor | None = None,
        padding_side: str = "right",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Drop pruned `<image>` positions, then put video tokens on the remaining `<image>` positions and region
        tokens on the `<REGION>` positions, in order.

        Returns `inputs_embeds (b, L', d)`, `attention_mask (b, L')`, `position_ids (b, L')` (plain 1-D positions
        over the pruned sequence) and `labels (b, L')` (`IGNORE_LABEL` on visual positions and padding).
        """
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device)
        attention_mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(device)
        labels = labels.to(device) if labels is not None else None
        is_image = input_ids == self._token_id("image_token_index")
        is_region = input_ids == self._token_id("region_token_index")
        for kind, found, expected in (
            ("<image>", is_image.sum(1), visual.video_tokens_per_sample.to(device)),
            ("<REGION>", is_region.sum(1), visual.region_tokens_per_sample.to(device)),
        ):
            if found.shape != expected.shape:
                raise ValueError(
                    f"the visual inputs describe {expected.numel()} samples, input_ids has {found.numel()}"
                )
            bad = torch.nonzero(found != expected)[:, 0].tolist()
            if bad:
                i = bad[0]
                raise ValueError(
                    f"sample {i} has {int(found[i])} {kind} tokens in its input ids but its visual inputs give "
                    f"{int(expected[i])} {'video' if kind == '<image>' else 'region'} tokens"
                )
        embeds = self.get_input_embeddings()(input_ids.masked_fill(is_image | is_region, 0))
        embeds = embeds.clone()
        # The vision side may sit on another device than the embeddings (device_map="auto").
        embeds[is_image] = visual.video_tokens.to(embeds.device, embeds.dtype)
        embeds[is_region] = visual.region_tokens.to(embeds.device, embeds.dtype)
        keep = ~is_image
        keep[is_image] = visual.token_keep.to(device)
        lengths = keep.sum(1)
        longest = int(lengths.max())
        shift = (longest - lengths)[:, None] if padding_side == "left" else torch.zeros_like(lengths)[:, None]
        column = (torch.cumsum(keep.long(), 1) - 1 + shift)[keep]
        row = torch.arange(input_ids.shape[0], device=device)[:, None].expand_as(keep)[keep]
        inputs_embeds = embeds.new_zeros((input_ids.shape[0], longest, embeds.shape[-1]))
        inputs_embeds[row, column] = embeds[keep]
        attention = attention_mask.new_zeros((input_ids.shape[0], longest))
        attention[row, column] = attention_mask[keep]
        position_ids = (attention.long().cumsum(-1) - 1).clamp(min=0)
        spliced_labels = None
        if labels is not None:
            spliced_labels = labels.new_full((input_ids.shape[0], longest), IGNORE_LABEL)
            spliced_labels[row, column] = labels.masked_fill(is_image | is_region, IGNORE_LABEL)[keep]
        return inputs_embeds, attention, position_ids, spliced_labels


def _flash_attention_fits(dtype) -> bool:
    """Flash-attention by default when it is installed with a CUDA device and the weights are half precision (the
    official models' setting); otherwise transformers' default (SDPA) applies. An explicit `attn_implementation`
    always wins."""
    if dtype not in (torch.float16, torch.bfloat16, "float16", "bfloat16"):
        return False
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available()


AutoModelForCausalLM.register(VideoReferVL3Config, VideoReferVL3ForCausalLM, exist_ok=True)
