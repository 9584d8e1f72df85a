"""`ask_batch` answers each request exactly as `ask` answers it alone, with a repetition penalty on (as the published
VL3 checkpoints generate). A left-padded batch must penalise the same tokens as a request alone: the generated ones
only, as the official code does (the prompt enters as embeddings). Random tiny models with a large initializer range,
so that answers depend on the input and a wrongly penalised token changes them."""

from __future__ import annotations

import pytest

from videorefer import VideoRefer
from videorefer.testing.clips import moving_square_clip as square_video
from videorefer.testing.tiny import build_tiny


@pytest.fixture(scope="module", params=["v1", "vl3"])
def spread_model(request, tmp_path_factory):
    folder = build_tiny(request.param, tmp_path_factory.mktemp(f"spread-{request.param}"), initializer_range=0.2)
    vr = VideoRefer.from_pretrained(folder, device="cpu")
    vr.reuse_prefix_cache = False
    return vr


def test_ask_batch_equals_ask_for_every_item_with_a_repetition_penalty(spread_model):
    (video_a, masks_a), (video_b, masks_b), (video_c, masks_c) = (square_video(s) for s in (2, 3, 4))
    items = [
        (video_a, [{2: masks_a[2]}], "What is <object0>?"),  # short prompts: left padded in the batch
        (video_b, [{1: masks_b[1]}, {0: masks_b[0], 6: masks_b[6]}],
         "How does <object0> move relative to <object1> over the whole clip, and which one is in front?"),
        (video_c, [{2: masks_c[2]}], "Where does <object0> go?"),
    ]
    settings = dict(max_new_tokens=24, min_new_tokens=24, repetition_penalty=1.3)
    together = spread_model.ask_batch(items, **settings)
    alone = [spread_model.ask(video, regions, question, **settings) for video, regions, question in items]
    assert together == alone
    # The penalty changes the padded requests' answers, so a batch that penalised them differently would show.
    for item, answer in zip(items[::2], alone[::2]):
        assert spread_model.ask(*item, **{**settings, "repetition_penalty": 1.0}) != answer
