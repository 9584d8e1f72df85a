"""A tiny, randomly initialised VideoRefer-VL3 model and tokenizer, built in code (no download).

`build_tiny_vl3(folder)` writes the official VL3 checkpoint layout (as `tests/fixtures/official-vl3-tiny` was written
by the official code): `config.json` (`model_type` `videollama3_qwen2`) naming its vision encoder by a relative folder,
that folder with its `config.json`, `preprocessor_config.json` and `model.safetensors` (`vision_model.*` keys),
`model.safetensors` with the official key names, a Qwen2.5-style `generation_config.json`, and a Qwen2.5-style
tokenizer with `<image>` and `<REGION>` added as the official training code adds them. Tests and offline use load it
through `from_pretrained`, the path users hit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, VideoLlama3VisionConfig

from ..models.videorefer_vl3.configuration import (
    KNOWN_ENCODER_PREPROCESSORS,
    KNOWN_VISION_ENCODERS,
    VL3_IMAGE_TOKEN,
    VL3_REGION_TOKEN,
    VideoReferVL3Config,
)
from ..models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM

__all__ = ["build_tiny_vl3", "build_tiny_vl3_tokenizer", "tiny_vl3_config", "videorefer_vl3_config", "TINY_VL3_ENCODER"]

TINY_VL3_ENCODER = "tiny-vl3-siglip-navit"
# Qwen2.5's 22 special tokens in their order (the first three are the ones prompts use).
QWEN25_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
# Added by the official VL3 training code, in this order, after the Qwen2.5 specials.
VL3_ADDED_TOKENS = [VL3_IMAGE_TOKEN, "<|stream_start|>", "<|stream_end|>", VL3_REGION_TOKEN]
# ChatML without a default system message (VL3 prompts have none); the processor renders the video part itself.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = [
    "There are 2 objects in the video: <object0>, <object1>. What is the relationship between <object0> and <object1>?",
    "Please give a detailed description of the highlighted object in the video.",
    "Time 0.3s: Time 1.3s: Time 2.5s: 0123456789",
    "What colour is it? red green blue yellow white black. Which way does it move? left right up down",
    "The object is a person riding a bike across the street while a dog runs beside it.",
]


def build_tiny_vl3_tokenizer(regular_tokens: int = 384) -> PreTrainedTokenizerFast:
    """A byte-level BPE (`regular_tokens` ids), then Qwen2.5's 22 specials, then `<image>`, `<|stream_start|>`,
    `<|stream_end|>`, `<REGION>` (so `<REGION>` is the last id, as in the official checkpoints)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=regular_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer)
    # Added in id order. Qwen2.5 marks `<tool_call>` ... `<|file_sep|>` as not special; all stay whole tokens.
    wrapped.add_tokens(QWEN25_SPECIAL_TOKENS[:14], special_tokens=True)
    wrapped.add_tokens(QWEN25_SPECIAL_TOKENS[14:], special_tokens=False)
    wrapped.add_tokens(VL3_ADDED_TOKENS, special_tokens=True)
    wrapped.add_special_tokens(
        {
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": [*QWEN25_SPECIAL_TOKENS[1:14], *VL3_ADDED_TOKENS],
        }
    )
    wrapped.chat_template = CHAT_TEMPLATE
    wrapped.padding_side = "right"
    return wrapped


def tiny_vl3_config(vocab_size: int, **overrides) -> VideoReferVL3Config:
    """VL3's architecture at toy sizes (the official fixture's sizes by default)."""
    vision = VideoLlama3VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )
    settings = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=False, vision_encoder=TINY_VL3_ENCODER, mm_hidden_size=vision.hidden_size,
        spatial_merge_size=2, mm_max_length=10240, vision_config=vision,
    )
    settings.update(overrides)
    return VideoReferVL3Config(**settings)


def build_tiny_vl3(folder: str | os.PathLike, seed: int = 0, repetition_penalty: float = 1.05, **config_overrides) -> Path:
    """Write a random tiny VL3 checkpoint in the official layout to `folder` and return its path."""
    folder = Path(folder)
    tokenizer = build_tiny_vl3_tokenizer()
    config = tiny_vl3_config(len(tokenizer), **config_overrides)
    config.image_token_index = tokenizer.convert_tokens_to_ids(VL3_IMAGE_TOKEN)
    config.region_token_index = tokenizer.convert_tokens_to_ids(VL3_REGION_TOKEN)
    endoftext = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config.bos_token_id = endoftext
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VideoReferVL3ForCausalLM(config)
    # Random biases and norm weights (the default init leaves them at 0 / 1), so a dropped one changes outputs.
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
            elif "norm" in name:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    # Official layout: config.json names the encoder folder; that folder holds the encoder's own files.
    saved = json.loads((folder / "config.json").read_text())
    vision = saved.pop("vision_config")
    saved["architectures"] = ["Videollama3Qwen2ForCausalLM"]
    saved["mm_vision_encoder"] = TINY_VL3_ENCODER
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    encoder = folder / TINY_VL3_ENCODER
    encoder.mkdir(exist_ok=True)
    encoder_config = {key: vision[key] for key in KNOWN_VISION_ENCODERS["DAMO-NLP-SG/VL3-SigLIP-NaViT"]}
    encoder_config.update(model_type="damovl", architectures=["DAMOVLVisionModel"], spatial_merge_size=2)
    (encoder / "config.json").write_text(json.dumps(encoder_config, indent=2))
    preprocessor = dict(KNOWN_ENCODER_PREPROCESSORS["DAMO-NLP-SG/VL3-SigLIP-NaViT"], image_processor_type="DAMOVLImageProcessor")
    (encoder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    prefix = "model.vision_encoder.vision_encoder."
    weights = {k[len(prefix):]: v.contiguous() for k, v in model.state_dict().items() if k.startswith(prefix)}
    save_file(weights, encoder / "model.safetensors", metadata={"format": "pt"})
    generation = dict(
        bos_token_id=endoftext, pad_token_id=endoftext, eos_token_id=[tokenizer.eos_token_id, endoftext],
        do_sample=True, repetition_penalty=repetition_penalty, temperature=0.7, top_k=20, top_p=0.8,
    )
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder


def videorefer_vl3_config(size: str = "7b", **overrides) -> VideoReferVL3Config:
    """The published VideoRefer-VL3-7B / -2B configurations (Qwen2.5-7B / 1.5B + VL3-SigLIP-NaViT), for shape checks
    and speed benchmarks. Vocabulary 151669 = Qwen2.5's tokens + VideoLLaMA3's three + `<REGION>`."""
    from ..models.videorefer_vl3.configuration import resolve_vision_config

    llm = {
        "7b": dict(hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4,
                   tie_word_embeddings=False),
        "2b": dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12, num_key_value_heads=2,
                   tie_word_embeddings=True),
    }
    if size not in llm:
        raise ValueError(f"size must be one of {sorted(llm)}, got {size!r}")
    settings = dict(
        vocab_size=151669, num_hidden_layers=28, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        vision_encoder="DAMO-NLP-SG/VL3-SigLIP-NaViT", mm_hidden_size=1152, spatial_merge_size=2, mm_max_length=10240,
        image_token_index=151665, region_token_index=151668, **llm[size],
    )
    settings.update(overrides)
    config = VideoReferVL3Config(**settings)
    resolve_vision_config(config)
    return config
