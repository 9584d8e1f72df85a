"""Training data: the VideoRefer-700K loader (RLE, polygons, null segmentation, frame folders), label masking,
the <region> count check, and batching (a batch of 2 gives the same loss as two singles)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from train.data import VideoReferCollator, VideoReferDataset
from videorefer.models.videorefer_qwen2.modeling import VideoReferQwen2ForCausalLM
from videorefer.models.videorefer_qwen2.processing import VideoReferProcessor
from videorefer.prompts import IGNORE_LABEL
from videorefer.regions import decode_segmentation, mask_to_rle
from videorefer.video_io import sample_frame_indices

H, W, T = 36, 40, 20


@pytest.fixture(scope="module")
def processor(tiny_checkpoint) -> VideoReferProcessor:
    return VideoReferProcessor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory):
    """A video as a folder of PNG frames; frame t is filled with grey level 10 * t (so frames are recognisable)."""
    folder = tmp_path_factory.mktemp("data") / "clip"
    folder.mkdir()
    for t in range(T):
        Image.fromarray(np.full((H, W, 3), 10 * t, np.uint8)).save(folder / f"{t:05d}.png")
    return folder


def box(y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def sample(**overrides) -> dict:
    base = {
        "id": "s0",
        "video": "clip",
        "conversations": [
            {"from": "human", "value": "<video>\nWhat is <region> doing?"},
            {"from": "gpt", "value": "It waits."},
            {"from": "human", "value": "And what about <region>?"},
            {"from": "gpt", "value": "It moves."},
        ],
        "annotation": [
            # object 0: an RLE on frame 3 (not a sampled frame), a polygon on frame 7 (sampled), null on frame 11
            {"3": {"segmentation": mask_to_rle(box(2, 10, 4, 12))},
             "7": {"segmentation": [[20.0, 5.0, 30.0, 5.0, 30.0, 15.0, 20.0, 15.0]]},
             "11": {"segmentation": None}},
            {"12": {"segmentation": mask_to_rle(box(20, 30, 25, 35))}},
        ],
    }
    base.update(overrides)
    return base


def test_loads_rle_polygon_null_and_frame_folders(processor, frame_folder):
    num_frames = 4
    sampled = sample_frame_indices(T, num_frames)
    assert 7 in sampled and 12 in sampled and 3 not in sampled  # the layout this test relies on
    data = VideoReferDataset([sample()], processor, data_folder=frame_folder.parent, num_frames=num_frames)
    item = data[0]
    assert item["pixel_values"].shape == (1, num_frames, 3, processor.image_size, processor.image_size)
    regions = item["region_inputs"]
    assert regions.masks_per_object[0].tolist() == [2, 1]  # the null frame is left out
    masks = regions.masks[0].bool().numpy()
    assert np.array_equal(masks[0], box(2, 10, 4, 12))  # RLE
    polygon = decode_segmentation(sample()["annotation"][0]["7"]["segmentation"], H, W)
    assert polygon[10, 25] and not polygon[20, 25] and np.array_equal(masks[1], polygon)  # polygon
    assert np.array_equal(masks[2], box(20, 30, 25, 35))
    # Frame 3 is decoded as an extra frame (row t + 0), frames 7 and 12 are the sampled frames they are.
    assert regions.mask_frames[0].tolist() == [num_frames + 0, sampled.index(7), sampled.index(12)]
    extra = processor.preprocess_frames(np.full((1, H, W, 3), 30, np.uint8))
    assert torch.allclose(regions.extra_frames[0], extra)
    assert int((item["input_ids"] == processor.region_token_index).sum()) == 2


def test_video_files_and_json_files(processor, tmp_path):
    from videorefer.data.synthetic import write_video

    frames = np.stack([np.full((H, W, 3), 10 * t, np.uint8) for t in range(T)])
    write_video(frames, tmp_path / "clip.mp4", as_folder=False)
    path = tmp_path / "train.json"
    path.write_text(json.dumps([sample(video="clip.mp4", height=H, width=W)]))
    item = VideoReferDataset(path, processor, num_frames=4)[0]  # relative to the JSON file's folder
    assert torch.allclose(item["region_inputs"].extra_frames[0], processor.preprocess_frames(frames[3:4]))


def test_region_count_mismatch_names_the_sample_or_is_skipped(processor, frame_folder, caplog):
    bad = sample(id="broken-7")
    bad["conversations"][2]["value"] = "And what about it?"  # one <region> for two objects
    with pytest.raises(ValueError, match=r"sample 1 id 'broken-7'.*1 <region> tokens.*2 objects"):
        VideoReferDataset([sample(), bad], processor, data_folder=frame_folder.parent)
    with caplog.at_level(logging.WARNING):
        data = VideoReferDataset([sample(), bad, bad], processor, data_folder=frame_folder.parent, on_mismatch="skip")
    assert len(data) == 1 and data.skipped == 2
    assert "skipped 2 of 3 samples" in caplog.text


def test_errors_while_loading_name_the_sample(processor, frame_folder):
    broken = sample(id="far-frame")
    broken["annotation"][1] = {"25": {"segmentation": mask_to_rle(box(0, 4, 0, 4))}}  # the video has 20 frames
    data = VideoReferDataset([broken], processor, data_folder=frame_folder.parent)
    with pytest.raises(ValueError, match=r"sample 0 id .far-frame.*frame index 25"):
        data[0]


def test_labels_cover_only_assistant_turns(processor, frame_folder):
    item = VideoReferDataset([sample()], processor, data_folder=frame_folder.parent, num_frames=4)[0]
    ids, labels = item["input_ids"][0], item["labels"][0]
    kept = labels != IGNORE_LABEL
    assert torch.equal(labels[kept], ids[kept])
    assert processor.tokenizer.decode(ids[kept]) == "It waits.<|im_end|>It moves.<|im_end|>"
    # Two contiguous spans, each right after the assistant header: the prompts are those inference builds.
    starts = [i for i in range(len(ids)) if kept[i] and (i == 0 or not kept[i - 1])]
    assert len(starts) == 2
    first_prompt = processor.tokenize(processor.build_prompt("What is <region> doing?"))
    second_prompt = processor.tokenize(
        processor.build_prompt("And what about <region>?", [("What is <region> doing?", "It waits.")])
    )
    assert starts == [len(first_prompt), len(second_prompt)]
    assert ids[: len(second_prompt)].tolist() == second_prompt


def test_batch_of_two_matches_two_singles(processor, frame_folder, tiny_checkpoint):
    short = sample(id="short")
    short["conversations"] = short["conversations"][:2]
    short["annotation"] = short["annotation"][:1]
    data = VideoReferDataset([sample(), short], processor, data_folder=frame_folder.parent, num_frames=4)
    collate = VideoReferCollator(processor)
    batch = collate([data[0], data[1]])
    lengths = [data[0]["input_ids"].shape[1], data[1]["input_ids"].shape[1]]
    assert lengths[0] != lengths[1]  # padding is exercised
    assert (batch["labels"][1, lengths[1]:] == IGNORE_LABEL).all() and (batch["attention_mask"][1, lengths[1]:] == 0).all()
    model = VideoReferQwen2ForCausalLM.from_pretrained(tiny_checkpoint).eval()
    with torch.no_grad():
        singles = [model(**collate([data[i]])) for i in range(2)]
        joint = model(**batch)
    counts = [int((data[i]["labels"][0, 1:] != IGNORE_LABEL).sum()) for i in range(2)]
    # The loss is the mean over label tokens: the batch's loss is the token-weighted mean of the singles'.
    expected = sum(s.loss * n for s, n in zip(singles, counts)) / sum(counts)
    assert torch.allclose(joint.loss, expected, atol=1e-5)
    # With the Trainer's token count (gradient accumulation) the summed losses agree too.
    with torch.no_grad():
        summed = model(**batch, num_items_in_batch=torch.tensor(1)).loss
    assert torch.allclose(summed, sum(s.loss * n for s, n in zip(singles, counts)), atol=1e-4)
