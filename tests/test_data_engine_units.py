"""Data engine parts on their own: reply parsing and validation, retries, HTTP client errors, configs, inputs,
the local chat backend on a tiny random Qwen2 (garbage replies must be recorded failures), segmentor drops, shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.data_engine import agents
from train.data_engine.config import config_from_dict, load_config
from train.data_engine.inputs import load_inputs
from train.data_engine.structured import ask_json, parse_json_reply
from train.data_engine.testing import scripted_server
from videorefer.data.chat_client import ChatClient, ChatError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- replies
@pytest.mark.parametrize("text, expected", [
    ('{"objects": ["dog"]}', {"objects": ["dog"]}),
    ('Here:\n```json\n{"objects": ["dog"]}\n```\nDone.', {"objects": ["dog"]}),
    ('The answer is {"match": true, "reason": "same"} as asked.', {"match": True, "reason": "same"}),
])
def test_parse_json_reply(text, expected):
    assert parse_json_reply(text) == expected


def test_parse_json_reply_names_refusals_and_missing_json():
    with pytest.raises(ValueError, match="refusal"):
        parse_json_reply("I'm sorry, but I cannot help with that request.")
    with pytest.raises(ValueError, match="no JSON object"):
        parse_json_reply('{"objects": ["dog"')


def test_validators():
    assert agents.validate_nouns({"objects": ["Dog", {"noun": "red car."}, "dog", "tree"]}, 2) == ["dog", "red car"]
    with pytest.raises(ValueError, match="short noun phrase"):
        agents.validate_nouns({"objects": ["a very long noun phrase here"]}, 5)
    with pytest.raises(ValueError, match="must be a list"):
        agents.validate_nouns({"objects": "dog"}, 5)
    assert agents.validate_review({"match": "yes", "reason": "same dog"}) == {"match": True, "reason": "same dog"}
    with pytest.raises(ValueError, match="true or false"):
        agents.validate_review({"match": "maybe", "reason": "?"})
    good = {"detailed_caption": "A dog runs.", "short_caption": "A dog.",
            "qa": [{"question": "What is <region>?", "options": ["(A) a dog", "(B) a cat"], "answer": "a cat"}]}
    assert agents.validate_refined(good, 1)["qa"] == [
        {"question": "What is <region>?", "options": ["a dog", "a cat"], "answer": "B"}]
    assert agents.validate_refined(good, 0)["qa"] == []
    for broken, message in [({**good, "qa": []}, "list of 1"),
                            ({**good, "qa": [{**good["qa"][0], "question": "What is it?"}]}, "exactly once"),
                            ({**good, "qa": [{**good["qa"][0], "answer": "E"}]}, "neither"),
                            ({**good, "qa": [{**good["qa"][0], "options": ["x", "X"]}]}, "distinct"),
                            ({**good, "short_caption": ""}, "non-empty")]:
        with pytest.raises(ValueError, match=message):
            agents.validate_refined(broken, 1)


class FakeBackend:
    name = "fake"

    def __init__(self, replies):
        self.replies, self.seen = list(replies), []

    def chat_batch(self, conversations):
        self.seen.append(len(conversations))
        return [self.replies.pop(0) for _ in conversations]


def test_ask_json_retries_then_records_failures():
    backend = FakeBackend(['{"match": true, "reason": "ok"}', "nonsense", ChatError("HTTP 401: bad key", False),
                           ChatError("HTTP 503", True), "still nonsense", '{"match": false, "reason": "no"}'])
    outcomes = ask_json(backend, [[]] * 4, [agents.validate_review] * 4, retries=2, backoff=0)
    assert [o.ok for o in outcomes] == [True, False, False, True]
    assert backend.seen == [4, 2]  # the 401 is not retried; the 503 and the bad reply are
    assert outcomes[1].attempts == 2 and "no JSON" in outcomes[1].errors[1] and outcomes[1].reply == "still nonsense"
    assert outcomes[2].attempts == 1 and "401" in outcomes[2].failure()["error"]
    assert outcomes[3].value == {"match": False, "reason": "no"}


def test_chat_client_over_http(monkeypatch):
    seen = []

    def reply(body):
        seen.append(body)
        return (401, {"error": "bad key"}) if body["model"] == "locked" else (200, "hello")

    monkeypatch.setenv("TEST_ENGINE_KEY", "sk-test")
    with scripted_server(reply) as url:
        client = ChatClient(url, "m", api_key_env="TEST_ENGINE_KEY", params={"temperature": 0})
        assert client.chat([{"role": "user", "content": "hi"}]) == "hello"
        with pytest.raises(ChatError, match="HTTP 401") as info:
            ChatClient(url, "locked").chat([])
        assert info.value.retryable is False
    assert seen[0]["temperature"] == 0 and seen[0]["messages"][0]["content"] == "hi"
    with pytest.raises(ChatError, match="connection error"):
        ChatClient(url, "m", timeout=1).chat([])  # the server is gone
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        ChatClient(url, "m", api_key_env="NO_SUCH_KEY_VAR")


# ------------------------------------------------------------------------------------------ config, inputs
def test_shipped_configs_load(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    local = load_config(REPO / "train/data_engine/configs/local.yaml")
    assert local.annotator.vision and local.analyzer.backend == "local" and local.refiner.llm.dtype == "bfloat16"
    endpoint = load_config(REPO / "train/data_engine/configs/endpoint.yaml")
    assert endpoint.refiner.llm.model == "gpt-4o" and endpoint.reviewer.llm.url == "http://127.0.0.1:8000/v1"


def test_config_errors_are_clear():
    base = {"analyzer": {"model": "a", "url": "u"}, "annotator": {"model": "b", "url": "u"},
            "reviewer": {"llm": {"model": "c", "url": "u"}}, "refiner": {"llm": {"model": "d", "url": "u"}}}
    assert config_from_dict(base).refiner.qa == 1
    with pytest.raises(ValueError, match=r"analyzer: unknown key\(s\) \['temprature'\]"):
        config_from_dict({**base, "analyzer": {"model": "a", "url": "u", "temprature": 0}})
    with pytest.raises(ValueError, match="needs a 'url'"):
        config_from_dict({**base, "annotator": {"model": "b"}})
    with pytest.raises(ValueError, match="needs an 'llm' block"):
        config_from_dict({**base, "reviewer": {}})
    with pytest.raises(ValueError, match="key_frame"):
        config_from_dict({**base, "segmentor": {"key_frame": "best"}})


def test_inputs_from_folder_and_list(tmp_path):
    (tmp_path / "b.mp4").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.txt").write_text("A dog runs.\n")
    with pytest.raises(ValueError, match=r"no caption for \['b.mp4'\]"):
        load_inputs(tmp_path)
    (tmp_path / "b.txt").write_text("A cat sits.")
    assert [(i.id, i.caption) for i in load_inputs(tmp_path)] == [("a", "A dog runs."), ("b", "A cat sits.")]
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps([{"video": "a.mp4", "caption": "x"}, {"video": "sub/../a.mp4", "caption": "y"}]))
    with pytest.raises(ValueError, match="duplicate video ids"):
        load_inputs(listing)
    listing.write_text(json.dumps([{"video": "a.mp4", "caption": ""}]))
    with pytest.raises(ValueError, match="non-empty 'caption'"):
        load_inputs(listing)


# ------------------------------------------------------------------------------------------ local backend
def test_local_backend_garbage_is_a_recorded_failure(tmp_path):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from train.data_engine.backends import make_backend
    from train.data_engine.config import BackendConfig
    from videorefer.testing.tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backend = make_backend(BackendConfig(model=str(tmp_path), backend="local", device="cpu", max_tokens=8))
    conversations = [agents.analyzer_messages("A dog runs."), agents.analyzer_messages("A red car and a tree.")]
    replies = backend.chat_batch(conversations)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    validator = lambda v: agents.validate_nouns(v, 4)  # noqa: E731
    outcomes = ask_json(backend, conversations, [validator] * 2, retries=2, backoff=0)
    assert [o.ok for o in outcomes] == [False, False]
    assert all(o.attempts == 2 and len(o.errors) == 2 and o.reply is not None for o in outcomes)


def test_local_vision_backend(tmp_path):
    """The Annotator's local VLM path: OpenAI-style messages with data-URL images reach a LLaVA-layout model loaded
    by AutoModelForImageTextToText; each conversation's own image goes in (4 image tokens, 28x28 pixels)."""
    import base64
    import io

    import numpy as np
    import torch
    from PIL import Image

    from train.data_engine.backends import make_backend
    from train.data_engine.config import BackendConfig
    from train.data_engine.testing import build_tiny_vlm

    def message(colour: tuple[int, int, int], size: tuple[int, int]) -> list[dict]:
        buffer = io.BytesIO()
        Image.fromarray(np.full((*size, 3), colour, np.uint8)).save(buffer, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        return [{"role": "user", "content": [{"type": "text", "text": "What colour is it?"},
                                             {"type": "image_url", "image_url": {"url": url}}]}]

    backend = make_backend(BackendConfig(model=build_tiny_vlm(tmp_path / "vlm"), backend="local", device="cpu",
                                         max_tokens=4, vision=True))
    red, blue = message((220, 30, 30), (40, 50)), message((30, 30, 220), (64, 48))
    assert backend.chat_batch([red])[0] == backend.chat_batch([red])[0]  # greedy: deterministic
    seen = []
    generate = backend._model.generate

    def recording_generate(**inputs):
        seen.append(inputs)
        return generate(**inputs)

    backend._model.generate = recording_generate
    replies = backend.chat_batch([red, blue])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    image_token = backend._model.config.image_token_id
    for inputs in seen:
        assert inputs["pixel_values"].shape == (1, 3, 28, 28)
        assert int((inputs["input_ids"] == image_token).sum()) == 4
    assert not torch.equal(seen[0]["pixel_values"], seen[1]["pixel_values"])
    # A text-only local model refuses an image instead of silently dropping it.
    text_only = make_backend(BackendConfig(model=str(tmp_path / "vlm"), backend="local", device="cpu", vision=False))
    with pytest.raises(ValueError, match="vision: true"):
        text_only.chat_batch([red])


# --------------------------------------------------------------------------------------------- segmentor
def test_segmentor_records_drop_reasons(tmp_path):
    from train.data_engine.config import SegmentorConfig
    from train.data_engine.segmentor import Detections, Segmentor
    from videorefer.segmentation import Sam2Segmenter
    from videorefer.testing.tiny_sam2 import build_tiny_sam2

    class StubDetector:  # boxes as the real detector gives them: clipped to the 64x48 frame
        def detect(self, image, nouns):
            assert image.shape == (48, 64, 3) and nouns == ["cat", "dog", "ball"]  # the over-long noun never ran
            boxes = {"cat": [[1.0, 1.0, 20.0, 20.0]], "dog": [[64.0, 5.0, 64.0, 9.0]], "ball": [[10.0, 8.0, 40.0, 30.0]]}
            scores = {"cat": [0.2], "dog": [0.9], "ball": [0.8]}
            return [Detections(n, np.array(boxes[n], np.float32), np.array(scores[n], np.float32)) for n in nouns]

    segmenter = Sam2Segmenter.from_pretrained(build_tiny_sam2(tmp_path / "sam2"), device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)
    config = SegmentorConfig(box_threshold=0.3, min_mask_fraction=0.0)
    nouns = ["cat", "dog", "x" * 81, "ball"]
    result = Segmentor(config, StubDetector(), segmenter).segment(frames, [0, 5, 10], nouns)
    cat, dog, long, ball = result["objects"]
    assert result["key_frame"] == 5
    assert cat["status"] == "dropped" and "no box above box_threshold 0.3 (best score 0.200)" in cat["reason"]
    assert dog["status"] == "dropped" and "has no area in the frame" in dog["reason"]
    assert long["status"] == "dropped" and "81 characters; the limit is 80" in long["reason"]
    assert ball["status"] == "ok" and ball["box"] == [10.0, 8.0, 40.0, 30.0] and ball["score"] == 0.8
    assert sorted(ball["annotation"]) == ["0", "10", "5"]
    strict = Segmentor(SegmentorConfig(min_mask_fraction=1.0), StubDetector(), segmenter)
    assert "mask too small" in strict.segment(frames, [0, 5, 10], nouns)["objects"][3]["reason"]


# ------------------------------------------------------------------------------------------------ shards
def test_shards_write_their_own_files_and_merge(tmp_path):
    from train.data_engine.stages import Engine
    from train.data_engine.store import StageStore

    listing = tmp_path / "list.jsonl"
    (tmp_path / "v.mp4").write_bytes(b"x")
    listing.write_text("".join(json.dumps({"id": f"v{i}", "video": "v.mp4", "caption": f"dog {i}"}) + "\n"
                               for i in range(5)))
    items = load_inputs(listing)

    def reply(body):
        return 200, json.dumps({"objects": [body["messages"][1]["content"].split(": ")[1]]})

    with scripted_server(reply) as url:
        llm = {"backend": "endpoint", "url": url, "model": "m", "backoff": 0}
        config = config_from_dict({"analyzer": llm, "annotator": llm, "reviewer": {"llm": llm},
                                   "refiner": {"llm": llm}, "batch_size": 2})
        from videorefer.data.sharding import shard_items

        for i in range(2):
            Engine(config, str(tmp_path / "out"), (i, 2), progress=False).run(shard_items(items, i, 2), ("analyze",))
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["analyze.shard0of2.jsonl", "analyze.shard1of2.jsonl"]
    records = StageStore(tmp_path / "out", "analyze").records()
    assert {k: r["objects"] for k, r in records.items()} == {f"v{i}": [f"dog {i}"] for i in range(5)}


def test_region_captioner_accepts_a_vl3_checkpoint(tmp_path, monkeypatch):
    """The Reviewer's captioner loads a VL3 checkpoint through the same call and asks VL3's own describe question
    (official infer_videorefer_d.py) about the object's masks on several frames."""
    from PIL import Image

    from train.data_engine.captioner import VideoReferCaptioner
    from videorefer import VideoRefer
    from videorefer.testing.tiny_vl3 import build_tiny_vl3

    frames = tmp_path / "video"
    frames.mkdir()
    for t in range(6):  # a bright square moving right on grey
        image = np.full((56, 84, 3), 90, dtype=np.uint8)
        image[16:40, 8 + 8 * t:32 + 8 * t] = 230
        Image.fromarray(image).save(frames / f"{t:05d}.jpg")
    square = lambda t: [[8 + 8 * t, 16, 32 + 8 * t, 16, 32 + 8 * t, 40, 8 + 8 * t, 40]]  # noqa: E731 polygon
    annotation = {"1": {"segmentation": square(1)}, "4": {"segmentation": square(4)}}
    asked: list[tuple[str, list[int]]] = []
    original = VideoRefer.prepare

    def spy(self, video, regions, question, *args, **kwargs):
        asked.append((question, [sorted(obj) for obj in regions]))
        return original(self, video, regions, question, *args, **kwargs)

    monkeypatch.setattr(VideoRefer, "prepare", spy)
    captioner = VideoReferCaptioner(str(build_tiny_vl3(tmp_path / "tiny-vl3")), device="cpu", max_new_tokens=4)
    caption = captioner.describe(str(frames), annotation, 56, 84)
    assert isinstance(caption, str)
    assert asked == [("Please describe in detail the marked object <region> in the video.\n<video>", [[1, 4]])]
