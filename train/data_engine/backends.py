"""Chat backends for the agents: an OpenAI-compatible endpoint or a local transformers model.

Both take OpenAI-format messages (text parts and `image_url` parts holding data URLs) and answer a *batch* of
conversations with `chat_batch(conversations) -> [reply text | ChatError]`: the endpoint sends them concurrently
(`workers` threads), a local model generates them as one padded batch (text) or one by one (vision).
"""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from videorefer.data.chat_client import ChatClient, ChatError

from .config import BackendConfig

__all__ = ["ChatBackend", "EndpointBackend", "LocalBackend", "make_backend"]


class ChatBackend(Protocol):
    name: str

    def chat_batch(self, conversations: list[list[dict]]) -> list[str | ChatError]: ...


class EndpointBackend:
    """Any OpenAI-compatible chat endpoint; `workers` requests in flight at once."""

    def __init__(self, config: BackendConfig, workers: int = 4):
        params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": config.max_tokens, **config.extra}
        if config.json_mode:
            params["response_format"] = {"type": "json_object"}
        self.client = ChatClient(config.url or "", config.model, api_key_env=config.api_key_env,
                                 timeout=config.timeout, params=params)
        self.workers = max(1, workers)
        self.name = f"endpoint:{config.model}"

    def _one(self, messages: list[dict]) -> str | ChatError:
        try:
            return self.client.chat(messages)
        except ChatError as err:
            return err

    def chat_batch(self, conversations: list[list[dict]]) -> list[str | ChatError]:
        if len(conversations) <= 1 or self.workers == 1:
            return [self._one(m) for m in conversations]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(conversations))) as pool:
            return list(pool.map(self._one, conversations))


def _decode_data_url(url: str):
    from PIL import Image

    if not url.startswith("data:image/"):
        raise ValueError(f"local backends take images as data URLs only, got {url[:40]!r}")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _to_transformers(messages: list[dict], vision: bool) -> list[dict]:
    """OpenAI-format messages -> transformers chat-template messages (images as PIL for vision models)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            parts = [{"type": "text", "text": content}]
        else:
            parts = []
            for part in content:
                if part.get("type") == "text":
                    parts.append({"type": "text", "text": part["text"]})
                elif part.get("type") == "image_url":
                    if not vision:
                        raise ValueError("a text-only local model got an image; set vision: true for VLMs")
                    parts.append({"type": "image", "image": _decode_data_url(part["image_url"]["url"])})
        if not vision:  # text models take plain strings
            out.append({"role": message["role"], "content": "\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": message["role"], "content": parts})
    return out


class LocalBackend:
    """A local transformers chat model (any Hub id or folder), loaded on first use and guarded by a lock."""

    def __init__(self, config: BackendConfig):
        self.config = config
        self.name = f"local:{config.model}"
        self._lock = threading.Lock()
        self._model = None
        self._processor = None

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        cfg = self.config
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = getattr(torch, cfg.dtype) if cfg.dtype else (torch.bfloat16 if device.startswith("cuda") else
                                                             torch.float32)
        kwargs = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
        if cfg.vision:
            self._processor = AutoProcessor.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
            self._model = AutoModelForImageTextToText.from_pretrained(cfg.model, **kwargs).to(device).eval()
        else:
            self._processor = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
            self._processor.padding_side = "left"
            if self._processor.pad_token is None:
                self._processor.pad_token = self._processor.eos_token
            self._model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs).to(device).eval()

    def _generate(self, inputs: dict) -> list[str]:
        import torch

        cfg = self.config
        settings: dict[str, Any] = {"max_new_tokens": cfg.max_tokens}
        if cfg.temperature > 0:
            settings.update(do_sample=True, temperature=cfg.temperature)
        else:
            settings.update(do_sample=False)
        inputs = {k: v.to(self._model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        with torch.inference_mode():
            out = self._model.generate(**inputs, **settings)
        new = out[:, inputs["input_ids"].shape[1]:]
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        return [tokenizer.decode(row, skip_special_tokens=True) for row in new]

    def chat_batch(self, conversations: list[list[dict]]) -> list[str | ChatError]:
        vision = self.config.vision
        converted = [_to_transformers(m, vision) for m in conversations]  # bad requests fail before any loading
        with self._lock:
            if self._model is None:
                self._load()
            if vision:  # images of different sizes: one conversation at a time
                replies: list[str | ChatError] = []
                for messages in converted:
                    inputs = self._processor.apply_chat_template(
                        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
                    replies.extend(self._generate(dict(inputs)))
                return replies
            prompts = [self._processor.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                       for m in converted]
            inputs = self._processor(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            return list(self._generate(dict(inputs)))


def make_backend(config: BackendConfig, workers: int = 4) -> ChatBackend:
    """The backend a config block asks for."""
    return EndpointBackend(config, workers) if config.backend == "endpoint" else LocalBackend(config)
