"""Tests for videorefer.regions: RLE / polygon / official annotation / saved-regions JSON / frame selection."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from videorefer.regions import (
    annotation_to_objects,
    decode_segmentation,
    mask_to_rle,
    objects_from_json,
    objects_to_annotation,
    objects_to_json,
    rle_to_mask,
    select_object_frames,
)


def random_masks(seed: int, n: int, h: int = 37, w: int = 53) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = [rng.random((h, w)) < p for p in rng.uniform(0.0, 1.0, n)]
    masks += [np.zeros((h, w), bool), np.ones((h, w), bool)]  # edge cases: all-off and all-on
    return masks


# ------------------------------------------------------------------------------------------------------------ RLE
@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random(seed):
    for mask in random_masks(seed, 6):
        rle = mask_to_rle(mask)
        assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
        json.dumps(rle)  # JSON-safe
        back = rle_to_mask(json.loads(json.dumps(rle)))
        assert back.dtype == bool and back.shape == mask.shape
        np.testing.assert_array_equal(back, mask)


def test_rle_matches_pycocotools_and_accepts_bytes_and_uncompressed():
    mask = random_masks(7, 1)[0]
    ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert mask_to_rle(mask)["counts"] == ref["counts"].decode()
    np.testing.assert_array_equal(rle_to_mask({"size": [37, 53], "counts": ref["counts"]}), mask)
    # uncompressed RLE (column-major run lengths starting with zeros)
    flat = mask.flatten(order="F").astype(int)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    runs = np.diff(np.concatenate([[0], change])).tolist()
    np.testing.assert_array_equal(rle_to_mask({"size": [37, 53], "counts": runs}), mask)


def test_mask_to_rle_accepts_01_ints_rejects_others():
    m = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(m)), m.astype(bool))
    with pytest.raises(ValueError, match="0 and 1"):
        mask_to_rle(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 2, 2), bool))


@pytest.mark.parametrize(
    "rle, match",
    [
        ({"size": [4, 4], "counts": "0P"}, "middle"),  # continuation bit set on the last character
        ({"size": [4, 4], "counts": "5"}, "run lengths"),  # covers 5 pixels, not 16
        ({"size": [4, 4], "counts": "a b"}, "character"),
        ({"size": [4], "counts": "<"}, "size"),
        ({"size": [4, -4], "counts": "<"}, "size"),
        ({"counts": "<"}, "size"),
        ({"size": [4, 4], "counts": 12}, "counts"),
        ({"size": [2, 2], "counts": [1, 2]}, "run lengths"),
        ({"size": [2, 2], "counts": [5, -1]}, "run lengths"),
        ("not a dict", "RLE"),
    ],
)
def test_invalid_rle(rle, match):
    with pytest.raises(ValueError, match=match):
        rle_to_mask(rle)


def test_rle_wrong_size():
    rle = mask_to_rle(np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="does not match"):
        rle_to_mask(rle, 5, 4)
    with pytest.raises(ValueError, match="does not match"):
        decode_segmentation(rle, 4, 6)


# ------------------------------------------------------------------------------------------------------- polygons
def test_polygon_decodes():
    square = [[2.0, 2.0, 8.0, 2.0, 8.0, 6.0, 2.0, 6.0]]  # x0 y0 x1 y1 ...: rows 2..6, cols 2..8
    mask = decode_segmentation(square, 10, 12)
    assert mask.shape == (10, 12) and mask.dtype == bool
    assert mask[4, 5] and not mask[0, 0] and not mask[4, 10] and not mask[8, 5]
    two = decode_segmentation(square + [[9, 7, 11, 7, 11, 9]], 10, 12)
    assert two.sum() > mask.sum() and (two | mask).sum() == two.sum()
    assert decode_segmentation(None, 10, 12) is None
    with pytest.raises(ValueError, match="polygon"):
        decode_segmentation([[1, 2, 3]], 10, 12)
    with pytest.raises(ValueError, match="height and width"):
        decode_segmentation(square, None, None)
    with pytest.raises(ValueError, match="segmentation"):
        decode_segmentation("abc", 10, 12)


# -------------------------------------------------------------------------------------------- official annotation
def make_objects(seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    return [
        {0: rng.random((h, w)) < 0.3, 5: rng.random((h, w)) < 0.6, 9: np.zeros((h, w), bool)},
        {3: rng.random((h, w)) < 0.5},
        {},
    ]


def assert_objects_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert list(x) == list(y)
        for k in x:
            assert y[k].dtype == bool
            np.testing.assert_array_equal(x[k], y[k])


def test_annotation_round_trip():
    objects = make_objects()
    ann = objects_to_annotation(objects)
    assert [sorted(o) for o in ann] == [["0", "5", "9"], ["3"], []]
    assert ann[0]["5"]["segmentation"]["size"] == [24, 32]
    text = json.dumps(ann)
    back = annotation_to_objects(json.loads(text), 24, 32, num_frames=10)
    assert_objects_equal(objects, back)
    assert objects_to_annotation(back) == ann  # exact both ways
    assert_objects_equal(objects, annotation_to_objects(ann))  # size inferred from the RLE


def test_annotation_null_and_polygon_frames():
    rle = mask_to_rle(np.eye(6, 8, dtype=bool))
    polygon = [[1, 1, 5, 1, 5, 4]]
    ann = [{"0": {"segmentation": rle}, "2": {"segmentation": None}, "4": None, "7": {"segmentation": polygon}}]
    (obj,) = annotation_to_objects(ann, 6, 8, num_frames=8)
    assert sorted(obj) == [0, 7]
    np.testing.assert_array_equal(obj[0], np.eye(6, 8, dtype=bool))
    assert obj[7].any()


@pytest.mark.parametrize(
    "ann, kwargs, match",
    [
        ([{"12": {"segmentation": None}}], {"num_frames": 10}, "out of range"),
        ([{"-1": {"segmentation": None}}], {}, "non-negative"),
        ([{"a": {"segmentation": None}}], {}, "integers"),
        ([{"1": {"mask": None}}], {}, "segmentation"),
        ([{"1": {"segmentation": {"size": [6, 8], "counts": "zz"}}}], {}, "invalid RLE"),
        ([{"1": {"segmentation": mask_to_rle(np.zeros((6, 8), bool))}}], {"height": 6, "width": 9}, "does not match"),
        ({"1": {"segmentation": None}}, {}, "list"),
        ([[1, 2]], {}, "dict"),
    ],
)
def test_annotation_errors(ann, kwargs, match):
    with pytest.raises(ValueError, match=match):
        annotation_to_objects(ann, **kwargs)


def test_annotation_mixed_sizes_rejected():
    a, b = mask_to_rle(np.zeros((6, 8), bool)), mask_to_rle(np.zeros((6, 9), bool))
    ann = [{"0": {"segmentation": a}, "1": {"segmentation": b}}]
    with pytest.raises(ValueError, match="does not match"):
        annotation_to_objects(ann)
    with pytest.raises(ValueError, match="differs"):
        objects_to_annotation([{0: np.zeros((6, 8), bool)}, {0: np.zeros((5, 8), bool)}])


# -------------------------------------------------------------------------------------------------- saved regions
def test_json_document_round_trip():
    objects = make_objects(1)
    doc = objects_to_json(objects, names=["cat", "dog", "ghost"])
    assert doc["height"] == 24 and doc["width"] == 32 and [o["name"] for o in doc["objects"]] == ["cat", "dog", "ghost"]
    text = json.dumps(doc)
    back, names = objects_from_json(text)
    assert names == ["cat", "dog", "ghost"]
    assert_objects_equal(objects, back)
    back2, names2 = objects_from_json(json.loads(text))
    assert_objects_equal(objects, back2) and names2 == names
    assert [o["name"] for o in objects_to_json(objects)["objects"]] == ["object0", "object1", "object2"]


def test_json_document_errors():
    with pytest.raises(ValueError, match="names"):
        objects_to_json(make_objects(), names=["a"])
    with pytest.raises(ValueError, match="JSON"):
        objects_from_json("{not json")
    with pytest.raises(ValueError, match="objects"):
        objects_from_json({"objects": 3})
    with pytest.raises(ValueError, match="unsupported"):
        objects_from_json({"format": "other", "objects": []})
    doc = objects_to_json(make_objects())
    doc["objects"][0]["masks"]["0"]["counts"] = "!!"
    with pytest.raises(ValueError, match="invalid RLE"):
        objects_from_json(doc)


# ---------------------------------------------------------------------------------------------- frame selection
def test_select_object_frames():
    h, w = 8, 8
    small, big, empty = np.zeros((h, w), bool), np.zeros((h, w), bool), np.zeros((h, w), bool)
    small[0, 0] = True
    big[2:6, 2:6] = True
    obj = {1: small, 4: big, 6: empty, 9: big.copy()}
    assert list(select_object_frames(obj, "single")) == [4]  # largest, earliest on ties
    assert list(select_object_frames(obj, "single", frame_index=1)) == [1]
    assert list(select_object_frames(obj, "multi")) == [1, 4, 9]
    assert list(select_object_frames(obj, "multi", sampled_frames=[9, 6, 4, 4, 2])) == [4, 9]
    np.testing.assert_array_equal(select_object_frames(obj, "single", frame_index=1)[1], small)
    with pytest.raises(ValueError, match="no mask"):
        select_object_frames(obj, "single", frame_index=3)
    with pytest.raises(ValueError, match="empty"):
        select_object_frames(obj, "single", frame_index=6)
    # No mask on the sampled frames: all its masks (the model decodes them as extra frames).
    assert list(select_object_frames(obj, "multi", sampled_frames=[0, 6, 7])) == [1, 4, 9]
    # auto: multi when masks lie on several frames, single when on one (an empty mask does not count).
    assert list(select_object_frames(obj, "auto", sampled_frames=[9, 4])) == [4, 9]
    assert list(select_object_frames({6: empty, 9: big}, "auto", sampled_frames=[0, 1])) == [9]
    assert list(select_object_frames(obj, "auto", frame_index=1, sampled_frames=[9, 4])) == [4, 9]
    with pytest.raises(ValueError, match="no masks"):
        select_object_frames({}, "single")
    with pytest.raises(ValueError, match="empty"):
        select_object_frames({2: empty}, "single")
    with pytest.raises(ValueError, match="mode"):
        select_object_frames(obj, "both")


def test_polygon_a_little_outside_the_frame_is_cropped_like_pycocotools():
    # Annotation tools leave vertices just past the border; those masks must decode as pycocotools crops them, while a
    # vertex a whole frame away is refused before pycocotools sees it.
    poly = [-2.5, -1.0, 70.0, 3.0, 66.0, 50.0, 5.0, 47.5]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], 48, 64))).astype(bool)
    mask = decode_segmentation([poly], 48, 64)
    assert mask.shape == (48, 64) and mask.any()
    np.testing.assert_array_equal(mask, expected)
    with pytest.raises(ValueError, match="far outside the 64x48 frame"):
        decode_segmentation([[0, 0, 130, 0, 130, 40]], 48, 64)
