"""A tiny, randomly initialised Grounding DINO for CPU tests and the demo's tiny mode (no downloads).

`build_tiny_grounding_dino(save_dir, words)` writes a `GroundingDinoForObjectDetection` with its
`GroundingDinoProcessor` (a WordPiece tokenizer over `words` plus a few function words), loadable with
`from_pretrained` exactly like the Hub's `IDEA-Research/grounding-dino-*` checkpoints. Sizes follow transformers' own
Grounding DINO unit tests. Its boxes are arbitrary (random weights) and its scores lie near 0.5: tests steer it with the threshold.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

BASE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "a", "the", "of", "in", "on", "and"]
# Words the demo's tiny mode knows (anything else becomes [UNK], which works too).
DEMO_WORDS = ["rabbit", "bunny", "rock", "butterfly", "tree", "person", "car", "dog", "cat", "square", "every",
              "white", "red", "blue", "unicorn"]
IMAGE_SIZE = 98  # pixels; the processor's shortest and longest edge


def build_tiny_grounding_dino(save_dir: str | os.PathLike, words: Sequence[str] = DEMO_WORDS, seed: int = 0,
                              image_size: int = IMAGE_SIZE) -> str:
    """Write a random tiny Grounding DINO (10 queries) + processor to `save_dir` and return its path."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import (BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    vocab = BASE_VOCAB + sorted({w.lower() for text in words for w in text.split()} - set(BASE_VOCAB))
    wordpiece = Tokenizer(WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    wordpiece.normalizer = BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = BertPreTokenizer()
    wordpiece.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                  special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    swin = SwinConfig(window_size=7, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      image_size=image_size, out_indices=[2, 3, 4])
    text = {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 8, "max_position_embeddings": 64, "vocab_size": len(vocab)}
    config = GroundingDinoConfig(
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=8, decoder_ffn_dim=8, num_queries=10, num_feature_levels=4, encoder_n_points=2,
        decoder_n_points=2, backbone_config=swin, max_text_len=32, text_config=text)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    with torch.no_grad():
        # Random weights give box scores that saturate at 0 or 1, so no threshold would tell boxes apart; shrinking the
        # decoder's last norm keeps every score near 0.5 (about 0.4-0.65), so "threshold 0" finds every query and a
        # threshold of 0.9 finds nothing, whatever the image.
        model.model.decoder.layer_norm.weight.mul_(0.05)
        model.model.decoder.layer_norm.bias.mul_(0.05)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size})
    save_dir = os.fspath(save_dir)
    model.save_pretrained(save_dir)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(save_dir)
    return save_dir
