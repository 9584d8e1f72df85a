"""The chat stays true when objects are removed or renamed, Describe asks the official prompt about one object, and a
visitor who stops listening stops the generation. Assertions are on what reaches the model."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from videorefer.demo import service
from videorefer.demo.backend import Settings, load_backend
from videorefer.demo.chat import renumber_tags
from videorefer.demo.handlers import DemoHandlers
from videorefer.demo.limits import Limits
from videorefer.prompts import DESCRIBE_PROMPT, DESCRIBE_PROMPT_VL3

BUNNY = str(Path(__file__).resolve().parents[1] / "examples" / "bigbuckbunny.mp4")
LIMITS = Limits(scrub_frames=4)


@pytest.fixture(scope="module")
def handlers():
    return DemoHandlers(load_backend(Settings(tiny=True, device="cpu", limits=LIMITS)))


@pytest.fixture
def recorded(handlers, monkeypatch):
    """Every call of the model: its question, history, regions, and the prompt text the tokenizer received."""
    model = handlers.backend.model
    calls = []
    real_stream, real_prepare = model.ask_stream, model.prepare

    def ask_stream(video, regions, question, history=None, **kwargs):
        calls.append({"question": question, "history": history, "regions": regions})
        return real_stream(video, regions, question, history=history, **kwargs)

    def prepare(*args, **kwargs):
        inputs = real_prepare(*args, **kwargs)
        ids = [i for i in inputs["input_ids"][0].tolist() if i >= 0]  # negative ids stand for the video's tokens
        calls[-1]["prompt"] = model.processor.tokenizer.decode(ids)
        return inputs

    monkeypatch.setattr(model, "ask_stream", ask_stream)
    monkeypatch.setattr(model, "prepare", prepare)
    return calls


def two_objects(handlers):
    state = service.open_video(handlers.backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)  # <object0>: the bunny
    service.rename_object(state, "bunny")
    service.new_object(state, LIMITS, "sky")
    service.click(state, 0, 640, 60, "positive", LIMITS)  # <object1>: the sky
    return state


def _plain(text: str) -> str:
    """Text without region placeholders or the tokens they expand to (either family's), spaces normalised."""
    return " ".join(re.sub(r"\[|\]|<region>|<REGION>", " ", text).split())


def test_renumber_tags():
    text = "Is <object0> left of <object2>? <object1> moves."
    assert renumber_tags(text, 1, "rock") == "Is <object0> left of <object1>? [removed object: rock] moves."
    assert renumber_tags("no tags", 0, "x") == "no tags"


def test_removing_an_object_renumbers_the_history_the_model_sees(handlers, recorded):
    state = two_objects(handlers)
    sky = state.masks_on(0)[1].copy()
    *_, (messages, _) = handlers.ask("What is <object1> doing?", "Single frame", state)
    assert recorded[-1]["question"] == "What is <object1> doing?"
    state.active = 0
    state, *_, chat = handlers.remove(0, state)
    assert state.names == ["sky"]
    assert state.history[0][0] == "What is <object0> doing?"  # the sky is <object0> now
    assert "&lt;object0&gt; sky" in chat[0]["content"]  # and the chat shows it so
    *_, (messages, _) = handlers.ask("And where is <object0> now?", "Single frame", state)
    call = recorded[-1]
    assert call["history"][0][0] == "What is <object0> doing?" and call["question"] == "And where is <object0> now?"
    assert len(call["regions"]) == 1 and np.array_equal(next(iter(call["regions"][0].values())), sky)
    prompt = " ".join(call["prompt"].split())
    first = handlers.backend.model.processor.region_conversation("What is <object0> doing?", None, call["regions"])[0]
    assert _plain(first) in _plain(prompt)  # the first question as the family lays it out, about <object0> only
    assert "<object1>" not in prompt
    state, *_, chat = handlers.rename("blue sky", 0, state)  # renaming changes no tag: the history keeps <object0>
    assert state.history[0][0] == "What is <object0> doing?"
    assert "&lt;object0&gt; blue sky" in chat[0]["content"]


def test_removing_the_object_a_turn_was_about_spells_it_out(handlers):
    state = two_objects(handlers)
    list(handlers.ask("How does <object0> move past <object1>?", "Single frame", state))
    state.active = 0
    handlers.remove(0, state)
    assert state.history[0][0] == "How does [removed object: bunny] move past <object0>?"


def test_describe_asks_the_official_prompt_about_the_selected_object_only(handlers, recorded):
    state = two_objects(handlers)
    list(handlers.ask("What is <object0>?", "Single frame", state))
    state.active = 1
    *_, (messages, box) = handlers.describe("Single frame", state)
    call = recorded[-1]
    official = handlers.backend.model.processor.describe_prompt  # the family's own (VL3: DESCRIBE_PROMPT_VL3)
    assert call["question"] == official in (DESCRIBE_PROMPT, DESCRIBE_PROMPT_VL3) and not call["history"]  # as /describe
    assert len(call["regions"]) == 1
    assert np.array_equal(next(iter(call["regions"][0].values())), state.masks_on(0)[1])
    assert messages[-2]["content"].startswith("Describe ") and "&lt;object1&gt; sky" in messages[-2]["content"]
    assert box == ""
    assert len(state.history) == 1  # the description is shown but is not part of the conversation


def test_a_visitor_who_stops_listening_stops_the_generation(handlers, recorded):
    state = two_objects(handlers)
    stream = handlers.ask("What is <object0> doing?", "Single frame", state)
    next(stream)
    stream.close()  # what gradio does when the visitor leaves or the API client disconnects
    assert state.stop_event.is_set() and state.history == []
    handlers.stop(None)  # harmless without a video
