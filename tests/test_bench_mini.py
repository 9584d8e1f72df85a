"""End to end: the mini benchmark on the random tiny model (real runners, real model path, local HTTP test judge)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from bench import bench_d, bench_q
from bench.common import VideoReferAnswerFn, annotation_to_model_objects
from videorefer.data.jsonl import read_jsonl
from bench.judge import DIMENSIONS, JudgeClient
from bench.local_judge import local_judge, overlap_scores
from bench.mini import main as mini_main

OFFICIAL_IO = Path(__file__).parent / "fixtures" / "official-tiny" / "io.json"
VIDEOS = 2  # 2 x 5 + 4 Bench-Q items, 2 + 2 Bench-D items


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    """Run ``python -m bench.mini OUT --tiny`` once, recording every question the model was asked (what it saw).

    `VideoRefer.prepare` is where every question enters the model (the processor itself is skipped for follow-ups
    whose visual tokens are cached).
    """
    from videorefer import VideoRefer

    out = tmp_path_factory.mktemp("mini")
    calls: list[dict] = []
    original = VideoRefer.prepare

    def spy(self, video, regions, question, history=None, num_frames=None, allow_empty_masks=False):
        inputs = original(self, video, regions, question, history, num_frames, allow_empty_masks)
        prompt = self.processor.tokenizer.decode([i for i in inputs["input_ids"][0].tolist() if i >= 0])
        calls.append({"text": question, "frames": [sorted(obj) for obj in regions], "num_frames": num_frames,
                      "prompt": prompt, "allow_empty_masks": allow_empty_masks})
        return inputs

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(VideoRefer, "prepare", spy)
        mini_main([str(out), "--tiny", "--videos", str(VIDEOS)])
    return out, stdout.getvalue(), calls


def _blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n")]


def test_prints_both_tables_for_both_modes(mini_run):
    _out, printed, _calls = mini_run
    blocks = _blocks(printed)
    q_tables = [b for b in blocks if b and b[0].startswith("VideoRefer-Bench-Q (mode:")]
    d_tables = [b for b in blocks if b and b[0].startswith("VideoRefer-Bench-D (")]
    assert [b[0] for b in q_tables] == ["VideoRefer-Bench-Q (mode: single)", "VideoRefer-Bench-Q (mode: multi)"]
    assert len(d_tables) == 2
    for table in q_tables:
        assert table[-1].startswith("overall: ") and float(table[-1].split(": ")[1]) >= 0
        assert any(line.startswith("overall") and line.split()[1] == str(5 * VIDEOS + 4) for line in table)
        for kind in bench_q.TYPES:  # the example clip adds the type the synthetic task lacks (Reasoning)
            assert any(line.startswith(kind) for line in table)
    for table, mode in zip(d_tables, ["single", "multi"]):
        assert table[0] == f"VideoRefer-Bench-D ({VIDEOS + 2} items scored)"
        assert any(line.startswith(f"ours, {mode} (TEST judge)") for line in table)
        assert table[-1].startswith("average: ")
    assert "TEST judge" in printed and "0 item(s) had an empty or null mask" in printed


def test_writes_official_files_and_predictions(mini_run):
    out, _printed, _calls = mini_run
    q_items = bench_q.load_bench_q(out / "VideoRefer-Bench-Q.json")  # the official loaders validate the format
    d_items = bench_d.load_bench_d(out / "VideoRefer-Bench-D.json")
    assert len(q_items) == 5 * VIDEOS + 4 and len(d_items) == VIDEOS + 2
    assert set(q_items[0]) == set(bench_q.REQUIRED_FIELDS) and set(d_items[0]) == set(bench_d.REQUIRED_FIELDS)
    assert [item["id"] for item in q_items] == list(range(len(q_items)))
    assert (out / q_items[-1]["video"]).is_file() and q_items[-1]["video"] == "examples/bigbuckbunny.mp4"
    for mode in ("single", "multi"):
        preds = read_jsonl(out / f"preds_q_{mode}.jsonl")
        assert [p["id"] for p in preds] == [item["id"] for item in q_items]
        assert all(p["mode"] == mode and p["num_frames"] == 8 and isinstance(p["pred"], str) for p in preds)
        scores = read_jsonl(out / f"scores_d_{mode}.jsonl")
        assert sorted(s["id"] for s in scores) == [item["id"] for item in d_items]
        assert all(s["judge_model"] == "local-test-judge" and set(s["scores"]) == set(DIMENSIONS) for s in scores)
        # The judge's scores are the overlap of the item's caption and the model's prediction, sent over HTTP.
        assert all(s["scores"] == overlap_scores(s["caption"], s["pred"]) for s in scores)


def test_model_saw_the_official_prompt_and_masks(mini_run):
    out, _printed, calls = mini_run
    q_items = json.loads((out / "VideoRefer-Bench-Q.json").read_text())
    n_q, n_d = len(q_items), VIDEOS + 2
    assert len(calls) == 2 * n_q + 2 * n_d  # single Q, multi Q, then single D, multi D
    official = json.loads(OFFICIAL_IO.read_text())  # the prompt the official code built for its question
    for k, item in enumerate(q_items):
        # Written from the official inference_videorefer_q_bench.py, independently of bench_q.build_bench_q_prompt.
        question = (item["Question"].replace("<region>", "[<region>]") + " " + " ".join(item["options"])
                    + ". Answer with the option's letter from the given choices directly.")
        single, multi = calls[k], calls[n_q + k]
        assert single["text"] == multi["text"] == question
        # The ids the model got decode to the official prompt (the video placeholder id aside).
        assert single["prompt"] == official["prompt"].replace(official["question"], question).replace("<video>", "")
        assert single["frames"] == [[int(item["frame_idx"])]] * len(item["annotation"])  # single: frame_idx only
        assert multi["frames"] == [sorted(int(f) for f in obj) for obj in item["annotation"]]
        assert single["num_frames"] == 8 and not single["allow_empty_masks"]
    describe = calls[2 * n_q]
    assert describe["text"] == "Please give a detailed description of the highlighted object [<region>] in the video."
    assert calls[1]["text"].startswith("What shape is <object0>[<region>]? (A) ")


def test_rerun_resumes_and_other_settings_are_refused(mini_run, capsys):
    out, _printed, _calls = mini_run
    before = (out / "preds_q_single.jsonl").read_text()
    mini_main([str(out), "--tiny", "--videos", str(VIDEOS), "--modes", "single"])
    printed = capsys.readouterr().out
    assert f"{5 * VIDEOS + 4} already in" in printed and "0 to judge" in printed
    assert (out / "preds_q_single.jsonl").read_text() == before
    with pytest.raises(SystemExit, match="use a new OUT_DIR"):
        mini_main([str(out), "--tiny", "--videos", str(VIDEOS + 1)])


def test_null_mask_is_fed_as_zero_mask(mini_run, tiny_videorefer):
    """Official behaviour: a null segmentation at frame_idx becomes an all-zero mask (zero pooled feature)."""
    out, _printed, _calls = mini_run
    item = json.loads((out / "VideoRefer-Bench-D.json").read_text())[0]
    video = str(out / item["video"])
    annotation = [{"2": {"segmentation": None}, "3": item["annotation"][0]["3"]}]
    objects, empty = annotation_to_model_objects(annotation, 64, 64, 8)
    assert empty == 1 and sorted(objects[0]) == [2, 3]
    assert objects[0][2].shape == (64, 64) and not objects[0][2].any() and objects[0][3].any()
    with pytest.raises(ValueError, match="empty"):  # without the flag the processor refuses empty masks
        tiny_videorefer.ask(video, [objects[0]], bench_d.PROMPT, max_new_tokens=2)
    answer_fn = VideoReferAnswerFn(tiny_videorefer, max_new_tokens=2)
    pred = answer_fn(video, [{"2": {"segmentation": None}}], bench_d.PROMPT, "single", 8)
    assert isinstance(pred, str) and answer_fn.empty_mask_items == 1
    assert "1 item(s) had an empty or null mask" in answer_fn.summary()


def test_local_judge_over_http():
    caption = "A big grey rabbit stands up and stretches its arms."
    assert overlap_scores(caption, caption) == dict.fromkeys(DIMENSIONS, 5)
    assert overlap_scores(caption, "A flat brown rock.") == dict.fromkeys(DIMENSIONS, 0)
    with local_judge() as url:
        client = JudgeClient(url=url, model="local-test-judge", retries=1, backoff=0)
        verdict = client.judge(caption, "A grey rabbit stands.")
    expected = overlap_scores(caption, "A grey rabbit stands.")
    assert verdict["scores"] == expected and 0 < sum(expected.values()) < 20
    assert np.isclose(expected["Hallucination Detection"], 5)  # every predicted word is in the reference
