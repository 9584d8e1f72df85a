"""The VideoRefer server's request format: one home, read by the server (`serving.endpoint`) and written by the client
(`videorefer.client`) and the remote engine (`videorefer.engines.remote`).

`POST /v1/videorefer/chat/completions` takes an OpenAI chat-completions body with two more fields:

    {
      "messages": [{"role": "user", "content": "What is <object0> doing?"},          # the conversation: user and
                   {"role": "assistant", "content": "It runs."},                    # assistant turns alternate,
                   {"role": "user", "content": "Where does <object0> go?"}],        # the last one is the question
      "video":   {"path": "clips/cat.mp4"}          # a file under the server's --media-root
               | {"url": "https://host/cat.mp4"}    # under one of the server's --allow-url prefixes
               | {"data": "<base64>", "name": "cat.mp4"}    # the file's bytes (the suffix says its kind)
               | {"frames": "<base64 npz>"},        # decoded frames (`encode_frames`: what the remote engine sends)
      "regions": {"format": "videorefer-regions", "version": 1, "height": H, "width": W,
                  "objects": [{"name": "cat", "masks": {"12": <COCO RLE>, ...}}, ...]},   # the demo's regions file
      "stream": false, "max_tokens": 512, "temperature": 0, "top_p": 1, "top_k": -1,
      "repetition_penalty": null          # null: the checkpoint's own (on generated tokens only)
    }

Object k of `regions` is `<objectk>` in the questions; every mask in the document reaches the model (choose the frames
first, e.g. with `videorefer.regions.select_object_frames`). The answer is an OpenAI `chat.completion` (or, with
`"stream": true`, `chat.completion.chunk` server-sent events ending in `data: [DONE]`), so the `openai` package works
with `base_url="http://HOST:PORT/v1/videorefer"` and `extra_body={"video": ..., "regions": ...}`.
A refused request is HTTP 4xx with `{"error": {"message": ..., "type": ..., "code": ...}}`.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["ROUTE", "INFO_ROUTE", "PROCESSOR_ROUTE", "RequestError", "ChatRequest", "parse_request", "build_body",
           "video_field", "encode_frames", "decode_frames", "GENERATION_FIELDS"]

ROUTE = "/v1/videorefer/chat/completions"
INFO_ROUTE = "/v1/videorefer/info"  # the served model, its family and the server's limits
PROCESSOR_ROUTE = "/v1/videorefer/processor"  # the family processor's files (tar), for remote engines
VIDEO_KINDS = ("path", "url", "data", "frames")
#: OpenAI body fields -> the engine's (transformers-style) generation settings.
GENERATION_FIELDS = {"max_tokens": "max_new_tokens", "max_completion_tokens": "max_new_tokens",
                     "min_tokens": "min_new_tokens", "temperature": "temperature", "top_p": "top_p",
                     "top_k": "top_k", "repetition_penalty": "repetition_penalty"}


class RequestError(ValueError):
    """A request the server refuses: `status` (400, 404, 413) and a message naming the problem."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class ChatRequest:
    video: dict[str, Any]  # one of VIDEO_KINDS -> its value (+ "name" for data)
    regions: dict[str, Any]  # the regions document (decoded against the video by the server)
    question: str
    history: list[tuple[str, str]] = field(default_factory=list)
    generation: dict[str, Any] = field(default_factory=dict)
    stream: bool = False


def _conversation(messages: Any, max_chars: int) -> tuple[str, list[tuple[str, str]]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content} turns")
    turns = []
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            raise RequestError(f"messages[{k}] must be an object with a string 'content'")
        expected = "user" if k % 2 == 0 else "assistant"
        if message.get("role") != expected:
            raise RequestError(f"messages[{k}] must have role '{expected}' (user and assistant turns alternate, "
                               f"starting and ending with user), got {message.get('role')!r}")
        if len(message["content"]) > max_chars:
            raise RequestError(f"messages[{k}] has {len(message['content'])} characters; the limit is {max_chars}",
                               413)
        turns.append(message["content"])
    if len(turns) % 2 == 0:
        raise RequestError("the last message must be the user's question")
    return turns[-1], list(zip(turns[:-1:2], turns[1:-1:2]))


def parse_request(body: Any, max_question_chars: int, max_objects: int) -> ChatRequest:
    """The body's structure checked (cheap checks only: nothing is decoded or read here)."""
    if not isinstance(body, Mapping):
        raise RequestError("the body must be a JSON object")
    question, history = _conversation(body.get("messages"), max_question_chars)
    video = body.get("video")
    kinds = [kind for kind in VIDEO_KINDS if isinstance(video, Mapping) and kind in video]
    if len(kinds) != 1 or not isinstance(video[kinds[0]], str):
        raise RequestError(f"'video' must be an object with exactly one of {', '.join(VIDEO_KINDS)} (a string)")
    regions = body.get("regions")
    if not isinstance(regions, Mapping) or not isinstance(regions.get("objects"), list):
        raise RequestError("'regions' must be a regions document: {\"objects\": [{\"masks\": {frame: RLE}}, ...]}")
    if len(regions["objects"]) > max_objects:
        raise RequestError(f"the regions hold {len(regions['objects'])} objects; at most {max_objects} are allowed",
                           413)
    generation = {}
    for key, setting in GENERATION_FIELDS.items():
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"'{key}' must be a number")
        generation[setting] = value
    if float(generation.get("temperature", 0) or 0) > 0:
        generation["do_sample"] = True
    elif "temperature" in generation:
        del generation["temperature"]
    max_new = generation.get("max_new_tokens")
    if max_new is not None and int(max_new) < 1:
        raise RequestError("'max_tokens' must be at least 1")
    return ChatRequest(dict(video), dict(regions), question, history, generation, bool(body.get("stream")))


