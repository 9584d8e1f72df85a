"""Watching and keeping the tracking: the tracked masks as an mp4 the browser plays, the objects as a saved-regions
file, and a saved-regions file restoring the objects.

The video holds the decoded frames (the slider's frames) at their own timestamps: the masks exist on those frames
only, so it plays at the video's real speed with fewer frames per second. It is H.264 (`libx264`, which PyAV's
wheels carry) in yuv420p with the index at the front, which every browser plays; without libx264 it falls back to
VP9 in WebM.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from videorefer.regions import objects_to_json, read_regions_document

from .budget import Budget
from .limits import DemoError, Limits
from .validate import check_regions, parse_json
from .overlay import render_overlay
from .state import DemoState, FramePrompt

logger = logging.getLogger(__name__)
MAX_VIDEO_SIDE = 960  # the tracked video is drawn at most this wide / high, like the frame view


def _codec() -> tuple[str, str, dict[str, str]]:
    """(codec, file suffix, encoder options): H.264 in mp4 when PyAV has libx264, else VP9 in WebM."""
    import av

    if "libx264" in av.codecs_available:
        return "libx264", ".mp4", {"crf": "23", "preset": "veryfast", "movflags": "+faststart"}
    logger.warning("PyAV has no libx264 encoder: the tracked video is written as VP9 / WebM")
    return "libvpx-vp9", ".webm", {"crf": "32", "b": "0", "deadline": "realtime"}


def visitor_folder(state: DemoState) -> Path:
    """This visitor's folder for generated files, named after the state's `uid` (so that every copy of the state
    finds it); removed with the visitor's state (`release_files`)."""
    folder = Path(tempfile.gettempdir()) / f"videorefer-visitor-{state.uid}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def write_tracked_video(state: DemoState, path: str | os.PathLike | None = None) -> Path:
    """Every decoded frame with the objects' masks and `<objectK>` tags drawn on it, as a browser-playable video.

    Frames are timed by their raw index (`pts` = raw frame, time base 1 / fps), so the video lasts as long as the
    original. Returns the file's path."""
    import av

    if not state.objects:
        raise DemoError("There are no objects to show: point at an object and track it first.")
    codec, suffix, options = _codec()
    path = Path(path) if path is not None else visitor_folder(state) / f"{Path(state.info.path).stem}-tracked{suffix}"
    fps = state.info.fps or 25.0
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", options={"movflags": options.pop("movflags")} if "movflags" in options else {}) as out:
        stream = out.add_stream(codec, rate=rate, options=options)
        first = render_overlay(state.frame(0), state.masks_on(0), max_side=MAX_VIDEO_SIDE)
        stream.height, stream.width = (first.shape[0] // 2) * 2, (first.shape[1] // 2) * 2  # yuv420p: even sizes
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        for pos, raw in enumerate(state.frame_indices):
            image = first if pos == 0 else render_overlay(state.frame(pos), state.masks_on(pos), max_side=MAX_VIDEO_SIDE)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[: stream.height, : stream.width]), "rgb24")
            frame.pts, frame.time_base = raw, 1 / rate
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def regions_document(state: DemoState) -> dict:
    """The visitor's objects as a saved-regions document (`videorefer.regions.objects_to_json`), with the video's
    frame count so that the file can be checked against the video it is restored on."""
    objects = [state.object_masks(k) for k in range(len(state.objects))]
    if not any(objects):
        raise DemoError("There are no masks to save yet: point at an object first.")
    doc = objects_to_json(objects, state.names)
    doc["height"], doc["width"] = state.info.height, state.info.width
    doc["total_frames"] = state.info.total_frames
    doc["video"] = Path(state.info.path).name
    return doc


def write_regions(state: DemoState) -> Path:
    path = visitor_folder(state) / f"{Path(state.info.path).stem}.regions.json"
    path.write_text(json.dumps(regions_document(state)))
    return path


def read_regions_file(path: str | os.PathLike | None, state: DemoState, limits: Limits) -> tuple[list, list[str]]:
    """Read a saved-regions file and check that it belongs to this video (same size and frame count). Only the masks
    on the decoded frames are decoded; the others come back as None (`restore_objects` counts them as skipped)."""
    if not path:
        raise DemoError("Choose a regions file (.json) to restore.")
    try:
        size = Path(path).stat().st_size
        if size > limits.max_json_mb * 1e6:
            raise DemoError(f"The regions file is {size / 1e6:.1f} MB; the limit is {limits.max_json_mb:g} MB.")
        doc = parse_json(Path(path).read_text(), "That is not a regions file: it", limits)
    except FileNotFoundError:
        raise DemoError("The regions file could not be found; please upload it again.") from None
    except UnicodeDecodeError as error:
        raise DemoError(f"That is not a regions file (not text: {error}).") from None
    if not isinstance(doc, dict):
        raise DemoError("That is not a regions file (expected a JSON object with an 'objects' list).")
    info = state.info
    size = (doc.get("width"), doc.get("height"))
    if None not in size and tuple(str(v) for v in size) != (str(info.width), str(info.height)):
        raise DemoError(f"This regions file is for a {str(size[0])[:12]}×{str(size[1])[:12]} video; this video is "
                        f"{info.width}×{info.height}. Load the video it was saved on.")
    total = doc.get("total_frames")
    if total is not None and total != info.total_frames:
        raise DemoError(f"This regions file is for a video of {str(total)[:20]} frames; this video has "
                        f"{info.total_frames}. Load the video it was saved on.")
    decoded = set(state.frame_indices)  # masks on other frames are not decoded: None marks them (skipped on restore)
    objects, names = check_regions(doc, info, limits, what="The regions file", keep=lambda per: [f & decoded for f in per])
    listed = read_regions_document(doc)[0]
    for obj, frames in zip(objects, listed):
        obj.update({frame: None for frame in frames if frame not in decoded})
    return objects, names


def restore_objects(state: DemoState, objects: list[dict[int, np.ndarray]], names: list[str], limits: Limits) -> int:
    """Replace the visitor's objects by `objects` (masks replayed as drawn masks on the decoded frames they are on;
    an object with a mask on every decoded frame counts as tracked). Returns how many masks were skipped because
    their frame is not among the decoded frames."""
    from . import service
    from .sessions import check_room

    check_room(state, len(objects), len(state.frame_indices), limits, "Restoring these objects")
    budget = Budget(limits.segment_seconds, "Restoring the objects", "Use a file with fewer masks.")
    for obj in list(state.objects):
        if obj.obj_id in state.session.obj_ids:
            state.session.remove_object(obj.obj_id)
    state.objects, state.active, state.pending_corner = [], None, None
    position = {raw: pos for pos, raw in enumerate(state.frame_indices)}
    skipped = 0
    for masks, name in zip(objects, names):
        k = service.new_object(state, limits, name)
        obj = state.objects[k]
        for raw, mask in sorted(masks.items()):
            if raw not in position:
                skipped += 1
                continue
            budget.check()
            state.session.add_mask(position[raw], obj.obj_id, mask, as_drawn=True)
            obj.prompts[position[raw]] = FramePrompt(brush=True)
        obj.last_prompt_pos = min(obj.prompts) if obj.prompts else None
        obj.tracked = len(obj.prompts) == len(state.frame_indices)
    state.active = 0 if state.objects else None
    return skipped


def release_files(state: DemoState) -> None:
    """Remove the files written for this visitor."""
    import shutil

    shutil.rmtree(Path(tempfile.gettempdir()) / f"videorefer-visitor-{state.uid}", ignore_errors=True)
