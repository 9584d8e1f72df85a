"""Find by name in the demo: the page's *Find* button and the `/find` endpoint (no gradio here).

Both use the backend's `videorefer.segmentation.ObjectFinder` (Grounding DINO boxes -> SAM 2.1 masks), the same code
as the data engine's Segmentor. A phrase that matches nothing, an empty or over-long phrase, or no room for more
objects is a `DemoError` with a message for the visitor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from videorefer.regions import objects_to_json
from videorefer.segmentation import MAX_PHRASE_CHARS, check_phrase

from .backend import Backend
from .budget import Budget
from .decode import VideoFile
from .limits import DemoError, Limits, check_frame_index, check_text
from .service import decoded_frame_indices, model_errors, new_object, track
from .state import DemoState, FramePrompt


def _finder(backend: Backend):
    if backend.finder is None:
        raise DemoError("Find by name is off on this server (no detector was configured).")
    return backend.finder


def _phrase(phrase: Any) -> str:
    try:
        return check_text(check_phrase(phrase if phrase is not None else ""), "The phrase")
    except ValueError as error:
        raise DemoError(f"Find: {error} (a noun phrase of up to {MAX_PHRASE_CHARS} characters, e.g. 'the rabbit')."
                        ) from None


def _threshold(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DemoError(f"threshold must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise DemoError(f"threshold must be between 0 and 1, got {value:g}")
    return value


def _names(phrase: str, count: int, limits: Limits) -> list[str]:
    base = phrase[: limits.max_name_chars - 4].strip()  # room for " 12"
    return [base] if count == 1 else [f"{base} {j + 1}" for j in range(count)]


def find_in_state(
    backend: Backend, state: DemoState, pos: int, phrase: Any, threshold: Any, track_them: bool, limits: Limits,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Add the objects matching `phrase` on slider position `pos` as new objects (box prompts in the visitor's
    session), tracked through the video when `track_them`; returns how many were added."""
    phrase = _phrase(phrase)
    finder = _finder(backend)
    room = limits.max_objects - len(state.objects)
    if room <= 0:
        raise DemoError(f"At most {limits.max_objects} objects; remove one first.")
    pos = state.clamp(pos)
    with model_errors("Find"):
        result = finder.find(state.frame(pos), phrase, threshold=_threshold(threshold, finder.threshold),
                             max_objects=room, session=state.session, frame_idx=pos, first_obj_id=state.next_id)
    if not result.objects:
        raise DemoError(f"Find: {result.miss_message()}.")
    for found, name in zip(result.objects, _names(phrase, len(result.objects), limits)):
        state.next_id = found.obj_id  # the new object takes the session id the finder gave it
        obj = state.objects[new_object(state, limits, name)]
        obj.prompts[pos] = FramePrompt(box=list(found.box))
        obj.last_prompt_pos = pos
    state.next_id = max(o.obj_id for o in result.objects) + 1
    if track_them:
        track(backend, state, progress)
    return len(result.objects)


def find_api(backend: Backend, video: str | None, frame_index: Any, phrase: Any, track_them: Any, threshold: Any,
             limits: Limits) -> dict:
    """The objects matching `phrase` on frame `frame_index` of `video` (or of an image: frame 0), tracked through the
    video's decoded frames when `track_them`. Returns a saved-regions document (usable as `regions` by `/track`,
    `/describe` and `/ask`) with, per object, its `box`, detector `score` and mask `area` on that frame."""
    with VideoFile(video, limits) as file:  # one open, one decoding pass (an image: a one-frame video)
        info = file.info
        frame_index = check_frame_index(frame_index, info)
        phrase = _phrase(phrase)
        finder = _finder(backend)
        threshold = _threshold(threshold, finder.threshold)
        indices = [frame_index]
        if track_them:
            sampled, _ = backend.model_frames(info)  # the loaded family's own frames
            grid = decoded_frame_indices(info.total_frames, limits.scrub_frames, sampled)
            indices = sorted(set(grid) | {frame_index})
        frames = np.ascontiguousarray(file.decode(indices))
    key = indices.index(frame_index)
    with model_errors("Find"):
        if track_them:
            session = backend.segmenter.init_state(frames)
            result = finder.find(frames[key], phrase, threshold=threshold, max_objects=limits.max_objects,
                                 session=session, frame_idx=key)
            budget = Budget(limits.track_seconds, "Tracking", "Leave 'track' off or use a shorter video.")
            tracked = session.propagate(progress=budget.progress()) if result.objects else {}
            objects = [{indices[p]: m for p, m in tracked[o.obj_id].items()} for o in result.objects]
        else:
            result = finder.find(frames[key], phrase, threshold=threshold, max_objects=limits.max_objects)
            objects = [{frame_index: o.mask} for o in result.objects]
    if not result.objects:
        raise DemoError(f"Find: {result.miss_message()}.")
    doc = objects_to_json(objects, _names(phrase, len(objects), limits))
    for entry, found in zip(doc["objects"], result.objects):
        entry.update(box=found.box, score=round(found.score, 4), area=int(found.mask.sum()))
    return {**doc, "frame_index": frame_index, "phrase": phrase}
