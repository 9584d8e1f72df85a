"""VideoRefer-VL3 model: parity with the official outputs, batching, attention backends, 4-bit, bad inputs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from conftest import FIXTURES
from videorefer.models.videorefer_vl3.inputs import VL3RegionInputs
from videorefer.models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM
from videorefer.models.videorefer_vl3.parity import fixture_model_inputs, run_model_parity
from videorefer.models.videorefer_vl3.region_encoder import default_kmeans_generator
from videorefer.prompts import IGNORE_LABEL
from videorefer.testing.reference_vl3 import loop_region_encoder

VL3_TINY = FIXTURES / "official-vl3-tiny"
IMAGE_ID, REGION_ID, PAD_ID = 406, 409, 384


@pytest.fixture(scope="module")
def model():
    return VideoReferVL3ForCausalLM.from_pretrained(VL3_TINY, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def case():
    return fixture_model_inputs(VL3_TINY)


def test_parity_with_the_official_outputs():
    report = run_model_parity(VL3_TINY)
    diffs = report["max_abs_diff"]
    assert report["ok"], report
    assert diffs["logits"] <= 1e-4
    assert report["greedy_ids"] == json.loads((VL3_TINY / "io.json").read_text())["generated_ids"]
    assert report["token_keep_match"] and report["kmeans_init_match"] and report["region_token_counts_match"]
    for key in ("vision_features_video", "video_tokens", "vision_features_regions", "region_pooled", "region_tokens",
                "inputs_embeds", "video_token_pixel_diff", "kmeans_tokens"):
        assert diffs[key] <= 1e-5, (key, diffs[key])


def second_case(case):
    """Another request from the same data: the first 3 frames, objects 0 and 1 with one mask each (masks 0 and 2)."""
    ids = case["input_ids"][0]
    image_positions = torch.nonzero(ids == IMAGE_ID)[:, 0]
    region_positions = torch.nonzero(ids == REGION_ID)[:, 0]
    drop = torch.zeros_like(ids, dtype=torch.bool)
    drop[image_positions[18:]] = True  # frame 3's six tokens
    drop[region_positions[8:18]] = True  # mask 1's ten tokens
    ids = ids[~drop][None]
    regions = case["region_inputs"]
    crop_sizes = regions.grid_thw.prod(-1).tolist()
    starts = [0, crop_sizes[0], crop_sizes[0] + crop_sizes[1]]
    pixels = torch.cat([regions.pixel_values[: crop_sizes[0]], regions.pixel_values[starts[2] :]])
    return dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=case["pixel_values"][:72],
        grid_thw=case["grid_thw"][:3],
        merge_sizes=case["merge_sizes"][:3],
        frames_per_sample=torch.tensor([3]),
        region_inputs=VL3RegionInputs(
            masks_per_object=[torch.tensor([1, 1])],
            pixel_values=pixels,
            grid_thw=regions.grid_thw[[0, 2]],
            mask_grids=[regions.mask_grids[0], regions.mask_grids[2]],
            masks_per_sample=torch.tensor([2]),
        ),
    )


def collate(samples, padding_side):
    longest = max(s["input_ids"].shape[1] for s in samples)

    def pad(x, value):
        filler = x.new_full((1, longest - x.shape[1]), value)
        return torch.cat([filler, x] if padding_side == "left" else [x, filler], 1)

    return dict(
        input_ids=torch.cat([pad(s["input_ids"], PAD_ID) for s in samples]),
        attention_mask=torch.cat([pad(s["attention_mask"], 0) for s in samples]),
        pixel_values=torch.cat([s["pixel_values"] for s in samples]),
        grid_thw=torch.cat([s["grid_thw"] for s in samples]),
        merge_sizes=torch.cat([s["merge_sizes"] for s in samples]),
        frames_per_sample=torch.cat([s["frames_per_sample"] for s in samples]),
        region_inputs=VL3RegionInputs.collate([s["region_inputs"] for s in samples]),
    )


@torch.no_grad()
def test_batch_of_two_equals_two_single_runs(model, case):
    samples = [case, second_case(case)]
    singles = [model.generate(**s, max_new_tokens=6, min_new_tokens=6) for s in samples]
    batched = model.generate(**collate(samples, "left"), max_new_tokens=6, min_new_tokens=6)
    assert batched.tolist() == [s[0].tolist() for s in singles]
    # Each sample's k-means draws are its own: sample 2's region tokens do not depend on sample 1's masks.
    both = model.encode_visual(**{k: collate(samples, "left")[k] for k in model.visual_keys}).region_tokens
    alone = [model.encode_visual(**{k: s[k] for k in model.visual_keys}).region_tokens for s in samples]
    assert torch.allclose(both, torch.cat(alone), atol=1e-6)
    # Training-side forward: right padding, labels ignored on visual positions and padding.
    batch = collate(samples, "right")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_LABEL)
    out = model(**batch, labels=labels)
    for i, sample in enumerate(samples):
        single = model(**sample).logits[0]
        assert torch.allclose(out.logits[i, : single.shape[0]], single, atol=1e-5)
    embeds, attention, positions, spliced = model.prepare_multimodal_inputs(
        batch["input_ids"], batch["attention_mask"], labels, **{k: batch[k] for k in model.visual_keys}
    )
    visual = (batch["input_ids"] == IMAGE_ID) | (batch["input_ids"] == REGION_ID)
    assert (spliced != IGNORE_LABEL).sum() == ((~visual) & (batch["attention_mask"] == 1)).sum()
    # Sample 2: 148 ids less frame 3 (6) and mask 1 (10); frames 1 and 2 still lose 2 tokens each to pruning.
    assert attention.sum(1).tolist() == [142, 148 - 6 - 10 - 4]
    assert positions[0, :142].tolist() == list(range(142))
    assert torch.isfinite(out.loss)


@torch.no_grad()
def test_visual_features_are_reusable(model, case):
    visual_inputs = {k: case[k] for k in model.visual_keys}
    features = model.encode_visual(**visual_inputs)
    direct = model(**case).logits
    reused = model(input_ids=case["input_ids"], attention_mask=case["attention_mask"], visual_features=features).logits
    assert torch.equal(direct, reused)


@torch.no_grad()
def test_region_tokens_are_deterministic_by_default(model, case):
    torch.manual_seed(0)
    first = model.encode_visual(**{k: case[k] for k in model.visual_keys}).region_tokens
    torch.manual_seed(99)  # the global RNG plays no part
    second = model.encode_visual(**{k: case[k] for k in model.visual_keys}).region_tokens
    assert torch.equal(first, second)
    seeded = model.encode_visual(
        **{k: case[k] for k in model.visual_keys}, kmeans_generator=default_kmeans_generator(1234)
    ).region_tokens
    assert not torch.equal(first, seeded)  # a different draw moves the k-means centroids


@torch.no_grad()
def test_batched_region_encoder_equals_one_encoder_call_per_mask(model, case):
    regions = case["region_inputs"]
    batched = model.encode_visual(region_inputs=regions, kmeans_generator=default_kmeans_generator(3)).region_tokens
    looped = loop_region_encoder(model, regions, default_kmeans_generator(3))
    assert torch.allclose(batched, looped, atol=1e-5)


@torch.no_grad()
def test_sdpa_attention_matches_eager(model, case):
    sdpa = AutoModelForCausalLM.from_pretrained(VL3_TINY, attn_implementation="sdpa").eval()
    assert sdpa.model.vision_encoder.model.config._attn_implementation == "sdpa"
    assert torch.allclose(sdpa(**case).logits, model(**case).logits, atol=1e-5)


@torch.no_grad()
def test_4bit_keeps_the_vision_side_region_encoder_and_lm_head_in_full_precision(case):
    import bitsandbytes as bnb

    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32,
        llm_int8_skip_modules=VideoReferVL3ForCausalLM.full_precision_modules,
    )
    quantised = VideoReferVL3ForCausalLM.from_pretrained(VL3_TINY, quantization_config=config, device_map="cpu")
    assert isinstance(quantised.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    for module in (quantised.model.vision_encoder, quantised.model.mm_projector, quantised.model.region_encoder,
                   quantised.lm_head):
        for sub in module.modules():
            assert not isinstance(sub, bnb.nn.Linear4bit)
    assert quantised.lm_head.weight.dtype == torch.float32
    out = quantised.generate(**case, max_new_tokens=4, min_new_tokens=4)
    assert out.shape == (1, 4)


@torch.no_grad()
def test_bad_inputs_are_refused(model, case):
    ids = case["input_ids"]
    extra_region = torch.cat([ids, torch.tensor([[REGION_ID]])], 1)
    with pytest.raises(ValueError, match="29 <REGION> tokens .* 28 region tokens"):
        model(**{**case, "input_ids": extra_region, "attention_mask": torch.ones_like(extra_region)})
    fewer_images = ids[:, 1:].clone()
    fewer_images[0, 12] = 0  # one <image> less
    with pytest.raises(ValueError, match="<image>"):
        model(**{**case, "input_ids": fewer_images, "attention_mask": torch.ones_like(fewer_images)})
    regions = case["region_inputs"]
    empty = dataclasses.replace(regions, mask_grids=[regions.mask_grids[0], torch.zeros_like(regions.mask_grids[1]),
                                                     regions.mask_grids[2]])
    with pytest.raises(ValueError, match="mask 0 of object 1 in sample 0"):
        model(**{**case, "region_inputs": empty})
    with pytest.raises(ValueError, match="frames_per_sample"):
        model(**{**case, "frames_per_sample": torch.tensor([3])})
    with pytest.raises(ValueError, match="padding_side"):
        model.prepare_multimodal_inputs(ids, None, padding_side="middle", **{k: case[k] for k in model.visual_keys})
    with pytest.raises(ValueError, match="unknown visual inputs"):
        model.prepare_multimodal_inputs(ids, None, video=case["pixel_values"])


def test_tiny_vl3_loads_through_the_public_path(tmp_path):
    from safetensors.torch import load_file

    from videorefer.testing.tiny_vl3 import TINY_VL3_ENCODER, build_tiny_vl3

    folder = build_tiny_vl3(tmp_path / "tiny-vl3")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "videollama3_qwen2"
    assert "vision_config" not in json.loads((folder / "config.json").read_text())  # official layout
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert isinstance(loaded, VideoReferVL3ForCausalLM)
    encoder_weights = load_file(folder / TINY_VL3_ENCODER / "model.safetensors")
    ours = loaded.state_dict()
    assert all(torch.equal(v, ours[f"model.vision_encoder.vision_encoder.{k}"]) for k, v in encoder_weights.items())
    assert loaded.generation_config.do_sample is False and loaded.generation_config.repetition_penalty == 1.05
    # A 2-frame video of 2x4 patches and one crop: runs end to end.
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[1, 2] + [loaded.config.image_token_index] * 4 + [5] + [loaded.config.region_token_index] * 3])
    regions = VL3RegionInputs(
        masks_per_object=[torch.tensor([1])], pixel_values=torch.randn(12, 588, generator=g),
        grid_thw=torch.tensor([[1, 3, 4]]), mask_grids=[torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])],
        masks_per_sample=torch.tensor([1]),
    )
    out = loaded.generate(
        input_ids=ids, pixel_values=torch.randn(16, 588, generator=g), grid_thw=torch.tensor([[1, 2, 4]] * 2),
        merge_sizes=torch.tensor([2, 2]), frames_per_sample=torch.tensor([2]), region_inputs=regions,
        max_new_tokens=3, min_new_tokens=3,
    )
    assert out.shape == (1, 3)


@torch.no_grad()
def test_an_image_runs_with_merge_1(model):
    """An image: merge 1, one sample of one frame, no pruning; every patch is one `<image>` token."""
    g = torch.Generator().manual_seed(1)
    ids = torch.tensor([[385, 20] + [IMAGE_ID] * 8 + [30, 31]])
    features = model.encode_visual(
        pixel_values=torch.randn(8, 588, generator=g), grid_thw=torch.tensor([[1, 2, 4]]),
        merge_sizes=torch.tensor([1]), frames_per_sample=torch.tensor([1]),
    )
    assert features.video_tokens.shape == (8, 64) and features.token_keep.all()
    out = model.generate(input_ids=ids, visual_features=features, max_new_tokens=2, min_new_tokens=2)
    assert out.shape == (1, 2)


def run_cli(folder):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run(
        [sys.executable, "-m", "videorefer.parity", str(folder)], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_parity_cli_recognises_vl3_and_notices_a_wrong_region_encoder(tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    result = run_cli(VL3_TINY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MODEL PARITY OK" in result.stdout
    folder = tmp_path / "perturbed"
    shutil.copytree(VL3_TINY, folder)
    weights = load_file(folder / "model.safetensors")
    key = "model.region_encoder.feat_linear.2.weight"
    weights[key] += 0.05 * torch.randn(weights[key].shape, generator=torch.Generator().manual_seed(0))
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    # The same entry point in-process (a fresh interpreter costs ~25 s of imports here).
    from videorefer.parity import main

    assert main([str(folder)]) == 1
    assert "PARITY FAILED" in capsys.readouterr().out
    # A processor difference is caught too: the official pixel values, nudged, no longer match ours.
    shutil.copy(VL3_TINY / "model.safetensors", folder / "model.safetensors")
    inputs = load_file(folder / "inputs.safetensors")
    inputs["pixel_values_video"][0, 0] += 0.01
    save_file(inputs, folder / "inputs.safetensors", metadata={"format": "pt"})
    assert main([str(folder)]) == 1
    out = capsys.readouterr().out
    assert "pixel_values_video: max |diff| 0.01" in out and "PARITY FAILED" in out
    (folder / "outputs.safetensors").unlink()
    assert main([str(folder)]) == 2
    assert "not a parity folder" in capsys.readouterr().err


def test_training_loss_reaches_every_trainable_part(case):
    """Labels are spliced like the embeddings; the loss's gradient reaches the LLM, projector, region MLP and
    encoder (the official training unfreezes all of them in its last stage)."""
    trainable = VideoReferVL3ForCausalLM.from_pretrained(VL3_TINY, attn_implementation="eager")
    labels = case["input_ids"].clone()
    out = trainable(**case, labels=labels)
    out.loss.backward()
    named = dict(trainable.named_parameters())
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.mm_projector.readout.0.weight",
                 "model.region_encoder.feat_linear.0.weight",
                 "model.vision_encoder.vision_encoder.vision_model.encoder.layers.0.mlp.fc1.weight"):
        assert named[name].grad is not None and named[name].grad.abs().sum() > 0, name
    # The placeholders themselves are never embedded (their positions hold visual tokens): no gradient on their rows.
    embedding_grad = named["model.embed_tokens.weight"].grad
    assert embedding_grad[IMAGE_ID].abs().sum() == 0 and embedding_grad[REGION_ID].abs().sum() == 0
