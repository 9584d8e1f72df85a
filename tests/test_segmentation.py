"""Tests for videorefer.segmentation on a tiny random SAM 2.1 (CPU, no downloads).

With random weights the masks' content is arbitrary, so these tests check structure, coverage, determinism and
independence between objects; only drawn masks (`as_drawn=True`) have a known content.
"""

import numpy as np
import pytest
import torch

from videorefer.segmentation import FramePrompt, Sam2Segmenter, SegmentationSession
from videorefer.testing.tiny_sam2 import build_tiny_sam2

T, H, W = 5, 48, 64


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    torch.set_num_threads(1)
    path = build_tiny_sam2(tmp_path_factory.mktemp("tiny_sam2"))
    return Sam2Segmenter.from_pretrained(path, device="cpu")


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def brush():
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    return mask


def run(session, frame_indices=None):
    calls = []
    out = session.propagate(frame_indices, progress=lambda done, total: calls.append((done, total)))
    return out, calls


def assert_same_object(a, b):
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


# ------------------------------------------------------------------------------------------------------- loading
def test_from_pretrained_and_shared_image_model(segmenter):
    from transformers import Sam2Model, Sam2VideoModel, Sam2VideoProcessor

    assert isinstance(segmenter.model, Sam2VideoModel) and isinstance(segmenter.processor, Sam2VideoProcessor)
    assert segmenter.image_size == 128 and segmenter.autocast_dtype is None  # no autocast on CPU
    image_model = segmenter.image_model
    assert isinstance(image_model, Sam2Model)
    # the image model reuses the video model's weights instead of loading a second copy
    assert image_model.vision_encoder is segmenter.model.vision_encoder
    assert image_model.mask_decoder is segmenter.model.mask_decoder
    assert not any(p.is_meta for p in image_model.parameters())


def test_init_state_inputs(segmenter, frames, tmp_path):
    session = segmenter.init_state(list(frames))
    assert isinstance(session, SegmentationSession)
    assert (session.num_frames, session.height, session.width) == (T, H, W)
    from PIL import Image

    for i, frame in enumerate(frames):  # a DAVIS-style folder of frame images, decoded by videorefer.video_io
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.png")
    from_folder = segmenter.init_state(str(tmp_path))
    np.testing.assert_array_equal(from_folder.frames, frames)
    with pytest.raises(ValueError, match="uint8"):
        segmenter.init_state(frames.astype(np.float32))
    with pytest.raises(ValueError, match="no frames"):
        segmenter.init_state([])


# ------------------------------------------------------------------------------------------------ image prompts
@pytest.mark.parametrize("k", [0, 3])
def test_points_on_frame_k_give_mask_on_frame_k(segmenter, frames, k):
    session = segmenter.init_state(frames)
    mask = session.add_points(k, 7, [[10.5, 20], [40, 30]], [1, 0])
    assert mask.shape == (H, W) and mask.dtype == bool
    assert list(session.masks) == [7] and list(session.masks[7]) == [k]
    np.testing.assert_array_equal(session.masks[7][k], mask)
    again = segmenter.init_state(frames).add_points(k, 7, [[10.5, 20], [40, 30]], [1, 0])
    np.testing.assert_array_equal(again, mask)  # deterministic


def test_box_and_points_accumulate(segmenter, frames):
    session = segmenter.init_state(frames)
    mask = session.add_box(1, 0, [5, 5, 40, 30])
    assert mask.shape == (H, W) and mask.dtype == bool
    session.add_points(1, 0, [[12, 12]], clear=False)
    prompt = session.prompts(0)[1]
    assert prompt.box.tolist() == [5, 5, 40, 30] and prompt.points.tolist() == [[12, 12]]
    session.add_points(1, 0, [[20, 20]], [0], clear=False)
    assert session.prompts(0)[1].labels.tolist() == [1, 0]
    session.add_points(1, 0, [[20, 20]])  # clear=True replaces everything on the frame
    assert session.prompts(0)[1].box is None and len(session.prompts(0)[1].points) == 1


