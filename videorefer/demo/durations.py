"""How long each GPU call of the page and the API asks ZeroGPU for (`zerogpu.gpu(duration=...)`).

Each function takes the decorated `DemoHandlers` method's arguments (`self` first) and turns the work the call will do
into seconds through the one policy, `zerogpu.gpu_duration`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .state import DemoState
from .zerogpu import ZEROGPU_MAX_SECONDS, gpu_duration

if TYPE_CHECKING:
    from .handlers import DemoHandlers


def _prompt_seconds(self: "DemoHandlers", state: DemoState, *args: Any) -> int:
    obj = state.objects[state.active] if state.active is not None else None
    return gpu_duration("segment", prompts=max(1, len(obj.prompts) if obj else 1, len(state.saved_objects)))


def _track_seconds(self: "DemoHandlers", state: DemoState, *args: Any) -> int:
    return gpu_duration("track", frames=len(state.frame_indices), objects=len(state.objects))


def _answer_seconds(self: "DemoHandlers", *args: Any) -> int:
    return gpu_duration("answer", new_tokens=int(self.backend.model.generation_defaults.get("max_new_tokens", 512)))


def _find_seconds(self: "DemoHandlers", state: DemoState, pos: Any, phrase: Any, threshold: Any, track_them: Any,
                  *args: Any) -> int:
    room = max(1, self.limits.max_objects - len(state.objects))
    return _finding_seconds(room, track_them, len(state.frame_indices), len(state.objects) + room)


def _api_find_seconds(self: "DemoHandlers", video: Any, frame_index: Any, phrase: Any, track: Any, *args: Any) -> int:
    objects = self.limits.max_objects
    return _finding_seconds(objects, track, self.limits.scrub_frames + self.backend.max_model_frames, objects)


def _finding_seconds(found: int, track_them: Any, frames: int, objects: int) -> int:
    """Find by name: the detector pass and one SAM 2 mask per object found (as many prompts), plus tracking every
    object through the decoded frames when asked."""
    seconds = gpu_duration("segment", prompts=found + 1)
    if track_them:
        seconds += gpu_duration("track", frames=frames, objects=objects)
    return min(seconds, ZEROGPU_MAX_SECONDS)


def _api_segment_seconds(self: "DemoHandlers", *args: Any) -> int:
    return gpu_duration("segment")


def _api_track_seconds(self: "DemoHandlers", video: Any, regions: Any) -> int:
    try:
        doc = json.loads(regions) if isinstance(regions, str) else regions
        objects = len(doc["objects"])
    except (TypeError, KeyError, ValueError):
        objects = 1  # a bad document fails fast with a message
    frames = self.limits.scrub_frames + self.backend.max_model_frames
    return gpu_duration("track", frames=frames, objects=objects)
