"""The data engine end to end on CPU: tiny random Grounding DINO / SAM 2 / VideoRefer built in code, and a scripted
OpenAI-compatible server on 127.0.0.1 (real HTTP) whose replies exercise every agent, including malformed JSON,
refusals, HTTP errors and timeouts. Runs on the example video plus two small synthetic ones."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from train.data_engine.cli import main
from train.data_engine.offline import build_models, engine_config
from train.data_engine.testing import scripted_server
from videorefer.prompts import IGNORE_LABEL

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = {
    "bunny": "A big rabbit stands next to a rock while a butterfly flies by.",
    "shapes": "A red circle moves left past a blue square.",
    "refused": "REFUSE this caption.",
}
GOOD_QA = [{"question": "What does <region> do?", "options": ["It stands", "It swims", "It flies", "It sleeps"],
            "answer": "A"}]


class Script:
    """Scripted agent replies, keyed on the agent (system prompt) and the caption / noun in the request."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()
        self.lock = threading.Lock()

    def count(self, key: str) -> int:
        with self.lock:
            self.calls[key] += 1
            return self.calls[key]

    def __call__(self, body: dict) -> tuple[int, object]:
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "extract the concrete" in system:
            return self.analyzer(user)
        if "annotate one object" in system:
            assert user[1]["type"] == "text" and user[2]["image_url"]["url"].startswith("data:image/jpeg;base64,")
            return self.annotator(user[-1]["text"].split(": ", 1)[1])
        noun = user.split("object: ", 1)[1].split("\n")[0] if "check object" in system else \
            user.split("Object: ", 1)[1].split("\n")[0]
        return self.reviewer(noun) if "check object" in system else self.refiner(noun)

    def analyzer(self, user: str) -> tuple[int, object]:
        if "rabbit" in user:
            n = self.count("analyze:bunny")
            return 200, '{"objects": ["rabbit", "rock"' if n == 1 else '{"objects": ["rabbit", "rock", "butterfly"]}'
        if "circle" in user:
            return 200, 'Sure! Here it is:\n```json\n{"objects": [{"noun": "Red circle"}, "blue square"]}\n```'
        self.count("analyze:refused")
        return 200, "I'm sorry, but I can't help with that."

    def annotator(self, noun: str) -> tuple[int, object]:
        n = self.count(f"annotate:{noun}")
        if noun == "rock" and n == 1:
            return 500, {"error": {"message": "overloaded"}}
        if noun == "butterfly" and n == 1:
            time.sleep(1.2)  # past the client's timeout
        if noun == "blue square":
            return 200, json.dumps({"dynamics": "It stays still."})  # no appearance, every time
        return 200, json.dumps({"dynamics": f"The {noun} moves slowly.", "appearance": f"A {noun}, grey and round."})

    def reviewer(self, noun: str) -> tuple[int, object]:
        n = self.count(f"review:{noun}")
        if noun == "rabbit" and n == 1:
            return 200, "I'm sorry, I can't judge this."
        if noun == "rock":
            return 200, json.dumps({"match": False, "reason": "the masked object is an animal, not a rock"})
        return 200, json.dumps({"match": True, "reason": f"both describe the {noun}"})

    def refiner(self, noun: str) -> tuple[int, object]:
        n = self.count(f"refine:{noun}")
        qa = GOOD_QA
        if noun == "butterfly" and n == 1:
            qa = [{**GOOD_QA[0], "question": "What does the butterfly do?"}]  # no <region>: invalid, retried
        return 200, json.dumps({"detailed_caption": f"The {noun} is grey. It moves slowly across the scene.",
                                "short_caption": f"A {noun} moving slowly.", "qa": qa})


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_checkpoint) -> dict:
    words = ["rabbit", "rock", "butterfly", "red", "circle", "blue", "square"]
    return build_models(tmp_path_factory.mktemp("engine-models"), words, tiny_checkpoint)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    from videorefer.data.synthetic import write_video

    root = tmp_path_factory.mktemp("engine-videos")
    rng = np.random.default_rng(0)
    for name in ("shapes", "refused"):
        write_video(rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8), root / f"{name}.mp4", as_folder=False)
    items = [{"id": "bunny", "video": str(REPO / "examples" / "bigbuckbunny.mp4"), "caption": CAPTIONS["bunny"]},
             {"id": "shapes", "video": "shapes.mp4", "caption": CAPTIONS["shapes"]},
             {"id": "refused", "video": "refused.mp4", "caption": CAPTIONS["refused"]}]
    (root / "videos.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    return root / "videos.jsonl"


def write_config(path: Path, url: str, models: dict) -> Path:
    path.write_text(json.dumps(engine_config(url, models, timeout=0.6, retries=3)))  # short timeout: the timeout test
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory, models, videos) -> tuple[Path, Script]:
    out = tmp_path_factory.mktemp("engine-out")
    script = Script()
    with scripted_server(script) as url:
        config = write_config(out.parent / f"{out.name}.json", url, models)
        main(["run", str(config), "--videos", str(videos), "--out", str(out), "--workers", "2", "--no-progress"])
    return out, script


