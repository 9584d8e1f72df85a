"""The demo's logic behind the page's events (no gradio here): open a video, point at objects, track, ask.

Functions raise `DemoError` with a message for the visitor; the gradio layer turns it into `gr.Error`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from videorefer.regions import FRAME_MODES, select_object_frames

from .backend import Backend
from .budget import Budget
from .chat import renumber_chat
from .decode import VideoFile, as_model_video
from .image_mode import ask_image_stream, is_image  # images: one-frame videos
from .limits import DemoError, Limits, _short, check_name, check_question, recent_history
from .overlay import render_overlay
from .state import ChatTurn, DemoObject, DemoState, FramePrompt

MODES = FRAME_MODES
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"
CLICK_MODES = ("positive", "negative", "box")
logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------ video
def decoded_frame_indices(total: int, scrub_frames: int, model_frames: Sequence[int]) -> list[int]:
    """Raw frames decoded once per video: an even grid for the slider plus the frames the model samples
    (`model_frames`, from `Backend.model_frames`), so that multi-frame questions use tracked masks exactly on the
    model's frames."""
    grid = np.linspace(0, total - 1, num=min(total, max(1, scrub_frames))).round().astype(int).tolist()
    return sorted(set(grid) | {int(f) for f in model_frames})


def example_objects(path: str, examples_dir: Path = EXAMPLES_DIR) -> list[dict]:
    """The saved objects (`name`, `prompt` with `frame_idx`, points, labels, box) of the example video whose bytes
    `path` holds, or [] (any other video, or no `examples/` folder next to the package)."""
    size = os.path.getsize(path)
    for regions_file in sorted(examples_dir.glob("*.regions.json")) if examples_dir.is_dir() else []:
        document = json.loads(regions_file.read_text())
        example = examples_dir / document.get("video", "")
        if example.is_file() and example.stat().st_size == size and _sha256(example) == _sha256(Path(path)):
            return [obj for obj in document.get("objects", []) if obj.get("prompt")]
    return []


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def open_video(backend: Backend, path: str | None, limits: Limits) -> DemoState:
    """Check the video, decode its frames once and start a segmentation session on them.

    The file is opened once (`VideoFile`); the decoded frames serve SAM 2 and (`model_video`) the video LLM. For an
    example video, the frames its saved objects were pointed at on are decoded too, and the objects are kept in the
    state for `add_saved_objects`.
    """
    with VideoFile(path, limits) as video:
        info = video.info
        saved = example_objects(info.path)
        model_frames = backend.model_frames(info)[0]
        # the decoded frames take at most half of the visitor's memory (`session_mb`): fewer slider frames if need be
        room = int(limits.session_mb * 2**20 / 2 // (info.height * info.width * 3)) - len(set(model_frames))
        indices = decoded_frame_indices(info.total_frames, max(1, min(limits.scrub_frames, room)), model_frames)
        indices = sorted(set(indices) | {int(obj["prompt"]["frame_idx"]) for obj in saved})
        frames = np.ascontiguousarray(video.decode(indices))
    session = backend.segmenter.init_state(frames)
    return DemoState(info=info, frame_indices=indices, session=session, saved_objects=saved)


def add_saved_objects(state: DemoState, limits: Limits) -> int:
    """Point at an example's saved objects (their clicks and boxes, replayed through SAM 2); returns how many."""
    if not state.saved_objects:
        raise DemoError("This video has no saved objects (only the examples do).")
    added = 0
    for obj in state.saved_objects:
        if len(state.objects) >= limits.max_objects:
            break
        prompt = obj["prompt"]
        labels = prompt.get("labels") or [1] * len(prompt.get("points", []))
        saved = FramePrompt(points=[[float(v) for v in p] for p in prompt.get("points", [])], labels=list(labels),
                            box=[float(v) for v in prompt["box"]] if prompt.get("box") else None)
        new_object(state, limits, obj.get("name"))
        with model_errors("SAM 2"):
            _apply(state, state.objects[state.active], state.frame_indices.index(int(prompt["frame_idx"])), saved)
        added += 1
    return added


def frame_caption(state: DemoState, pos: int) -> str:
    """'Frame 60 of 132 (2.40 s)' for slider position `pos` ('Image 640×480' for an image)."""
    if is_image(state.info.path):
        return f"Image {state.info.width}×{state.info.height}"
    raw = state.frame_indices[state.clamp(pos)]
    when = f" ({raw / state.info.fps:.2f} s)" if state.info.fps else ""
    return f"Frame {raw} of {state.info.total_frames}{when}"


def view(state: DemoState, pos: int, max_side: int = 960) -> np.ndarray:
    """The frame at slider position `pos` with every object's mask, clicks and boxes drawn on it."""
    pos = state.clamp(pos)
    clicks, boxes = [], []
    for k, obj in enumerate(state.objects):
        prompt = obj.prompts.get(pos)
        if prompt is None:
            continue
        clicks += [(k, x, y, label) for (x, y), label in zip(prompt.points, prompt.labels)]
        if prompt.box is not None:
            boxes.append((k, prompt.box))
    pending = state.pending_corner if state.pending_pos == pos else None
    return render_overlay(state.frame(pos), state.masks_on(pos), clicks, boxes, pending, max_side)


# ---------------------------------------------------------------------------------------------------- objects
def new_object(state: DemoState, limits: Limits, name: str | None = None) -> int:
    """Add an empty object, make it the active one and return its index."""
    if len(state.objects) >= limits.max_objects:
        raise DemoError(f"At most {limits.max_objects} objects; remove one first.")
    k = len(state.objects)
    state.objects.append(DemoObject(obj_id=state.next_id, name=(name or "").strip() or f"object {k}"))
    state.next_id += 1
    state.active = k
    state.pending_corner = None
    return k


def select_object(state: DemoState, k: int | None) -> None:
    if k is None or not 0 <= k < len(state.objects):
        raise DemoError("There is no such object.")
    state.active, state.pending_corner = k, None


def rename_object(state: DemoState, name: str, limits: Limits = Limits(), reserved: Sequence[str] = ()) -> None:
    if state.active is None:
        raise DemoError("Select an object to rename.")
    state.objects[state.active].name = check_name(name, limits, reserved, what="A name")


def remove_object(state: DemoState) -> None:
    """Remove the active object; the later ones move up one number (`<object2>` becomes `<object1>`), in the chat
    too (`chat.renumber_chat`)."""
    if state.active is None:
        raise DemoError("Select an object to remove.")
    removed = state.active
    obj = state.objects.pop(removed)
    renumber_chat(state.chat, removed, obj.name)
    if obj.obj_id in state.session.obj_ids:
        state.session.remove_object(obj.obj_id)
    state.active = (min(state.active, len(state.objects) - 1)) if state.objects else None
    state.pending_corner = None


def _x_y(state: DemoState, x: float, y: float) -> tuple[float, float]:
    h, w = state.session.height, state.session.width
    if not (0 <= x < w and 0 <= y < h):
        raise DemoError(f"The click at ({x:.0f}, {y:.0f}) is outside the {w}×{h} frame.")
    return float(x), float(y)


def click(state: DemoState, pos: int, x: float, y: float, mode: str, limits: Limits) -> str | None:
    """A click at (x, y) video pixels on slider position `pos`: a positive/negative point or a box corner for the
    active object (created if there is none). Returns a warning for the visitor, or None."""
    if mode not in CLICK_MODES:
        raise DemoError(f"Unknown click mode {mode!r}.")
    pos = state.clamp(pos)
    x, y = _x_y(state, x, y)
    if state.active is None:
        new_object(state, limits)
    obj = state.objects[state.active]
    prompt = obj.prompts.get(pos)
    prompt = FramePrompt() if prompt is None or prompt.brush else prompt
    if mode == "box":
        if state.pending_corner is None or state.pending_pos != pos:
            state.pending_corner, state.pending_pos = (x, y), pos
            return None
        (x0, y0), state.pending_corner = state.pending_corner, None
        if abs(x - x0) < 2 or abs(y - y0) < 2:
            return "That box is too small: click two opposite corners."
        prompt.box = [min(x0, x), min(y0, y), max(x0, x), max(y0, y)]
    else:
        if len(prompt.points) >= limits.max_points:
            raise DemoError(f"At most {limits.max_points} clicks per object on a frame: clear the clicks on this frame "
                            "and click again.")
        prompt.points.append([x, y])
        prompt.labels.append(1 if mode == "positive" else 0)
    return _apply(state, obj, pos, prompt)


def brush(state: DemoState, pos: int, mask: np.ndarray, refine: bool, limits: Limits) -> str | None:
    """A brush mask (H, W) for the active object on slider position `pos` (SAM refines it unless `refine` is
    False)."""
    pos = state.clamp(pos)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (state.session.height, state.session.width):
        raise DemoError("The brush mask does not match the frame size; please draw again.")
    if not mask.any():
        raise DemoError("The brush mask is empty: paint over the object first.")
    if state.active is None:
        new_object(state, limits)
    obj = state.objects[state.active]
    result = state.session.add_mask(pos, obj.obj_id, mask, as_drawn=not refine)
    obj.prompts[pos] = FramePrompt(brush=True)
    obj.tracked, obj.last_prompt_pos = False, pos
    return None if result.any() else "SAM found no object in that brush mask; paint again or click."


def _apply(state: DemoState, obj: DemoObject, pos: int, prompt: FramePrompt) -> str | None:
    if not prompt.points and prompt.box is None:
        return None
    try:
        mask = state.session.add_prompts(pos, {obj.obj_id: prompt.as_session_prompt()})[obj.obj_id]
    except ValueError as error:
        raise DemoError(str(error)) from None
    obj.prompts[pos] = prompt
    obj.tracked, obj.last_prompt_pos = False, pos
    return None if mask.any() else "The mask is empty here: click on another part of the object."


def clear_frame(state: DemoState, pos: int) -> None:
    """Forget the active object's clicks on this frame (the object is removed from SAM if nothing is left)."""
    if state.active is None:
        return
    obj, pos = state.objects[state.active], state.clamp(pos)
    obj.prompts.pop(pos, None)
    state.pending_corner = None
    if obj.obj_id in state.session.obj_ids:
        state.session.remove_object(obj.obj_id)
    obj.tracked = False
    for p, prompt in obj.prompts.items():  # replay the prompts on other frames
        if not prompt.brush:
            state.session.add_prompts(p, {obj.obj_id: prompt.as_session_prompt()})
    obj.prompts = {p: pr for p, pr in obj.prompts.items() if not pr.brush}
    obj.last_prompt_pos = max(obj.prompts) if obj.prompts else None


def track(backend: Backend, state: DemoState, progress: Callable[[int, int], None] | None = None) -> None:
    """Track every object through all decoded frames, within the visitor's memory (`session_mb`) and the tracking
    budget (`track_seconds`); stops when the visitor leaves (their stop event)."""
    from .sessions import check_room

    if not any(obj.prompts for obj in state.objects):
        raise DemoError("Nothing to track yet: click on an object first.")
    limits = backend.settings.limits
    check_room(state, len(state.objects), len(state.frame_indices), limits, "Tracking")
    state.stop_event.clear()
    budget = Budget(limits.track_seconds, "Tracking", "Track fewer objects or use a shorter video.", state.stop_event)
    with model_errors("SAM 2"):
        state.session.propagate(progress=budget.progress(progress))
    for obj in state.objects:
        obj.tracked = bool(obj.prompts)


# ---------------------------------------------------------------------------------------------------- asking
@contextlib.contextmanager
def model_errors(what: str = "The model") -> Iterator[None]:
    """Turn out-of-memory and other model failures into a `DemoError` (and free cached GPU memory)."""
    import torch

    try:
        yield
    except DemoError:
        raise
    except torch.cuda.OutOfMemoryError:
        logger.exception("%s ran out of GPU memory", what)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise DemoError(f"{what} ran out of GPU memory: try a shorter video, fewer objects or a shorter question.") from None
    except Exception as error:  # the visitor gets one sentence; the log gets the traceback
        logger.exception("%s failed", what)
        raise DemoError(f"{what} failed: {_short(error)}") from None


def choose_frames(
    masks: dict[int, np.ndarray], mode: str, model_frames: Sequence[int], prompt_frame: int | None = None
) -> dict[int, np.ndarray]:
    """The frames of one object the model sees: `videorefer.regions.select_object_frames` (single / multi / auto),
    preferring the prompted frame in single mode when it has a mask."""
    if mode not in MODES:
        raise DemoError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not any(np.asarray(m).any() for m in masks.values()):
        raise DemoError("its mask is empty")
    usable = prompt_frame is not None and prompt_frame in masks and np.asarray(masks[prompt_frame]).any()
    return select_object_frames(masks, mode, prompt_frame if usable else None, model_frames)


def regions_for_model(
    objects: Sequence[dict[int, np.ndarray]], mode: str, model_frames: Sequence[int],
    prompt_frames: Sequence[int | None] | None = None,
) -> list[dict[int, np.ndarray]]:
    """`choose_frames` for each object, with a message naming the object when one cannot be used."""
    out = []
    for k, masks in enumerate(objects):
        try:
            out.append(choose_frames(masks, mode, model_frames, prompt_frames[k] if prompt_frames else None))
        except ValueError as error:
            raise DemoError(f"<object{k}> cannot be used: {error}.") from None
    return out


def state_regions(backend: Backend, state: DemoState, mode: str) -> list[dict[int, np.ndarray]]:
    """The model's regions for the visitor's objects (`auto`: multi-frame once an object has masks on several frames,
    e.g. after tracking, else single)."""
    model_frames = backend.model_frames(state.info)[0]
    regions = []
    for k, obj in enumerate(state.objects):
        if not obj.prompts:
            raise DemoError(f"<object{k}> has no mask yet: click on it, or remove it.")
        prompt_frame = state.frame_indices[obj.last_prompt_pos] if obj.last_prompt_pos is not None else None
        regions += regions_for_model([state.object_masks(k)], mode, model_frames, [prompt_frame])
    return regions


def ask_stream(
    backend: Backend, video, regions: Sequence[dict[int, np.ndarray]], question: str,
    history: Sequence[tuple[str, str]] = (), stop_event=None,
) -> Iterator[str]:
    """Stream the growing answer; model failures become `DemoError`. `video`: a path or a decoded `Video` (an image:
    its path or its decoded (H, W, 3) pixels).

    If the caller stops listening (the visitor left, the API client disconnected, the event was cancelled), the
    generator is closed and `stop_event` ends the generation thread instead of letting it write on unread.
    """
    stop_event = stop_event if stop_event is not None else threading.Event()
    finished = False
    try:
        with model_errors():
            if _is_image(video):  # one function for images, where a family answering them natively plugs in
                yield from ask_image_stream(backend, video, regions, question, history, stop_event)
            else:
                yield from backend.model.ask_stream(
                    video, list(regions), question, history=list(history) or None, stop_event=stop_event
                )
        finished = True
    finally:
        if not finished:
            stop_event.set()


def chat_question(backend: Backend, state: DemoState, question: str, mode: str, limits: Limits):
    """The checked question and the model's regions for a chat question (CPU only; raises `DemoError`)."""
    question = check_question(question, len(state.objects), limits, backend.reserved_tokens)
    return question, state_regions(backend, state, mode)


def describe_request(backend: Backend, state: DemoState, mode: str) -> tuple[str, list[dict[int, np.ndarray]]]:
    """What the Describe button asks: exactly the family's describe prompt (`VideoRefer.describe_prompt`) about the
    selected object alone, as `/describe`."""
    if state.active is None:
        raise DemoError("Point at an object first (or select one) to describe it.")
    return backend.model.describe_prompt, [state_regions(backend, state, mode)[state.active]]


def model_video(backend: Backend, state: DemoState):
    """The video the model reads: the frames decoded on upload (they hold the model's sampled frames), so that the
    file is not decoded again."""
    return as_model_video(state.info, state.frame_indices, state.session.frames, backend.model_frames(state.info))


def answer_stream(
    backend: Backend, state: DemoState, question: str, regions: Sequence[dict[int, np.ndarray]], describe: bool = False
) -> Iterator[str]:
    """Stream the answer (GPU work only: nothing of `state` changes here; see `record_answer`)."""
    history = () if describe else recent_history(state.history, backend.settings.limits)
    answer = ""
    for answer in ask_stream(backend, model_video(backend, state), regions, question, history, state.stop_event):
        yield answer
    if state.stop_event.is_set():
        yield answer + " …(stopped)"


def record_answer(state: DemoState, question: str, answer: str, describe_object: int | None = None) -> None:
    """Add the finished exchange to the chat (a Describe turn is shown but stays out of the model's history)."""
    if describe_object is None:
        state.chat.append(ChatTurn(question, answer))
    else:
        state.chat.append(ChatTurn(question, answer, shown=f"Describe <object{describe_object}>", in_history=False))


def _is_image(video) -> bool:
    """A still image: its path, or its decoded (H, W, 3) pixels (`decode.as_model_video` of an image)."""
    return (isinstance(video, np.ndarray) and video.ndim == 3) or is_image(video)


def ask_in_session(backend: Backend, state: DemoState, question: str, mode: str, limits: Limits) -> Iterator[str]:
    """Answer a chat question about the visitor's objects, streaming; the exchange joins the history at the end."""
    question, regions = chat_question(backend, state, question, mode, limits)
    state.stop_event.clear()
    answer = ""
    for answer in answer_stream(backend, state, question, regions):
        yield answer
    record_answer(state, question, answer)