# -------------------------------------------------------------------------------------------------- writing
def encode_frames(video: Any) -> str:
    """A decoded `videorefer.video_io.Video` (or a still (H, W, 3) image) as base64 npz, losslessly."""
    from ..video_io import Video

    arrays: dict[str, Any] = {}
    if isinstance(video, Video):
        extra = sorted(video.extra)
        arrays = dict(frames=video.frames, frame_indices=np.asarray(video.frame_indices, np.int64),
                      total_frames=np.int64(video.total_frames), extra_indices=np.asarray(extra, np.int64),
                      extra_frames=np.stack([video.extra[i] for i in extra]) if extra else np.zeros((0,), np.uint8))
        if video.fps is not None:
            arrays["fps"] = np.float64(video.fps)
        if video.timestamps is not None:
            arrays["timestamps"] = np.asarray(video.timestamps, np.float64)
    else:
        image = np.asarray(video)
        if image.ndim != 3 or image.dtype != np.uint8:
            raise ValueError(f"frames must be a Video or an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        arrays = dict(image=image)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _check_archive(raw: bytes, max_bytes: int, max_frames: int, max_side: int) -> None:
    """Every array's declared shape and dtype, read from its header before anything is decompressed: a compressed
    archive of a few MB may otherwise declare (and inflate to) any size."""
    total = 0
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        if len(archive.infolist()) > 16:
            raise ValueError("it holds more than 16 arrays")
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _fortran, dtype = read_header(member)
            if dtype.hasobject:
                raise ValueError(f"{info.filename} holds Python objects")
            if info.filename in ("frames.npy", "extra_frames.npy", "image.npy"):
                if len(shape) >= 3 and (max(shape[-3:-1]) > max_side or (len(shape) == 4 and shape[0] > max_frames)):
                    raise ValueError(f"{info.filename} is {'x'.join(map(str, shape))}: at most {max_frames} frames "
                                     f"of at most {max_side} px a side")
            total += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if total > max_bytes:
                raise ValueError(f"its arrays hold more than {max_bytes / 2**20:.0f} MiB")


def decode_frames(text: str, key: str | None = None, max_bytes: int = 2**30, max_frames: int = 7200,
                  max_side: int = 4096) -> Any:
    """`encode_frames`' output back as a `Video` (or an (H, W, 3) image); `RequestError` when it is not one, or when
    its arrays would exceed `max_bytes`, `max_frames` frames or `max_side` pixels a side (checked before inflating)."""
    from ..video_io import Video

    try:
        raw = base64.b64decode(text, validate=True)
        _check_archive(raw, max_bytes, max_frames, max_side)
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            if "image" in data:
                image = data["image"]
                if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
                    raise ValueError("the image must be (H, W, 3) uint8")
                return image
            frames, indices = data["frames"], [int(i) for i in data["frame_indices"]]
            extra = dict(zip((int(i) for i in data["extra_indices"]), data["extra_frames"]))
            video = Video(frames=frames, frame_indices=indices, total_frames=int(data["total_frames"]),
                          fps=float(data["fps"]) if "fps" in data else None, extra=extra, key=key,
                          timestamps=[float(t) for t in data["timestamps"]] if "timestamps" in data else None)
    except (ValueError, KeyError, OSError, EOFError, binascii.Error, zipfile.BadZipFile) as error:
        raise RequestError(f"'video.frames' is not a frames archive we accept: {error}") from None
    if not 0 < video.total_frames <= max_frames or not all(0 <= i < video.total_frames for i in (*indices, *extra)):
        raise RequestError(f"'video.frames' declares {video.total_frames} frames (at most {max_frames}) or frame "
                           "indices outside them")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(indices) != len(frames):
        raise RequestError("'video.frames' must hold uint8 frames (t, H, W, 3) and one index per frame")
    if any(f.shape != frames.shape[1:] for f in extra.values()):
        raise RequestError("'video.frames' holds extra frames of another size than the sampled ones")
    return video


def video_field(video: Any) -> dict[str, str]:
    """The `video` field for a path (its bytes), a decoded `Video` or an (H, W, 3) image (their frames), or an
    explicit field (`{"path": ...}` / `{"url": ...}` / `{"data": ..., "name": ...}`) passed through."""
    import os

    if isinstance(video, Mapping):
        return dict(video)
    if isinstance(video, (str, os.PathLike)):
        with open(video, "rb") as file:
            return {"data": base64.b64encode(file.read()).decode("ascii"), "name": os.path.basename(str(video))}
    return {"frames": encode_frames(video)}


def build_body(video: Any, objects: Sequence[Mapping] | Mapping, question: str,
               history: Sequence[tuple[str, str]] | None = None, stream: bool = False,
               **generation: Any) -> dict[str, Any]:
    """A request body. `objects`: a list of `{frame: mask}` (masks as arrays or COCO RLE) or a regions document;
    `generation`: OpenAI names (`max_tokens`, `temperature`, ...) or the API's (`max_new_tokens`, ...)."""
    from ..regions import objects_to_json

    regions = dict(objects) if isinstance(objects, Mapping) else objects_to_json(objects)
    messages = []
    for asked, answered in history or []:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    messages.append({"role": "user", "content": question})
    body: dict[str, Any] = {"messages": messages, "video": video_field(video), "regions": regions, "stream": stream}
    openai_name = {setting: key for key, setting in GENERATION_FIELDS.items() if key != "max_completion_tokens"}
    for key, value in generation.items():
        if key == "do_sample":
            continue
        name = key if key in GENERATION_FIELDS else openai_name.get(key)
        if name is None:
            raise ValueError(f"the server does not take the generation setting {key!r}")
        body[name] = value
    if generation.get("do_sample") is False:
        body.pop("temperature", None)
    return body
