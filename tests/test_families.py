"""The family contract on VideoRefer-7B: transformers' Auto classes, the family registry, `PooledRegionInputs`, and
the API's batch path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from conftest import OFFICIAL_TINY
from videorefer import VideoRefer
from videorefer.families import family_for, registered_families
from videorefer.models.videorefer_qwen2 import PooledRegionInputs, VideoReferProcessor, VideoReferQwen2ForCausalLM


def square_video(frames: int = 10, h: int = 40, w: int = 48, seed: int = 0):
    video = np.random.default_rng(seed).integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[8:24, 10:30] = True
    return video, mask


def test_auto_classes_load_and_round_trip_a_tiny_checkpoint(tiny_checkpoint, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    assert isinstance(processor, VideoReferProcessor) and isinstance(model, VideoReferQwen2ForCausalLM)
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    tower = json.loads((tiny_checkpoint / "tiny-siglip-vision" / "preprocessor_config.json").read_text())
    assert (processor.image_size, processor.num_frames) == (tower["size"]["height"], config["num_frames"])

    saved = tmp_path / "saved"
    processor.save_pretrained(saved)
    model.save_pretrained(saved)
    assert (saved / "processor_config.json").is_file()
    assert not (saved / "preprocessor_config.json").exists()  # the processor has no image processor to save
    processor_again = AutoProcessor.from_pretrained(saved)
    model_again = AutoModelForCausalLM.from_pretrained(saved).eval()
    assert isinstance(processor_again, VideoReferProcessor)
    for name in ("image_size", "num_frames", "region_token_index"):
        assert getattr(processor_again, name) == getattr(processor, name), name
    video, mask = square_video()
    first = processor(video, "What is <object0> [<region>]?", [{2: mask}])
    again = processor_again(video, "What is <object0> [<region>]?", [{2: mask}])
    assert torch.equal(first["input_ids"], again["input_ids"])
    assert torch.equal(first["pixel_values"], again["pixel_values"])
    inputs = {key: first[key] for key in ("input_ids", "attention_mask", *processor.visual_keys)}
    with torch.no_grad():
        logits, logits_again = model(**inputs).logits, model_again(**inputs).logits
    assert torch.equal(logits, logits_again)


def test_auto_processor_reads_an_official_checkpoint():
    processor = AutoProcessor.from_pretrained(OFFICIAL_TINY)
    tower = json.loads((OFFICIAL_TINY / "tiny-siglip-vision" / "preprocessor_config.json").read_text())
    assert isinstance(processor, VideoReferProcessor)
    assert processor.image_size == tower["size"]["height"]
    assert processor.image_mean.tolist() == tower["image_mean"]


def test_processor_refuses_a_tokenizer_of_another_checkpoint(tiny_checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "mixed"
    shutil.copytree(tiny_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["region_token_index"] = 5
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="<region> id .* differs from the model's 5"):
        VideoReferProcessor.from_pretrained(broken)


def test_unknown_model_type_lists_the_supported_families(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'llama' is not a VideoRefer model family; supported: 'videorefer_qwen2'"):
        VideoRefer.from_pretrained(tmp_path, device="cpu")
    assert family_for("videorefer_qwen2").model_class is VideoReferQwen2ForCausalLM
    assert "videorefer_qwen2" in registered_families()


def test_region_inputs_collate_move_and_check_lengths():
    one = PooledRegionInputs(
        masks_per_object=[torch.tensor([2])], masks=[torch.ones(2, 4, 4, dtype=torch.uint8)],
        mask_frames=[torch.tensor([0, 3])], extra_frames=[torch.zeros(1, 3, 8, 8)],
    )
    none = PooledRegionInputs(
        masks_per_object=[torch.zeros(0, dtype=torch.long)], masks=[torch.zeros(0, 4, 4, dtype=torch.uint8)],
        mask_frames=[torch.zeros(0, dtype=torch.long)], extra_frames=[torch.zeros(0, 3, 8, 8)],
    )
    batch = PooledRegionInputs.collate([one, none])
    assert batch.batch_size == 2 and batch.num_objects == [1, 0]
    half = batch.to("cpu", torch.float16)
    assert half.extra_frames[0].dtype == torch.float16 and half.masks[0].dtype == torch.uint8
    with pytest.raises(ValueError, match="2 masks, 1 mask frames"):
        PooledRegionInputs(
            masks_per_object=[torch.tensor([2])], masks=[torch.ones(2, 4, 4)], mask_frames=[torch.tensor([0])],
            extra_frames=[torch.zeros(0, 3, 8, 8)],
        )


def test_ask_batch_gives_the_answers_of_single_questions(tiny_videorefer):
    (video_a, mask), (video_b, _) = square_video(seed=1), square_video(seed=2)
    items = [
        (video_a, [{1: mask}], "What is <object0>?"),
        (video_b, [{0: mask}, {4: mask}], "How does <object0> move relative to <object1> over the whole clip?"),
    ]
    settings = dict(max_new_tokens=5, min_new_tokens=5)
    together = tiny_videorefer.ask_batch(items, **settings)
    alone = [tiny_videorefer.ask(video, regions, question, **settings) for video, regions, question in items]
    assert together == alone


def test_a_bfloat16_model_takes_float32_pixels_and_extra_frames(tiny_checkpoint):
    """The API hands pixels over in the processor's float32; the model casts them (sampled and extra frames alike)."""
    vr = VideoRefer.from_pretrained(tiny_checkpoint, device="cpu", dtype=torch.bfloat16)
    video, mask = square_video(frames=20)
    inputs = vr.processor(video, "What is <object0> [<region>]?", [{f: mask for f in range(20)}])
    assert inputs["region_inputs"].extra_frames[0].shape[0] > 0 and inputs["pixel_values"].dtype == torch.float32
    visual = vr.encode(inputs)
    assert visual.video_tokens.dtype == torch.bfloat16 and visual.object_tokens[0].shape[0] == 4


def test_objects_given_as_rle_are_not_mistaken_for_each_other(tiny_videorefer):
    from videorefer.regions import mask_to_rle

    video, mask = square_video()
    other = np.zeros_like(mask)
    other[20:36, 2:12] = True
    first = tiny_videorefer.prepare(video, [{3: mask_to_rle(mask)}], "What is <object0>?")
    second = tiny_videorefer.prepare(video, [{3: mask_to_rle(other)}], "What is <object0>?")
    assert second["visual_features"] is not first["visual_features"]
    assert not torch.equal(second["visual_features"].object_tokens[0], first["visual_features"].object_tokens[0])
