"""A minimal OpenAI-compatible chat client (`POST {url}/chat/completions`) shared by the project's LLM callers.

One call returns the reply text or raises
`ChatError`, whose `retryable` says whether another attempt may help (timeouts, connection errors, 408/409/429/5xx,
malformed bodies) or not (other 4xx: a bad key, an unknown model). Retrying and validating replies is the caller's job,
because only the caller knows what a usable reply is (`bench.judge.JudgeClient` and the data engine's backends do).

Messages use OpenAI's format; images go as data URLs (`image_data_url`). The API key is read from an environment
variable named in the config (never stored in config files).
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

__all__ = ["ChatClient", "ChatError", "image_data_url"]


class ChatError(Exception):
    """A chat call failed; `retryable` says whether another attempt may succeed."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


def image_data_url(image: Any, fmt: str = "JPEG", quality: int = 90) -> str:
    """An RGB image (uint8 (H, W, 3) array or PIL image) as a `data:image/...;base64,...` URL."""
    from PIL import Image

    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    kwargs = {"quality": quality} if fmt.upper() == "JPEG" else {}
    pil.convert("RGB").save(buffer, format=fmt, **kwargs)
    mime = "jpeg" if fmt.upper() in ("JPEG", "JPG") else fmt.lower()
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class ChatClient:
    """OpenAI-compatible chat endpoint (vLLM, TGI, llama.cpp, a hosted API).

    Args:
        url: base URL (`http://host:8000/v1`) or the full `/chat/completions` URL.
        model: the model name the server expects.
        api_key: sent as `Authorization: Bearer ...`; `api_key_env` names an environment variable to read it from.
        timeout: seconds per request.
        params: extra body fields (`temperature`, `max_tokens`, `response_format`, ...).
    """

    url: str
    model: str
    api_key: str | None = None
    api_key_env: str | None = None
    timeout: float = 60.0
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.url:
            raise ValueError("ChatClient needs a url (e.g. http://127.0.0.1:8000/v1)")
        if self.api_key is None and self.api_key_env:
            self.api_key = os.environ.get(self.api_key_env) or None
            if self.api_key is None:
                raise ValueError(f"the environment variable {self.api_key_env} (the API key) is not set")

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"

    def chat(self, messages: list[dict], **params: Any) -> str:
        """One request; the reply text. Raises `ChatError` (see the module docstring)."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, **self.params, **params}
        try:
            response = httpx.post(self.endpoint, json=body, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as err:
            raise ChatError(f"timeout after {self.timeout}s ({type(err).__name__})") from err
        except httpx.HTTPError as err:
            raise ChatError(f"connection error: {err}") from err
        if response.status_code != 200:
            # 408/429/5xx are transient; other 4xx (bad key, unknown model) will not improve by retrying.
            transient = response.status_code in (408, 409, 429) or response.status_code >= 500
            raise ChatError(f"HTTP {response.status_code}: {response.text[:200]}", retryable=transient)
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ChatError(f"malformed response body: {response.text[:200]!r}") from err
        if not isinstance(content, str):
            raise ChatError(f"the reply has no text content: {str(content)[:200]!r}")
        return content
