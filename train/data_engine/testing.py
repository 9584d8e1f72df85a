"""Test helpers: a tiny random Grounding DINO and a tiny random image-text-to-text chat model (LLaVA layout), built in
code, and a scripted OpenAI-compatible server on 127.0.0.1.

Nothing here downloads anything. The tiny detector's boxes are arbitrary (random weights); use `box_threshold: 0`
with it. The server answers `POST .../chat/completions` with whatever `reply(body)` returns, over real HTTP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

from videorefer.testing.http_server import serve

__all__ = ["build_tiny_grounding_dino", "build_tiny_vlm", "scripted_server", "Reply"]

BASE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "a", "the", "of", "in", "on", "and"]


IMAGE_TOKEN = "<image>"
# ChatML whose user content may mix text and image parts (an image becomes one <image>, expanded by the processor).
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_vlm(save_dir: str | os.PathLike, seed: int = 0, image_size: int = 28) -> str:
    """Write a random tiny `LlavaForConditionalGeneration` (SigLIP tower + Qwen2 LM) with its processor and chat
    template, loadable by `AutoModelForImageTextToText` / `AutoProcessor`, and return its path. Each image becomes
    `(image_size / 14)^2` image tokens."""
    import torch
    from transformers import (LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, Qwen2Config,
                              SiglipImageProcessor, SiglipVisionConfig)

    from videorefer.testing.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_tokens([IMAGE_TOKEN], special_tokens=True)
    tokenizer.chat_template = VLM_CHAT_TEMPLATE
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer,
        patch_size=14, vision_feature_select_strategy="full", num_additional_image_tokens=0,
        chat_template=VLM_CHAT_TEMPLATE, image_token=IMAGE_TOKEN,
    )
    config = LlavaConfig(
        vision_config=SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, image_size=image_size, patch_size=14),
        text_config=Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                num_attention_heads=2, num_key_value_heads=1),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    LlavaForConditionalGeneration(config).save_pretrained(save_dir)
    processor.save_pretrained(save_dir)
    return str(save_dir)


def build_tiny_grounding_dino(save_dir: str | os.PathLike, words: list[str] = (), seed: int = 0,
                              image_size: int = 98) -> str:
    """Write a random tiny `GroundingDinoForObjectDetection` + processor (WordPiece vocab of `words`) and return
    its path. Sizes follow transformers' own Grounding DINO unit tests."""
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
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size})
    save_dir = os.fspath(save_dir)
    model.save_pretrained(save_dir)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(save_dir)
    return save_dir


#: `reply(body) -> (status, payload)`: payload is the reply text for status 200 (wrapped in an OpenAI response) or
#: the raw body (bytes / dict) for other statuses. It may sleep to simulate a timeout.
Reply = Callable[[dict], tuple[int, object]]


@contextmanager
def scripted_server(reply: Reply) -> Iterator[str]:
    """Serve `reply` on 127.0.0.1 (a free port) in a background thread; yields the base URL `http://127.0.0.1:P/v1`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            status, payload = reply(body)
            if status == 200 and isinstance(payload, str):
                payload = {"id": "scripted", "object": "chat.completion", "model": body.get("model"),
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": payload}}]}
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield url
