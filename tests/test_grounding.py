"""Find by name (`videorefer.segmentation.grounding`) on a tiny random Grounding DINO + tiny random SAM 2.1 (CPU).

Random weights detect nothing meaningful, so these tests check what the code promises whatever the boxes: the
threshold decides which boxes become objects, each object's mask is SAM 2's answer to its box, objects join a session
with the ids asked for and track, and bad phrases are refused before any model runs.
"""

import numpy as np
import pytest
import torch

from videorefer.segmentation import (
    MAX_PHRASE_CHARS,
    GroundingDinoDetector,
    ObjectFinder,
    Sam2Segmenter,
    check_phrase,
    find_objects,
)
from videorefer.testing.tiny_grounding_dino import build_tiny_grounding_dino
from videorefer.testing.tiny_sam2 import build_tiny_sam2

T, H, W = 4, 48, 64


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("find-models")
    detector = GroundingDinoDetector.from_pretrained(build_tiny_grounding_dino(root / "gdino"), device="cpu",
                                                     batch_size=2)
    return detector, Sam2Segmenter.from_pretrained(build_tiny_sam2(root / "sam2"), device="cpu")


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(1).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def test_phrase_rules():
    assert check_phrase("  the   white\nrabbit. ") == "the white rabbit"
    assert check_phrase("x" * MAX_PHRASE_CHARS) == "x" * MAX_PHRASE_CHARS
    too_long = "x" * (MAX_PHRASE_CHARS + 1)
    for bad, match in [("", "empty"), ("  . ", "empty"), (too_long, "81 characters; the limit is 80"), (None, "text")]:
        with pytest.raises(ValueError, match=match):
            check_phrase(bad)


def test_bad_phrase_is_refused_before_the_detector_runs(models, frames):
    class Refuse:
        def detect(self, image, phrases):
            raise AssertionError("the detector ran")

    finder = ObjectFinder(Refuse(), models[1])
    with pytest.raises(ValueError, match="empty"):
        finder.find(frames[0], "   ")
    with pytest.raises(ValueError, match="the limit is 80"):
        finder.find_all(frames[0], ["rabbit", "y" * 90])
    with pytest.raises(ValueError, match="threshold must be in"):
        ObjectFinder(Refuse(), models[1], threshold=1.5)


def test_detections_are_clipped_and_batching_changes_nothing(models, frames):
    detector = models[0]
    phrases = ["the rabbit", "every car", "unicorn"]
    together = detector.detect(frames[0], phrases)  # batch_size 2: two forward passes
    assert [d.phrase for d in together] == phrases
    for det in together:
        assert det.boxes.shape == (10, 4) and det.scores.shape == (10,)  # the tiny model has 10 queries
        assert (det.boxes >= 0).all() and (det.boxes[:, [0, 2]] <= W).all() and (det.boxes[:, [1, 3]] <= H).all()
        assert ((det.scores > 0) & (det.scores < 1)).all()
        alone = detector.detect(frames[0], [det.phrase])[0]
        np.testing.assert_allclose(alone.scores, det.scores, atol=1e-5)
        np.testing.assert_allclose(alone.boxes, det.boxes, atol=1e-3)
    assert not np.allclose(together[0].scores, together[2].scores)  # the phrase reaches the scores


def test_threshold_zero_gives_objects_whose_masks_are_sam2_box_masks(models, frames):
    detector, segmenter = models
    result = ObjectFinder(detector, segmenter, threshold=0.0).find(frames[0], "the rabbit")
    assert result.phrase == "the rabbit" and 1 <= len(result.objects) <= 8
    scores = [o.score for o in result.objects]
    assert scores == sorted(scores, reverse=True) and result.best_score == pytest.approx(scores[0])
    for obj in result.objects:
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H and obj.obj_id is None
        assert obj.mask.shape == (H, W) and obj.mask.dtype == bool and obj.mask.any()
        expected = segmenter.segment_image(frames[0], {0: {"box": obj.box}})[0]
        np.testing.assert_array_equal(obj.mask, expected)
    masks = find_objects(frames[0], "the rabbit", detector, segmenter, threshold=0.0)
    assert [o.box for o in masks] == [o.box for o in result.objects]


def test_threshold_keeps_exactly_the_boxes_scoring_above_it(models, frames):
    finder = ObjectFinder(models[0], models[1], threshold=0.0)
    everything = finder.find(frames[1], "every car")
    scores = sorted(o.score for o in everything.objects)
    assert len(scores) >= 2, "the tiny detector should give several distinct boxes at threshold 0"
    cut = (scores[0] + scores[1]) / 2  # drops exactly the weakest box
    fewer = finder.find(frames[1], "every car", threshold=cut)
    assert [o.box for o in fewer.objects] == [o.box for o in everything.objects if o.score > cut]
    assert len(finder.find(frames[1], "every car", max_objects=1).objects) == 1


def test_high_threshold_finds_nothing_and_says_so(models, frames):
    result = ObjectFinder(models[0], models[1], threshold=0.9).find(frames[0], "unicorn")
    assert result.objects == [] and 0 < result.best_score < 0.9
    assert result.miss_message().startswith("no object matching 'unicorn' on this frame (best score 0.")
    assert find_objects(frames[0], "unicorn", *models, threshold=0.9) == []
    tiny = ObjectFinder(models[0], models[1], threshold=0.0, min_mask_fraction=1.0).find(frames[0], "unicorn")
    assert tiny.objects == [] and "mask too small" in tiny.miss_message()


def test_found_objects_join_a_session_and_track(models, frames):
    detector, segmenter = models
    session = segmenter.init_state(frames)
    session.add_points(0, 3, [[10, 10]])  # an object the visitor already has
    finder = ObjectFinder(detector, segmenter, threshold=0.0, max_objects=2)
    result = finder.find(frames[2], "the rabbit", session=session, frame_idx=2, first_obj_id=4)
    assert [o.obj_id for o in result.objects] == [4, 5] and session.obj_ids == [3, 4, 5]
    for obj in result.objects:
        np.testing.assert_array_equal(session.masks[obj.obj_id][2], obj.mask)
        assert session.prompts(obj.obj_id)[2].box.tolist() == pytest.approx(obj.box)
    tracked = session.propagate()
    assert all(sorted(tracked[o.obj_id]) == list(range(T)) for o in result.objects)
    for wrong in (1, None, T):  # another frame, none, out of range
        with pytest.raises(ValueError, match="frame_idx"):
            finder.find(frames[2], "the rabbit", session=session, frame_idx=wrong)
