"""The model package end to end on a tiny random model: batching, generation, bad inputs, quantisation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from videorefer import VideoRefer, VideoReferQwen2ForCausalLM, region_question
from videorefer.api import load_model_and_processor
from videorefer.prompts import IGNORE_LABEL


def moving_square_video(frames: int = 12, h: int = 48, w: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
    masks = {}
    for t in range(frames):
        m = np.zeros((h, w), bool)
        m[10:26, 2 + 3 * t : 18 + 3 * t] = True
        masks[t] = m
    return video, masks


@pytest.fixture(scope="module")
def model_and_processor(tiny_checkpoint):
    return load_model_and_processor(tiny_checkpoint, device="cpu")


def sample_inputs(processor, seed, n_objects, question):
    video, masks = moving_square_video(seed=seed)
    objects = [masks] + [{3: masks[3]}] * (n_objects - 1)
    return processor(video, region_question(question, n_objects), objects)


def test_batch_of_two_equals_two_singles(model_and_processor):
    model, processor = model_and_processor
    a = sample_inputs(processor, 0, 1, "What is <object0> doing?")
    b = sample_inputs(processor, 1, 2, "How does <object0> move relative to <object1> over the whole clip?")
    assert a["input_ids"].shape[1] != b["input_ids"].shape[1]  # padding is exercised
    for side in ("left", "right"):
        batch = processor.collate([a, b], padding_side=side)
        with torch.no_grad():
            both = model(**batch).logits
            singles = [model(**x).logits[0] for x in (a, b)]
        for row, single in zip(both, singles):
            n = single.shape[0]
            kept = row[-n:] if side == "left" else row[:n]
            torch.testing.assert_close(kept, single, atol=1e-5, rtol=1e-4)
    batch = processor.collate([a, b], padding_side="left")
    with torch.no_grad():
        together = model.generate(**batch, max_new_tokens=6, do_sample=False, min_new_tokens=6)
        alone = [model.generate(**x, max_new_tokens=6, do_sample=False, min_new_tokens=6)[0] for x in (a, b)]
    assert together[0].tolist() == alone[0].tolist()
    assert together[1].tolist() == alone[1].tolist()


def test_labels_are_spliced_and_visual_positions_ignored(model_and_processor):
    model, processor = model_and_processor
    inputs = sample_inputs(processor, 0, 1, "What is <object0> doing?")
    labels = inputs["input_ids"].clone()
    labels[labels < 0] = IGNORE_LABEL
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    visual = {key: inputs[key] for key in processor.visual_keys}
    embeds, _, _, spliced = model.prepare_multimodal_inputs(inputs["input_ids"], inputs["attention_mask"], labels, **visual)
    assert spliced.shape[:2] == embeds.shape[:2]
    n_visual = embeds.shape[1] - inputs["input_ids"].shape[1] + 2  # video + one object, placeholders replaced
    assert int((spliced == IGNORE_LABEL).sum()) == n_visual


def test_describe_ask_and_stream_agree(tiny_videorefer):
    video, masks = moving_square_video()
    answer = tiny_videorefer.ask(video, [masks], "What is <object0>?", max_new_tokens=5)
    streamed = list(tiny_videorefer.ask_stream(video, [masks], "What is <object0>?", max_new_tokens=5))
    assert streamed and streamed[-1] == answer
    assert isinstance(tiny_videorefer.describe(video, {0: masks[0]}, max_new_tokens=3), str)


def test_follow_up_reuses_visual_features(tiny_videorefer, tmp_path):
    video, masks = moving_square_video()
    first = tiny_videorefer.prepare(video, [masks], "What is <object0>?")
    again = tiny_videorefer.prepare(video, [masks], "And where does it go?", history=[("What is <object0>?", "x")])
    assert again["visual_features"] is first["visual_features"]
    other = tiny_videorefer.prepare(video, [{0: masks[0]}], "What is <object0>?")
    assert other["visual_features"] is not first["visual_features"]


def test_history_is_in_the_prompt(tiny_videorefer):
    processor = tiny_videorefer.processor
    prompt = processor.build_prompt("Second?", history=[("First <object0> [<region>]?", "An answer.")])
    assert prompt.count("<video>") == 1
    assert prompt.index("First") < prompt.index("An answer.") < prompt.index("Second?")
    assert prompt.endswith("<|im_start|>assistant\n")


# ---------------------------------------------------------------- bad input
def test_region_count_must_match_objects(model_and_processor):
    _, processor = model_and_processor
    video, masks = moving_square_video()
    with pytest.raises(ValueError, match="2 <region> tokens but 1 objects"):
        processor(video, "<object0> [<region>] and [<region>]?", [masks])
    with pytest.raises(ValueError, match="1 <region> tokens but 2 objects"):
        processor(video, "<object0> [<region>]?", [masks, masks])


def test_question_naming_a_missing_object(model_and_processor):
    with pytest.raises(ValueError, match="refers to <object3> but there are only <object0>..<object1>"):
        region_question("What is <object3> doing?", 2)
    with pytest.raises(ValueError, match="empty"):
        region_question("   ", 1)


def test_mask_size_frame_range_and_empty_mask(model_and_processor):
    _, processor = model_and_processor
    video, masks = moving_square_video()
    with pytest.raises(ValueError, match=r"mask on frame 0 is 24x64 \(HxW\) but the video is 48x64"):
        processor(video, "[<region>]", [{0: masks[0][:24]}])
    with pytest.raises(ValueError, match="frame index 40 is outside the video"):
        processor(video, "[<region>]", [{40: masks[0]}])
    with pytest.raises(ValueError, match="mask on frame 2 is empty"):
        processor(video, "[<region>]", [{2: np.zeros_like(masks[0])}])
    inputs = processor(video, "[<region>]", [{2: np.zeros_like(masks[0])}], allow_empty_masks=True)
    assert inputs["region_inputs"].masks[0].sum() == 0


def test_undecodable_and_empty_videos(model_and_processor, tmp_path):
    _, processor = model_and_processor
    bad = tmp_path / "not_a_video.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(ValueError, match="cannot decode video"):
        processor(str(bad), "What?", [])
    with pytest.raises(ValueError, match="0 frames"):
        processor(np.zeros((0, 8, 8, 3), np.uint8), "What?", [])
    with pytest.raises(ValueError, match="video not found"):
        processor(str(tmp_path / "missing.mp4"), "What?", [])


def test_checkpoint_folder_missing_files(tiny_checkpoint, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="missing model weights"):
        VideoRefer.from_pretrained(broken, device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="missing config.json"):
        VideoRefer.from_pretrained(tmp_path / "empty", device="cpu")
    with pytest.raises(ValueError, match="quantization must be one of"):
        VideoRefer.from_pretrained(tiny_checkpoint, quantization="3bit")


def test_vision_tower_folder_missing(tiny_checkpoint, tmp_path):
    broken = tmp_path / "no-tower"
    shutil.copytree(tiny_checkpoint, broken)
    shutil.rmtree(broken / "tiny-siglip-vision")
    with pytest.raises(ValueError, match="cannot find the vision tower 'tiny-siglip-vision'"):
        VideoReferQwen2ForCausalLM.from_pretrained(broken)


@pytest.mark.parametrize("bits", ["8bit", "4bit"])
def test_quantised_loading_keeps_the_object_encoder_in_full_precision(tiny_checkpoint, bits):
    pytest.importorskip("bitsandbytes")
    vr = VideoRefer.from_pretrained(tiny_checkpoint, quantization=bits, device="cpu")
    layer = vr.model.model.layers[0].self_attn.q_proj
    assert "bnb" in type(layer).__module__ or "bitsandbytes" in type(layer).__module__
    assert isinstance(vr.model.model.region_encoder.feat_linear[0], torch.nn.Linear)
    assert type(vr.model.model.region_encoder.feat_linear[0]) is torch.nn.Linear
    assert vr.model.model.region_encoder.feat_linear[0].weight.dtype == torch.float32
    video, masks = moving_square_video()
    assert isinstance(vr.ask(video, [masks], "What is <object0>?", max_new_tokens=3), str)


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_follow_up_reuses_the_prompt_key_value_cache(tiny_checkpoint, cache):
    video, masks = moving_square_video(seed=5)
    reusing = VideoRefer.from_pretrained(tiny_checkpoint, device="cpu")
    if cache == "static":
        reusing.generation_defaults["cache_implementation"] = "static"
    fresh = VideoRefer(reusing.model, reusing.processor)
    fresh.reuse_prefix_cache = False
    settings = dict(max_new_tokens=8, min_new_tokens=8)
    first = reusing.ask(video, [masks], "What is <object0>?", **settings)
    first_len = reusing.prefix_cache.embeds.shape[0] - 8
    history = [("What is <object0>?", first)]
    follow = reusing.ask(video, [masks], "Where does it go?", history=history, **settings)
    assert reusing.prefix_cache.reused_tokens >= first_len  # the whole first prompt came from the cache
    assert follow == fresh.ask(video, [masks], "Where does it go?", history=history, **settings)
    # Other objects change the object tokens: the cache is used only up to them.
    reusing.ask(video, [{0: masks[0]}], "Where does it go?", history=history, max_new_tokens=2)
    assert 0 < reusing.prefix_cache.reused_tokens < first_len


def test_masks_as_rle_and_polygons_equal_arrays(model_and_processor):
    from videorefer.regions import mask_to_rle

    _, processor = model_and_processor
    video, masks = moving_square_video()
    square = masks[4]
    ys, xs = np.nonzero(square)
    polygon = [[float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.min()), float(xs.max() + 1),
                float(ys.max() + 1), float(xs.min()), float(ys.max() + 1)]]
    as_array = processor(video, "[<region>]", [{4: square}])
    as_rle = processor(video, "[<region>]", [{4: mask_to_rle(square)}])
    as_polygon = processor(video, "[<region>]", [{4: polygon}])
    assert torch.equal(as_rle["region_inputs"].masks[0], as_array["region_inputs"].masks[0])
    overlap = (as_polygon["region_inputs"].masks[0].bool() & as_array["region_inputs"].masks[0].bool()).sum()
    assert overlap >= 0.9 * square.sum()  # polygon rasterisation may differ on the border
    with pytest.raises(ValueError):
        processor(video, "[<region>]", [{4: {"size": [48, 64], "counts": "not rle!"}}])


def test_follow_up_questions_are_checked_too(tiny_videorefer):
    video, masks = moving_square_video()
    history = [("What is <object0>?", "a square")]
    with pytest.raises(ValueError, match="refers to <object2> but there are only <object0>..<object0>"):
        tiny_videorefer.prepare(video, [masks], "And <object2>?", history=history)
    with pytest.raises(ValueError, match="empty"):
        tiny_videorefer.prepare(video, [masks], "  ", history=history)
