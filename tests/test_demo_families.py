"""Both model families behind the demo: each processor says which frames it samples (`sample_frames`, what its own
`load_video` decodes), the demo hands the model exactly those frames (never v1's rule for VL3), a still image reaches
VL3 as an image and v1 as a one-frame video, and a checkpoint of an unknown family names the supported ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videorefer.demo import service
from videorefer.demo.backend import TINY_FAMILIES, Settings, load_backend
from videorefer.demo.limits import Limits
from videorefer.demo.testing import write_video

BUNNY = str(Path(__file__).resolve().parents[1] / "examples" / "bigbuckbunny.mp4")
LIMITS = Limits(scrub_frames=4)


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def backend(request):
    return load_backend(Settings(tiny=request.param, device="cpu", limits=LIMITS, detector="none",
                                 max_model_frames=3))


def test_sample_frames_names_the_frames_load_video_decodes(backend, tmp_path):
    processor, cap = backend.model.processor, backend.settings.max_model_frames
    for path, total, fps in ((BUNNY, 132, 25.0), (str(write_video(tmp_path / "v.mp4", 12, fps=5)), 12, 5.0)):
        indices, timestamps = processor.sample_frames(total, fps, max_frames=cap)
        loaded = processor.load_video(path, num_frames=cap)
        assert loaded.frame_indices == indices and loaded.timestamps == timestamps
    if backend.settings.tiny_family == "vl3":  # 1 fps, capped: 5 s of bunny -> 5 slots -> thinned to 3
        assert processor.sample_frames(132, 25.0, max_frames=3)[0] == processor.load_video(BUNNY, num_frames=3
                                                                                          ).frame_indices
        assert len(processor.sample_frames(132, 25.0)[0]) == 5 and len(indices) == 2  # 12 frames at 5 fps: 2 s
    else:  # a fixed count spread evenly, whatever the frame rate (the cap only lowers it)
        assert len(indices) == min(processor.num_frames, cap) and timestamps is None
        assert len(processor.sample_frames(132, 25.0)[0]) == processor.num_frames


def test_the_demo_hands_the_model_its_familys_own_frames(backend):
    state = service.open_video(backend, BUNNY, LIMITS)
    video = service.model_video(backend, state)
    own = backend.model.processor.load_video(BUNNY, num_frames=backend.settings.max_model_frames)
    assert video.frame_indices == own.frame_indices and video.timestamps == own.timestamps
    np.testing.assert_array_equal(video.frames, own.frames)
    service.click(state, 1, 470, 380, "positive", LIMITS)
    service.track(backend, state)
    multi = service.state_regions(backend, state, "multi")[0]
    assert sorted(multi) == sorted(set(own.frame_indices))  # multi-frame: the masks on the family's frames


def test_a_still_image_reaches_vl3_as_an_image_and_v1_as_a_one_frame_video(backend, monkeypatch):
    model = backend.model
    pixels = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:50, 20:60] = True
    loaded = []
    real = model.processor.load_video
    monkeypatch.setattr(model.processor, "load_video",
                        lambda video, *a, **k: loaded.append(video) or real(video, *a, **k))
    answer = model.ask_image(pixels, [mask], "What is <object0>?", max_new_tokens=4)
    assert isinstance(answer, str)
    if backend.settings.tiny_family == "vl3":
        assert loaded == []  # the processor took the image itself (merge size 1), not a video
    else:
        assert loaded and loaded[0].shape == (1, 64, 80, 3)  # the official v1 way: a one-frame video


def test_a_checkpoint_of_an_unknown_family_names_the_supported_ones(tmp_path):
    folder = tmp_path / "llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'llama' is not a VideoRefer model family; supported: .*VideoRefer-7B.*"
                                         r"VideoRefer-VL3|VideoRefer-VL3.*VideoRefer-7B"):
        load_backend(Settings(model=str(folder), device="cpu", detector="none"))
