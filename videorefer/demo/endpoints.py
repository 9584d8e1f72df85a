"""The four API endpoints (`/segment`, `/track`, `/describe`, `/ask`) as plain functions (no gradio, no state).

Regions travel in the saved-regions JSON of `videorefer.regions.objects_to_json`:
`{"format": "videorefer-regions", "version": 1, "height", "width", "objects": [{"name", "masks": {"<frame>": RLE}}]}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from videorefer.regions import mask_to_rle, objects_to_json
from videorefer.video_io import Video

from .backend import Backend
from .decode import VideoFile, as_model_video
from .limits import DemoError, Limits, VideoInfo, check_frame_index, check_question, check_regions
from .service import ask_stream, decoded_frame_indices, model_errors, regions_for_model


def _json(value: Any, what: str) -> Any:
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise DemoError(f"{what} is not valid JSON: {error}") from None
    return value


def read_regions(doc: Any, info: VideoInfo, limits: Limits) -> tuple[list[dict[int, np.ndarray]], list[str]]:
    """Decode a regions document and check it against the video (size, frame range, object count)."""
    doc = _json(doc, "regions")
    if doc is None:
        raise DemoError("Give the regions (the saved-regions JSON with at least one object).")
    return check_regions(doc, info, limits)


def _history(history: Any) -> list[tuple[str, str]]:
    history = _json(history, "history") or []
    if not isinstance(history, list) or not all(
        isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn) for turn in history
    ):
        raise DemoError('history must be a list of [question, answer] pairs of strings, e.g. [["Q?", "A."]].')
    return [(q, a) for q, a in history]


def segment(
    backend: Backend, video: str | None, frame_index: Any, points: Any, labels: Any, box: Any, limits: Limits
) -> dict:
    """Mask of one object on one frame from clicks (`points` [[x, y], ...], `labels` 1/0) and/or a `box`
    [x0, y0, x1, y1] in video pixels. Returns `{"frame_index", "mask": RLE, "area"}`."""
    with VideoFile(video, limits) as file:
        return _segment(backend, file, frame_index, points, labels, box)


def _segment(backend: Backend, file: VideoFile, frame_index: Any, points: Any, labels: Any, box: Any) -> dict:
    info = file.info
    frame_index = check_frame_index(frame_index, info)
    points, labels, box = _json(points, "points"), _json(labels, "labels"), _json(box, "box")
    if not points and not box:
        raise DemoError("Give points (with labels) or a box.")
    prompt: dict[str, Any] = {}
    try:
        if points:
            pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
            if labels is None or len(labels) == 0:
                labels = [1] * len(pts)
            _inside(pts, info)
            prompt.update(points=pts, labels=np.asarray(labels, dtype=np.int64))
        if box:
            prompt["box"] = np.asarray(box, dtype=np.float32)
            _inside(prompt["box"].reshape(2, 2), info)
    except (TypeError, ValueError) as error:
        if isinstance(error, DemoError):
            raise
        raise DemoError(f"Bad points, labels or box: {error}") from None
    frame = file.decode([frame_index])[0]
    with model_errors("SAM 2"):
        try:
            mask = backend.segmenter.segment_image(frame, {0: prompt})[0]
        except ValueError as error:
            raise DemoError(str(error)) from None
    return {"frame_index": frame_index, "mask": mask_to_rle(mask), "area": int(mask.sum())}


def _inside(points: np.ndarray, info: VideoInfo) -> None:
    for x, y in points.reshape(-1, 2):
        if not (0 <= x < info.width and 0 <= y < info.height):
            raise DemoError(f"The point ({x:g}, {y:g}) is outside the {info.width}×{info.height} frame.")


def track(backend: Backend, video: str | None, regions: Any, limits: Limits) -> dict:
    """Track each object of `regions` (its masks are the prompts) through the video's decoded frames (an even grid
    plus the model's frames plus the prompted frames). Returns a regions document with a mask on every such frame."""
    with VideoFile(video, limits) as file:
        info = file.info
        objects, names = read_regions(regions, info, limits)
        prompted = {f for obj in objects for f in obj}
        grid = decoded_frame_indices(info.total_frames, limits.scrub_frames, backend.model_frames(info)[0])
        indices = sorted(set(grid) | prompted)
        frames = file.decode(indices)
    position = {raw: pos for pos, raw in enumerate(indices)}
    with model_errors("SAM 2"):
        session = backend.segmenter.init_state(np.ascontiguousarray(frames))
        for k, obj in enumerate(objects):
            for raw, mask in obj.items():
                session.add_mask(position[raw], k, mask, as_drawn=True)
        tracked = session.propagate()
    out = [{indices[pos]: m for pos, m in tracked.get(k, {}).items()} for k in range(len(objects))]
    return objects_to_json(out, names)


def _open_for_model(
    backend: Backend, video: str | None, regions: Any, limits: Limits
) -> tuple[VideoInfo, list[dict[int, np.ndarray]], Video]:
    """Open the video once, read the regions against it and decode the model's frames plus the masks' frames."""
    with VideoFile(video, limits) as file:
        info = file.info
        objects, _ = read_regions(regions, info, limits)
        sampling = backend.model_frames(info)  # the loaded family's own frames
        indices = sorted(set(sampling[0]) | {f for obj in objects for f in obj})
        frames = file.decode(indices)
    return info, objects, as_model_video(info, indices, frames, sampling)


def ask_stream_api(
    backend: Backend, video: str | None, regions: Any, question: str, history: Any, mode: str, limits: Limits
) -> Iterator[str]:
    """Stream the answer to `question` about the objects of `regions` (named `<object0>`, ... in the question)."""
    info, objects, decoded = _open_for_model(backend, video, regions, limits)
    question = check_question(question, len(objects), limits)
    turns = _history(history)
    chosen = regions_for_model(objects, mode or "auto", backend.model_frames(info)[0])
    answer = ""
    for answer in ask_stream(backend, decoded, chosen, question, turns):
        yield answer
    if not answer:
        yield answer


def describe(backend: Backend, video: str | None, regions: Any, mode: str, limits: Limits) -> str:
    """A detailed description of the one object in `regions`."""
    info, objects, decoded = _open_for_model(backend, video, regions, limits)
    if len(objects) != 1:
        raise DemoError(f"/describe takes exactly one object, got {len(objects)}; use /ask for several.")
    chosen = regions_for_model(objects, mode or "auto", backend.model_frames(info)[0])
    answer = ""
    for answer in ask_stream(backend, decoded, chosen, backend.model.describe_prompt):
        pass
    return answer


def last(stream: Sequence[str] | Iterator[str]) -> str:
    """The final value of a stream of growing answers."""
    value = ""
    for value in stream:
        pass
    return value
