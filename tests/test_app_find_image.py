"""Find by name and image mode through gradio_client on the demo served in tiny mode (random tiny models).

The tiny Grounding DINO scores every box near 0.5 (see videorefer/testing/tiny_grounding_dino.py): the default
threshold 0.35 finds objects, 0.9 finds none, whatever the picture.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from videorefer.demo.backend import TINY_FAMILIES, Settings, load_backend  # noqa: E402
from videorefer.demo.limits import Limits, check_video  # noqa: E402
from videorefer.demo.service import decoded_frame_indices  # noqa: E402
from videorefer.demo.testing import free_port, write_junk, write_video  # noqa: E402
from videorefer.regions import objects_from_json, rle_to_mask  # noqa: E402

ROOT = Path(app.__file__).resolve().parent
BUNNY = str(ROOT / "examples" / "bigbuckbunny.mp4")
LIMITS = Limits(max_file_mb=3, max_seconds=10, scrub_frames=6, max_objects=4)


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def server(request):
    """The demo on a tiny model of each family (`--tiny vl3`, `--tiny v1`): same inputs, outputs and errors."""
    settings = Settings(tiny=request.param, device="cpu", port=free_port(), limits=LIMITS)
    backend = load_backend(settings)
    demo = app.launch(settings, backend=backend, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}/", backend
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server[0], verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    photo = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    photo[10:30, 15:40] = 255
    Image.fromarray(photo).save(folder / "photo.png")
    Image.new("RGB", (4097, 8)).save(folder / "wide.png")
    (folder / "notes.txt").write_text("hello")
    return {"photo": str(folder / "photo.png"), "pixels": photo, "wide": str(folder / "wide.png"),
            "junk": str(write_junk(folder / "junk.png")), "small": str(write_video(folder / "small.mp4", 12))}


def test_find_on_a_frame_then_ask_about_what_was_found(client):
    found = client.predict(handle_file(BUNNY), 60, "the rabbit", False, None, api_name="/find")
    assert found["frame_index"] == 60 and found["phrase"] == "the rabbit"
    assert 1 <= len(found["objects"]) <= LIMITS.max_objects  # at most the server's object limit
    objects, names = objects_from_json(found)
    assert names[0] == "the rabbit 1" or names == ["the rabbit"]
    for entry, obj in zip(found["objects"], objects):
        assert list(obj) == [60] and obj[60].shape == (720, 1280) and entry["area"] == obj[60].sum() > 0
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720 and 0.35 < entry["score"] <= 1
    scores = [e["score"] for e in found["objects"]]
    assert scores == sorted(scores, reverse=True)
    first = {**found, "objects": found["objects"][:1]}  # the answer's regions document is /ask's input as is
    answer = client.predict(handle_file(BUNNY), first, "What is <object0> doing?", None, "auto", api_name="/ask")
    assert isinstance(answer, str) and answer


def test_find_and_track(server, client, files):
    found = client.predict(handle_file(files["small"]), 5, "every car", True, 0.0, api_name="/find")
    objects, _ = objects_from_json(found)
    sampled, _ = server[1].model_frames(check_video(files["small"], LIMITS))  # the loaded family's own frames
    covered = sorted({5, *decoded_frame_indices(12, LIMITS.scrub_frames, sampled)})
    assert objects and all(sorted(obj) == covered for obj in objects)  # every decoded frame
    for entry, obj in zip(found["objects"], objects):
        assert entry["area"] == obj[5].sum()  # the area is the mask on the frame it was found on


@pytest.mark.parametrize("phrase, threshold, message", [
    ("unicorn", 0.9, r"no object matching 'unicorn' on this frame \(best score 0\.\d\d, threshold 0\.90\)"),
    ("   ", None, "Find: the phrase is empty"),
    ("x" * 81, None, "81 characters; the limit is 80"),
    ("the rabbit", 1.5, "threshold must be between 0 and 1"),
])
def test_find_bad_input_gets_a_clear_message_and_the_server_goes_on(client, files, phrase, threshold, message):
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(files["small"]), 3, phrase, False, threshold, api_name="/find")
    assert client.predict(handle_file(files["small"]), 3, "a square", False, None, api_name="/find")["objects"]


def test_image_click_find_and_ask(server, client, files, monkeypatch):
    photo = handle_file(files["photo"])
    seg = client.predict(photo, 0, [[25, 20]], [1], None, api_name="/segment")
    mask = rle_to_mask(seg["mask"])
    assert seg["frame_index"] == 0 and mask.shape == (40, 56) and seg["area"] == mask.sum() > 0
    found = client.predict(photo, 0, "the square", False, None, api_name="/find")
    assert found["height"] == 40 and found["width"] == 56 and found["objects"]
    backend, seen = server[1], []
    real = backend.model.ask_stream

    def record(video, *args, **kwargs):
        seen.append(video)
        return real(video, *args, **kwargs)

    monkeypatch.setattr(backend.model, "ask_stream", record)
    regions = {"objects": [{"name": "square", "masks": {"0": seg["mask"]}}]}
    answer = client.predict(photo, regions, "What is <object0>?", None, "auto", api_name="/ask")
    assert isinstance(answer, str) and answer
    # VideoRefer-VL3 answers the still image natively; VideoRefer-7B gets it as a one-frame video (what the official
    # v1 code does with an image)
    still = backend.settings.tiny_family == "vl3"
    assert len(seen) == 1 and isinstance(seen[0], np.ndarray)
    assert seen[0].shape == ((40, 56, 3) if still else (1, 40, 56, 3))
    np.testing.assert_array_equal(seen[0] if still else seen[0][0], files["pixels"])
    assert client.predict(photo, regions, "auto", api_name="/describe")


@pytest.mark.parametrize("name, call, message", [
    ("junk", "segment", "'junk.png' could not be read as an image"),
    ("wide", "segment", "The image is 4097×8 px; the limit is 4096 px on the longer side"),
    ("photo", "frame1", r"frame_index 1 is outside the video \(0..0\)"),
])
def test_bad_images_get_clear_errors(client, files, name, call, message):
    frame = 1 if call == "frame1" else 0
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(files[name]), frame, [[1, 1]], [1], None, api_name="/segment")
    assert client.predict(handle_file(files["photo"]), 0, [[25, 20]], [1], None, api_name="/segment")["area"] > 0


def test_the_page_offers_find_and_images(server):
    import httpx

    page = httpx.get(server[0]).text
    assert "Find by name" in page and "images: jpg, jpeg, png, webp, bmp up to 4096 px" in page
    config = json.loads(httpx.get(server[0] + "config").text)
    upload = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "video-upload")
    assert ".png" in upload["props"]["file_types"] and ".mp4" in upload["props"]["file_types"]
