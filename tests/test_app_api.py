"""The demo served on 127.0.0.1 in tiny mode, driven by gradio_client through /segment, /track, /describe, /ask."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from videorefer.demo.backend import TINY_FAMILIES  # noqa: E402
from videorefer.demo.limits import Limits, check_video  # noqa: E402
from videorefer.demo.service import decoded_frame_indices  # noqa: E402
from videorefer.demo.testing import write_junk, write_video  # noqa: E402
from videorefer.regions import objects_from_json, rle_to_mask  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
BUNNY = str(ROOT / "examples" / "bigbuckbunny.mp4")
REGIONS = json.loads((ROOT / "examples" / "bigbuckbunny.regions.json").read_text())
LIMITS = Limits(max_file_mb=3, max_seconds=10, scrub_frames=6)


@pytest.fixture(scope="module", params=[*TINY_FAMILIES, "vl3 on a server"])
def server(request, serve_demo):
    """The demo on a tiny model of each family (`--tiny vl3`, `--tiny v1`), and once on a VideoRefer server
    (`--tiny vl3 --server URL`, the session's `tiny_vllm_server`): same inputs, outputs and errors."""
    family, on_server = request.param.split()[0], request.param.endswith("server")
    url = request.getfixturevalue("tiny_vllm_server").url if on_server else None
    with serve_demo(family, LIMITS, server=url) as served:
        yield served


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return {
        "small": str(write_video(folder / "small.mp4", 12)),
        "long": str(write_video(folder / "long.mp4", 60)),
        "zero": str(write_video(folder / "zero.mp4", 0)),
        "junk": str(write_junk(folder / "junk.mp4")),
        "big": str(write_junk(folder / "big.mp4", 4_000_000)),
        "text": str((folder / "notes.txt").write_text("hello") and folder / "notes.txt"),
    }


def tracked_frames(backend, video: str, prompted: int) -> list[int]:
    """The frames /track covers: the even grid of `scrub_frames`, the loaded family's own sampled frames (as its
    processor says) and the prompted frame."""
    sampled, _ = backend.model_frames(check_video(video, LIMITS))
    return sorted({prompted, *decoded_frame_indices(check_video(video, LIMITS).total_frames, LIMITS.scrub_frames,
                                                      sampled)})


def one(doc: dict, k: int) -> dict:
    return {**doc, "objects": [doc["objects"][k]]}


def test_endpoints_are_named_and_documented(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert names == {"/segment", "/track", "/describe", "/ask", "/find"}  # /find: tests/test_app_find_image.py


def test_segment_track_describe_ask_on_the_example(client):
    video = handle_file(BUNNY)
    seg = client.predict(video, 60, [[470, 380], [430, 150]], [1, 1], None, api_name="/segment")
    mask = rle_to_mask(seg["mask"])
    assert seg["frame_index"] == 60 and mask.shape == (720, 1280) and seg["area"] == mask.sum() > 0
    box = client.predict(video, 60, None, None, [813, 305, 1190, 455], api_name="/segment")
    assert rle_to_mask(box["mask"]).any()
    tracked = client.predict(video, REGIONS, api_name="/track")
    objects, names = objects_from_json(tracked)
    assert names == ["bunny", "rock"] and all(60 in obj and len(obj) >= 6 for obj in objects)
    text = client.predict(video, one(tracked, 0), "auto", api_name="/describe")
    assert isinstance(text, str) and text
    answer = client.predict(video, tracked, "What is <object0> doing to <object1>?", [["Hi", "Hello"]], "multi",
                            api_name="/ask")
    assert isinstance(answer, str) and answer
    job = client.submit(video, REGIONS, "What is <object0>?", None, "single", api_name="/ask")
    outputs = list(job)
    assert len(outputs) > 1 and outputs[-1] == job.result()  # streamed, growing


@pytest.mark.parametrize("video, call, message", [
    ("text", "describe", "not a supported video"),
    ("junk", "describe", "could not be read as a video"),
    ("zero", "describe", "no video frames"),
    ("long", "describe", "lasts 12.0 s; the limit is 10 s"),
    ("small", "segment_outside", "outside the 64×48 frame"),
    ("small", "ask_object3", "names <object3>, but only <object0> … <object1> exist"),
    ("small", "describe_empty", "<object0> cannot be used: .*empty"),
    ("small", "ask_empty", "type a question"),
    ("small", "ask_long", "1001 characters; the limit is 1000"),
])
def test_bad_inputs_get_clear_errors_and_the_server_goes_on(client, videos, video, call, message):
    path = handle_file(videos[video])
    square = client.predict(handle_file(videos["small"]), 3, [[20, 24]], [1], None, api_name="/segment")["mask"]
    empty = {"size": [48, 64], "counts": [48 * 64]}
    two = {"objects": [{"name": "a", "masks": {"3": square}}, {"name": "b", "masks": {"5": square}}]}
    calls = {
        "describe": lambda: client.predict(path, one(two, 0), "auto", api_name="/describe"),
        "segment_outside": lambda: client.predict(path, 0, [[64, 10]], [1], None, api_name="/segment"),
        "ask_object3": lambda: client.predict(path, two, "Is <object3> there?", None, "auto", api_name="/ask"),
        "describe_empty": lambda: client.predict(path, {"objects": [{"masks": {"2": empty}}]}, "auto",
                                                 api_name="/describe"),
        "ask_empty": lambda: client.predict(path, two, "  ", None, "auto", api_name="/ask"),
        "ask_long": lambda: client.predict(path, two, "x" * 1001, None, "auto", api_name="/ask"),
    }
    with pytest.raises(AppError, match=message):
        calls[call]()
    assert client.predict(handle_file(videos["small"]), 3, [[20, 24]], [1], None, api_name="/segment")["area"] > 0


def test_oversized_upload_is_refused(server, client, videos):
    with pytest.raises(ValueError, match="exceeds the maximum file size of 3000000 bytes"):
        client.predict(handle_file(videos["big"]), 0, [[1, 1]], [1], None, api_name="/segment")
    with open(videos["big"], "rb") as file:  # a client that skips the check is refused by the server
        response = httpx.post(server[0] + "gradio_api/upload", files={"files": ("big.mp4", file, "video/mp4")})
    assert response.status_code == 413
    assert client.predict(handle_file(BUNNY), 0, [[470, 380]], [1], None, api_name="/segment")["area"] > 0


def test_model_out_of_memory_is_reported_and_the_next_request_works(server, client, monkeypatch):
    backend = server[1]
    real = backend.model.ask_stream

    def fail_once(*args, **kwargs):
        monkeypatch.setattr(backend.model, "ask_stream", real)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(backend.model, "ask_stream", fail_once)
    with pytest.raises(AppError, match="ran out of GPU memory"):
        client.predict(handle_file(BUNNY), one(REGIONS, 0), "auto", api_name="/describe")
    assert client.predict(handle_file(BUNNY), one(REGIONS, 0), "auto", api_name="/describe")


def test_two_clients_in_parallel_get_their_own_results(server, videos):
    url = server[0]

    def bunny() -> tuple:
        c = Client(url, verbose=False)
        seg = c.predict(handle_file(BUNNY), 60, [[470, 380]], [1], None, api_name="/segment")
        tracked = c.predict(handle_file(BUNNY), one(REGIONS, 1), api_name="/track")
        return seg, tracked

    def square() -> tuple:
        c = Client(url, verbose=False)
        seg = c.predict(handle_file(videos["small"]), 3, [[20, 24]], [1], None, api_name="/segment")
        doc = {"objects": [{"name": "square", "masks": {"3": seg["mask"]}}]}
        return seg, c.predict(handle_file(videos["small"]), doc, api_name="/track")

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(bunny), pool.submit(square)
        (seg_a, track_a), (seg_b, track_b) = a.result(timeout=120), b.result(timeout=120)
    assert seg_a["mask"]["size"] == [720, 1280] and seg_b["mask"]["size"] == [48, 64]
    assert [o["name"] for o in track_a["objects"]] == ["rock"] and track_a["height"] == 720
    assert [o["name"] for o in track_b["objects"]] == ["square"] and track_b["height"] == 48
    assert sorted(map(int, track_b["objects"][0]["masks"])) == tracked_frames(server[1], videos["small"], 3)


def test_only_examples_and_uploads_are_served(server):
    base = server[0] + "gradio_api/file="
    assert httpx.get(base + BUNNY).status_code == 200
    for path in (str(ROOT / "app.py"), "/etc/passwd", str(ROOT / "examples" / ".." / "app.py")):
        assert httpx.get(base + path).status_code in (403, 404)


def test_the_page_is_labelled_tiny_and_shows_the_limits(server):
    page = httpx.get(server[0]).text
    assert "Tiny mode" in page and "up to 3 MB" in page and "up to 10 s" in page
    # which model answers, and how it reads a video (asked of its processor)
    if server[1].settings.tiny_family == "vl3":
        assert "a tiny VideoRefer-VL3 answers" in page and "1 frame per second, at most 16 frames" in page
        assert "one region per mask" in page
    else:
        assert "a tiny VideoRefer-7B answers" in page and "8 frames spread evenly over the video" in page
        assert "one region per object" in page
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") == "False"


def test_a_cancelled_api_call_stops_its_generation(server, client, monkeypatch):
    """A client that cancels (or disconnects) mid-answer: gradio closes the stream, and the stop event the model's
    generation thread watches is set (the real `ask_stream` ends generation on it)."""
    import time

    backend = server[1]
    events = []

    def slow_answer(video, regions, question, history=None, stop_event=None, **kwargs):
        events.append(stop_event)
        text = ""
        for _ in range(600):  # 60 s unless stopped
            text += "word "
            yield text
            time.sleep(0.1)

    monkeypatch.setattr(backend.model, "ask_stream", slow_answer)
    job = client.submit(handle_file(BUNNY), REGIONS, "What is <object0>?", None, "single", api_name="/ask")
    deadline = time.time() + 30
    while not job.outputs() and time.time() < deadline:
        time.sleep(0.1)
    assert job.outputs() and events and not events[0].is_set(), "no partial answer arrived"
    job.cancel()
    assert events[0].wait(20), "the generation was not told to stop after the client cancelled"
