"""The page's Find by name and image mode without gradio (tiny backend): objects found become the visitor's objects
with box prompts in their session; an image is a one-frame video; a family that answers images natively is used."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from videorefer.demo import service
from videorefer.demo.backend import Settings, load_backend
from videorefer.demo.find import find_in_state
from videorefer.demo.image_mode import ask_image_stream, check_image, load_image
from videorefer.demo.limits import DemoError, Limits
from videorefer.demo.testing import write_video

LIMITS = Limits(max_seconds=10, scrub_frames=6, max_objects=3)


@pytest.fixture(scope="module")
def backend():
    return load_backend(Settings(tiny=True, device="cpu", limits=LIMITS))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return str(write_video(tmp_path_factory.mktemp("v") / "small.mp4", 12))


def test_find_adds_named_objects_with_box_prompts_and_tracks_on_request(backend, video):
    state = service.open_video(backend, video, LIMITS)
    service.click(state, 1, 20, 20, "positive", LIMITS)  # <object0>, clicked
    count = find_in_state(backend, state, 2, "the square", None, False, LIMITS)
    assert count == 2 == len(state.objects) - 1  # room for 2 more under max_objects = 3
    assert state.names == ["object 0", "the square 1", "the square 2"] and state.active == 2
    ids = [o.obj_id for o in state.objects]
    assert len(set(ids)) == 3 and state.next_id == max(ids) + 1 and state.session.obj_ids == ids
    for obj in state.objects[1:]:
        assert list(obj.prompts) == [2] and obj.prompts[2].box is not None and not obj.tracked
        assert state.session.prompts(obj.obj_id)[2].box.tolist() == pytest.approx(obj.prompts[2].box)
    assert sorted(state.masks_on(2)) == [1, 2] and 0 not in state.masks_on(2)  # <object0> was clicked on frame 1
    with pytest.raises(DemoError, match="At most 3 objects"):
        find_in_state(backend, state, 2, "the square", None, False, LIMITS)
    service.remove_object(state)
    assert find_in_state(backend, state, 3, "the square", 0.0, True, LIMITS) == 1
    assert all(o.tracked for o in state.objects)  # tracking covers every object, found or clicked
    assert all(len(state.object_masks(k)) == len(state.frame_indices) for k in range(3))


def test_find_refuses_bad_phrases_and_misses_clearly(backend, video):
    state = service.open_video(backend, video, LIMITS)
    for phrase, threshold, message in [("", None, "the phrase is empty"), ("x" * 81, None, "the limit is 80"),
                                       ("unicorn", 0.9, "no object matching 'unicorn' on this frame")]:
        with pytest.raises(DemoError, match=message):
            find_in_state(backend, state, 0, phrase, threshold, False, LIMITS)
    assert state.objects == [] and state.session.obj_ids == []  # nothing half-added


def test_an_image_is_a_one_frame_video(backend, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    state = service.open_video(backend, str(tmp_path / "photo.png"), LIMITS)
    assert state.frame_indices == [0] and state.info.total_frames == 1
    np.testing.assert_array_equal(state.frame(0), pixels)
    assert service.frame_caption(state, 0) == "Image 160×120"
    assert find_in_state(backend, state, 0, "the rabbit", None, False, LIMITS) >= 1
    answers = list(service.ask_in_session(backend, state, "What is <object0>?", "auto", LIMITS))
    assert answers and state.history[-1][0] == "What is <object0>?"


def test_upright_from_exif_and_native_image_answers(tmp_path):
    pixels = np.zeros((10, 20, 3), np.uint8)
    pixels[:, :5] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "phone.jpg", exif=exif, quality=100)
    info = check_image(tmp_path / "phone.jpg", LIMITS)
    assert (info.width, info.height) == (10, 20) and load_image(tmp_path / "phone.jpg").shape == (20, 10, 3)

    class NativeModel:  # what a family answering images natively (VL3) provides
        def ask_image_stream(self, image, masks, question, history=None, stop_event=None):
            yield f"{image.shape} {[m.shape for m in masks]} {question}"

        def ask_stream(self, *args, **kwargs):
            raise AssertionError("the one-frame-video path must not be used when the model answers images")

    class Backend:
        model = NativeModel()

    regions = [{0: np.ones((20, 10), bool)}]
    answer = list(ask_image_stream(Backend(), str(tmp_path / "phone.jpg"), regions, "Q?"))
    assert answer == ["(20, 10, 3) [(20, 10)] Q?"]
