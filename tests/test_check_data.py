"""Training data is checked whole before the model loads (`train.check_data`, `train.train`): every problem is named
with its sample, the run stops unless skipping is asked for, and then it trains on the rest and says how many it
skipped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from train.check_data import DataProblems, check_data_files, main
from videorefer.data import synthetic
from videorefer.regions import mask_to_rle

CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "synthetic_tiny.yaml"
BAD = {"train_00000_colour": "video not found", "train_00000_shape": "is 32x32 but the video is 48x48",
       "train_00001_colour": "2 <region> in the conversation"}


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> Path:
    """8 synthetic samples, three of them broken: a missing video, a wrong-size mask, one <region> too many."""
    folder = tmp_path_factory.mktemp("bad-data")
    synthetic.generate(folder, n_train=2, n_heldout=0, seed=0, size=48, num_frames=8)
    samples = {s["id"]: s for s in json.loads((folder / "train.json").read_text())}
    samples["train_00000_colour"]["video"] = "videos/missing.mp4"
    small = np.zeros((32, 32), bool)
    small[4:12, 4:12] = True
    samples["train_00000_shape"]["annotation"][0]["3"] = {"segmentation": mask_to_rle(small)}
    question = samples["train_00001_colour"]["conversations"][0]
    question["value"] = question["value"].replace("<region>", "<region> and <region>")
    path = folder / "bad.json"
    path.write_text(json.dumps(list(samples.values())))
    return path


def test_every_problem_is_named_with_its_sample(bad_data, tiny_videorefer):
    report = check_data_files(bad_data, placeholder_counts=tiny_videorefer.processor.region_placeholder_counts)
    assert len(report.samples) == 8 and len(report.problems) == 3 and len(report.good_samples) == 5
    lines = report.problem_lines()
    for sample_id, problem in BAD.items():
        assert any(sample_id in line and problem in line for line in lines), (sample_id, lines)
    assert "8 samples, 3 videos" in report.summary() and "objects 1-2" in report.summary()


def test_check_data_command_lists_the_problems_and_fails(bad_data, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(bad_data)])  # no model named: the <region> rule is not checked, the rest is
    assert exit_info.value.code == 1
    out = capsys.readouterr().out
    assert "3 videos" in out and "<region> counts are not checked" in out
    assert BAD["train_00000_colour"] in out and BAD["train_00000_shape"] in out
    assert "train_00001_colour" not in out


def config_for(checkpoint, data, output_dir, **overrides):
    from train.train import load_config

    items = [f"model_name_or_path={checkpoint}", f"data_path={data}", f"output_dir={output_dir}",
             "per_device_train_batch_size=2", "logging_steps=1", "save_steps=1000", "warmup_steps=0",
             "num_frames=4", "disable_tqdm=true"]
    return load_config(CONFIG, items + [f"{k}={v}" for k, v in overrides.items()])


def test_training_stops_before_the_model_loads(bad_data, tiny_checkpoint, tmp_path, monkeypatch):
    import train.train as train_module

    def no_model(config):
        raise AssertionError("the model was loaded before the data was checked")

    monkeypatch.setattr(train_module, "build_model", no_model)
    with pytest.raises(DataProblems) as error:
        train_module.run(config_for(tiny_checkpoint, bad_data, tmp_path / "out", max_steps=1))
    message = str(error.value)
    assert message.startswith("3 of 8 samples") and "on_mismatch=skip" in message
    for sample_id, problem in BAD.items():
        assert sample_id in message and problem in message


def test_skipping_trains_on_the_rest_and_counts(bad_data, tiny_checkpoint, tmp_path, caplog):
    from train.train import run

    caplog.set_level(logging.INFO, logger="train")
    trainer = run(config_for(tiny_checkpoint, bad_data, tmp_path / "out", max_steps=2, on_mismatch="skip"))
    assert trainer.state.global_step == 2 and len(trainer.train_dataset) == 5
    assert len(trainer.data_report.problems) == 3
    assert "skipped 3 of 8 samples of data_path with problems" in caplog.text
    assert all(sample_id in caplog.text for sample_id in BAD)
    # The log says what was loaded and where the output is.
    assert f"region encoder: the one in {tiny_checkpoint}" in caplog.text
    assert f"model (official layout): {tmp_path / 'out'}" in caplog.text


def test_images_and_the_official_vl3_layout_are_checked_too(tmp_path):
    from PIL import Image

    from train.check_data import check_samples

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "photo.png")
    mask = np.zeros((20, 30), bool)
    mask[2:5, 2:5] = True
    conversation = [{"from": "human", "value": "<image>\nWhat is <region>?"}, {"from": "gpt", "value": "A dot."}]
    samples = [
        {"id": "ok", "image": "photo.png", "conversations": conversation,
         "masks": [{"0": mask_to_rle(mask)}]},                                   # VL3 layout: segmentation, no dict
        {"id": "late", "image": "photo.png", "conversations": conversation, "masks": [{"3": mask_to_rle(mask)}]},
        {"id": "gone", "image": ["nowhere.png"], "conversations": conversation, "masks": [{"0": mask_to_rle(mask)}]},
        {"id": "turns", "image": "photo.png", "conversations": conversation[:1], "masks": [{"0": None}]},
    ]
    report = check_samples(samples, tmp_path)
    problems = {report.names[k].split("'")[1]: " | ".join(v) for k, v in report.problems.items()}
    assert set(problems) == {"late", "gone", "turns"}
    assert "frame 3 is out of range (the image has 1 frame)" in problems["late"]
    assert "image not found" in problems["gone"] and "alternate human / gpt" in problems["turns"]
    assert report.null_masks == 1 and report.masks == [1, 1, 1, 0]


def test_a_malformed_annotation_is_a_problem_not_a_crash(tmp_path):
    from train.check_data import check_samples

    conversation = [{"from": "human", "value": "<video>\nWhat is <region>?"}, {"from": "gpt", "value": "A dot."}]
    samples = [{"id": "odd", "video": "v.mp4", "conversations": conversation, "annotation": {"0": None}},
               {"id": "worse", "video": "v.mp4", "conversations": conversation, "annotation": [{"0": 5}]}]
    report = check_samples(samples, tmp_path)
    assert sorted(report.problems) == [0, 1]
    assert any("list" in message for message in report.problems[0])  # a dict where a list belongs
    assert any("frame 0 holds '5', not {'segmentation'" in message for message in report.problems[1])
    assert all("video not found" in " ".join(messages) for messages in report.problems.values())
