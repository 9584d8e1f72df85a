"""Tiny, randomly initialised SAM 2.1 checkpoints for CPU tests (no downloads).

`build_tiny_sam2(save_dir)` writes a checkpoint in the layout of the Hub's `facebook/sam2.1-hiera-*` repositories: a
`Sam2VideoModel` (model_type `sam2_video`) plus a `Sam2VideoProcessor`, so that `Sam2VideoModel`, `Sam2Model` (which
ignores the memory weights), `Sam2VideoProcessor` and `Sam2Processor` all load it with `from_pretrained`, exactly the
path users hit with the real checkpoints. Sizes follow transformers' own SAM2 unit tests at 128 px; the memory modules
need `memory_encoder_output_channels == 64` and hidden sizes > 64 (see shared/README.md).
"""

from __future__ import annotations

import os

import torch

IMAGE_SIZE = 128  # pixels; the model's square input resolution


def tiny_sam2_config(seed_free: bool = True):
    """Return a tiny `Sam2VideoConfig` (hidden size 128, memory channels 64, 128 px input)."""
    from transformers import (
        Sam2HieraDetConfig,
        Sam2VideoConfig,
        Sam2VisionConfig,
    )
    from transformers.models.sam2_video.configuration_sam2_video import (
        Sam2VideoMaskDecoderConfig,
        Sam2VideoPromptEncoderConfig,
    )

    hidden = 128  # fpn / prompt / decoder / memory-attention width; must exceed the 64 memory channels
    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=IMAGE_SIZE,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        global_attention_blocks=[3],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],  # 128 px at strides 4 / 8 / 16
        fpn_hidden_size=hidden,
    )
    prompt = Sam2VideoPromptEncoderConfig(
        hidden_size=hidden, image_size=IMAGE_SIZE, patch_size=16, mask_input_channels=8
    )
    decoder = Sam2VideoMaskDecoderConfig(
        hidden_size=hidden, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=prompt,
        mask_decoder_config=decoder,
        image_size=IMAGE_SIZE,
        memory_attention_hidden_size=hidden,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=hidden,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64,
    )


def tiny_sam2_processor():
    """Return a `Sam2VideoProcessor` resizing to 128 px (low-res masks 32 px)."""
    from transformers import Sam2ImageProcessor, Sam2VideoProcessor, Sam2VideoVideoProcessor

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    mask_size = {"height": IMAGE_SIZE // 4, "width": IMAGE_SIZE // 4}
    return Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size=size, mask_size=mask_size),
        video_processor=Sam2VideoVideoProcessor(size=size),
        target_size=IMAGE_SIZE,
    )


def build_tiny_sam2(save_dir: str | os.PathLike, seed: int = 0) -> str:
    """Write a random tiny SAM 2.1 checkpoint (model + processor) to `save_dir` and return its path."""
    from transformers import Sam2VideoModel

    save_dir = os.fspath(save_dir)
    os.makedirs(save_dir, exist_ok=True)
    torch.manual_seed(seed)
    model = Sam2VideoModel(tiny_sam2_config()).eval()
    with torch.no_grad():
        # Random weights score "no object" about half the time, which blanks whole masks; a positive bias on the
        # object-score head makes the tiny model always answer "present", so tests see non-trivial masks.
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(10.0)
    model.save_pretrained(save_dir)
    tiny_sam2_processor().save_pretrained(save_dir)
    return save_dir
