"""`RemoteEngine`: VideoRefer answered by a VideoRefer server (`python -m videorefer.serve`) over HTTP, behind the
same engine interface as the in-process ones, so that `VideoRefer`, the demo and the benchmarks never ask which one
they hold.

    from videorefer.engines.remote import connect
    vr = connect("http://gpu-box:8000")      # a VideoRefer whose answers come from the server
    vr.ask("cat.mp4", [{12: mask}], "What is <object0> doing?")

The caller's process decodes the video with the family's processor (downloaded from the server: the same frame
sampling as the server's) and sends the decoded frames losslessly, so an answer equals the one the server's engine
gives in its own process for the same request.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Sequence

from . import Request

__all__ = ["RemoteEngine", "connect"]


class RemoteEngine:
    """Requests go to the server; concurrent calls are concurrent requests (the server batches them)."""

    submit_size = 64  # requests a caller hands over at once

    def __init__(self, url: str, timeout: float = 600.0):
        from ..client import VideoReferClient

        self.client = VideoReferClient(url, timeout=timeout)
        self.url = self.client.url

    def _body(self, request: Request, stream: bool, generation: dict[str, Any]) -> dict[str, Any]:
        from ..serving.protocol import build_body

        settings = {k: v for k, v in generation.items() if k not in ("eos_token_id", "pad_token_id")}
        return build_body(request.video, request.objects, request.question, request.history, stream=stream,
                          **settings)

    def answer(self, requests: Sequence[Request], return_exceptions: bool = False, **generation: Any) -> list[Any]:
        """Every request's answer (sent concurrently); a refused request raises after the others finish, or stands
        in its place with `return_exceptions`."""

        def one(request: Request) -> Any:
            try:
                return self.client.chat(self._body(request, False, generation))["choices"][0]["message"]["content"]
            except Exception as error:  # noqa: BLE001 (handed back in the request's place)
                return error

        if len(requests) == 1:
            answers = [one(requests[0])]
        else:
            with ThreadPoolExecutor(min(len(requests), self.submit_size)) as pool:
                answers = list(pool.map(one, requests))
        errors = [a for a in answers if isinstance(a, Exception)]
        if errors and not return_exceptions:
            raise errors[0]
        return answers

    def stream(self, request: Request, stop_event: threading.Event | None = None, **generation: Any) -> Iterator[str]:
        yield from self.client.chat_stream(self._body(request, True, generation), stop_event)

    def close(self) -> None:
        pass


def load_processor(engine: RemoteEngine) -> Any:
    """The served family's processor, from the files the server hands out."""
    from ..families import family_for_checkpoint

    folder = tempfile.mkdtemp(prefix="videorefer-remote-processor-")
    with tarfile.open(fileobj=io.BytesIO(engine.client.processor_files()), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")
    return family_for_checkpoint(folder).processor_class.from_pretrained(folder)


def connect(url: str, timeout: float = 600.0) -> Any:
    """A `videorefer.VideoRefer` answering through the server at `url` (`family_name`: the served family's name)."""
    from ..api import VideoRefer

    engine = RemoteEngine(url, timeout=timeout)
    model = VideoRefer(None, load_processor(engine), engine=engine)
    model.family_name = engine.client.info()["family"]
    return model