def test_stage_records_and_recorded_failures(clean_run):
    out, script = clean_run
    analyze = {r["id"]: r for r in read_lines(out / "analyze.jsonl")}
    assert analyze["bunny"]["objects"] == ["rabbit", "rock", "butterfly"] and analyze["bunny"]["attempts"] == 2
    assert analyze["shapes"]["objects"] == ["red circle", "blue square"]  # fenced JSON in prose, dicts, lower-cased
    refused = analyze["refused"]
    assert refused["status"] == "failed" and refused["attempts"] == 3 and "refusal" in refused["error"]
    assert script.calls["analyze:refused"] == 3
    for stage in ("annotate", "segment", "review", "refine"):
        records = {r["id"]: r for r in read_lines(out / f"{stage}.jsonl")}
        assert len(records) == 3 and records["refused"]["status"] == "skipped"
    annotate = {r["id"]: r for r in read_lines(out / "annotate.jsonl")}
    rock, butterfly = annotate["bunny"]["objects"][1:]
    assert rock["status"] == "ok" and butterfly["status"] == "ok"  # HTTP 500 and a timeout, each retried
    assert script.calls["annotate:rock"] == 2 and script.calls["annotate:butterfly"] == 2
    square = annotate["shapes"]["objects"][1]
    assert square["status"] == "failed" and square["attempts"] == 3 and "appearance" in square["error"]
    segment = {r["id"]: r for r in read_lines(out / "segment.jsonl")}
    assert segment["bunny"]["frame_indices"] == [16, 49, 82, 115] and segment["bunny"]["key_frame"] == 82
    for obj in segment["bunny"]["objects"]:
        assert obj["status"] == "ok" and sorted(map(int, obj["annotation"])) == [16, 49, 82, 115]
    review = {r["id"]: r for r in read_lines(out / "review.jsonl")}
    decisions = {o["noun"]: o["decision"] for r in review.values() if r["status"] == "ok" for o in r["objects"]}
    assert decisions == {"rabbit": "keep", "rock": "reject", "butterfly": "keep", "red circle": "keep",
                         "blue square": "skipped"}
    assert all(isinstance(o.get("region_caption"), str) for o in review["bunny"]["objects"])
    assert script.calls["review:rabbit"] == 2 and script.calls["refine:butterfly"] == 2


