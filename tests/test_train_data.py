"""Training data: the VideoRefer-700K loader (RLE, polygons, null segmentation, frame folders), label masking,
the <region> count check (per family), batching (a batch of 2 gives the same loss as two singles), and a tiny VL3
trained from a 700K file with 12 regions in one sample and an object on three frames."""

from __future__ import annotations

import json
from pathlib import Path

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
    # As the official v1 trainer: the answer, <|im_end|> and the newline after it.
    assert processor.tokenizer.decode(ids[kept]) == "It waits.<|im_end|>\nIt moves.<|im_end|>\n"
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


# ---------------------------------------------------------------------------------------------------- both families
AFTER_ANSWER = {"VideoReferProcessor": "<|im_end|>\n", "VideoReferVL3Processor": "<|im_end|>"}  # what is learnt


@pytest.fixture(scope="module")
def family_processor(family_checkpoint):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(family_checkpoint)


def test_region_count_mismatch_is_refused_for_each_family(family_processor, frame_folder):
    bad = sample(id="broken-7")
    bad["conversations"][2]["value"] = "And what about it?"  # one <region> for two objects (three masks)
    with pytest.raises(ValueError, match=r"sample 1 id 'broken-7'.*1 <region> placeholders.*needs 2"):
        VideoReferDataset([sample(), bad], family_processor, data_folder=frame_folder.parent)
    data = VideoReferDataset([sample(), bad], family_processor, data_folder=frame_folder.parent, on_mismatch="skip")
    assert len(data) == 1 and data.skipped == 1


def test_each_family_labels_only_the_answers(family_processor, frame_folder):
    item = VideoReferDataset([sample()], family_processor, data_folder=frame_folder.parent, num_frames=4)[0]
    ids, labels = item["input_ids"][0], item["labels"][0]
    kept = labels != IGNORE_LABEL
    assert torch.equal(labels[kept], ids[kept])
    # The official trainers differ: v1 learns the newline after <|im_end|>, VL3 does not.
    end = AFTER_ANSWER[type(family_processor).__name__]
    assert family_processor.tokenizer.decode(ids[kept]) == f"It waits.{end}It moves.{end}"


def test_each_family_reads_image_samples(family_processor, tmp_path):
    picture = np.zeros((H, W, 3), np.uint8)
    picture[5:20, 8:30] = (200, 40, 40)
    Image.fromarray(picture).save(tmp_path / "pic.png")
    item = sample(image="pic.png", conversations=sample()["conversations"][:2],
                  annotation=[{"0": {"segmentation": [[8.0, 5.0, 30.0, 5.0, 30.0, 20.0, 8.0, 20.0]]}}])
    del item["video"]
    example = VideoReferDataset([item], family_processor, data_folder=tmp_path)[0]
    assert example["region_inputs"].masks_per_object[0].tolist() == [1]
    labels = example["labels"][0]
    end = AFTER_ANSWER[type(family_processor).__name__]
    assert family_processor.tokenizer.decode(labels[labels != IGNORE_LABEL]) == f"It waits.{end}"


# ---------------------------------------------------------------------------------------------------- VL3
VL3_SIZE, VL3_FRAMES = 64, 10


@pytest.fixture(scope="module")
def vl3_clip(tmp_path_factory):
    """A 10-frame PNG folder, 64x64, with 12 small coloured squares in a 4x3 grid (one per object)."""
    folder = tmp_path_factory.mktemp("vl3-data") / "clip"
    folder.mkdir()
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (12, 3))
    for t in range(VL3_FRAMES):
        frame = np.full((VL3_SIZE, VL3_SIZE, 3), 90, np.uint8)
        for k, (y, x) in enumerate(grid_cells()):
            frame[y:y + 10, x + t % 2:x + t % 2 + 10] = colours[k]
        Image.fromarray(frame).save(folder / f"{t:05d}.png")
    return folder


def grid_cells() -> list[tuple[int, int]]:
    return [(4 + 20 * r, 3 + 15 * c) for r in range(3) for c in range(4)]


def square(y: int, x: int) -> np.ndarray:
    mask = np.zeros((VL3_SIZE, VL3_SIZE), bool)
    mask[y:y + 10, x:x + 10] = True
    return mask


