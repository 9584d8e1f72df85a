"""The gradio handlers: page errors are `gr.Error`, hints are warnings, clicks map from the shown image to video pixels."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from videorefer.demo.backend import Settings, load_backend
from videorefer.demo.handlers import DemoHandlers
from videorefer.demo.limits import Limits
from videorefer.demo.testing import write_junk

BUNNY = str(Path(__file__).resolve().parents[1] / "examples" / "bigbuckbunny.mp4")


class Click:
    """Stands in for `gr.SelectData` (what `.select` on the frame image passes)."""

    def __init__(self, x: int, y: int):
        self.index = [x, y]


@pytest.fixture(scope="module")
def handlers():
    return DemoHandlers(load_backend(Settings(tiny=True, device="cpu", limits=Limits(scrub_frames=4))))


def test_page_flow_and_errors(handlers, tmp_path):
    with pytest.raises(gr.Error, match="could not be read as a video"):
        handlers.load(str(write_junk(tmp_path / "junk.mp4")), None)
    with pytest.raises(gr.Error, match="upload a video first"):
        handlers.on_click(0, "Positive click", None, Click(10, 10))
    state, slider, editor, chat, image, caption, legend, *_ = handlers.load(BUNNY, None)
    assert image.shape == (540, 960, 3) and caption.startswith("Frame 0 of 132") and chat == []
    assert editor["background"].shape == (540, 960, 3)
    state, image, *_ = handlers.on_click(0, "Positive click", state, Click(480, 270))  # the centre, shown at 960 px
    assert state.objects[0].prompts[0].points == [[640.0, 360.0]]  # ... is (640, 360) in the 1280×720 video
    with pytest.raises(gr.Error, match="names <object3>, but only <object0> exist"):
        next(handlers.ask("Is <object3> here?", "Auto (multi-frame if tracked)", state))
    with pytest.raises(gr.Error, match="type a question"):
        next(handlers.ask("   ", "Single frame", state))
    *_, (messages, box) = handlers.ask("What is <object0>?", "Single frame", state)
    assert box == "" and [m["role"] for m in messages] == ["user", "assistant"]
    assert "&lt;object0&gt;" in messages[0]["content"] and len(state.history) == 1
    handlers.stop(state)
    assert state.stop_event.is_set()
    assert handlers.relate_question(state) == "How do these objects relate to each other?"
    handlers.add_object(0, state)
    assert handlers.relate_question(state) == "How do <object0> and <object1> relate to each other?"
    layer = np.zeros((540, 960, 4), np.uint8)
    layer[100:200, 100:300, 3] = 255
    state, *_ = handlers.on_brush({"background": None, "layers": [layer], "composite": None}, 0, False, state)
    painted = state.session.masks[state.objects[1].obj_id][0]  # drawn at 960 px, kept as drawn at 1280 px
    assert painted[140:260, 140:390].all() and abs(int(painted.sum()) - 133 * 267) < 1000
    with pytest.raises(gr.Error, match="Paint over the object"):
        handlers.on_brush({"background": None, "layers": [], "composite": None}, 0, True, state)
    with pytest.raises(gr.Error, match="1 to 40 characters"):
        handlers.rename("", 0, state)
    assert handlers.clear_chat(state) == [] and state.history == []


def test_use_saved_objects_of_an_example(handlers):
    state, *_ = handlers.load(BUNNY, None)
    state, slider, editor, image, *_ = handlers.add_saved_objects(state)
    assert [obj.name for obj in state.objects] == ["bunny", "rock"]
    assert state.frame_indices[slider["value"]] == 60  # the slider moved to the frame they were saved on
    assert image.shape == (540, 960, 3)