def test_output_loads_in_training_dataset_and_applies_review(clean_run, tiny_videorefer):
    from train.data import VideoReferDataset
    from videorefer.regions import annotation_to_objects

    out, _ = clean_run
    samples = json.loads((out / "videorefer_700k.json").read_text())
    review = {r["id"]: r for r in read_lines(out / "review.jsonl")}
    kept = {(vid, o["noun"]) for vid, r in review.items() if r["status"] == "ok" for o in r["objects"]
            if o["decision"] == "keep"}
    produced = {(s["id"].split("_obj")[0], s["noun"]) for s in samples}
    assert produced == kept == {("bunny", "rabbit"), ("bunny", "butterfly"), ("shapes", "red circle")}
    assert Counter(s["type"] for s in samples) == {"detailed_caption": 3, "short_caption": 3, "qa": 3}
    qa = next(s for s in samples if s["type"] == "qa")
    assert qa["conversations"][0]["value"].startswith("<video>\nWhat does <region> do?\n(A) It stands")
    assert qa["conversations"][1]["value"] == "(A) It stands"
    segment = {r["id"]: r for r in read_lines(out / "segment.jsonl")}
    for s in samples:
        k = int(s["id"].split("_obj")[1].split("_")[0])
        assert s["annotation"] == [segment[s["id"].split("_obj")[0]]["objects"][k]["annotation"]]
        assert len(annotation_to_objects(s["annotation"], s["height"], s["width"])) == 1
    dataset = VideoReferDataset(out / "videorefer_700k.json", tiny_videorefer.processor)
    assert len(dataset) == len(samples)
    for i in range(len(dataset)):
        item = dataset[i]
        assert (item["labels"] != IGNORE_LABEL).any() and item["region_inputs"].masks_per_object[0].tolist() == [4]
    report = json.loads((out / "report.json").read_text())
    assert report["stages"]["review"]["keep_rate"] == pytest.approx(3 / 4)
    assert report["stages"]["analyze"]["videos"] == {"ok": 2, "failed": 1}
    assert report["rejected_examples"][0]["noun"] == "rock" and "not a rock" in report["rejected_examples"][0]["reason"]
    assert report["samples"] == {"detailed_caption": 3, "short_caption": 3, "qa": 3}
    assert "Reviewer keep rate: 0.75" in (out / "report.md").read_text()


def final_samples(out: Path) -> list[dict]:
    """The final samples with their (output-relative) video paths resolved, so two output folders compare."""
    samples = json.loads((out / "videorefer_700k.json").read_text())
    return [{**s, "video": str((out / s["video"]).resolve())} for s in samples]


class Interrupt(BaseException):
    """Stands for a kill (like KeyboardInterrupt, not caught by the engine)."""


def test_killed_run_resumes_to_the_same_output(tmp_path, models, videos, clean_run, monkeypatch):
    from train.data_engine import captioner as captioner_module

    real_describe = captioner_module.VideoReferCaptioner.describe
    calls = Counter()

    def dying_describe(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the first batch (bunny, 3 objects) is written; die inside the next one
            raise Interrupt
        return real_describe(self, *args, **kwargs)

    script = Script()
    with scripted_server(script) as url:
        config = write_config(tmp_path / "config.json", url, models)
        argv = ["run", str(config), "--videos", str(videos), "--out", str(tmp_path / "out"), "--batch-size", "1",
                "--no-progress"]
        monkeypatch.setattr(captioner_module.VideoReferCaptioner, "describe", dying_describe)
        with pytest.raises(Interrupt):
            main(argv)
        assert [r["id"] for r in read_lines(tmp_path / "out" / "review.jsonl")] == ["bunny"]
        assert not (tmp_path / "out" / "refine.jsonl").exists()
        with open(tmp_path / "out" / "review.jsonl", "a") as f:
            f.write('{"id": "shapes", "video": "x", "sta')  # a line cut short by the kill
        before = Counter(script.calls)
        monkeypatch.setattr(captioner_module.VideoReferCaptioner, "describe", real_describe)
        main(argv)
    assert script.calls["analyze:bunny"] == before["analyze:bunny"]  # finished stages are not repeated
    assert script.calls["annotate:rabbit"] == before["annotate:rabbit"]
    assert script.calls["review:rabbit"] == before["review:rabbit"]
    assert [r["id"] for r in read_lines(tmp_path / "out" / "review.jsonl")] == ["bunny", "shapes", "refused"]
    clean_out, _ = clean_run
    assert final_samples(tmp_path / "out") == final_samples(clean_out)
    main(argv)  # a third run has nothing left to do
    assert len(read_lines(tmp_path / "out" / "refine.jsonl")) == 3
