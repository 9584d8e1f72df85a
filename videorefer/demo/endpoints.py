"""The four API endpoints (`/segment`, `/track`, `/describe`, `/ask`) as plain functions (no gradio, no state).

Regions travel in the saved-regions JSON of `videorefer.regions.objects_to_json`:
`{"format": "videorefer-regions", "version": 1, "height", "width", "objects": [{"name", "masks": {"<frame>": RLE}}]}`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from videorefer.regions import mask_to_rle, objects_to_json
from videorefer.video_io import Video

from .backend import Backend
from .budget import Budget
from .decode import VideoFile, as_model_video
from .limits import DemoError, Limits, VideoInfo, check_frame_index, check_history, check_question
from .service import MODES, ask_stream, decoded_frame_indices, model_errors, regions_for_model
from .validate import Keep, check_clicks, check_regions, parse_json


def read_regions(
    doc: Any, info: VideoInfo, limits: Limits, keep: Keep | None = None, decoded: set[int] | None = None,
    reserved: Sequence[str] = (),
) -> tuple[list[dict[int, np.ndarray]], list[str]]:
    """Decode a regions document after checking it against the video (`validate.check_regions`: size, frame range,
    object and mask counts, names); `keep` leaves out masks the request does not use before they are decoded."""
    doc = parse_json(doc, "regions", limits)
    if doc is None:
        raise DemoError("Give the regions (the saved-regions JSON with at least one object).")
    return check_regions(doc, info, limits, keep=keep, decoded=decoded, reserved=reserved)


def on_frames(frames: Sequence[int]) -> Keep:
    """Keep each object's masks on `frames` (the model's sampled frames); an object with none there keeps all of its
    masks (the model reads them as extra frames)."""
    used = {int(f) for f in frames}
    return lambda per_object: [(masks & used) or masks for masks in per_object]


def _mode(mode: Any) -> str:
    mode = mode or "auto"
    if mode not in MODES:
        raise DemoError(f"mode must be one of {', '.join(MODES)}, got {str(mode)[:40]!r}.")
    return mode


def segment(
    backend: Backend, video: str | None, frame_index: Any, points: Any, labels: Any, box: Any, limits: Limits
) -> dict:
    """Mask of one object on one frame from clicks (`points` [[x, y], ...], `labels` 1/0) and/or a `box`
    [x0, y0, x1, y1] in video pixels. Returns `{"frame_index", "mask": RLE, "area"}`."""
    with VideoFile(video, limits) as file:
        info = file.info
        frame_index = check_frame_index(frame_index, info)
        points, labels = parse_json(points, "points", limits), parse_json(labels, "labels", limits)
        box = parse_json(box, "box", limits)
        if not points and not box:
            raise DemoError("Give points (with labels) or a box.")
        prompt = check_clicks(points, labels, box, info, limits)
        frame = file.decode([frame_index])[0]
    with model_errors("SAM 2"):
        try:
            mask = backend.segmenter.segment_image(frame, {0: prompt})[0]
        except ValueError as error:
            raise DemoError(str(error)) from None
    return {"frame_index": frame_index, "mask": mask_to_rle(mask), "area": int(mask.sum())}


def track(backend: Backend, video: str | None, regions: Any, limits: Limits) -> dict:
    """Track each object of `regions` (its masks are the prompts) through the video's decoded frames (an even grid
    plus the model's frames plus the prompted frames). Returns a regions document with a mask on every such frame."""
    budget = Budget(limits.track_seconds, "Tracking", "Track fewer objects or a shorter video.")
    with VideoFile(video, limits) as file:
        info = file.info
        grid = decoded_frame_indices(info.total_frames, limits.scrub_frames, backend.model_frames(info)[0])
        objects, names = read_regions(regions, info, limits, decoded=set(grid), reserved=backend.reserved_tokens)
        prompted = {f for obj in objects for f in obj}
        indices = sorted(set(grid) | prompted)
        frames = file.decode(indices)
    position = {raw: pos for pos, raw in enumerate(indices)}
    with model_errors("SAM 2"):
        session = backend.segmenter.init_state(np.ascontiguousarray(frames))
        for k, obj in enumerate(objects):
            for raw, mask in obj.items():
                budget.check()
                session.add_mask(position[raw], k, mask, as_drawn=True)
        tracked = session.propagate(progress=budget.progress())
    out = [{indices[pos]: m for pos, m in tracked.get(k, {}).items()} for k in range(len(objects))]
    return objects_to_json(out, names)


def _open_for_model(
    backend: Backend, video: str | None, regions: Any, limits: Limits, check: Callable[[int], None]
) -> tuple[VideoInfo, list[dict[int, np.ndarray]], Video]:
    """Open the video once, read the regions against it (only the masks the model can use: those on its sampled
    frames, else all of an object's), run `check(number of objects)` on the request's text, then decode the model's
    frames plus the masks' frames."""
    with VideoFile(video, limits) as file:
        info = file.info
        sampling = backend.model_frames(info)  # the loaded family's own frames
        objects, _ = read_regions(regions, info, limits, keep=on_frames(sampling[0]), decoded=set(sampling[0]),
                                  reserved=backend.reserved_tokens)
        check(len(objects))
        indices = sorted(set(sampling[0]) | {f for obj in objects for f in obj})
        frames = file.decode(indices)
    return info, objects, as_model_video(info, indices, frames, sampling)


def ask_stream_api(
    backend: Backend, video: str | None, regions: Any, question: str, history: Any, mode: str, limits: Limits
) -> Iterator[str]:
    """Stream the answer to `question` about the objects of `regions` (named `<object0>`, ... in the question)."""
    mode, reserved, checked = _mode(mode), backend.reserved_tokens, {}
    history = parse_json(history, "history", limits)

    def check(num_objects: int) -> None:
        checked["question"] = check_question(question, num_objects, limits, reserved)
        checked["turns"] = check_history(history, num_objects, limits, reserved)

    info, objects, decoded = _open_for_model(backend, video, regions, limits, check)
    chosen = regions_for_model(objects, mode, backend.model_frames(info)[0])
    answer = ""
    for answer in ask_stream(backend, decoded, chosen, checked["question"], checked["turns"]):
        yield answer
    if not answer:
        yield answer


def describe(backend: Backend, video: str | None, regions: Any, mode: str, limits: Limits) -> str:
    """A detailed description of the one object in `regions`."""
    mode = _mode(mode)

    def check(num_objects: int) -> None:
        if num_objects != 1:
            raise DemoError(f"/describe takes exactly one object, got {num_objects}; use /ask for several.")

    info, objects, decoded = _open_for_model(backend, video, regions, limits, check)
    chosen = regions_for_model(objects, mode, backend.model_frames(info)[0])
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
