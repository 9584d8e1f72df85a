"""Tests for videorefer.data.synthetic: determinism, masks vs decoded pixels, answers vs geometry, balance and JSON formats."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from videorefer.data import synthetic
from videorefer.data.synthetic import COLOURS, FAMILIES, chance_levels, generate

N_TRAIN, N_HELDOUT = 24, 8
BENCH_Q_TYPES = {"Basic Questions", "Sequential Questions", "Relationship Questions", "Reasoning Questions",
                 "Future Predictions"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(out, n_train=N_TRAIN, n_heldout=N_HELDOUT, seed=3)
    return out


def load(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def decode_mp4(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def decode_masks(annotation: list[dict]) -> list[dict[int, np.ndarray]]:
    return [{int(t): mask_utils.decode(v["segmentation"]).astype(bool) for t, v in obj.items()} for obj in annotation]


def test_chance_levels() -> None:
    chance = chance_levels()
    assert chance["colour"] == 0.25 and chance["direction"] == 0.25 and chance["relation"] == 0.5
    assert chance["shape"] == pytest.approx(1 / 3)
    assert chance["overall"] == pytest.approx((0.25 + 1 / 3 + 0.25 + 0.5) / 4)


def test_deterministic_and_heldout_independent_of_train_size(data_dir: Path, tmp_path: Path) -> None:
    generate(tmp_path / "a", n_train=N_TRAIN, n_heldout=N_HELDOUT, seed=3)
    for name in ("train.json", "heldout.json", "bench_q.json", "bench_d.json", "meta.json"):
        assert (tmp_path / "a" / name).read_text() == (data_dir / name).read_text(), name
    for name in ("train_00000.mp4", "heldout_00007.mp4"):
        np.testing.assert_array_equal(decode_mp4(tmp_path / "a" / "videos" / name), decode_mp4(data_dir / "videos" / name))
    generate(tmp_path / "b", n_train=5, n_heldout=N_HELDOUT, seed=3)
    assert (tmp_path / "b" / "heldout.json").read_text() == (data_dir / "heldout.json").read_text()
    generate(tmp_path / "c", n_train=N_TRAIN, n_heldout=N_HELDOUT, seed=4)
    assert (tmp_path / "c" / "train.json").read_text() != (data_dir / "train.json").read_text()


def check_masks_against_pixels(frames: np.ndarray, meta_video: dict, samples: list[dict]) -> None:
    """Every mask covers exactly the pixels drawn in its object's colour; everything else is grey background."""
    covered = np.zeros(frames.shape[:3], dtype=bool)
    for sample in samples:
        for k, masks in zip(meta_video["targets"][sample["family"]], decode_masks(sample["annotation"])):
            colour = np.array(COLOURS[meta_video["objects"][k]["colour"]], dtype=np.uint8)
            for t, mask in masks.items():
                assert mask.sum() > 20
                drawn = np.all(frames[t] == colour, axis=-1)
                np.testing.assert_array_equal(mask, drawn)
                covered[t] |= mask
    background = frames[~covered]
    assert np.all(background[:, 0] == background[:, 1]) and np.all(background[:, 1] == background[:, 2])


def test_masks_match_decoded_pixels(data_dir: Path) -> None:
    meta = load(data_dir / "meta.json")
    by_video: dict[str, list[dict]] = {}
    for sample in load(data_dir / "train.json") + load(data_dir / "heldout.json"):
        by_video.setdefault(sample["video"], []).append(sample)
    for name, meta_video in list(meta["videos"].items())[::4]:
        frames = decode_mp4(data_dir / meta_video["path"])
        assert frames.shape == (meta["frames"], meta["size"], meta["size"], 3)
        check_masks_against_pixels(frames, meta_video, by_video[meta_video["path"]])


