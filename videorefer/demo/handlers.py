"""The gradio side of the demo: one method per page event or API endpoint, wrapping `service` / `endpoints`.

`DemoHandlers(backend)` holds the shared models; every method takes the visitor's `DemoState` (a `gr.State`) and
returns component updates. `DemoError` becomes `gr.Error` (shown in the page, returned as the error over the API);
empty masks and similar hints become `gr.Warning`.
"""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from . import endpoints, playback, service
from .backend import Backend
from .errors import user_errors
from .find import find_api, find_in_state
from .image_mode import is_image
from .limits import DemoError
from .overlay import colour_tags, display_size, legend_html
from .sessions import Sessions
from .state import DemoState
from .durations import (
    _answer_seconds,
    _api_find_seconds,
    _api_segment_seconds,
    _api_track_seconds,
    _find_seconds,
    _prompt_seconds,
    _track_seconds,
)
from .zerogpu import gpu, on_zero_gpu, shared_by_reference

logger = logging.getLogger(__name__)

MAX_SIDE = 960  # longest side of the frame shown in the page
CLICK_LABELS = {"Positive click": "positive", "Negative click": "negative", "Box (click 2 corners)": "box"}
MODE_LABELS = {"Auto (multi-frame if tracked)": "auto", "Single frame": "single", "Multi-frame": "multi"}
RELATE = "How do these objects relate to each other?"


def _handback(state: DemoState) -> DemoState:
    """The state a GPU call returns. On ZeroGPU it travels back from the worker: its SAM 2 features (CUDA tensors of
    the worker's lent GPU) stay behind, recomputed on the next call that needs them."""
    if on_zero_gpu():
        state.session._store.clear()
    return state


def _need(state: DemoState | None) -> DemoState:
    """The visitor's live state (touched: their idle time starts over), or `DemoError` saying what to do."""
    if state is None:
        raise DemoError("Please upload a video first (or pick the example below it).")
    if state.closed:
        raise DemoError(state.closed)
    state.touch()
    return state