def twelve_regions_sample() -> dict:
    """VideoRefer-700K format: 12 objects, one `<region>` each; object 0 on three frames (RLE, polygon, RLE) and
    null on a fourth; the others on one frame each."""
    cells = grid_cells()
    annotation = [{str(k % VL3_FRAMES): {"segmentation": mask_to_rle(square(*cells[k]))}} for k in range(12)]
    y, x = cells[0]
    annotation[0] = {
        "1": {"segmentation": mask_to_rle(square(y, x + 1))},
        "4": {"segmentation": [[x, y, x + 10, y, x + 10, y + 10, x, y + 10]]},
        "6": {"segmentation": mask_to_rle(square(y, x))},
        "8": {"segmentation": None},
    }
    listing = ", ".join(f"<object{k}><region>" for k in range(12))
    return {
        "id": "twelve", "video": "clip", "height": VL3_SIZE, "width": VL3_SIZE, "annotation": annotation,
        "conversations": [
            {"from": "human", "value": f"<video>\nThere are 12 objects: {listing}. Which is the first?"},
            {"from": "gpt", "value": "It is <object0>."},
        ],
    }


def test_vl3_trains_from_700k_data_with_12_regions_and_an_object_on_three_frames(
    tiny_vl3_checkpoint, vl3_clip, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoProcessor

    from train.train import load_config, run

    processor = AutoProcessor.from_pretrained(tiny_vl3_checkpoint)
    data_path = tmp_path / "train.json"
    data_path.write_text(json.dumps([twelve_regions_sample()] * 2))
    item = VideoReferDataset(data_path, processor, data_folder=vl3_clip.parent)[0]
    regions = item["region_inputs"]
    # 14 masks (object 0 on frames 1, 4, 6; null on 8 left out): no 10-region cap, one <REGION> group per mask.
    assert regions.masks_per_object[0].tolist() == [3] + [1] * 11
    assert int(regions.masks_per_sample) == 14 and len(regions.mask_grids) == 14
    ids = item["input_ids"][0]
    region_id = processor.tokenizer.convert_tokens_to_ids("<REGION>")
    assert int((ids == region_id).sum()) == int(regions.tokens_per_mask.sum())
    text = processor.tokenizer.decode(ids)
    assert text.count("[<REGION>") == 14 and "<object0>[<REGION>" in text
    assert "]" + "[<REGION>" in text.split("<object1>")[0]  # object 0's three groups follow each other
    labels = item["labels"][0]
    assert processor.tokenizer.decode(labels[labels != IGNORE_LABEL]) == "It is <object0>.<|im_end|>"

    # The official VL3 trainer's own layout (`masks`, one `<region>` per mask, `video` as a one-path list) gives the
    # same inputs.
    official = twelve_regions_sample()
    official["video"] = ["clip"]
    official["masks"] = [{k: v["segmentation"] for k, v in obj.items() if v["segmentation"] is not None}
                         for obj in official.pop("annotation")]
    official["conversations"][0]["value"] = official["conversations"][0]["value"].replace(
        "<object0><region>", "<object0><region><region><region>")
    same = VideoReferDataset([official], processor, data_folder=vl3_clip.parent)[0]
    assert torch.equal(same["input_ids"], item["input_ids"]) and torch.equal(same["labels"], item["labels"])
    assert torch.equal(same["region_inputs"].pixel_values, regions.pixel_values)

    # And it trains: two steps of batch 2 through train.train, finite losses, the region encoder moved.
    config = load_config(
        Path(__file__).resolve().parents[1] / "train" / "configs" / "synthetic_tiny_vl3.yaml",
        [f"model_name_or_path={tiny_vl3_checkpoint}", f"data_path={data_path}", f"output_dir={tmp_path / 'out'}",
         f"data_folder={vl3_clip.parent}", "per_device_train_batch_size=2", "max_steps=2", "logging_steps=1",
         "warmup_steps=0", "save_steps=1000", "disable_tqdm=true"],
    )
    base = AutoModelForCausalLM.from_pretrained(tiny_vl3_checkpoint).state_dict()
    trainer = run(config)
    logged = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(logged) == 2 and all(np.isfinite(logged))
    trained = trainer.model.state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in base.items() if k.startswith("model.region_encoder."))
