"""Training parity with the official trainers (`tests/fixtures/official-train-v1`, `official-train-vl3`: one sample,
the batch, loss, gradients and the loss after one AdamW step as each official trainer computed them), that the check
notices a difference, and the data rules the fixtures pinned down (labels, `<video>`, both mask formats, crops)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoProcessor

from videorefer.data.training import build_example, load_samples
from videorefer.train_parity import run_train_parity

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TRAIN_V1, TRAIN_VL3 = FIXTURES / "official-train-v1", FIXTURES / "official-train-vl3"
# The official v1 trainer's loss after one step under stage-2 freezing (only the region encoder trains), as the
# fixture's README records it.
V1_STAGE2_LOSS_AFTER_STEP = 5.990407466888428


def run_cli(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "videorefer.parity", str(folder), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def figure(output: str, label: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(label)).split(":", 1)[1].strip()


@pytest.mark.parametrize("fixture", [TRAIN_V1, TRAIN_VL3], ids=["v1", "vl3"])
def test_one_training_step_matches_the_official_trainer(fixture):
    result = run_cli(fixture)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert figure(out, "input ids match") == "True" and figure(out, "labels match") == "True"
    assert figure(out, "trainable tensors match").startswith("True")
    loss_diff = float(figure(out, "loss:").split("|diff| ")[1].split(",")[0])
    assert loss_diff <= 1e-5
    assert float(figure(out, "gradient norms, max rel. error").split()[0]) <= 1e-3
    assert "PARITY OK" in out


def test_stage2_freezing_gives_the_official_loss_after_a_step():
    report = run_train_parity(TRAIN_V1, stage="stage2")
    assert report.trainable == 4 and report.trainable_match  # the region encoder's 4 tensors
    assert abs(report.loss_after_step - V1_STAGE2_LOSS_AFTER_STEP) <= 1e-4
    assert report.passed


def copy_case(tmp_path: Path, fixture: Path, checkpoint: str) -> Path:
    """The fixture and its checkpoint side by side (the fixture names the checkpoint by a relative path)."""
    shutil.copytree(fixture, tmp_path / fixture.name)
    shutil.copytree(FIXTURES / checkpoint, tmp_path / checkpoint)
    return tmp_path / fixture.name


def test_a_perturbed_region_encoder_fails_the_check(tmp_path):
    folder = copy_case(tmp_path, TRAIN_VL3, "official-vl3-tiny")
    weights_path = tmp_path / "official-vl3-tiny" / "model.safetensors"
    weights = load_file(weights_path)
    key = "model.region_encoder.feat_linear.2.weight"
    weights[key] = weights[key] + 0.05 * torch.randn_like(weights[key])
    save_file(weights, weights_path, metadata={"format": "pt"})
    result = run_cli(folder)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PARITY FAILED" in result.stdout
    assert figure(result.stdout, "input ids match") == "True"  # the data path is still right; the loss is not
    assert float(figure(result.stdout, "loss:").split("|diff| ")[1].split(",")[0]) > 1e-5


def test_the_other_familys_label_rule_fails_the_check(tmp_path):
    """Labels as VL3 writes them (the newline after <|im_end|> not learnt) are not v1's."""
    folder = copy_case(tmp_path, TRAIN_V1, "official-tiny")
    meta = json.loads((folder / "batch.json").read_text())
    meta["labels_list"][0][-1] = -100
    (folder / "batch.json").write_text(json.dumps(meta))
    result = run_cli(folder)
    assert result.returncode == 1
    assert figure(result.stdout, "labels match") == "False"


def test_a_folder_that_is_not_a_training_fixture_exits_2(tmp_path):
    folder = copy_case(tmp_path, TRAIN_V1, "official-tiny")
    (folder / "outputs.json").unlink()
    result = run_cli(folder)
    assert result.returncode == 2 and "not a usable training parity folder" in result.stderr
    fixture = json.loads((folder / "fixture.json").read_text())
    (folder / "fixture.json").write_text(json.dumps({**fixture, "stage": "stage9"}))
    assert run_cli(folder).returncode == 2


# ---------------------------------------------------------------------------------------------------- data rules
@pytest.fixture(scope="module")
def processors():
    return {name: AutoProcessor.from_pretrained(FIXTURES / name) for name in ("official-tiny", "official-vl3-tiny")}