class DemoHandlers:
    """Event handlers bound to the loaded models.

    Methods decorated with `gpu` may run in ZeroGPU's forked worker: they return the state they changed, and the
    caller carries on with that (on a plain GPU or CPU it is the same object). `user_errors` sits inside `gpu`, so
    that a `DemoError` crosses back from the worker as the `gr.Error` ZeroGPU passes on, message intact."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.limits = backend.settings.limits
        self.sessions = Sessions(backend)
        # ZeroGPU pickles a GPU call's arguments (self, the state): the models and these handlers go by name
        shared_by_reference(backend.model, backend.segmenter, self)

    # ------------------------------------------------------------------------------------------ page refresh
    def _panel(self, state: DemoState | None, pos: int = 0) -> tuple:
        """(frame image, caption, legend, object dropdown, name box) for slider position `pos`."""
        if state is None or state.closed:
            return None, "", legend_html([], [], None), gr.update(choices=[], value=None), gr.update(value="")
        pos = state.clamp(pos)
        choices = [(f"<object{k}> {name}", k) for k, name in enumerate(state.names)]
        name = state.names[state.active] if state.active is not None else ""
        return (
            service.view(state, pos, MAX_SIDE),
            service.frame_caption(state, pos),
            legend_html(state.names, [o.tracked for o in state.objects], state.active),
            gr.update(choices=choices, value=state.active),
            gr.update(value=name),
        )

    def _editor(self, state: DemoState, pos: int) -> dict:
        frame = state.frame(state.clamp(pos))
        h, w = display_size(*frame.shape[:2], MAX_SIDE)
        return {"background": np.asarray(Image.fromarray(frame).resize((w, h))), "layers": [], "composite": None}

    # ------------------------------------------------------------------------------------------------ video
    @user_errors
    def load(self, path: str | None, previous: DemoState | None, request: gr.Request = None):
        """A new video (upload or example): decode it once; the chat and objects start over."""
        if not path:
            self.sessions.release(previous)
            return (None, gr.update(maximum=1, value=0, interactive=False), None, [], *self._panel(None))
        state = service.open_video(self.backend, path, self.limits)  # a bad video keeps the previous one
        self.sessions.release(previous)
        self.sessions.register(request, state)
        n = len(state.frame_indices)
        info = state.info
        saved = (f" It has {len(state.saved_objects)} saved objects ('Use saved objects', under More, points at them)."
                 if state.saved_objects else "")
        size = f"{info.width}×{info.height}"
        loaded = f"Loaded {size}, {info.total_frames} frames; {n} frames sampled for pointing.{saved}"
        if is_image(info.path):
            loaded = f"Loaded the {size} image: click, draw a box, paint or find objects, then ask."
        gr.Info(loaded)
        return (
            state, gr.update(maximum=max(n - 1, 1), value=0, interactive=n > 1, visible=not is_image(info.path)),
            self._editor(state, 0), [],
            *self._panel(state, 0),
        )

    @user_errors
    def scrub(self, pos: float, state: DemoState | None):
        if state is None:
            return None, *self._panel(None)
        state = _need(state)
        state.pending_corner = None
        return self._editor(state, pos), *self._panel(state, pos)

    # ---------------------------------------------------------------------------------------------- objects
    @user_errors
    def on_click(self, pos: float, mode_label: str, state: DemoState | None, evt: gr.SelectData):
        """A click on the frame: positive / negative point or box corner for the active object."""
        state = _need(state)
        x, y = evt.index[0], evt.index[1]
        frame = state.frame(state.clamp(pos))
        h, w = display_size(*frame.shape[:2], MAX_SIDE)
        x_raw, y_raw = x * frame.shape[1] / w, y * frame.shape[0] / h
        state, warning = self._segment_click(state, pos, x_raw, y_raw, CLICK_LABELS.get(mode_label, "positive"))
        if warning:
            gr.Warning(warning)
        return state, *self._panel(state, pos)

    @gpu(duration=_prompt_seconds)
    @user_errors
    def _segment_click(self, state: DemoState, pos: float, x: float, y: float, mode: str):
        warning = service.click(state, state.clamp(pos), x, y, mode, self.limits)
        return _handback(state), warning

    @user_errors
    def on_brush(self, editor: dict | None, pos: float, refine: bool, state: DemoState | None):
        """Use what was painted in the brush tab as the active object's mask on this frame."""
        state = _need(state)
        layers = (editor or {}).get("layers") or []
        painted = [np.asarray(layer) for layer in layers if layer is not None]
        if not painted:
            raise DemoError("Paint over the object in the brush tab first.")
        alpha = np.any([p[..., 3] > 0 if p.ndim == 3 and p.shape[-1] == 4 else p.any(-1) for p in painted], axis=0)
        mask = np.asarray(Image.fromarray(alpha.astype(np.uint8) * 255).resize(
            (state.session.width, state.session.height), Image.NEAREST)) > 127
        state, warning = self._segment_brush(state, pos, mask, refine)
        if warning:
            gr.Warning(warning)
        return state, *self._panel(state, pos)

    @gpu(duration=_prompt_seconds)
    @user_errors
    def _segment_brush(self, state: DemoState, pos: float, mask: np.ndarray, refine: bool):
        warning = service.brush(state, state.clamp(pos), mask, refine, self.limits)
        return _handback(state), warning

    @user_errors
    def add_saved_objects(self, state: DemoState | None):
        """An example's saved objects, pointed at on the frame they were saved on (the slider moves there)."""
        state = _need(state)
        state, count = self._add_saved(state)
        gr.Info(f"Pointed at {count} saved object{'s' if count != 1 else ''}.")
        pos = state.objects[state.active].last_prompt_pos or 0
        return state, gr.update(value=pos), self._editor(state, pos), *self._panel(state, pos)

    @gpu(duration=_prompt_seconds)
    @user_errors
    def _add_saved(self, state: DemoState):
        count = service.add_saved_objects(state, self.limits)
        return _handback(state), count

    @user_errors
    def add_object(self, pos: float, state: DemoState | None):
        state = _need(state)
        service.new_object(state, self.limits)
        return state, *self._panel(state, pos)

    @user_errors
    def choose_object(self, k: int | None, pos: float, state: DemoState | None):
        if state is None or k is None or k == _need(state).active:
            return state, *self._panel(state, pos)
        service.select_object(state, int(k))
        return state, *self._panel(state, pos)

    @user_errors
    def rename(self, name: str, pos: float, state: DemoState | None):
        """Rename the selected object (its tag stays; the chat shows the new name next to it)."""
        state = _need(state)
        service.rename_object(state, name, self.limits, self.backend.reserved_tokens)
        return state, *self._panel(state, pos), self._messages(state)

    @user_errors
    def remove(self, pos: float, state: DemoState | None):
        """Remove the selected object; later objects are renumbered, in the chat too."""
        state = _need(state)
        service.remove_object(state)
        return state, *self._panel(state, pos), self._messages(state)

    @user_errors
    def clear_clicks(self, pos: float, state: DemoState | None):
        state = _need(state)
        state = self._clear(state, pos)
        return state, *self._panel(state, pos)

    @gpu(duration=_prompt_seconds)
    @user_errors
    def _clear(self, state: DemoState, pos: float) -> DemoState:
        service.clear_frame(state, state.clamp(pos))
        return _handback(state)

    @user_errors
    def track(self, pos: float, state: DemoState | None, progress=gr.Progress()):
        """Track every object through the sampled frames (progress bar), then show the tracked masks as a video and
        offer it and the regions for download."""
        state = _need(state)
        progress(0, desc="Tracking")
        state = self._track(state, progress)
        gr.Info(f"Tracked {len(state.objects)} object(s) over {len(state.frame_indices)} frames: move the slider "
                "or play the tracked video.")
        return state, *self._panel(state, pos), *self._downloads(state)

    @gpu(duration=_track_seconds)
    @user_errors
    def _track(self, state: DemoState, progress: Any) -> DemoState:
        service.track(self.backend, state, lambda done, total: progress((done, total), desc="Tracking", unit="steps"))
        return _handback(state)

    def _downloads(self, state: DemoState) -> tuple:
        """(tracked video, its download, regions download) once the objects are tracked (CPU work)."""
        video = str(playback.write_tracked_video(state))
        return video, video, str(playback.write_regions(state))

    @user_errors
    def save_regions(self, state: DemoState | None):
        """The objects as a saved-regions file to download."""
        return str(playback.write_regions(_need(state)))

    @user_errors
    def restore_regions(self, path: str | None, pos: float, state: DemoState | None):
        """Objects from an uploaded saved-regions file (refused when it was saved on another video)."""
        if not path:
            return state, *self._panel(state, pos), gr.update(), gr.update()
        state = _need(state)
        objects, names = playback.read_regions_file(path, state, self.limits)
        skipped = playback.restore_objects(state, objects, names, self.limits)
        note = f" ({skipped} masks on frames not sampled here were left out)" if skipped else ""
        gr.Info(f"Restored {len(state.objects)} object(s) from the regions file{note}.")
        video = str(playback.write_tracked_video(state))
        return state, *self._panel(state, pos), video, video

    # ------------------------------------------------------------------------------------------ find by name
    @user_errors
    def on_find(self, phrase: str, threshold: float, track_them: bool, pos: float, state: DemoState | None,
                progress=gr.Progress()):
        """Add the objects matching the typed phrase on this frame (tracked when asked). A miss or a bad phrase is a
        warning, so that the frame and objects stay on screen (an error would blank the outputs)."""
        state = _need(state)
        state, count, miss = self._find(state, pos, phrase, threshold, bool(track_them), progress)
        if miss is not None:
            gr.Warning(miss)
            return state, *self._panel(state, pos)
        tracked = " and tracked them through the video" if track_them and len(state.frame_indices) > 1 else ""
        gr.Info(f"Found {count} object{'s' if count != 1 else ''} matching '{phrase.strip()}'{tracked}.")
        return state, *self._panel(state, pos)

    @gpu(duration=_find_seconds)
    @user_errors
    def _find(self, state: DemoState, pos: float, phrase: str, threshold: float, track_them: bool, progress: Any):
        """(state, objects added, the miss message or None): a miss comes back as a value, not an error, so that
        the page keeps its frame on screen."""
        report = lambda done, total: progress((done, total), desc="Tracking", unit="steps")  # noqa: E731
        try:
            count = find_in_state(self.backend, state, pos, phrase, threshold, track_them, self.limits, report)
        except DemoError as error:
            return _handback(state), 0, str(error)
        return _handback(state), count, None

    # ------------------------------------------------------------------------------------------------- chat
    def _messages(self, state: DemoState | None, pending: tuple[str, str] | None = None) -> list[dict]:
        turns = [(t.shown or t.question, t.answer) for t in state.chat] if state is not None else []
        turns += [pending] if pending else []
        names = state.names if state is not None else []
        messages = []
        for question, answer in turns:
            messages.append({"role": "user", "content": colour_tags(question, names)})
            messages.append({"role": "assistant", "content": colour_tags(answer, names) or "…"})
        return messages

    @user_errors
    def ask(self, question: str, mode_label: str, state: DemoState | None):
        """Stream the answer into the chat; the question box is cleared once the answer starts."""
        state = _need(state)
        mode = MODE_LABELS.get(mode_label, "auto")
        question, regions = service.chat_question(self.backend, state, question, mode, self.limits)
        yield from self._stream(state, question, regions, question, None)

    @user_errors
    def describe(self, mode_label: str, state: DemoState | None):
        """The Describe button: exactly `DESCRIBE_PROMPT` about the selected object alone (as `/describe`)."""
        state = _need(state)
        question, regions = service.describe_request(self.backend, state, MODE_LABELS.get(mode_label, "auto"))
        yield from self._stream(state, question, regions, f"Describe <object{state.active}>", state.active)

    def _stream(self, state: DemoState, question: str, regions: list, shown: str, describe_object: int | None):
        state.stop_event.clear()
        answer, finished = "", False
        try:
            for answer in self._answer(state, question, regions, describe_object is not None):
                yield self._messages(state, (shown, answer)), ""
            finished = True
        finally:
            if not finished:  # the visitor left or the event was cancelled: stop writing
                state.stop_event.set()
        service.record_answer(state, question, answer, describe_object)
        yield self._messages(state), ""

    @gpu(duration=_answer_seconds)
    @user_errors
    def _answer(self, state: DemoState, question: str, regions: list, describe: bool):
        yield from service.answer_stream(self.backend, state, question, regions, describe)

    def stop(self, state: DemoState | None) -> None:
        """Ask the running answer to stop (it keeps what was written so far)."""
        if state is not None:
            state.stop_event.set()

    def clear_chat(self, state: DemoState | None):
        if state is not None:
            state.chat.clear()
        return []

    @staticmethod
    def relate_question(state: DemoState | None) -> str:
        n = len(state.objects) if state is not None else 0
        if n < 2:
            return RELATE
        return f"How do {', '.join(f'<object{k}>' for k in range(n - 1))} and <object{n - 1}> relate to each other?"

    # -------------------------------------------------------------------------------------------- sessions
    def release(self, state: DemoState | None) -> None:
        """`gr.State`'s delete callback: the visitor's session ended (tab closed long ago, or expired)."""
        self.sessions.release(state)

    def unload(self, request: gr.Request) -> None:
        """The visitor closed or reloaded the tab: stop their answer and free their GPU memory now."""
        self.sessions.leave(request)

    # -------------------------------------------------------------------------------------------------- API
    @gpu(duration=_api_segment_seconds)
    @user_errors
    def api_segment(self, video: str | None, frame_index: float, points: Any, labels: Any, box: Any) -> dict:
        """Mask of one object on one frame from clicks and/or a box → `{"frame_index", "mask": RLE, "area"}`."""
        return endpoints.segment(self.backend, video, frame_index, points, labels, box, self.limits)

    @gpu(duration=_api_track_seconds)
    @user_errors
    def api_track(self, video: str | None, regions: Any) -> dict:
        """Track the objects of a regions document → a regions document with a mask on every sampled frame."""
        return endpoints.track(self.backend, video, regions, self.limits)

    @gpu(duration=_answer_seconds)
    @user_errors
    def api_describe(self, video: str | None, regions: Any, mode: str) -> str:
        """A detailed description of the one object in `regions`."""
        return endpoints.describe(self.backend, video, regions, mode, self.limits)

    @gpu(duration=_answer_seconds)
    @user_errors
    def api_ask(self, video: str | None, regions: Any, question: str, history: Any, mode: str):
        """Stream the answer to a question about `<object0>`, `<object1>`, ... of `regions`."""
        yield from endpoints.ask_stream_api(self.backend, video, regions, question, history, mode, self.limits)

    @gpu(duration=_api_find_seconds)
    @user_errors
    def api_find(self, video: str | None, frame_index: float, phrase: str, track: bool, threshold: float | None
                 ) -> dict:
        """Objects matching a noun phrase on one frame (tracked on request) → regions with box and score each."""
        return find_api(self.backend, video, frame_index, phrase, track, threshold, self.limits)
