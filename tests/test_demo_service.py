"""The demo's logic without gradio: limits, overlays, per-session objects, tracking, chat, API functions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videorefer.api import DEFAULT_MODEL_ID
from videorefer.demo import endpoints, service
from videorefer.demo.backend import Settings, load_backend, parse_settings
from videorefer.demo.limits import DemoError, Limits, check_question, check_video
from videorefer.demo.overlay import color_of, colour_tags, render_overlay
from videorefer.demo.testing import write_junk, write_video
from videorefer.regions import mask_to_rle, objects_from_json, rle_to_mask

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUNNY = str(EXAMPLES / "bigbuckbunny.mp4")
LIMITS = Limits(max_seconds=10, scrub_frames=6)


@pytest.fixture(scope="module")
def backend():
    return load_backend(Settings(tiny=True, device="cpu", limits=LIMITS))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {
        "small": str(write_video(folder / "small.mp4", 12)),
        "long": str(write_video(folder / "long.mp4", 60)),  # 12 s at 5 fps
        "zero": str(write_video(folder / "zero.mp4", 0)),
        "junk": str(write_junk(folder / "junk.mp4")),
        "text": str(_text(folder / "notes.txt")),
    }


def _text(path: Path) -> Path:
    path.write_text("not a video")
    return path


# ------------------------------------------------------------------------------------------------------ limits
def test_check_video_accepts_the_example_and_names_each_problem(videos, tmp_path):
    info = check_video(BUNNY, LIMITS)
    assert (info.total_frames, info.width, info.height) == (132, 1280, 720)
    cases = {
        videos["text"]: "not a supported video",
        videos["junk"]: "could not be read as a video",
        videos["zero"]: "no video frames",
        videos["long"]: "lasts 12.0 s; the limit is 10 s",
        None: "upload a video",
        str(tmp_path / "missing.mp4"): "could not be found",
    }
    for path, message in cases.items():
        with pytest.raises(DemoError, match=message):
            check_video(path, LIMITS)
    with pytest.raises(DemoError, match="the limit is 0.5 MB"):
        check_video(BUNNY, Limits(max_file_mb=0.5))
    with pytest.raises(DemoError, match="1280×720 px; the limit is 640×480"):
        check_video(BUNNY, Limits(max_long_side=640, max_short_side=480))


def test_check_question():
    assert check_question("  What is <object1> doing? ", 2, LIMITS) == "What is <object1> doing?"
    with pytest.raises(DemoError, match="type a question"):
        check_question("   ", 2, LIMITS)
    with pytest.raises(DemoError, match="1001 characters; the limit is 1000"):
        check_question("a" * 1001, 2, LIMITS)
    with pytest.raises(DemoError, match="names <object3>, but only <object0> … <object1> exist"):
        check_question("Is <object3> near <object0>?", 2, LIMITS)
    with pytest.raises(DemoError, match="Point at an object first"):
        check_question("Hi?", 0, LIMITS)


def test_settings_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("VIDEOREFER_MODEL", "me/my-model")
    monkeypatch.setenv("VIDEOREFER_QUANTIZATION", "4bit")
    settings = parse_settings(["--sam2", "facebook/sam2.1-hiera-tiny", "--device", "cpu", "--max-file-mb", "5"])
    assert (settings.model, settings.quantization, settings.sam2, settings.device) == (
        "me/my-model", "4bit", "facebook/sam2.1-hiera-tiny", "cpu")
    assert settings.limits.max_file_mb == 5 and not settings.tiny
    assert parse_settings(["--tiny", "--quantization", "8bit"]).quantization == "8bit"
    defaults = parse_settings([]) if monkeypatch.delenv("VIDEOREFER_MODEL") is None else None
    assert defaults.model == DEFAULT_MODEL_ID == "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B"  # the best published one
    assert defaults.sam2 == "facebook/sam2.1-hiera-large" and defaults.tiny_family is None
    assert [parse_settings(flags).tiny_family for flags in (["--tiny"], ["--tiny", "v1"], ["--tiny", "VL3"])] == [
        "vl3", "v1", "vl3"]  # plain --tiny: the default checkpoint's family
    monkeypatch.setenv("VIDEOREFER_TINY", "v1")
    assert parse_settings([]).tiny_family == "v1"
    with pytest.raises(SystemExit):
        parse_settings(["--tiny", "v2"])
    with pytest.raises(SystemExit):
        parse_settings(["--quantization", "3bit"])


# ----------------------------------------------------------------------------------------------------- overlay
def test_overlay_colours_each_object_and_scales_down():
    frame = np.zeros((200, 400, 3), np.uint8)
    a, b = np.zeros((200, 400), bool), np.zeros((200, 400), bool)
    a[20:100, 20:100], b[100:180, 300:380] = True, True
    out = render_overlay(frame, {0: a, 3: b}, clicks=[(0, 60, 60, 1)], max_side=200)
    assert out.shape == (100, 200, 3)
    inside_a, inside_b = out[40, 15], out[55, 160]  # off the centre tags and click markers
    assert np.argmax(inside_a) == np.argmax(color_of(0)) and inside_a.any()
    assert np.allclose(inside_b, np.array(color_of(3)) * 0.45, atol=2)
    assert not out[5, 100].any()  # outside every mask: unchanged


def test_colour_tags_escapes_html_and_colours_objects():
    html = colour_tags("Is <object1> under <b>x</b>?", ["bunny", "rock"])
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "&lt;object1&gt; rock" in html and "#ff7f0e" in html


# ----------------------------------------------------------------------------------------------------- session
def test_session_click_box_brush_track_remove(backend):
    state = service.open_video(backend, BUNNY, LIMITS)
    assert set(backend.model_frames(state.info)[0]) <= set(state.frame_indices)
    assert state.session.frames.shape[1:] == (720, 1280, 3)
    pos = state.frame_indices.index(min(state.frame_indices, key=lambda f: abs(f - 60)))
    assert service.click(state, pos, 470, 380, "positive", LIMITS) is None
    assert len(state.objects) == 1 and state.active == 0 and state.masks_on(pos)[0].any()
    service.click(state, pos, 300, 100, "negative", LIMITS)
    assert state.objects[0].prompts[pos].labels == [1, 0]
    with pytest.raises(DemoError, match="outside the 1280×720 frame"):
        service.click(state, pos, 1300, 10, "positive", LIMITS)
    service.new_object(state, LIMITS)
    assert service.click(state, pos, 813, 305, "box", LIMITS) is None  # first corner only
    assert 1 not in state.masks_on(pos)
    service.click(state, pos, 1190, 455, "box", LIMITS)
    assert state.objects[1].prompts[pos].box == [813, 305, 1190, 455] and state.masks_on(pos)[1].any()
    service.new_object(state, LIMITS, "painted")
    painted = np.zeros((720, 1280), bool)
    painted[500:700, 100:300] = True
    service.brush(state, 0, painted, refine=False, limits=LIMITS)
    assert np.array_equal(state.masks_on(0)[2], painted)
    with pytest.raises(DemoError, match="brush mask is empty"):
        service.brush(state, 0, np.zeros_like(painted), refine=True, limits=LIMITS)
    steps = []
    service.track(backend, state, lambda done, total: steps.append((done, total)))
    assert steps and steps[-1][0] == steps[-1][1]
    assert all(obj.tracked for obj in state.objects)
    assert all(len(state.object_masks(k)) == len(state.frame_indices) for k in range(3))
    view = service.view(state, len(state.frame_indices) - 1)
    assert view.shape == (540, 960, 3)
    state.active = 0
    service.remove_object(state)
    assert state.names == ["object 1", "painted"] and state.active == 0
    service.rename_object(state, "rock")
    assert state.names[0] == "rock"


def test_chat_streams_keeps_history_and_reuses_visual_features(backend, monkeypatch):
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)
    calls = []
    encode = backend.model.model.encode_visual
    monkeypatch.setattr(backend.model.model, "encode_visual", lambda *a, **k: calls.append(1) or encode(*a, **k))
    answers = list(service.ask_in_session(backend, state, "What is <object0> doing?", "auto", LIMITS))
    assert len(answers) > 1 and answers[-1].startswith(answers[0])  # streamed, growing
    list(service.ask_in_session(backend, state, "And then?", "auto", LIMITS))
    assert len(state.history) == 2 and state.history[0] == ("What is <object0> doing?", answers[-1])
    assert len(calls) == 1  # the follow-up reused the video's visual features
    with pytest.raises(DemoError, match="names <object3>"):
        next(service.ask_in_session(backend, state, "Where is <object3>?", "auto", LIMITS))
    assert len(state.history) == 2


def test_stop_event_ends_the_answer_early(backend):
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)
    stream = service.ask_in_session(backend, state, "Describe <object0>.", "single", LIMITS)
    next(stream)
    state.stop_event.set()
    final = list(stream)[-1]
    assert final.endswith("…(stopped)") and state.history[-1][1] == final


def test_multi_frame_mode_uses_the_model_frames_of_tracked_objects(backend):
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 3, 470, 380, "positive", LIMITS)
    assert list(service.state_regions(backend, state, "auto")[0]) == [state.frame_indices[3]]
    service.track(backend, state)
    model_frames = backend.model_frames(state.info)[0]
    multi = service.state_regions(backend, state, "auto")[0]
    assert sorted(multi) == sorted(set(model_frames))
    assert list(service.state_regions(backend, state, "single")[0]) == [state.frame_indices[3]]


def test_out_of_memory_is_a_clear_error_and_the_next_question_works(backend, monkeypatch):
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)
    real = backend.model.ask_stream

    def fail_once(*args, **kwargs):
        monkeypatch.setattr(backend.model, "ask_stream", real)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(backend.model, "ask_stream", fail_once)
    with pytest.raises(DemoError, match="ran out of GPU memory"):
        list(service.ask_in_session(backend, state, "What is <object0>?", "auto", LIMITS))
    assert list(service.ask_in_session(backend, state, "What is <object0>?", "auto", LIMITS))[-1]


# ------------------------------------------------------------------------------------------------ API functions
def test_endpoint_functions(backend, videos):
    seg = endpoints.segment(backend, videos["small"], 3, [[20, 24]], [1], None, LIMITS)
    mask = rle_to_mask(seg["mask"])
    assert mask.shape == (48, 64) and seg["area"] == int(mask.sum()) > 0
    doc = {"objects": [{"name": "square", "masks": {"3": seg["mask"]}}], "height": 48, "width": 64}
    tracked = endpoints.track(backend, videos["small"], json.dumps(doc), LIMITS)
    objects, names = objects_from_json(tracked)
    info = check_video(videos["small"], LIMITS)
    decoded = service.decoded_frame_indices(12, LIMITS.scrub_frames, backend.model_frames(info)[0])
    assert names == ["square"] and 3 in objects[0] and sorted(objects[0]) == sorted({3, *decoded})  # grid, model's frames, prompt
    assert endpoints.describe(backend, videos["small"], tracked, "auto", LIMITS)
    two = {"objects": doc["objects"] * 2}
    assert endpoints.last(endpoints.ask_stream_api(
        backend, videos["small"], two, "Compare <object0> and <object1>.", [["Hi", "Hello"]], "single", LIMITS))
    empty = {"objects": [{"name": "none", "masks": {"3": mask_to_rle(np.zeros((48, 64), bool))}}]}
    problems = [
        (lambda: endpoints.segment(backend, videos["small"], 3, [[70, 10]], [1], None, LIMITS), "outside the 64×48"),
        (lambda: endpoints.segment(backend, videos["small"], 99, [[1, 1]], [1], None, LIMITS), "frame_index 99"),
        (lambda: endpoints.segment(backend, videos["small"], 0, None, None, None, LIMITS), "points .* or a box"),
        (lambda: endpoints.describe(backend, videos["small"], empty, "auto", LIMITS), "<object0> cannot be used: .*empty"),
        (lambda: endpoints.describe(backend, videos["small"], two, "auto", LIMITS), "exactly one object"),
        (lambda: endpoints.describe(backend, BUNNY, doc, "auto", LIMITS), "masks for a 64×48 video; this video is 1280×720"),
        (lambda: endpoints.track(backend, videos["small"], "{not json", LIMITS), "not valid JSON"),
        (lambda: endpoints.last(endpoints.ask_stream_api(
            backend, videos["small"], doc, "Q?", "[1, 2]", "auto", LIMITS)), "history must be"),
    ]
    for call, message in problems:
        with pytest.raises(DemoError, match=message):
            call()


def test_an_example_video_offers_its_saved_objects(backend, videos, tmp_path):
    saved = json.loads((EXAMPLES / "bigbuckbunny.regions.json").read_text())["objects"]
    copy = tmp_path / "upload.mp4"  # gradio hands the handler a copy in its cache
    copy.write_bytes((EXAMPLES / "bigbuckbunny.mp4").read_bytes())
    state = service.open_video(backend, str(copy), LIMITS)
    assert state.objects == []  # nothing is pointed at until the visitor asks for the saved objects
    assert service.add_saved_objects(state, LIMITS) == len(saved)
    assert [obj.name for obj in state.objects] == [obj["name"] for obj in saved]
    pos = state.frame_indices.index(saved[0]["prompt"]["frame_idx"])
    assert state.objects[0].prompts[pos].points == [[float(v) for v in p] for p in saved[0]["prompt"]["points"]]
    assert set(state.session.obj_ids) == {obj.obj_id for obj in state.objects}
    other = service.open_video(backend, videos["small"], LIMITS)
    with pytest.raises(DemoError, match="no saved objects"):
        service.add_saved_objects(other, LIMITS)
