"""The VideoRefer routes of the server: a vLLM endpoint plugin (entry point `vllm.endpoint_plugins`, loaded when
`VLLM_PLUGINS` names `videorefer`, as `python -m videorefer.serve` sets it) on vLLM's OpenAI-compatible server, whose
own routes (`/health`, `/metrics`, `/v1/models`, ...) stay.

Routes: `POST /v1/videorefer/chat/completions` (the request format: `serving.protocol`), `GET /v1/videorefer/info`,
`GET /v1/videorefer/processor`. Every request is checked before the engine sees it, with the demo's own checks
(`videorefer.demo.limits`: video kind, size, length, resolution; regions readable, object count, masks of the video's
size on its frames; question length and object tags); a refused request is a 4xx naming the problem and the server
goes on. Paths are read only under `--media-root`, URLs only under an `--allow-url` prefix. Tracebacks go to the
server log, never into a response.

Configuration (environment, set by `videorefer.serve`): `VIDEOREFER_MEDIA_ROOT`, `VIDEOREFER_ALLOW_URLS` (prefixes,
space separated), `VIDEOREFER_MAX_OBJECTS`, `VIDEOREFER_MAX_QUESTION_CHARS`, `VIDEOREFER_MAX_FILE_MB`,
`VIDEOREFER_MAX_SECONDS`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import logging
import os
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .protocol import INFO_ROUTE, PROCESSOR_ROUTE, ROUTE, RequestError, decode_frames, parse_request

logger = logging.getLogger("videorefer.server")

__all__ = ["VideoReferEndpoints", "ServerConfig"]


class ServerConfig:
    """What the server may read and how much a request may hold (from the environment)."""

    def __init__(self, env: dict[str, str] | None = None):
        from ..demo.limits import Limits

        env = dict(os.environ if env is None else env)
        base = Limits()
        root = env.get("VIDEOREFER_MEDIA_ROOT") or None
        self.media_root = Path(root).resolve() if root else None
        self.url_prefixes = tuple(env.get("VIDEOREFER_ALLOW_URLS", "").split())
        self.limits = Limits(
            max_objects=int(env.get("VIDEOREFER_MAX_OBJECTS", base.max_objects)),
            max_question_chars=int(env.get("VIDEOREFER_MAX_QUESTION_CHARS", base.max_question_chars)),
            max_file_mb=float(env.get("VIDEOREFER_MAX_FILE_MB", base.max_file_mb)),
            max_seconds=float(env.get("VIDEOREFER_MAX_SECONDS", base.max_seconds)),
        )

    @property
    def max_body_bytes(self) -> int:
        # a file as base64 (4/3) or decoded frames (npz, compressed), plus the regions and the conversation
        return int(self.limits.max_file_mb * 1e6 * 4 / 3) + 8 * 2**20


def _error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)


class VideoReferEndpoints:
    """The endpoint plugin (`vllm.endpoint_plugins` entry point `videorefer`)."""

    name = "videorefer"
    required_tasks = ("generate",)

    def attach_router(self, app: FastAPI) -> None:
        app.add_api_route(ROUTE, _chat, methods=["POST"])
        app.add_api_route(INFO_ROUTE, _info, methods=["GET"])
        app.add_api_route(PROCESSOR_ROUTE, _processor_files, methods=["GET"])

    async def init_state(self, engine_client: Any, state: Any, args: Any) -> None:
        state.videorefer = None if engine_client is None else await asyncio.to_thread(Served, engine_client, args)


class Served:
    """The served checkpoint: its family's processor (decoding and the prompt layout, as `VideoRefer` does them),
    generation defaults and the files a remote engine needs."""

    def __init__(self, engine_client: Any, args: Any):
        from ..api import VideoRefer
        from ..demo.limits import reserved_tokens
        from ..engines.vllm import generation_settings
        from ..families import family_for_checkpoint
        from .vllm.processing import embed_token_ids

        self.engine = engine_client
        self.config = ServerConfig()
        model = engine_client.model_config.model
        self.model_name = (getattr(args, "served_model_name", None) or [model])[0]
        family = family_for_checkpoint(model)
        processor = family.processor_class.from_pretrained(model)
        self.front = VideoRefer(None, processor)  # decoding, caches and region layout of the API
        self.reserved = reserved_tokens(processor.tokenizer)  # chat-template tokens a request may not forge
        self.family = family.name
        self.penalty, self.stop_token_ids = generation_settings(model, processor)
        self.placeholder_id = embed_token_ids(engine_client.model_config.hf_config)[0]
        self.processor_tar = _processor_tar(processor, model)

    @property
    def processor(self) -> Any:
        return self.front.processor

    def info(self) -> dict[str, Any]:
        limits = self.config.limits
        return {"model": self.model_name, "family": self.family, "media_root": self.config.media_root is not None,
                "url_prefixes": list(self.config.url_prefixes),
                "limits": {"max_objects": limits.max_objects, "max_question_chars": limits.max_question_chars,
                           "max_file_mb": limits.max_file_mb, "max_seconds": limits.max_seconds}}


def _processor_tar(processor: Any, model: str) -> bytes:
    """The processor's files and the checkpoint's config.json (the family's processor loads from them)."""
    import shutil

    from transformers.utils import cached_file

    with tempfile.TemporaryDirectory() as folder:
        processor.save_pretrained(folder)
        shutil.copy(cached_file(model, "config.json"), os.path.join(folder, "config.json"))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in sorted(os.listdir(folder)):
                tar.add(os.path.join(folder, name), arcname=name)
    return buffer.getvalue()


def _served(request: Request) -> Served:
    served = getattr(request.app.state, "videorefer", None)
    if served is None:
        raise RequestError("this server has no VideoRefer engine", 503)
    return served


async def _info(request: Request) -> JSONResponse:
    try:
        return JSONResponse(_served(request).info())
    except RequestError as error:
        return _error(error.status, str(error))


async def _processor_files(request: Request) -> Response:
    try:
        return Response(_served(request).processor_tar, media_type="application/gzip")
    except RequestError as error:
        return _error(error.status, str(error))


# ------------------------------------------------------------------------------------------------- the video
def _media_path(config: ServerConfig, relative: str) -> Path:
    if config.media_root is None:
        raise RequestError("this server reads no paths (it was started without --media-root): send the video's "
                           "bytes ('data') instead", 403)
    path = (config.media_root / relative).resolve()
    if not path.is_relative_to(config.media_root):
        raise RequestError(f"the path {relative!r} is outside the server's media root", 403)
    return path


def _upload_name(name: Any) -> str:
    from ..demo.limits import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    name = Path(str(name or "")).name
    if Path(name).suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        raise RequestError(f"'video.name' must end in one of {', '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)}, "
                           f"got {name!r}")
    return name


async def _fetch(config: ServerConfig, url: str, folder: str) -> Path:
    import httpx

    if not any(url.startswith(prefix) for prefix in config.url_prefixes):
        raise RequestError(f"this server does not fetch {url!r} (allowed: {list(config.url_prefixes) or 'none'})",
                           403)
    path = Path(folder) / _upload_name(url.split("?")[0].rsplit("/", 1)[-1])
    limit = config.limits.max_file_mb * 1e6
    try:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as client:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise RequestError(f"fetching {url} answered HTTP {response.status_code}")
                size = 0
                with open(path, "wb") as file:
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise RequestError(f"{url} is over {config.limits.max_file_mb:g} MB", 413)
                        file.write(chunk)
    except httpx.HTTPError as error:
        raise RequestError(f"could not fetch {url}: {type(error).__name__}") from None
    return path


async def _video_source(served: Served, spec: dict[str, Any], folder: str) -> tuple[Any, Any]:
    """`(what the processor decodes, VideoInfo)` for the request's video, checked as the demo checks uploads."""
    from ..api import still_image_source
    from ..demo.decode import VideoFile
    from ..demo.limits import VideoInfo

    config = served.config
    if "frames" in spec:
        limits = config.limits  # the decoded frames are bounded as one visitor's are on the page
        video = decode_frames(spec["frames"], max_bytes=limits.session_mb * 2**20, max_frames=limits.max_frames,
                              max_side=limits.max_long_side)
        if isinstance(video, np.ndarray):  # a still image
            return still_image_source(served.processor, video), VideoInfo("", 1, None, *video.shape[:2])
        return video, VideoInfo("", video.total_frames, video.fps, video.height, video.width)
    if "path" in spec:
        path = _media_path(config, spec["path"])
    elif "url" in spec:
        path = await _fetch(config, spec["url"], folder)
    else:
        try:
            data = base64.b64decode(spec["data"], validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("'video.data' is not base64") from None
        path = Path(folder) / _upload_name(spec.get("name"))
        path.write_bytes(data)
    with VideoFile(path, config.limits) as opened:  # DemoError: kind, size, decodability, length, resolution
        info = opened.info
        if opened.is_image:
            return still_image_source(served.processor, path), info
    return str(path), info


def _checked_request(served: Served, source: Any, info: Any, chat: Any) -> Any:
    """The engine request (video decoded, regions laid out) after the demo's checks of regions and question."""
    from ..demo.limits import check_history, check_question
    from ..demo.validate import check_regions

    limits, reserved = served.config.limits, served.reserved
    objects, _ = check_regions(chat.regions, info, limits, reserved=reserved)
    # laid_out: a client may send the question with its `<region>` placeholders written (the remote engine does)
    check_question(chat.question, len(objects), limits, reserved, laid_out=True)
    check_history(chat.history, len(objects), limits, reserved, laid_out=True)
    return served.front._request(source, objects, chat.question, chat.history, None, False)


# ---------------------------------------------------------------------------------------------- answering
async def _chat(request: Request) -> Response:
    from ..demo.limits import DemoError

    try:
        served = _served(request)
        body = await request.body()
        if len(body) > served.config.max_body_bytes:
            raise RequestError(f"the request is {len(body) / 1e6:.1f} MB; the limit is "
                               f"{served.config.max_body_bytes / 1e6:.1f} MB", 413)
        try:
            parsed = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(f"the body is not JSON: {error}") from None
        limits = served.config.limits
        chat = parse_request(parsed, limits.max_question_chars, limits.max_objects)
        with tempfile.TemporaryDirectory(prefix="videorefer-request-") as folder:
            source, info = await _video_source(served, chat.video, folder)
            engine_request = await asyncio.to_thread(_checked_request, served, source, info, chat)
        from ..engines.vllm import sampling_params, vllm_prompt

        params = sampling_params(chat.generation, served.penalty, served.stop_token_ids)
        prompt = vllm_prompt(served.placeholder_id, engine_request)
    except RequestError as error:
        return _error(error.status, str(error))
    except (DemoError, ValueError) as error:  # the demo's checks, the processor's, bad settings: the message is theirs
        return _error(400, str(error))
    except Exception:
        logger.exception("VideoRefer request failed before generation")
        return _error(500, "the server failed to prepare this request (see the server log)", "server_error")
    request_id = f"videorefer-{uuid.uuid4().hex}"
    outputs = served.engine.generate(prompt, params, request_id)
    try:
        first = await anext(outputs)
    except StopAsyncIteration:
        return _error(500, "the engine returned no answer", "server_error")
    except Exception as error:
        refusal = _refusal(error)
        if refusal is not None:  # refused by the family's processor inside the engine (vLLM wraps it)
            return _error(400, str(refusal))
        logger.exception("VideoRefer request %s failed", request_id)
        return _error(503 if type(error).__name__ == "EngineDeadError" else 500,
                      "the engine failed on this request (see the server log)", "server_error")
    if chat.stream:
        return StreamingResponse(_events(served, request_id, first, outputs), media_type="text/event-stream")
    final = first
    try:
        async for final in outputs:
            pass
    except Exception as error:
        logger.exception("VideoRefer request %s failed", request_id)
        return _error(503 if type(error).__name__ == "EngineDeadError" else 500,
                      "the engine failed during this answer (see the server log)", "server_error")
    answer = final.outputs[0]
    return JSONResponse({
        "id": request_id, "object": "chat.completion", "created": int(time.time()), "model": served.model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": served.processor.decode(
            list(answer.token_ids))}, "finish_reason": answer.finish_reason or "stop"}],
        "usage": _usage(final),
    })


