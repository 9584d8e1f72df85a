"""A tiny, randomly initialised VideoRefer model and tokenizer, built in code (no download).

`build_tiny_videorefer(folder)` writes the official checkpoint layout (as `tests/fixtures/official-tiny` was written by
the official code): `config.json` naming its vision tower by a relative folder, `model.safetensors` with every tensor,
the tokenizer files, and the tower's folder with its `config.json` and `preprocessor_config.json`. Tests, the demo's
`--tiny` mode and the synthetic training task then load it through `from_pretrained`, the path users hit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, SiglipVisionConfig

from ..models.videorefer_qwen2.configuration import REGION_TOKEN, VideoReferQwen2Config
from ..models.videorefer_qwen2.modeling import VideoReferQwen2ForCausalLM

__all__ = [
    "build_tiny_tokenizer", "tiny_config", "build_tiny_videorefer", "sincos_position_embeddings", "videorefer_7b_config",
    "TINY_VISION_FOLDER", "siglip_preprocessor_config",
]

TINY_VISION_FOLDER = "tiny-siglip-vision"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The Qwen2-Instruct ChatML template (adds the default system message), as the official tokenizer uses.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Words of the prompts used across the project (questions, the synthetic task's answers), so they tokenise compactly.
CORPUS = [
    "You are a helpful assistant.",
    "Please give a detailed description of the highlighted object in the video.",
    "There are two objects: <object0>, <object1>. What is the relationship between <object0> and <object1>?",
    "What colour is it? red green blue yellow white black purple orange",
    "What shape is it? circle square triangle. Which way does it move? left right up down",
    "Is it to the left of the other? yes no. Which is further left, first or second?",
    "Answer with the option's letter from the given choices directly. (A) (B) (C) (D)",
    "The object is a person riding a bike across the street while a dog runs beside it.",
]


def build_tiny_tokenizer(vocab_size: int = 420) -> PreTrainedTokenizerFast:
    """A byte-level BPE with Qwen2's special tokens and `<region>` added last (ids: vocab, vocab+1, ...)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS) - 1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    wrapped.add_special_tokens({"additional_special_tokens": [*SPECIAL_TOKENS[1:], REGION_TOKEN]})
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def tiny_config(vocab_size: int, image_size: int = 56, patch_size: int = 14, num_frames: int = 8, **overrides) -> VideoReferQwen2Config:
    """VideoRefer-7B's architecture at toy sizes (the official fixture's sizes by default)."""
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch_size, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )
    settings = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=False, mm_vision_tower=TINY_VISION_FOLDER, mm_hidden_size=vision.hidden_size,
        num_frames=num_frames, vision_config=vision,
    )
    settings.update(overrides)
    return VideoReferQwen2Config(**settings)


def sincos_position_embeddings(grid: int, dim: int) -> torch.Tensor:
    """2-D sine/cosine position embeddings `(grid * grid, dim)` (row-major patches), scaled to unit std.

    A pretrained SigLIP's learned position embeddings vary smoothly with the patch position; random ones do not, so a
    random tiny tower's features hardly tell where an object is. These give a random tower that smoothness.
    """
    if dim % 4:
        raise ValueError(f"the vision hidden size must be a multiple of 4 for 2-D sin/cos embeddings, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    quarter = dim // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter) / quarter))  # (dim/4,)
    angles_x = xs.flatten()[:, None] * frequencies  # (patches, dim/4)
    angles_y = ys.flatten()[:, None] * frequencies
    table = torch.cat([angles_x.sin(), angles_x.cos(), angles_y.sin(), angles_y.cos()], dim=1)
    return table / table.std()


def build_tiny_videorefer(
    folder: str | os.PathLike, seed: int = 0, image_size: int = 56, num_frames: int = 8,
    smooth_positions: bool = False, **config_overrides
) -> Path:
    """Write a random tiny VideoRefer checkpoint in the official layout to `folder` and return its path.

    `smooth_positions` replaces the tower's random position embeddings by `sincos_position_embeddings` (the
    synthetic training task needs to know where objects are); `config_overrides` go to `tiny_config`.
    """
    folder = Path(folder)
    tokenizer = build_tiny_tokenizer()
    vocab = len(tokenizer)
    config = tiny_config(vocab, image_size=image_size, num_frames=num_frames, **config_overrides)
    config.bos_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    model = VideoReferQwen2ForCausalLM(config)
    if smooth_positions:
        tower = model.model.vision_tower
        embedding = tower.vision_tower.vision_model.embeddings.position_embedding
        grid = tower.grid_size
        with torch.no_grad():
            embedding.weight.copy_(sincos_position_embeddings(grid, config.vision_config.hidden_size))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    # Official layout: config.json names the tower by a folder; the tower folder holds its own configs.
    tower = folder / TINY_VISION_FOLDER
    tower.mkdir(exist_ok=True)
    config.vision_config.save_pretrained(tower)
    # Official checkpoints hold the tokenizer only; num_frames comes from config.json and the image settings from the
    # tower's preprocessor_config.json (SigLIP's, as the tower's own repository has it).
    tokenizer.save_pretrained(folder)
    (tower / "preprocessor_config.json").write_text(json.dumps(siglip_preprocessor_config(image_size), indent=2))
    saved = json.loads((folder / "config.json").read_text())
    saved.pop("vision_config", None)
    (folder / "config.json").write_text(json.dumps(saved, indent=2))
    return folder


def siglip_preprocessor_config(image_size: int) -> dict:
    """A SigLIP tower's `preprocessor_config.json` (bicubic resize to a square, x/255, mean = std = 0.5)."""
    return {
        "image_processor_type": "SiglipImageProcessor", "do_resize": True,
        "size": {"height": image_size, "width": image_size}, "resample": 3, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
    }


def videorefer_7b_config(**overrides) -> VideoReferQwen2Config:
    """The published VideoRefer-7B configuration (Qwen2-7B + SigLIP so400m), for shape checks and speed benchmarks."""
    from ..models.videorefer_qwen2.vision import resolve_vision_config

    settings = dict(
        vocab_size=151647, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        tie_word_embeddings=False, mm_vision_tower="google/siglip-so400m-patch14-384", mm_hidden_size=1152,
        num_frames=16,
    )
    settings.update(overrides)
    config = VideoReferQwen2Config(**settings)
    resolve_vision_config(config)
    return config