def test_drawn_mask_is_kept_exactly(segmenter, frames):
    session = segmenter.init_state(frames)
    drawing = brush()
    np.testing.assert_array_equal(session.add_mask(2, 1, drawing, as_drawn=True), drawing)
    np.testing.assert_array_equal(session.add_mask(4, 1, np.zeros((H, W), np.uint8), as_drawn=True), False)
    out, _ = run(session)
    np.testing.assert_array_equal(out[1][2], drawing)  # the drawing survives tracking unchanged
    assert not out[1][4].any()


def test_brush_mask_as_prompt_is_refined_by_sam(segmenter, frames):
    session = segmenter.init_state(frames)
    refined = session.add_mask(2, 1, brush())
    assert refined.shape == (H, W) and refined.dtype == bool
    assert session.prompts(1)[2].as_drawn is False
    expected = segmenter.segment_image(frames[2], {1: FramePrompt(mask=brush())})[1]
    np.testing.assert_array_equal(refined, expected)
    out, _ = run(session)
    np.testing.assert_array_equal(out[1][2], refined)  # tracking starts from the refined mask


def test_segment_image_several_objects(segmenter, frames):
    prompts = {
        1: {"points": [[5, 6]], "labels": [1]},
        2: {"box": [1, 1, 30, 20]},
        3: {"mask": brush(), "as_drawn": True},
    }
    out = segmenter.segment_image(frames[0], prompts)
    assert sorted(out) == [1, 2, 3] and all(m.shape == (H, W) and m.dtype == bool for m in out.values())
    np.testing.assert_array_equal(out[3], brush())
    alone = segmenter.segment_image(frames[0], {2: prompts[2]})
    np.testing.assert_array_equal(alone[2], out[2])  # one shared encoding == one encoding per object


def test_add_prompts_several_objects(segmenter, frames):
    session = segmenter.init_state(frames)
    prompts = {3: {"points": [[5, 5]]}, 4: {"box": [2, 2, 20, 20]}, 5: {"mask": brush(), "as_drawn": True}}
    out = session.add_prompts(1, prompts)
    assert sorted(out) == [3, 4, 5] and session.obj_ids == [3, 4, 5]
    np.testing.assert_array_equal(out[5], brush())
    single = segmenter.init_state(frames).add_box(1, 4, [2, 2, 20, 20])
    np.testing.assert_array_equal(out[4], single)


# ------------------------------------------------------------------------------------------------------ tracking
def test_propagate_every_frame_both_directions(segmenter, frames):
    session = segmenter.init_state(frames)
    session.add_points(2, 1, [[30, 20]], [1])
    out, calls = run(session)
    assert list(out) == [1] and list(out[1]) == list(range(T))  # frames before and after the prompt
    assert all(m.shape == (H, W) and m.dtype == bool for m in out[1].values())
    assert len({m.tobytes() for m in out[1].values()}) > 1  # each frame gets its own prediction
    # 1 conditioning step + 2 forward (3, 4) + 2 backward (1, 0), reported one by one
    assert calls == [(i, 5) for i in range(1, 6)]
    again, _ = run(_fresh(segmenter, frames, 2, 1, [[30, 20]]))
    assert_same_object(again[1], out[1])  # deterministic


def _fresh(segmenter, frames, k, obj, points):
    session = segmenter.init_state(frames)
    session.add_points(k, obj, points, [1] * len(points))
    return session


def test_propagate_subset_of_frames(segmenter, frames):
    session = _fresh(segmenter, frames, 2, 1, [[30, 20]])
    out, calls = run(session, [4, 0, 4])
    assert list(out[1]) == [0, 2, 4]  # requested frames plus the prompted one
    assert len(calls) == 3
    _, calls = run(session, [0, 4])
    assert calls == []  # nothing changed: nothing re-tracked
    out, calls = run(session)
    assert list(out[1]) == list(range(T)) and len(calls) == T


def test_two_prompted_frames(segmenter, frames):
    session = _fresh(segmenter, frames, 3, 1, [[30, 20]])
    session.add_box(1, 1, [5, 5, 40, 30])
    out, calls = run(session)
    assert list(out[1]) == list(range(T))
    assert len(calls) == T  # 2 conditioning steps + 3 tracked frames, none twice


