"""VL3 processor: parity with the official processor outputs in tests/fixtures/official-vl3-tiny, the pixel and
sampling rules against straightforward re-derivations, bad inputs, loading and saving."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import PIL
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoProcessor
from transformers.models.video_llama_3.image_processing_video_llama_3 import smart_resize as hf_smart_resize

from videorefer.models.videorefer_vl3.image_processing import (
    crop_regions,
    pixel_budget,
    preprocess_images,
    smart_resize,
)
from videorefer import pil_bicubic
from videorefer.models.videorefer_vl3.inputs import VL3RegionInputs
from videorefer.models.videorefer_vl3.parity_processor import run_processor_parity
from videorefer.models.videorefer_vl3.processing import VideoReferVL3Processor
from videorefer.models.videorefer_vl3.prompting import region_question
from videorefer.prompts import DESCRIBE_PROMPT_VL3
from videorefer.video_io import Video, load_video_by_fps, sample_file_frames_by_fps, sample_frames_by_fps

FIXTURE = Path(__file__).parent / "fixtures" / "official-vl3-tiny"
IO = json.loads((FIXTURE / "io.json").read_text())


@pytest.fixture(scope="module")
def processor() -> VideoReferVL3Processor:
    return AutoProcessor.from_pretrained(FIXTURE)


@pytest.fixture(scope="module")
def case():
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    raw = inputs["raw_frames_uint8"].numpy()
    masks = inputs["masks_uint8"].numpy()
    objects = [{4: masks[0]}, {4: masks[1], 9: masks[2]}]
    video = Video(frames=raw, frame_indices=list(range(len(raw))), total_frames=len(raw))
    return raw, objects, video


def _as_array_video(raw: np.ndarray, processor) -> Video:
    return processor.load_video(raw, extra_frame_indices=[4, 9])  # an array counts as a 3 fps frame folder


# ------------------------------------------------------------------------------------------------------ parity
def test_processor_parity_with_the_official_fixture():
    report = run_processor_parity(FIXTURE)
    assert report.ok, "\n".join(report.lines())
    assert len([k for k in report.max_abs if k.startswith("region_crop_uint8")]) == len(IO["masks"])


def test_parity_holds_with_our_bicubic_whatever_pillow(monkeypatch):
    """The numpy reimplementation of Pillow <= 12's bicubic (used under Pillow >= 13) gives the official pixels."""
    monkeypatch.setattr(pil_bicubic, "_pillow_is_paper_era", lambda: False)
    report = run_processor_parity(FIXTURE)
    assert report.max_abs["pixel_values_video"] == 0, "\n".join(report.lines())


@pytest.mark.skipif(
    int(PIL.__version__.split(".")[0]) >= pil_bicubic.PAPER_ERA_PILLOW,
    reason="Pillow >= 13 resizes differently; the reference is checked against the fixture instead",
)
def test_bicubic_reference_is_bit_exact_with_paper_era_pillow():
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = rng.integers(1, 90, 2)
        out_h, out_w = rng.integers(1, 120, 2)
        images = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
        resized = [Image.fromarray(i).resize((out_w, out_h), Image.Resampling.BICUBIC) for i in images]
        pillow = np.stack([np.asarray(image) for image in resized])
        assert np.array_equal(pil_bicubic.resize_bicubic_reference(images, out_h, out_w), pillow), (h, w, out_h, out_w)


def test_frames_match_transformers_pil_image_processor(case):
    from transformers.models.video_llama_3.image_processing_pil_video_llama_3 import VideoLlama3ImageProcessorPil

    raw, _, _ = case
    frames = raw[[1, 4, 7, 10]]
    budget = pixel_budget(10240, 2, 2, len(frames))
    ours, grids = preprocess_images(frames, 2, budget)
    hf = VideoLlama3ImageProcessorPil(image_mean=[0.5] * 3, image_std=[0.5] * 3, merge_size=2,
                                      size={"shortest_edge": 3136, "longest_edge": budget})
    theirs = hf(list(frames), return_tensors="pt")
    assert torch.equal(grids, theirs["image_grid_thw"])
    assert torch.equal(ours, theirs["pixel_values"])


