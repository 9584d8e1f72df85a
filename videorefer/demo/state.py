"""Per-visitor state: the video, its decoded frames, the objects pointed at, and the chat (one per browser session)."""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .limits import VideoInfo

_STOP_EVENTS: dict[str, threading.Event] = {}  # DemoState.uid -> its stop event (a lock cannot be pickled)
_EVENTS_LOCK = threading.Lock()
# DemoState.uid -> the copy of that state the visitor's last event used (ZeroGPU hands back copies from its worker);
# weak, so that a copy gradio has replaced is not kept alive here
_LIVE: weakref.WeakValueDictionary[str, DemoState] = weakref.WeakValueDictionary()


def live_state(uid: str) -> DemoState | None:
    """The copy of the state `uid` that the visitor's last event used, or None once gradio has dropped it."""
    with _EVENTS_LOCK:
        return _LIVE.get(uid)


@dataclass
class FramePrompt:
    """What the visitor gave for one object on one frame: clicks and a box, or a brush mask."""

    points: list[list[float]] = field(default_factory=list)  # [[x, y], ...] in video pixels
    labels: list[int] = field(default_factory=list)  # 1 positive, 0 negative
    box: list[float] | None = None  # [x0, y0, x1, y1]
    brush: bool = False

    def as_session_prompt(self) -> dict[str, Any]:
        """Keyword form for `SegmentationSession.add_prompts`."""
        prompt: dict[str, Any] = {}
        if self.points:
            prompt.update(points=np.asarray(self.points, dtype=np.float32), labels=np.asarray(self.labels))
        if self.box is not None:
            prompt["box"] = np.asarray(self.box, dtype=np.float32)
        return prompt


@dataclass
class DemoObject:
    """One object: `<objectK>` where K is its position in `DemoState.objects`."""

    obj_id: int  # the segmentation session's id (stable across renumbering)
    name: str
    prompts: dict[int, FramePrompt] = field(default_factory=dict)  # slider position -> prompt
    tracked: bool = False  # masks on every decoded frame are up to date
    last_prompt_pos: int | None = None


@dataclass
class ChatTurn:
    """One exchange of the chat. `in_history` turns are the conversation the model sees again on a follow-up; the
    Describe button's turns are not (they ask `DESCRIBE_PROMPT` about one object, as `/describe` does)."""

    question: str  # as sent to the model
    answer: str
    shown: str | None = None  # what the chat shows instead of `question` (e.g. "Describe <object1>")
    in_history: bool = True


@dataclass
class DemoState:
    """Everything one visitor has: never shared between sessions."""

    info: VideoInfo
    frame_indices: list[int]  # raw frame index of each decoded frame (the slider's positions)
    session: Any  # videorefer.segmentation.SegmentationSession over the decoded frames
    objects: list[DemoObject] = field(default_factory=list)
    active: int | None = None  # index of the object being edited
    next_id: int = 0
    pending_corner: tuple[float, float] | None = None  # first corner of a box being drawn
    pending_pos: int | None = None
    chat: list[ChatTurn] = field(default_factory=list)
    saved_objects: list[dict] = field(default_factory=list)  # an example's saved objects (name, prompt)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex)  # the same in every copy of this state
    closed: str | None = None  # why the visitor's frames and masks were freed (`Sessions.close`); set: the state is spent
    last_used: float = field(default_factory=time.monotonic)  # `touch`ed by every event (idle visitors are closed)

    def touch(self) -> None:
        """The visitor did something with this copy of their state: their idle time starts over."""
        self.last_used = time.monotonic()
        with _EVENTS_LOCK:
            _LIVE[self.uid] = self

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frames, masks and cached features this state holds."""
        return self.session.nbytes if self.session is not None else 0

    @property
    def history(self) -> list[tuple[str, str]]:
        """(question, answer) pairs of the conversation, as the model sees them on a follow-up."""
        return [(turn.question, turn.answer) for turn in self.chat if turn.in_history]

    @property
    def stop_event(self) -> threading.Event:
        """Set to end the running answer early. Shared by every copy of this state in this process (ZeroGPU hands
        back pickled copies of the state; a Stop click or a visitor leaving must reach the answer being written)."""
        with _EVENTS_LOCK:
            return _STOP_EVENTS.setdefault(self.uid, threading.Event())

    def forget_stop_event(self) -> None:
        with _EVENTS_LOCK:
            _STOP_EVENTS.pop(self.uid, None)

    @property
    def names(self) -> list[str]:
        return [obj.name for obj in self.objects]

    def frame(self, pos: int) -> np.ndarray:
        return self.session.frames[self.clamp(pos)]

    def clamp(self, pos: Any) -> int:
        """A valid slider position from whatever the slider sent."""
        try:
            value = int(round(float(pos)))
        except (TypeError, ValueError):
            value = 0
        return min(max(value, 0), len(self.frame_indices) - 1)

    def masks_on(self, pos: int) -> dict[int, np.ndarray]:
        """Object index -> mask on slider position `pos`, for the objects that have one there."""
        all_masks = self.session.masks
        out = {}
        for k, obj in enumerate(self.objects):
            mask = all_masks.get(obj.obj_id, {}).get(pos)
            if mask is not None and (obj.tracked or pos in obj.prompts):
                out[k] = mask
        return out

    def object_masks(self, k: int) -> dict[int, np.ndarray]:
        """Object `k`'s current masks by raw frame index (tracked frames, or its prompted frames only)."""
        obj = self.objects[k]
        masks = self.session.masks.get(obj.obj_id, {})
        keep = masks if obj.tracked else {p: m for p, m in masks.items() if p in obj.prompts}
        return {self.frame_indices[p]: m for p, m in keep.items()}