def test_masks_match_decord_frames(data_dir: Path) -> None:
    decord = pytest.importorskip("decord")
    meta = load(data_dir / "meta.json")["videos"]["heldout_00000"]
    samples = [s for s in load(data_dir / "heldout.json") if s["video"] == meta["path"]]
    reader = decord.VideoReader(str(data_dir / meta["path"]))
    check_masks_against_pixels(reader.get_batch(list(range(len(reader)))).asnumpy(), meta, samples)


def test_frames_as_folders(tmp_path: Path) -> None:
    generate(tmp_path / "png", n_train=3, n_heldout=2, seed=3, frames_as_folders=True)
    generate(tmp_path / "mp4", n_train=3, n_heldout=2, seed=3)
    meta = load(tmp_path / "png" / "meta.json")["videos"]["train_00002"]
    folder = tmp_path / "png" / meta["path"]
    assert folder.is_dir() and meta["path"] == "videos/train_00002"
    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])
    np.testing.assert_array_equal(frames, decode_mp4(tmp_path / "mp4" / "videos" / "train_00002.mp4"))
    samples = [s for s in load(tmp_path / "png" / "train.json") if s["video"] == meta["path"]]
    check_masks_against_pixels(frames, meta, samples)


def infer_answer(family: str, objects: list[dict[int, np.ndarray]], frames: np.ndarray) -> str:
    """Recompute the answer from the masks and decoded pixels alone (independently of the generator)."""
    first = objects[0]
    times = sorted(first)
    ys, xs = np.nonzero(first[times[0]])
    if family == "colour":
        pixel = frames[times[0], ys[0], xs[0]].astype(int)
        return min(COLOURS, key=lambda c: np.abs(np.array(COLOURS[c]) - pixel).sum())
    if family == "shape":  # fill ratio of the bounding box: square ~1, circle ~pi/4, triangle ~1/2
        fill = len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
        return "square" if fill > 0.9 else "circle" if fill > 0.65 else "triangle"
    if family == "direction":
        y1, x1 = np.argwhere(first[times[-1]]).mean(0)
        dx, dy = x1 - xs.mean(), y1 - ys.mean()
        return ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
    mean_x = [np.mean([np.argwhere(m)[:, 1].mean() for m in obj.values()]) for obj in objects]
    return "first" if mean_x[0] < mean_x[1] else "second"


def test_answers_follow_from_masks_and_pixels(data_dir: Path) -> None:
    for split in ("train", "heldout"):
        frames_cache: dict[str, np.ndarray] = {}
        for sample in load(data_dir / f"{split}.json"):
            frames = frames_cache.setdefault(sample["video"], decode_mp4(data_dir / sample["video"]))
            expected = infer_answer(sample["family"], decode_masks(sample["annotation"]), frames)
            assert sample["conversations"][1]["value"] == expected, sample["id"]


def test_answer_depends_on_which_object_is_masked(data_dir: Path) -> None:
    for video in load(data_dir / "meta.json")["videos"].values():
        objects = video["objects"]
        assert 2 <= len(objects) <= 3
        for attribute in ("colour", "shape", "direction"):
            assert len({o[attribute] for o in objects}) == len(objects), attribute
        for family in ("colour", "shape", "direction"):
            (k,) = video["targets"][family]
            assert objects[k][family] == video["answers"][family]


@pytest.mark.parametrize("split, n", [("train", N_TRAIN), ("heldout", N_HELDOUT)])
def test_answers_are_balanced(data_dir: Path, split: str, n: int) -> None:
    samples = load(data_dir / f"{split}.json")
    assert Counter(s["family"] for s in samples) == {f: n for f in FAMILIES}
    for family, options in FAMILIES.items():
        counts = Counter(s["conversations"][1]["value"] for s in samples if s["family"] == family)
        assert set(counts) <= set(options)
        assert max(counts[o] for o in options) - min(counts[o] for o in options) <= 1, (family, counts)


def check_annotation(annotation: list[dict], height: int, width: int, frames: int) -> None:
    for obj in annotation:
        assert set(obj) == {str(t) for t in range(frames)}
        for value in obj.values():
            rle = value["segmentation"]
            assert rle["size"] == [height, width] and isinstance(rle["counts"], str)
            assert mask_utils.decode(rle).any()


