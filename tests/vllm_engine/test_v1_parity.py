"""VideoRefer-7B through vLLM against our transformers path, greedy, with a repetition penalty (1.05) on: identical
token ids for every kind of request, alone or batched, and first-token log-probabilities within the VL3 tests'
tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_vl3_parity import LOGPROB_TOLERANCE
from videorefer.testing.clips import moving_square_clip as clip

SETTINGS = dict(max_new_tokens=16, min_new_tokens=16, repetition_penalty=1.05)


def cases():
    video, masks = clip(1)
    four_video, four = clip(2)
    return {
        "one object": (video, [{2: masks[2]}], "What is <object0>?", None),
        "four objects": (four_video, [{0: four[0]}, {3: four[3]}, {5: np.roll(four[5], 20, 1)}, {8: four[8]}],
                         "How do <object0>, <object1>, <object2> and <object3> relate?", None),
        "several frames": (video, [{f: masks[f] for f in (0, 1, 3, 4, 6, 9)}], "Where does <object0> go?", None),
        "image as one frame": (video[3:4], [{0: masks[3]}], "What is <object0>?", None),
        "follow-up": (video, [{2: masks[2]}], "And then?", [("What is <object0>?", "a red square")]),
    }


def reference_ids(reference, video, objects, question, history):
    prepared = reference.prepare(video, objects, question, history)
    return reference.generate(prepared, **SETTINGS)[0].tolist(), prepared


@pytest.mark.parametrize("case", list(cases()))
def test_ids_equal_the_transformers_path(v1_pair, case):
    reference, served = v1_pair
    expected, _ = reference_ids(reference, *cases()[case])
    (output,) = served.engine.outputs([served._request(*cases()[case], None, False)], **SETTINGS)
    assert list(output.outputs[0].token_ids) == expected


def test_a_mixed_batch_answers_each_request_as_alone_and_logprobs_match(v1_pair):
    reference, served = v1_pair
    requests = [served._request(*case, None, False) for case in cases().values()]
    together = served.engine.outputs(requests, logprobs=5, **SETTINGS)
    model = reference.base_model
    for output, case in zip(together, cases().values()):
        expected, prepared = reference_ids(reference, *case)
        assert list(output.outputs[0].token_ids) == expected
        with torch.no_grad():
            embeds, attention, _, _ = model.prepare_multimodal_inputs(
                prepared["input_ids"], prepared["attention_mask"], visual_features=prepared["visual_features"],
                padding_side="left")
            logprobs = torch.log_softmax(model(inputs_embeds=embeds, attention_mask=attention).logits[0, -1], -1)
        for token, entry in output.outputs[0].logprobs[0].items():
            assert abs(entry.logprob - float(logprobs[token])) <= LOGPROB_TOLERANCE


def test_the_api_answers_alike(v1_pair):
    reference, served = v1_pair
    items = [case[:3] for name, case in cases().items() if name != "follow-up"]
    assert served.ask_batch(items, **SETTINGS) == reference.ask_batch(items, **SETTINGS)
    video, objects, question, _ = cases()["several frames"]
    assert list(served.ask_stream(video, objects, question, **SETTINGS))[-1] == reference.ask(video, objects,
                                                                                                question, **SETTINGS)
