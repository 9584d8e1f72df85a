"""The tracked-mask video (H.264 mp4, timed like the original), the saved-regions download, and restoring objects
from a regions file (refused for another video); the upload is decoded once."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from videorefer.demo import playback, service
from videorefer.demo.backend import Settings, load_backend
from videorefer.demo.decode import VideoFile
from videorefer.demo.limits import DemoError, Limits
from videorefer.demo.overlay import color_of
from videorefer.demo.sessions import Sessions
from videorefer.demo.testing import write_video

BUNNY = str(Path(__file__).resolve().parents[1] / "examples" / "bigbuckbunny.mp4")
LIMITS = Limits(scrub_frames=6)


@pytest.fixture(scope="module")
def backend():
    return load_backend(Settings(tiny=True, device="cpu", limits=LIMITS))


@pytest.fixture(scope="module")
def tracked(backend):
    state = service.open_video(backend, BUNNY, LIMITS)
    painted = np.zeros((720, 1280), bool)
    painted[300:500, 400:700] = True
    service.brush(state, 0, painted, refine=False, limits=LIMITS)
    service.rename_object(state, "bunny")
    service.track(backend, state)
    return state


def test_the_tracked_video_is_h264_timed_like_the_original_with_the_masks_drawn(tracked):
    path = playback.write_tracked_video(tracked)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        frames = [f for f in container.decode(stream)]
        assert abs(float(container.duration) / 1e6 - 132 / 25) < 0.2  # as long as the video
    assert len(frames) == len(tracked.frame_indices)
    assert [round(f.time * 25) for f in frames] == tracked.frame_indices  # each frame at its own time
    first = frames[0].to_ndarray(format="rgb24").astype(int)  # 960×540: the mask [300:500, 400:700] is scaled by 0.75
    inside, outside = first[250:300, 320:360].mean((0, 1)), first[50:100, 50:100].mean((0, 1))
    blue = np.array(color_of(0))
    assert np.abs(inside - blue).sum() < np.abs(outside - blue).sum()


def test_regions_round_trip_and_another_videos_file_is_refused(backend, tracked, tmp_path):
    path = playback.write_regions(tracked)
    doc = json.loads(path.read_text())
    assert doc["total_frames"] == 132 and (doc["width"], doc["height"]) == (1280, 720)
    fresh = service.open_video(backend, BUNNY, LIMITS)
    objects, names = playback.read_regions_file(path, fresh, LIMITS)
    assert playback.restore_objects(fresh, objects, names, LIMITS) == 0
    assert fresh.names == ["bunny"] and fresh.objects[0].tracked
    for pos in range(len(fresh.frame_indices)):
        assert np.array_equal(fresh.masks_on(pos)[0], tracked.masks_on(pos)[0])

    small = write_video(tmp_path / "small.mp4", 12)
    other = service.open_video(backend, str(small), LIMITS)
    with pytest.raises(DemoError, match="is for a 1280×720 video; this video is 64×48"):
        playback.read_regions_file(path, other, LIMITS)
    same_size = tmp_path / "other.json"
    same_size.write_text(json.dumps({**doc, "total_frames": 250}))
    with pytest.raises(DemoError, match="video of 250 frames; this video has 132"):
        playback.read_regions_file(same_size, fresh, LIMITS)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DemoError, match="not a regions file"):
        playback.read_regions_file(broken, fresh, LIMITS)


def test_an_upload_is_opened_once(backend, monkeypatch):
    opened = []
    real = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(a[0]) or real(*a, **k))
    import decord

    monkeypatch.setattr(decord, "VideoReader", lambda *a, **k: pytest.fail("decord opened the upload again"))
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)
    list(service.ask_in_session(backend, state, "What is <object0>?", "single", LIMITS))
    assert opened == [BUNNY]  # the model got the decoded frames, not the path
    with VideoFile(BUNNY, LIMITS) as video:
        assert (video.info.total_frames, video.info.width) == (132, 1280)


def test_a_visitor_leaving_frees_their_frames_caches_and_files(backend, tracked):
    class Request:
        session_hash = "visitor-1"

    sessions = Sessions(backend)
    state = service.open_video(backend, BUNNY, LIMITS)
    service.click(state, 0, 470, 380, "positive", LIMITS)
    list(service.ask_in_session(backend, state, "What is <object0>?", "single", LIMITS))
    sessions.register(Request(), state)
    video = playback.write_tracked_video(state)
    key = str(Path(BUNNY).resolve())
    assert any(key in k for k in backend.model.cache._items) and len(state.session._store._items) > 0
    store = state.session._store
    sessions.leave(Request())  # gradio gives a reloaded page a new session: everything goes at once
    assert state.stop_event.is_set() and "page was closed" in state.closed
    assert not any(key in k for k in backend.model.cache._items) and len(store._items) == 0
    assert state.session is None and state.nbytes == 0  # frames and masks freed
    assert not video.exists() and len(sessions) == 0
    sessions.release(state)  # gradio deleting the state later is harmless