def example(processor, sample: dict, fixture: Path):
    return build_example(sample, processor, fixture / "sample")


@pytest.mark.parametrize("fixture", [TRAIN_V1, TRAIN_VL3], ids=["v1-data", "vl3-data"])
def test_both_mask_formats_in_either_form_give_the_same_example(processors, fixture):
    """700K `annotation` with `{"segmentation": ...}` or bare values, VL3 `masks` bare or wrapped, `video` as a
    path or a list of one: the same inputs for either family."""
    original = load_samples(fixture / "sample" / "train.json")[0]
    objects = original.get("annotation") or original["masks"]
    bare = [{f: v["segmentation"] if isinstance(v, dict) and "segmentation" in v else v for f, v in o.items()}
            for o in objects]
    wrapped = [{f: {"segmentation": v} for f, v in o.items()} for o in bare]
    video = original["video"][0] if isinstance(original["video"], list) else original["video"]
    base = {k: v for k, v in original.items() if k not in ("annotation", "masks", "video")}
    forms = [dict(base, video=video, annotation=wrapped), dict(base, video=[video], annotation=bare),
             dict(base, video=video, masks=bare), dict(base, video=[video], masks=wrapped)]
    for processor in processors.values():
        items = [example(processor, form, fixture) for form in forms]
        for item in items[1:]:
            assert torch.equal(item["input_ids"], items[0]["input_ids"])
            assert torch.equal(item["labels"], items[0]["labels"])
            assert torch.equal(item["pixel_values"], items[0]["pixel_values"])
    with pytest.raises(ValueError, match="both 'annotation' and 'masks'"):
        example(processors["official-tiny"], dict(base, video=video, annotation=wrapped, masks=bare), fixture)


def test_video_placement_per_family(processors):
    """v1 moves `<video>` to the head of its turn; VL3 keeps it where it is written; a later turn is refused."""
    sample = load_samples(TRAIN_VL3 / "sample" / "train.json")[0]
    conversation = sample["conversations"]
    moved = dict(sample, conversations=[{"from": "human", "value": "In this clip <video> what is <region> next to "
                                         "<region>?"}, conversation[1]])
    v1, vl3 = processors["official-tiny"], processors["official-vl3-tiny"]
    v1_text = v1.tokenizer.decode(example(v1, moved, TRAIN_VL3)["input_ids"][0].clamp(min=0))
    # v1: taken out (the text around it kept as written, then stripped) and put at the head ("!" decodes the id).
    assert "<|im_start|>user\n!\nIn this clip  what is <region>" in v1_text
    vl3_text = vl3.tokenizer.decode(example(vl3, moved, TRAIN_VL3)["input_ids"][0])
    assert "user\nIn this clipTime 0.3s:<image>" in vl3_text and "<image>\nwhat is [" in vl3_text
    late = dict(sample, conversations=[*conversation, {"from": "human", "value": "<video> and now?"},
                                       {"from": "gpt", "value": "Same."}])
    with pytest.raises(ValueError, match=r"message 2 holds <video>"):
        example(vl3, late, TRAIN_VL3)


def test_vl3_training_gives_each_crop_the_single_image_budget():
    """Inference divides the crops' pixel budget among the masks; the official trainer does not."""
    processor = AutoProcessor.from_pretrained(FIXTURES / "official-vl3-tiny")
    processor.mm_max_length = 64  # crops of ~50x110 pixels: within one image's budget, over a third of it
    frames = np.random.default_rng(0).integers(0, 256, (3, 112, 140, 3), dtype=np.uint8)
    masks = [np.zeros((112, 140), bool) for _ in range(3)]
    for k, mask in enumerate(masks):
        mask[10 + 20 * k: 60 + 20 * k, 10:120] = True
    objects = [{k: masks[k]} for k in range(3)]
    question = "<video>Compare <region>, <region> and <region>."
    asked = processor(frames, question, objects)
    trained = processor.build_training_example(frames, [(question, "Fine.")], objects)
    asked_patches = asked["region_inputs"].grid_thw.prod(-1)
    trained_patches = trained["region_inputs"].grid_thw.prod(-1)
    assert (trained_patches > asked_patches).all()
    assert torch.equal(trained["grid_thw"], asked["grid_thw"])  # the frames themselves are processed alike