def test_videorefer_700k_format(data_dir: Path) -> None:
    meta = load(data_dir / "meta.json")
    samples = load(data_dir / "train.json")
    assert len({s["id"] for s in samples}) == len(samples)
    for s in samples:
        assert set(s) == {"id", "video", "conversations", "annotation", "height", "width", "family"}
        human, gpt = s["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<video>\n") and "<object" not in human["value"]
        assert human["value"].count("<region>") == len(s["annotation"]) == (2 if s["family"] == "relation" else 1)
        assert gpt["value"] in FAMILIES[s["family"]]
        assert (data_dir / s["video"]).is_file()
        assert s["height"] == s["width"] == meta["size"]
        check_annotation(s["annotation"], s["height"], s["width"], meta["frames"])


def test_bench_q_format(data_dir: Path) -> None:
    items = load(data_dir / "bench_q.json")
    assert [i["id"] for i in items] == list(range(5 * N_HELDOUT))
    letters = Counter()
    for item in items:
        assert set(item) == {"id", "video", "Question", "type", "options", "Answer", "frame_idx", "annotation"}
        assert item["type"] in BENCH_Q_TYPES
        tags = re.findall(r"<object(\d+)><region>", item["Question"])
        assert [int(t) for t in tags] == list(range(len(item["annotation"])))
        assert item["Question"].count("<region>") == len(tags)
        assert [o[:4] for o in item["options"]] == [f"({chr(65 + i)}) " for i in range(len(item["options"]))]
        assert item["Answer"] in item["options"]
        letters[item["Answer"][1]] += 1
        assert all(item["frame_idx"] in obj for obj in item["annotation"])
        assert (data_dir / item["video"]).is_file()
        check_annotation(item["annotation"], 64, 64, 8)
    assert len(letters) >= 3  # options are shuffled, so the right letter varies


def test_bench_q_answers_match_meta(data_dir: Path) -> None:
    meta = load(data_dir / "meta.json")["videos"]
    by_path = {v["path"]: v for v in meta.values()}
    for item in load(data_dir / "bench_q.json"):
        video = by_path[item["video"]]
        answer = item["Answer"][4:].lower()
        if item["Question"].startswith("What colour"):
            assert answer == video["answers"]["colour"]
        elif item["Question"].startswith("What shape"):
            assert answer == video["answers"]["shape"]
        elif item["type"] == "Relationship Questions":
            assert answer == ("to the left" if video["answers"]["relation"] == "first" else "to the right")
        else:
            assert video["answers"]["direction"] in answer.replace("top", "up").replace("bottom", "down")


def test_bench_d_format(data_dir: Path) -> None:
    items = load(data_dir / "bench_d.json")
    meta = load(data_dir / "meta.json")["videos"]
    assert len(items) == N_HELDOUT
    for i, item in enumerate(items):
        assert set(item) == {"id", "video", "caption", "frame_idx", "annotation"} and item["id"] == i
        assert len(item["annotation"]) == 1 and item["frame_idx"] in item["annotation"][0]
        answers = meta[f"heldout_{i:05d}"]["answers"]
        assert f"{answers['colour']} " in item["caption"]


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path, n_train=1, n_heldout=1, size=16)
    with pytest.raises(ValueError, match="unknown shape"):
        synthetic.shape_masks("hexagon", np.zeros((1, 2)), 5.0, 32)


def test_cli_prints_chance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    synthetic.main([str(tmp_path), "--train", "2", "--heldout", "1", "--size", "48", "--frames", "6"])
    out = capsys.readouterr().out
    assert "overall 0.333" in out and "relation 0.500" in out
    meta = load(tmp_path / "meta.json")
    assert decode_mp4(tmp_path / meta["videos"]["train_00001"]["path"]).shape == (6, 48, 48, 3)
