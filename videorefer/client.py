"""A client of the VideoRefer server (`python -m videorefer.serve`): send a video and objects, get the answer or a
stream. Needs only httpx (no vLLM, no torch model).

    from videorefer.client import VideoReferClient
    client = VideoReferClient("http://127.0.0.1:8000")
    client.ask("cat.mp4", [{12: mask}], "What is <object0> doing?")          # the file's bytes are sent
    client.ask({"path": "cats/cat.mp4"}, regions_document, "What is <object0>?")  # a file under the server's media root
    for text in client.ask_stream("cat.mp4", [{12: mask}], "Describe <object0>."):
        print(text)                                                           # the answer so far

`objects`: a list of `{frame_index: (H, W) bool mask}` (object k is `<objectk>`) or a regions document (the file the
demo downloads). The body format is `videorefer.serving.protocol`'s.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator, Mapping, Sequence

import httpx

from .serving.protocol import INFO_ROUTE, PROCESSOR_ROUTE, ROUTE, build_body

__all__ = ["VideoReferClient", "RequestRefused", "ServerUnavailable"]


class RequestRefused(ValueError):
    """The server refused the request (HTTP 4xx): `status` and the server's message."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class ServerUnavailable(ConnectionError):
    """The server could not be reached, failed, or went away during an answer."""


class VideoReferClient:
    def __init__(self, url: str, timeout: float = 600.0, connect_timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)

    # ------------------------------------------------------------------ plumbing
    def _fail(self, error: Exception) -> ServerUnavailable:
        return ServerUnavailable(f"the VideoRefer server at {self.url} is not reachable or stopped answering "
                                 f"({type(error).__name__})")

    def _check(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300] or response.reason_phrase
        if response.status_code < 500:
            raise RequestRefused(message, response.status_code)
        raise ServerUnavailable(f"the VideoRefer server at {self.url} failed (HTTP {response.status_code}): {message}")

    def _get(self, route: str) -> httpx.Response:
        try:
            response = httpx.get(self.url + route, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise self._fail(error) from None
        self._check(response)
        return response

    # ------------------------------------------------------------------ questions
    def health(self) -> bool:
        """True when the server answers `/health` with 200."""
        try:
            return httpx.get(self.url + "/health", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False

    def info(self) -> dict[str, Any]:
        """The served model, its family and the server's limits."""
        return self._get(INFO_ROUTE).json()

    def processor_files(self) -> bytes:
        """The served family's processor files and config.json, as a .tar.gz (see `engines.remote`)."""
        return self._get(PROCESSOR_ROUTE).content

    def chat(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a request body (`serving.protocol`); the `chat.completion` answer."""
        try:
            response = httpx.post(self.url + ROUTE, json=dict(body, stream=False), timeout=self.timeout)
        except httpx.HTTPError as error:
            raise self._fail(error) from None
        self._check(response)
        return response.json()

    def chat_stream(self, body: Mapping[str, Any], stop_event: threading.Event | None = None) -> Iterator[str]:
        """POST a request body with streaming; yields the answer so far after each chunk. Setting `stop_event` ends
        the request (the server stops generating)."""
        text, done = "", False
        try:
            with httpx.stream("POST", self.url + ROUTE, json=dict(body, stream=True), timeout=self.timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    self._check(r)
                for line in r.iter_lines():
                    if stop_event is not None and stop_event.is_set():
                        return
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: "):]
                    if data == "[DONE]":
                        done = True
                        break
                    event = json.loads(data)
                    if "error" in event:
                        raise ServerUnavailable(f"the VideoRefer server at {self.url} failed during the answer: "
                                                f"{event['error'].get('message')}")
                    piece = event["choices"][0]["delta"].get("content") or ""
                    if piece:
                        text += piece
                        yield text
        except httpx.HTTPError as error:
            raise self._fail(error) from None
        if not done:
            raise ServerUnavailable(f"the VideoRefer server at {self.url} stopped in the middle of the answer")

    def ask(self, video: Any, objects: Sequence[Mapping] | Mapping, question: str,
            history: Sequence[tuple[str, str]] | None = None, **generation: Any) -> str:
        """The answer about `objects` in `video` (a path: its bytes are sent; a decoded `Video`; or a `video` field
        such as `{"path": ...}`); `generation`: `max_tokens`, `temperature`, ... (or the API's names)."""
        answer = self.chat(build_body(video, objects, question, history, **generation))
        return answer["choices"][0]["message"]["content"]

    def ask_stream(self, video: Any, objects: Sequence[Mapping] | Mapping, question: str,
                   history: Sequence[tuple[str, str]] | None = None, stop_event: threading.Event | None = None,
                   **generation: Any) -> Iterator[str]:
        """`ask`, yielding the answer as it grows."""
        yield from self.chat_stream(build_body(video, objects, question, history, stream=True, **generation),
                                    stop_event)
