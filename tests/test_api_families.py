"""The high-level API behaves the same for both model families: one call loads either, the same object format, the
same questions, follow-ups, batches, quantisation and errors (each test runs once per family)."""

import numpy as np
import pytest
import torch

from videorefer import VideoRefer, registered_families


def moving_square(frames: int = 12, h: int = 60, w: int = 76, seed: int = 0):
    """A random video and an object: a square moving right, one mask per frame."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (frames, h, w, 3), dtype=np.uint8)
    masks = {}
    for t in range(frames):
        mask = np.zeros((h, w), bool)
        mask[10:30, 2 + 4 * t : 22 + 4 * t] = True
        masks[t] = mask
    return video, masks


@pytest.fixture(scope="module")
def vr(family_checkpoint):
    return VideoRefer.from_pretrained(family_checkpoint, device="cpu")


def test_one_call_loads_either_family(vr, family_checkpoint):
    import json

    model_type = json.loads((family_checkpoint / "config.json").read_text())["model_type"]
    family = registered_families()[model_type]
    assert isinstance(vr.model, family.model_class) and isinstance(vr.processor, family.processor_class)


def test_ask_stream_describe_and_an_object_on_several_frames(vr):
    video, masks = moving_square()
    on_three_frames = {t: masks[t] for t in (1, 4, 9)}
    other = {4: np.roll(masks[4], 30, axis=1)}
    question = "What is <object0> doing to <object1>?"
    answer = vr.ask(video, [on_three_frames, other], question, max_new_tokens=6)
    streamed = list(vr.ask_stream(video, [on_three_frames, other], question, max_new_tokens=6))
    assert streamed and streamed[-1] == answer
    described = vr.describe(video, on_three_frames, max_new_tokens=4)
    assert described == vr.ask(video, [on_three_frames], vr.describe_prompt, max_new_tokens=4)


def test_follow_up_reuses_visual_features_and_the_key_value_cache(vr):
    video, masks = moving_square(seed=3)
    objects = [{2: masks[2], 7: masks[7]}]
    settings = dict(max_new_tokens=6, min_new_tokens=6)
    first = vr.ask(video, objects, "What is <object0>?", **settings)
    visual = vr.prepare(video, objects, "What is <object0>?")["visual_features"]
    history = [("What is <object0>?", first)]
    follow = vr.ask(video, objects, "Where does it go?", history=history, **settings)
    assert vr.prepare(video, objects, "Where?", history=history)["visual_features"] is visual
    assert vr.prefix_cache.reused_tokens > 0
    fresh = VideoRefer(vr.model, vr.processor)
    fresh.reuse_prefix_cache = False
    assert follow == fresh.ask(video, objects, "Where does it go?", history=history, **settings)


def test_a_batch_of_two_gives_the_answers_of_single_questions(vr):
    video, masks = moving_square(seed=1)
    items = [(video, [{3: masks[3]}], "What is <object0>?"), (video, [masks, {5: masks[5]}], "Is <object1> near?")]
    batched = vr.ask_batch(items, max_new_tokens=5)
    singles = [VideoRefer(vr.model, vr.processor).ask(*item, max_new_tokens=5) for item in items]
    assert batched == singles


@pytest.mark.parametrize(
    "question, problem",
    [("   ", "empty"), ("What is <object3>?", "<object3>")],
)
def test_bad_questions_are_refused_alike(vr, question, problem):
    video, masks = moving_square()
    with pytest.raises(ValueError, match=problem):
        vr.ask(video, [{0: masks[0]}], question)


def test_a_mask_of_another_size_is_refused(vr):
    video, _ = moving_square()
    with pytest.raises(ValueError, match="mask"):
        vr.ask(video, [{0: np.ones((10, 10), bool)}], "What is <object0>?")


def test_4bit_keeps_the_vision_side_region_encoder_and_output_layer_unquantised(family_checkpoint):
    pytest.importorskip("bitsandbytes")
    vr = VideoRefer.from_pretrained(family_checkpoint, quantization="4bit", device="cpu")
    layer = vr.model.model.layers[0].self_attn.q_proj
    assert "bitsandbytes" in type(layer).__module__
    for name, module in vr.model.named_modules():
        if isinstance(module, torch.nn.Linear) and any(
            name.startswith(keep) for keep in vr.model.full_precision_modules
        ):
            assert "bitsandbytes" not in type(module).__module__, name
    assert type(vr.model.lm_head) is torch.nn.Linear
    video, masks = moving_square()
    assert isinstance(vr.ask(video, [{4: masks[4]}], "What is <object0>?", max_new_tokens=3), str)
