"""The gradio side of the demo: one method per page event or API endpoint, wrapping `service` / `endpoints`.

`DemoHandlers(backend)` holds the shared models; every method takes the visitor's `DemoState` (a `gr.State`) and
returns component updates. `DemoError` becomes `gr.Error` (shown in the page, returned as the error over the API);
empty masks and similar hints become `gr.Warning`.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import gradio as gr
import numpy as np
from PIL import Image

from videorefer.prompts import describe_question

from . import endpoints, service
from .find import find_api, find_in_state
from .image_mode import is_image
from .backend import Backend, gpu
from .limits import DemoError
from .overlay import colour_tags, display_size, legend_html
from .state import DemoState

MAX_SIDE = 960  # longest side of the frame shown in the page
CLICK_LABELS = {"Positive click": "positive", "Negative click": "negative", "Box (click 2 corners)": "box"}
MODE_LABELS = {"Auto (multi-frame if tracked)": "auto", "Single frame": "single", "Multi-frame": "multi"}
RELATE = "How do these objects relate to each other?"


def user_errors(fn: Callable) -> Callable:
    """Show `DemoError` (and any unexpected error, briefly) as `gr.Error`; works for functions and generators."""

    def convert(error: Exception) -> gr.Error:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, DemoError):
            return gr.Error(str(error))
        return gr.Error(f"Something went wrong: {type(error).__name__}: {str(error)[:200]}")

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:
                raise convert(error) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            raise convert(error) from None

    return wrapper


def _need(state: DemoState | None) -> DemoState:
    if state is None:
        raise DemoError("Please upload a video first (or pick the example below it).")
    return state


class DemoHandlers:
    """Event handlers bound to the loaded models."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.limits = backend.settings.limits

    # ------------------------------------------------------------------------------------------ page refresh
    def _panel(self, state: DemoState | None, pos: int = 0) -> tuple:
        """(frame image, caption, legend, object dropdown, name box) for slider position `pos`."""
        if state is None:
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
    def load(self, path: str | None, _state: DemoState | None):
        """A new video (upload or example): decode it once; the chat and objects start over."""
        if not path:
            return (None, gr.update(maximum=1, value=0, interactive=False), None, [], *self._panel(None))
        state = service.open_video(self.backend, path, self.limits)
        n = len(state.frame_indices)
        info = state.info
        saved = f" It has {len(state.saved_objects)} saved objects: press 'Use saved objects'." if state.saved_objects else ""
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
        warning = self._segment_click(state, pos, x_raw, y_raw, CLICK_LABELS.get(mode_label, "positive"))
        if warning:
            gr.Warning(warning)
        return state, *self._panel(state, pos)

    @gpu
    def _segment_click(self, state: DemoState, pos: float, x: float, y: float, mode: str) -> str | None:
        return service.click(state, state.clamp(pos), x, y, mode, self.limits)

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
        warning = self._segment_brush(state, pos, mask, refine)
        if warning:
            gr.Warning(warning)
        return state, *self._panel(state, pos)

    @gpu
    def _segment_brush(self, state: DemoState, pos: float, mask: np.ndarray, refine: bool) -> str | None:
        return service.brush(state, state.clamp(pos), mask, refine, self.limits)

    @user_errors
    def add_saved_objects(self, state: DemoState | None):
        """An example's saved objects, pointed at on the frame they were saved on (the slider moves there)."""
        state = _need(state)
        count = self._add_saved(state)
        gr.Info(f"Pointed at {count} saved object{'s' if count != 1 else ''}.")
        pos = state.objects[state.active].last_prompt_pos or 0
        return state, gr.update(value=pos), self._editor(state, pos), *self._panel(state, pos)

    @gpu
    def _add_saved(self, state: DemoState) -> int:
        return service.add_saved_objects(state, self.limits)

    @user_errors
    def add_object(self, pos: float, state: DemoState | None):
        state = _need(state)
        service.new_object(state, self.limits)
        return state, *self._panel(state, pos)

    @user_errors
    def choose_object(self, k: int | None, pos: float, state: DemoState | None):
        if state is None or k is None or k == state.active:
            return state, *self._panel(state, pos)
        service.select_object(state, int(k))
        return state, *self._panel(state, pos)

    @user_errors
    def rename(self, name: str, pos: float, state: DemoState | None):
        state = _need(state)
        service.rename_object(state, name)
        return state, *self._panel(state, pos)

    @user_errors
    def remove(self, pos: float, state: DemoState | None):
        state = _need(state)
        service.remove_object(state)
        return state, *self._panel(state, pos)

    @user_errors
    def clear_clicks(self, pos: float, state: DemoState | None):
        state = _need(state)
        self._clear(state, pos)
        return state, *self._panel(state, pos)

    @gpu
    def _clear(self, state: DemoState, pos: float) -> None:
        service.clear_frame(state, state.clamp(pos))

    @user_errors
    def track(self, pos: float, state: DemoState | None, progress=gr.Progress()):
        """Track every object through the sampled frames, with a progress bar."""
        state = _need(state)
        progress(0, desc="Tracking")
        self._track(state, lambda done, total: progress((done, total), desc="Tracking", unit="steps"))
        gr.Info(f"Tracked {len(state.objects)} object(s) over {len(state.frame_indices)} frames: move the slider.")
        return state, *self._panel(state, pos)

    @gpu
    def _track(self, state: DemoState, report: Callable[[int, int], None]) -> None:
        service.track(self.backend, state, report)

    # ------------------------------------------------------------------------------------------ find by name
    @user_errors
    def on_find(self, phrase: str, threshold: float, track_them: bool, pos: float, state: DemoState | None,
                progress=gr.Progress()):
        """Add the objects matching the typed phrase on this frame (tracked when asked). A miss or a bad phrase is a
        warning, so that the frame and objects stay on screen (an error would blank the outputs)."""
        state = _need(state)
        report = lambda done, total: progress((done, total), desc="Tracking", unit="steps")  # noqa: E731
        try:
            count = self._find(state, pos, phrase, threshold, bool(track_them), report)
        except DemoError as error:
            gr.Warning(str(error))
            return state, *self._panel(state, pos)
        tracked = " and tracked them through the video" if track_them and len(state.frame_indices) > 1 else ""
        gr.Info(f"Found {count} object{'s' if count != 1 else ''} matching '{phrase.strip()}'{tracked}.")
        return state, *self._panel(state, pos)

    @gpu
    def _find(self, state: DemoState, pos: float, phrase: str, threshold: float, track_them: bool, report) -> int:
        return find_in_state(self.backend, state, pos, phrase, threshold, track_them, self.limits, report)

    @user_errors
    @gpu
    def api_find(self, video: str | None, frame_index: float, phrase: str, track: bool, threshold: float | None
                 ) -> dict:
        """Objects matching a noun phrase on one frame (tracked on request) → regions with box and score each."""
        return find_api(self.backend, video, frame_index, phrase, track, threshold, self.limits)

    # ------------------------------------------------------------------------------------------------- chat
    def _messages(self, state: DemoState, pending: tuple[str, str] | None = None) -> list[dict]:
        turns = list(state.history) + ([pending] if pending else [])
        messages = []
        for question, answer in turns:
            messages.append({"role": "user", "content": colour_tags(question, state.names)})
            messages.append({"role": "assistant", "content": colour_tags(answer, state.names) or "…"})
        return messages

    @user_errors
    def ask(self, question: str, mode_label: str, state: DemoState | None):
        """Stream the answer into the chat; the question box is cleared once the answer starts."""
        state = _need(state)
        mode = MODE_LABELS.get(mode_label, "auto")
        text = question
        for answer in self._ask(state, question, mode):
            text = ""
            yield self._messages(state, (question.strip(), answer)), text
        yield self._messages(state), ""

    @gpu
    def _ask(self, state: DemoState, question: str, mode: str):
        yield from service.ask_in_session(self.backend, state, question, mode, self.limits)

    def stop(self, state: DemoState | None) -> None:
        """Ask the running answer to stop (it keeps what was written so far)."""
        if state is not None:
            state.stop_event.set()

    def clear_chat(self, state: DemoState | None):
        if state is not None:
            state.history.clear()
        return []

    def describe_question(self, state: DemoState | None) -> str:
        k = state.active if state is not None and state.active is not None else 0
        return describe_question(k)

    @staticmethod
    def relate_question(state: DemoState | None) -> str:
        n = len(state.objects) if state is not None else 0
        if n < 2:
            return RELATE
        return f"How do {', '.join(f'<object{k}>' for k in range(n - 1))} and <object{n - 1}> relate to each other?"

    # -------------------------------------------------------------------------------------------------- API
    @user_errors
    @gpu
    def api_segment(self, video: str | None, frame_index: float, points: Any, labels: Any, box: Any) -> dict:
        """Mask of one object on one frame from clicks and/or a box → `{"frame_index", "mask": RLE, "area"}`."""
        return endpoints.segment(self.backend, video, frame_index, points, labels, box, self.limits)

    @user_errors
    @gpu
    def api_track(self, video: str | None, regions: Any) -> dict:
        """Track the objects of a regions document → a regions document with a mask on every sampled frame."""
        return endpoints.track(self.backend, video, regions, self.limits)

    @user_errors
    @gpu
    def api_describe(self, video: str | None, regions: Any, mode: str) -> str:
        """A detailed description of the one object in `regions`."""
        return endpoints.describe(self.backend, video, regions, mode, self.limits)

    @user_errors
    @gpu
    def api_ask(self, video: str | None, regions: Any, question: str, history: Any, mode: str):
        """Stream the answer to a question about `<object0>`, `<object1>`, ... of `regions`."""
        yield from endpoints.ask_stream_api(self.backend, video, regions, question, history, mode, self.limits)