# ------------------------------------------------------------------------------------------------- smart_resize
def test_smart_resize_cases():
    assert smart_resize(60, 76, 28, 3136, 10240 * 784 // 4) == (56, 84)
    assert smart_resize(70, 70, 28, 3136, 10**7) == (56, 56)  # 2.5 rounds half to even
    assert smart_resize(98, 98, 28, 3136, 10**7) == (112, 112)  # 3.5 rounds to 4
    assert smart_resize(10, 100, 28, 3136, 10**7) == (28, 280)  # short side scaled up to the factor first
    h, w = smart_resize(1000, 1000, 28, 3136, 200_000)
    assert (h, w) == (420, 420) and h * w <= 200_000
    h, w = smart_resize(30, 40, 14, 3136, 10**7)
    assert h * w >= 3136 and h % 14 == 0 and w % 14 == 0


def test_smart_resize_agrees_with_transformers_where_sides_reach_the_factor():
    rng = random.Random(0)
    for _ in range(300):
        h, w, factor = rng.randint(28, 2000), rng.randint(28, 2000), rng.choice([14, 28])
        budget = rng.randint(3136, 2_000_000)
        assert smart_resize(h, w, factor, 3136, budget) == hf_smart_resize(h, w, factor, 3136, budget)


def test_pixel_budgets_of_frames_and_crops():
    assert pixel_budget(10240, 2, 2, 4) == 10240 * 784 // 4
    assert pixel_budget(10240, 2, 1, 3) == int(10240 * 784 / 4) // 3


# ------------------------------------------------------------------------------------------------------- crops
def _crop_loop(image: np.ndarray, mask: np.ndarray):
    """The crop rule written straight from the specification, one mask at a time."""
    import cv2

    h, w = mask.shape
    mask = torch.from_numpy(mask.astype(np.uint8))
    if mask.sum() == 0:
        mask = torch.ones((h, w), dtype=torch.uint8)
    rows, cols = np.where(mask.numpy() == 1)
    r0, c0 = max(0, rows.min() - 28), max(0, cols.min() - 28)
    r1, c1 = min(h - 1, rows.max() + 28), min(w - 1, cols.max() + 28)
    area = mask.sum()
    scale = math.ceil(math.sqrt(1960 / area))
    if scale == 1 and area / 196 > 100:
        scale = 1 / math.sqrt((area / 196) / 100)
    out_h = math.ceil((r1 - r0) * scale / 14) * 14
    out_w = math.ceil((c1 - c0) * scale / 14) * 14
    crop = cv2.resize(image[r0:r1, c0:c1], (out_w, out_h))
    grid = F.interpolate(mask[r0:r1, c0:c1][None, None], size=(out_h // 14, out_w // 14), mode="bilinear")[0, 0]
    return crop, grid


def test_crop_rule_matches_a_loop_version_on_random_masks():
    rng = np.random.default_rng(0)
    for height, width in [(60, 76), (180, 230)]:
        images = rng.integers(0, 256, (6, height, width, 3), dtype=np.uint8)
        masks = np.zeros((6, height, width), dtype=bool)
        for k in range(5):  # random boxes and blobs, small to large (> 19600 px on the big frame); mask 5 empty
            r0, c0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            r1, c1 = rng.integers(r0 + 1, height + 1), rng.integers(c0 + 1, width + 1)
            masks[k, r0:r1, c0:c1] = rng.random((r1 - r0, c1 - c0)) < (0.3 if k % 2 else 1.0)
        masks[4, 5 : height - 3, 4 : width - 9] = True  # large: on the big frame over 19600 px, so it shrinks
        ours = crop_regions(images, masks)
        for k in range(6):
            crop, grid = _crop_loop(images[k], masks[k])
            assert np.array_equal(ours.crops[k], crop), k
            assert ours.mask_grids[k].dtype == torch.uint8 and torch.equal(ours.mask_grids[k], grid), k
    assert masks.reshape(6, -1).sum(1).max() > 19600  # the shrinking branch was exercised


def test_mask_grids_use_torch_uint8_bilinear(case):
    """The mask grid is torch's uint8 bilinear result (0/1), as the official code gets from a uint8 mask."""
    raw, objects, _ = case
    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    crops = crop_regions(raw[[4, 4, 9]], inputs["masks_uint8"].numpy())
    for k, grid in enumerate(crops.mask_grids):
        assert grid.dtype == torch.uint8 and set(grid.unique().tolist()) <= {0, 1}
        assert torch.equal(grid, inputs[f"region_mask_resized.{k}"])
    assert [min(10, c) for c in crops.cells] == IO["mask_nums"]


# ---------------------------------------------------------------------------------------------------- sampling
def test_fps_sampling_of_a_frame_folder():
    assert sample_frames_by_fps(12, 3, 1, 768) == (IO["video_raw_frame_indices"], IO["timestamps"])
    assert sample_frames_by_fps(12, 3, 4, 768)[0] == list(range(12))  # segment 0: every frame
    assert sample_frames_by_fps(12, 3, 1, 2)[0] == [0, 11]  # 4 s >= max_frames: uniform
    indices, _ = sample_frames_by_fps(300, 3, 2, 50)  # fps 2 on 3 fps frames: every frame, thinned to the cap
    assert len(indices) == 50 and indices[0] == 0 and indices[-1] == 299


def test_file_sampling_matches_ffmpeg_fps_filter(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mkv"  # lossless (ffv1): each frame's grey level tells its index
    total, rate = 40, 10
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(total):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 6, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for fps in (1, 3):
        chosen = []
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            graph = av.filter.Graph()
            src, sink = graph.add_buffer(template=stream), graph.add("buffersink")
            fps_filter = graph.add("fps", f"fps={fps}:round=down")
            src.link_to(fps_filter)
            fps_filter.link_to(sink)
            graph.configure()
            for frame in [*container.decode(stream), None]:
                graph.push(frame)
                while True:
                    try:
                        out = graph.pull()
                    except (av.BlockingIOError, av.EOFError):
                        break
                    chosen.append(int(round(out.to_ndarray(format="rgb24").mean() / 6)))
        indices, times = sample_file_frames_by_fps(total, rate, fps, 768)
        assert indices == chosen
        assert times == pytest.approx([n / fps for n in range(len(chosen))])
        video = load_video_by_fps(path, fps=fps)
        assert video.frame_indices == chosen and video.timestamps == times
        assert [int(round(f.mean() / 6)) for f in video.frames] == chosen


# ------------------------------------------------------------------------------------------------------ prompts
def test_region_question_writes_the_official_format():
    question = "What is the relationship between <object0> and <object1>?"
    laid_out = region_question(question, [1, 2])
    assert "<video>\n" + laid_out == IO["question"]
    assert region_question(IO["question"], [1, 2]) == IO["question"]  # already laid out: unchanged
    # Bench-Q items number objects from any N ("<object3><region>" about their only object): names, not indices.
    bench_q = "What is <object3><region> not wearing? (A) A helmet (B) A hat."
    assert region_question(bench_q, [1]) == bench_q
    with pytest.raises(ValueError, match="<object3>"):  # a question without placeholders still names real objects
        region_question("What is <object3> wearing?", [1])


def test_video_goes_where_the_question_puts_it(processor, case):
    raw, objects, _ = case
    out = processor(_as_array_video(raw, processor), DESCRIBE_PROMPT_VL3, objects[:1])
    text = processor.tokenizer.decode(out["input_ids"][0])
    body = text.split("<|im_start|>user\n")[1]
    assert body.startswith("Please describe in detail the marked object [<REGION>")
    assert body.split("]", 1)[1].startswith(" in the video.Time 0.3s:<image>")
    assert body.endswith("<image>\n<|im_end|>\n<|im_start|>assistant\n")


def test_follow_up_ids_extend_the_first_turn(processor, case):
    raw, objects, _ = case
    video = _as_array_video(raw, processor)
    first = processor(video, IO["question"], objects)
    assert first["input_ids"][0].tolist() == IO["input_ids"]
    follow = processor.text_inputs("And <object1>?", [(IO["question"], "near")], first["layout"])
    ids = follow["input_ids"][0].tolist()
    assert ids[: len(IO["input_ids"]) - 3] == IO["input_ids"][:-3]  # same prefix up to the generation prompt
    again = processor(video, "And <object1>?", objects, history=[(IO["question"], "near")])
    assert torch.equal(again["input_ids"], follow["input_ids"])


def test_training_labels_cover_only_answers(processor, case):
    raw, objects, _ = case
    conversation = [(IO["question"], "a cat"), ("Why?", "b")]
    example = processor.build_training_example(_as_array_video(raw, processor), conversation, objects)
    ids, labels = example["input_ids"][0], example["labels"][0]
    learnt = processor.tokenizer.decode(ids[labels != -100])
    assert learnt == "a cat<|im_end|>b<|im_end|>"
    assert processor.decode(ids[labels == -100]).startswith("user\nTime 0.3s:")


def test_still_image_uses_raster_patches_and_no_timestamps(processor, case):
    raw, objects, _ = case
    out = processor(Image.fromarray(raw[4]), "What is <object0>?", [{0: objects[0][4]}])
    assert out["merge_sizes"].tolist() == [1]
    gh, gw = out["grid_thw"][0, 1:].tolist()
    assert (out["input_ids"] == processor.image_token_id).sum() == gh * gw
    text = processor.tokenizer.decode(out["input_ids"][0][out["input_ids"][0] != processor.image_token_id])
    assert text.startswith("<|im_start|>user\n\nThere is 1 object in the video: <object0>[")


def test_collate_batches_two_requests(processor, case):
    raw, objects, _ = case
    video = _as_array_video(raw, processor)
    a = processor(video, IO["question"], objects)
    b = processor(video, "Describe <object0>.", objects[:1])
    batch = processor.collate([a, b], padding_side="left")
    length = a["input_ids"].shape[1]
    assert batch["input_ids"].shape == (2, length)
    assert batch["attention_mask"][1].sum() == b["input_ids"].shape[1]
    assert batch["attention_mask"][1, 0] == 0
    assert torch.equal(batch["input_ids"][1, -b["input_ids"].shape[1] :], b["input_ids"][0])
    assert batch["pixel_values"].shape[0] == 2 * a["pixel_values"].shape[0]
    regions = batch["region_inputs"]
    assert isinstance(regions, VL3RegionInputs) and regions.masks_per_sample.tolist() == [3, 1]
    assert regions.grid_thw.shape == (4, 3) and len(regions.mask_grids) == 4
    assert regions.pixel_values.shape[0] == int(regions.grid_thw.prod(1).sum())


# --------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "text, problem",
    [
        ("  ", "empty"),
        ("What is <object2>?", "<object2>"),
        ("<object0><region><region><region><region>?", "4 <region> placeholders but 3 masks"),
    ],
)
def test_bad_questions_are_refused(processor, case, text, problem):
    raw, objects, _ = case
    with pytest.raises(ValueError, match=problem):
        processor(_as_array_video(raw, processor), text, objects)


def test_one_placeholder_per_object_stands_for_all_its_masks(processor, case):
    """`<object1>` has masks on two frames: a question with one `<region>` per object (as `DESCRIBE_PROMPT` and v1's
    layout write it) gets one per mask, so it asks the same as the per-mask layout."""
    raw, objects, _ = case
    video = _as_array_video(raw, processor)
    per_object = processor(video, "<object0>[<region>] and <object1>[<region>]?", objects)
    per_mask = processor(video, "<object0><region> and <object1><region><region>?", objects)
    assert per_object["input_ids"].tolist() == per_mask["input_ids"].tolist()


def test_question_errors_come_before_decoding(processor, case, tmp_path):
    _, objects, _ = case
    with pytest.raises(ValueError, match="1 <region> placeholders but 3 masks"):
        processor(tmp_path / "not-decoded.mp4", "<object0><region>?", objects)


def test_bad_masks_are_refused(processor, case):
    raw, objects, _ = case
    video = _as_array_video(raw, processor)
    with pytest.raises(ValueError, match="object0>'s mask on frame 4 is 30x76"):
        processor(video, "What?", [{4: objects[0][4][:30]}])
    with pytest.raises(ValueError, match="outside the video"):
        processor(raw, "What?", [{12: objects[0][4]}])
    with pytest.raises(ValueError, match="object0>'s mask on frame 4 is empty"):
        processor(video, "What?", [{4: np.zeros_like(objects[0][4])}])
    whole = processor(video, "What?", [{4: np.zeros_like(objects[0][4])}], allow_empty_masks=True)
    assert whole["region_inputs"].mask_grids[0].all()  # an allowed empty mask stands for the whole frame


def test_mask_selecting_no_cell_is_refused(processor):
    frames = np.zeros((3, 300, 500, 3), dtype=np.uint8)
    thin = np.zeros((300, 500), dtype=np.uint8)
    thin[0, :] = 1  # one pixel row: no patch cell survives the resize
    with pytest.raises(ValueError, match="object1>'s mask on frame 1 selects no patch cell"):
        processor(frames, "What?", [{1: np.pad(np.ones((10, 10), np.uint8), ((0, 290), (0, 490)))}, {1: thin}])


def test_image_on_a_video_only_path_is_refused(processor, case):
    raw, _, _ = case
    with pytest.raises(ValueError, match="an image was given where a video is needed"):
        processor.load_video(Image.fromarray(raw[0]))


# ------------------------------------------------------------------------------------------------ save / load
def test_auto_processor_round_trip(processor, case, tmp_path):
    raw, objects, _ = case
    assert isinstance(processor, VideoReferVL3Processor)
    processor.save_pretrained(tmp_path)
    settings = json.loads((tmp_path / "processor_config.json").read_text())
    assert settings["mm_max_length"] == 10240 and settings["processor_class"] == "VideoReferVL3Processor"
    again = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(again, VideoReferVL3Processor)
    video = _as_array_video(raw, processor)
    a, b = processor(video, IO["question"], objects), again(video, IO["question"], objects)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["pixel_values"], b["pixel_values"])


# ---------------------------------------------------------------------------------------------------- end to end
def test_raw_frames_through_processor_and_model_give_the_official_logits(processor, tmp_path):
    """PNG frames -> our sampling and processor -> our model: the official logits and greedy ids."""
    from videorefer.models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM
    from videorefer.models.videorefer_vl3.region_encoder import default_kmeans_generator

    inputs = load_file(str(FIXTURE / "inputs.safetensors"))
    expected = load_file(str(FIXTURE / "outputs.safetensors"))
    for t, frame in enumerate(inputs["raw_frames_uint8"].numpy()):
        Image.fromarray(frame).save(tmp_path / f"{t:03d}.png")
    masks = inputs["masks_uint8"].numpy()
    out = processor(tmp_path, IO["question"], [{4: masks[0]}, {4: masks[1], 9: masks[2]}])
    model = VideoReferVL3ForCausalLM.from_pretrained(FIXTURE, attn_implementation="eager", dtype=torch.float32).eval()
    visual = {key: out[key] for key in processor.visual_keys}
    with torch.no_grad():
        features = model.encode_visual(**visual, kmeans_generator=default_kmeans_generator(IO["kmeans_seed"]))
        embeds, attention, positions, _ = model.splice_inputs(out["input_ids"], out["attention_mask"], features)
        logits = model(inputs_embeds=embeds, attention_mask=attention, position_ids=positions, use_cache=False).logits
        generated = model.generate(
            input_ids=out["input_ids"], attention_mask=out["attention_mask"], **visual,
            kmeans_generator=default_kmeans_generator(IO["kmeans_seed"]), max_new_tokens=8, min_new_tokens=8,
        )
    assert (logits - expected["logits"]).abs().max() <= 1e-4
    assert generated[0].tolist() == IO["generated_ids"]
    assert processor.decode(generated[0]) == IO["generated_text"].strip()
