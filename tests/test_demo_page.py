"""The page's helpers (`videorefer.demo.page`): the examples' one-click questions and the status a long step shows.
The page itself is driven in a browser by tests/test_app_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest
from gradio.helpers import special_args

from videorefer.demo.page import EXAMPLES_DIR, quick_starts, status, unless_stopped, with_status
from videorefer.prompts import check_object_tags


def test_every_example_offers_a_question_about_its_saved_objects():
    docs = [json.loads(path.read_text()) for path in EXAMPLES_DIR.glob("*.regions.json")]
    docs = {doc["video"]: doc for doc in docs}
    starts = quick_starts()
    assert len(starts) == len(docs) >= 2
    for start in starts:
        video, question = start.fill()
        doc = docs[Path(video).name]
        assert Path(video).is_file() and question == doc["quick_start"]["question"]
        assert check_object_tags(question, len(doc["objects"]))  # it asks about saved objects, and only those
        assert "<object" not in start.label and start.title in start.label  # the button names the objects


def test_the_button_names_the_objects(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"not decoded here")
    (tmp_path / "clip.regions.json").write_text(json.dumps({
        "video": "clip.mp4", "quick_start": {"title": "A clip", "question": "Is <object1> near <object0>? <object5>"},
        "objects": [{"name": "red_car"}, {"name": "dog"}]}))
    (tmp_path / "other.regions.json").write_text(json.dumps({"video": "missing.mp4", "quick_start": {
        "title": "Gone", "question": "?"}, "objects": []}))  # its video is not there: no button
    (start,) = quick_starts(tmp_path)
    assert start.label == "▶ A clip: Is the dog near the red car? <object5>"
    assert start.fill() == (str(tmp_path / "clip.mp4"), "Is <object1> near <object0>? <object5>")


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, level, desc=None):
        self.calls.append((level, desc))


class Handlers:
    def load(self, path: str, previous: int, request: gr.Request = None):
        return path, previous, request

    def click(self, pos: float, state: int, evt: gr.SelectData):
        return pos, state, evt

    def ask(self, question: str, state: int):
        yield question
        yield question + "!"


def test_with_status_says_what_it_does_then_runs_the_handler():
    recorder = Recorder()
    load = with_status(Handlers().load, "Decoding the video")
    assert load("a.mp4", 3, "request", recorder) == ("a.mp4", 3, "request")
    assert recorder.calls == [(0.0, "Decoding the video…")]

    ask = with_status(Handlers().ask, "Answering", step=(3, 3))
    assert list(ask("Why?", 1, recorder)) == ["Why?", "Why?!"]  # still streams
    assert recorder.calls[-1] == (pytest.approx(2 / 3), "Step 3 of 3: answering…")


def test_gradio_passes_the_tracker_and_keeps_the_handlers_special_arguments():
    inputs, progress_index, event_index, _ = special_args(with_status(Handlers().load, "x"), inputs=["a.mp4", 3])
    assert progress_index == 3 and isinstance(inputs[3], gr.Progress) and inputs[2] is None  # request slot kept
    event = gr.SelectData(None, {"index": [1, 2], "value": None})
    inputs, progress_index, event_index, _ = special_args(with_status(Handlers().click, "x"), inputs=[0, 1],
                                                          event_data=event)
    assert (progress_index, event_index) == (3, 2) and isinstance(inputs[2], gr.SelectData)
    assert inputs[2].index == [1, 2]


def test_on_zero_gpu_the_status_says_it_may_wait_for_a_gpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert status("Segmenting") == "Segmenting…"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert status("Segmenting", (2, 3)) == "Step 2 of 3: segmenting (waiting for a GPU first)…"


def test_stop_pressed_before_the_answer_step_keeps_it_from_starting():
    """An example's one click: Stop pressed while the video decodes or the saved objects are segmented means no
    answer; otherwise the answer streams as usual."""
    from videorefer.demo.state import DemoState

    state = DemoState(info=None, frame_indices=[0], session=None)
    answer = unless_stopped(Handlers().ask)
    assert list(answer("Why?", state)) == ["Why?", "Why?!"]
    state.stop_event.set()  # the visitor pressed Stop
    (skipped,) = list(answer("Why?", state))
    assert len(skipped) == 2 and all(isinstance(update, type(gr.skip())) for update in skipped)
    assert list(answer("Why?", None)) == ["Why?", "Why?!"]  # no state: the handler says what is missing
    state.forget_stop_event()