def _refusal(error: BaseException | None) -> BaseException | None:
    """The refusal that caused `error`, if one did: a `ValueError` of the family's processor, or vLLM's own
    validation (e.g. a prompt longer than the model's context: too many frames for `--max-model-len`)."""
    from vllm.exceptions import VLLMValidationError

    while error is not None and not isinstance(error, (ValueError, VLLMValidationError)):
        error = error.__cause__
    return error


def _usage(output: Any) -> dict[str, int]:
    prompt, completion = len(output.prompt_token_ids or []), len(output.outputs[0].token_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _events(served: Served, request_id: str, first: Any, outputs: Any):
    """`chat.completion.chunk` events: each carries the answer's new text; an engine failure ends the stream with an
    `error` event (its traceback in the log)."""
    created, sent = int(time.time()), ""

    def chunk(delta: dict, finish: str | None = None, usage: Any = None) -> str:
        event = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": served.model_name,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            event["usage"] = usage
        return f"data: {json.dumps(event)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    output = first
    try:
        while True:
            text = served.processor.decode(list(output.outputs[0].token_ids))
            if output.finished:
                yield chunk({"content": text[len(sent):]} if text.startswith(sent) else {},
                            output.outputs[0].finish_reason or "stop", _usage(output))
                break
            if text.startswith(sent) and len(text) > len(sent) and not text.endswith("\ufffd"):
                yield chunk({"content": text[len(sent):]})
                sent = text
            output = await anext(outputs)
    except Exception:
        logger.exception("VideoRefer stream %s failed", request_id)
        error = {"message": "the engine failed during this answer (see the server log)", "type": "server_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
    yield "data: [DONE]\n\n"