def test_correction_retracks_only_that_object(segmenter, frames):
    session = _fresh(segmenter, frames, 2, 1, [[30, 20]])
    session.add_box(0, 2, [5, 5, 40, 30])
    first, calls = run(session)
    assert sorted(first) == [1, 2] and len(calls) == 2 * T
    before = session.masks[2]
    session.add_points(4, 1, [[10, 40]], [1])  # a prompt for object 1 on another frame
    second, calls = run(session)
    assert len(calls) == T  # only object 1 was tracked again
    assert all(second[2][k] is before[k] for k in before)  # object 2: the very same arrays
    # object 1 tracked among others == object 1 tracked alone (objects have independent memories)
    alone = _fresh(segmenter, frames, 2, 1, [[30, 20]])
    alone.add_points(4, 1, [[10, 40]], [1])
    assert_same_object(second[1], run(alone)[0][1])


def test_remove_object_and_reset(segmenter, frames):
    session = _fresh(segmenter, frames, 2, 1, [[30, 20]])
    session.add_box(0, 2, [5, 5, 40, 30])
    out, _ = run(session)
    kept = session.masks[1]
    session.remove_object(2)
    assert session.obj_ids == [1] and list(session.masks) == [1]
    assert all(session.masks[1][k] is kept[k] for k in kept)
    out, calls = run(session)
    assert list(out) == [1] and calls == []
    with pytest.raises(ValueError, match="unknown object"):
        session.remove_object(2)
    session.reset()
    assert session.obj_ids == [] and run(session)[0] == {}


# ---------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "points, labels, match",
    [
        ([[-1, 5]], [1], "outside"),
        ([[W + 1, 5]], [1], "outside"),
        ([[5, H + 0.5]], [1], "outside"),
        ([[5, 5]], [2], "labels"),
        ([[5, 5], [6, 6]], [1], "labels"),
        ([[np.nan, 5]], [1], "finite"),
        ([], [], "non-empty"),
    ],
)
def test_bad_points(segmenter, frames, points, labels, match):
    session = segmenter.init_state(frames)
    with pytest.raises(ValueError, match=match):
        session.add_points(0, 1, points, labels)
    assert session.obj_ids == []  # nothing was stored


@pytest.mark.parametrize(
    "box, match",
    [([10, 10, 10, 20], "empty"), ([10, 20, 30, 5], "empty"), ([0, 0, W + 10, 10], "outside"), ([1, 2, 3], "x0")],
)
def test_bad_box(segmenter, frames, box, match):
    with pytest.raises(ValueError, match=match):
        segmenter.init_state(frames).add_box(0, 1, box)


def test_bad_frames_masks_and_ids(segmenter, frames):
    session = segmenter.init_state(frames)
    for k in (-1, T, 2.0):
        with pytest.raises(ValueError, match="frame index"):
            session.add_points(k, 1, [[5, 5]], [1])
    with pytest.raises(ValueError, match="frame's size"):
        session.add_mask(0, 1, np.ones((H, W + 1), bool))
    with pytest.raises(ValueError, match="empty"):
        session.add_mask(0, 1, np.zeros((H, W), bool))  # an empty mask cannot be a prompt
    with pytest.raises(ValueError, match="0 and 1"):
        session.add_mask(0, 1, np.full((H, W), 3, np.uint8))
    with pytest.raises(ValueError, match="object id"):
        session.add_points(0, "cat", [[5, 5]], [1])
    with pytest.raises(ValueError, match="cannot be combined"):
        session.add_prompts(0, {1: {"mask": brush(), "box": [1, 1, 5, 5], "as_drawn": True}})
    with pytest.raises(ValueError, match="object 2: .*outside"):
        session.add_prompts(0, {1: {"box": [1, 1, 5, 5]}, 2: {"points": [[-3, 0]]}})
    assert session.obj_ids == []  # all validated before anything is stored
    session.add_points(1, 1, [[5, 5]], [1])
    with pytest.raises(ValueError, match="out of range"):
        session.propagate([0, T])
    with pytest.raises(ValueError, match="empty"):
        session.propagate([])
    with pytest.raises(ValueError, match="outside"):
        segmenter.segment_image(frames[0], {1: {"points": [[W + 3, 1]]}})
