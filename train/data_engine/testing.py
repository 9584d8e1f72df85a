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
from videorefer.testing.tiny_grounding_dino import build_tiny_grounding_dino  # re-exported: it moved there

__all__ = ["build_tiny_grounding_dino", "build_tiny_vlm", "scripted_server", "Reply"]

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
