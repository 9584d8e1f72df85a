"""VideoRefer-VL3 through vLLM (the plugin in videorefer.serving.vllm) against our transformers path, greedy, with the
checkpoint's repetition penalty (1.05) on: identical token ids for every kind of request, alone or batched with
others, and first-token log-probabilities within LOGPROB_TOLERANCE."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from videorefer.engines import Request
from videorefer.testing.clips import moving_square_clip as clip

#: float32 on both sides; vLLM's CPU attention and fused kernels sum in another order than transformers' SDPA.
LOGPROB_TOLERANCE = 1e-4
SETTINGS = dict(max_new_tokens=16, min_new_tokens=16)


def cases():
    video, masks = clip(1)
    four_video, four = clip(2)
    image = np.random.default_rng(3).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    image_mask = np.zeros((50, 60), bool)
    image_mask[10:40, 5:35] = True
    return {
        "one object": (video, [{2: masks[2]}], "What is <object0>?", None),
        "four objects": (four_video, [{0: four[0]}, {3: four[3]}, {5: np.roll(four[5], 20, 1)}, {8: four[8]}],
                         "How do <object0>, <object1>, <object2> and <object3> relate?", None),
        "several frames": (video, [{1: masks[1], 4: masks[4], 8: masks[8]}], "Where does <object0> go?", None),
        "image": (image, [{0: image_mask}], "What is <object0>?", None),
        "follow-up": (video, [{2: masks[2]}], "And then?", [("What is <object0>?", "a red square")]),
    }


def reference_ids(reference, video, objects, question, history):
    prepared = reference.prepare(video, objects, question, history)
    return reference.generate(prepared, **SETTINGS)[0].tolist(), prepared


def served_request(served, video, objects, question, history):
    return served._request(video, objects, question, history, None, False)


@pytest.mark.parametrize("case", list(cases()))
def test_ids_equal_the_transformers_path(vl3_pair, case):
    reference, served = vl3_pair
    expected, _ = reference_ids(reference, *cases()[case])
    (output,) = served.engine.outputs([served_request(served, *cases()[case])], **SETTINGS)
    assert list(output.outputs[0].token_ids) == expected


def test_a_mixed_batch_answers_each_request_as_alone(vl3_pair):
    reference, served = vl3_pair
    requests = [served_request(served, *case) for case in cases().values()]
    together = served.engine.outputs(requests, **SETTINGS)
    for request, output, case in zip(requests, together, cases().values()):
        assert list(output.outputs[0].token_ids) == reference_ids(reference, *case)[0]
        (alone,) = served.engine.outputs([request], **SETTINGS)
        assert list(alone.outputs[0].token_ids) == list(output.outputs[0].token_ids)


def test_first_token_logprobs_match(vl3_pair):
    reference, served = vl3_pair
    for case in cases().values():
        _, prepared = reference_ids(reference, *case)
        model = reference.base_model
        with torch.no_grad():
            embeds, attention, _, _ = model.prepare_multimodal_inputs(
                prepared["input_ids"], prepared["attention_mask"], visual_features=prepared["visual_features"],
                padding_side="left")
            logits = model(inputs_embeds=embeds, attention_mask=attention).logits[0, -1]
        expected = torch.log_softmax(logits.float(), -1)
        (output,) = served.engine.outputs([served_request(served, *case)], logprobs=5, **SETTINGS)
        first = output.outputs[0].logprobs[0]
        assert len(first) >= 5
        for token, entry in first.items():
            assert abs(entry.logprob - float(expected[token])) <= LOGPROB_TOLERANCE


def test_the_api_answers_alike(vl3_pair):
    reference, served = vl3_pair
    video, objects, question, history = cases()["several frames"]
    assert served.ask(video, objects, question, **SETTINGS) == reference.ask(video, objects, question, **SETTINGS)
    items = [case[:3] for name, case in cases().items() if name not in ("follow-up", "image")]  # as ask_batch takes
    assert served.ask_batch(items, **SETTINGS) == reference.ask_batch(items, **SETTINGS)
    streamed = list(served.ask_stream(video, objects, question, **SETTINGS))
    assert len(streamed) > 1 and streamed[-1] == reference.ask(video, objects, question, **SETTINGS)
    assert served.describe(video, objects[0], max_new_tokens=8) == reference.describe(video, objects[0],
                                                                                        max_new_tokens=8)


def test_a_bad_request_is_refused_alone_and_the_engine_keeps_serving(vl3_pair):
    reference, served = vl3_pair
    video, masks = clip(4)
    good = Request(reference.processor.load_video(video, [2]), [{2: masks[2]}], "What is <object0>?")
    bad = Request(good.video, [{2: np.ones((5, 5), bool)}], "What is <object0>?")
    with pytest.raises(ValueError) as expected:
        reference.ask(video, bad.objects, bad.question)
    answers = served.engine.answer([bad, good], return_exceptions=True, **SETTINGS)
    assert isinstance(answers[0], ValueError) and str(answers[0]) == str(expected.value)
    assert answers[1] == reference.ask(video, good.objects, good.question, **SETTINGS)
    with pytest.raises(ValueError, match="mask"):
        served.ask(video, bad.objects, bad.question)
    assert served.ask(video, good.objects, good.question, **SETTINGS) == answers[1]


def test_a_follow_up_reuses_the_conversation_through_prefix_caching(vl3_pair):
    reference, served = vl3_pair
    video, masks = clip(5, frames=16, h=112, w=112)
    objects = [{3: masks[3]}]
    first = served.ask(video, objects, "What is <object0>?", **SETTINGS)
    history = [("What is <object0>?", first)]
    (follow,) = served.engine.outputs([served_request(served, video, objects, "And then?", history)], **SETTINGS)
    assert follow.num_cached_tokens > 0
    assert list(follow.outputs[0].token_ids) == reference_ids(reference, video, objects, "And then?", history)[0]


def test_callers_in_threads_are_batched_and_answered_as_alone(vl3_pair):
    reference, served = vl3_pair
    requests = [served_request(served, *case) for case in cases().values()]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda request: served.engine.answer([request], **SETTINGS)[0], requests))
    assert together == [reference.processor.decode(reference_ids(reference, *case)[0]) for case in cases().values()]
    stop = threading.Event()
    stop.set()  # a stopped stream ends after its first piece and the engine keeps serving
    video, objects, question, _ = cases()["one object"]
    assert len(list(served.ask_stream(video, objects, question, stop_event=stop, **SETTINGS))) == 1
    assert served.ask(video, objects, question, **SETTINGS) == together[0]
