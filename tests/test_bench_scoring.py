"""Scores that cannot mislead: predictions of different runs are refused, missing items and shards are named,
duplicates reported, unparsable answers counted, and score files say what they score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_d, bench_q

RUN = {"model": "tiny-vl3", "protocol": "VideoRefer-VL3", "mode": "single", "num_frames": 16}


def write_items(path: Path, n: int) -> Path:
    path.write_text(json.dumps([{"id": i} for i in range(n)]))
    return path


def write_preds(path: Path, preds: dict[int, str], question_file: Path, **run) -> str:
    records = [{"id": i, "video": "v.mp4", "Answer": "(A) yes", "type": "Basic Questions", "pred": pred,
                **{**RUN, **run}, "question_file": str(question_file)} for i, pred in preds.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_mixed_modes_are_refused_naming_the_files(tmp_path):
    items = write_items(tmp_path / "bench.json", 4)
    single = write_preds(tmp_path / "single.jsonl", {0: "(A)", 1: "(A)"}, items)
    multi = write_preds(tmp_path / "multi.jsonl", {2: "(A)", 3: "(A)"}, items, mode="multi")
    with pytest.raises(ValueError, match=r'mode="multi" in .*multi.jsonl; mode="single" in .*single.jsonl'):
        bench_q.score_files([single, multi])
    other_model = write_preds(tmp_path / "other.jsonl", {2: "(A)", 3: "(A)"}, items, model="another")
    with pytest.raises(ValueError, match="different runs.*model="):
        bench_q.score_files([single, other_model])
    with pytest.raises(SystemExit, match="error: these predictions come from different runs"):
        bench_q.main(["score", single, multi])


def test_one_shard_of_two_names_the_missing_items(tmp_path):
    items = write_items(tmp_path / "bench.json", 4)
    shard0 = write_preds(tmp_path / "q.shard0of2.jsonl", {0: "(A)", 1: "(B)"}, items)
    table = bench_q.score_files([shard0], output=str(tmp_path / "score.json"))
    assert "INCOMPLETE shard set: q.shard1of2 missing" in table
    assert "INCOMPLETE: 2 of 4 benchmark items have no result: ids 2, 3" in table
    assert table.splitlines()[-1] == "overall: 50.0"
    saved = json.loads((tmp_path / "score.json").read_text())
    assert saved["complete"] is False and saved["missing"] == ["2", "3"] and saved["expected"] == 4
    assert (saved["model"], saved["mode"], saved["protocol"]) == ("tiny-vl3", "single", "VideoRefer-VL3")
    assert saved["judge"] == bench_q.JUDGE and saved["accuracy"]["overall"]["total"] == 2
    shard1 = write_preds(tmp_path / "q.shard1of2.jsonl", {2: "(A)", 3: "(A)"}, items)
    table = bench_q.score_files([shard0, shard1])
    assert "INCOMPLETE" not in table and "WARNING" not in table and table.splitlines()[-1] == "overall: 75.0"


def test_unparsable_answers_and_duplicates_are_counted(tmp_path):
    items = write_items(tmp_path / "bench.json", 5)
    first = write_preds(tmp_path / "a.jsonl", {0: "(A) yes", 1: "B.", 2: "The rabbit", 3: ""}, items)
    again = write_preds(tmp_path / "b.jsonl", {3: "A", 4: "I cannot tell"}, items)
    table = bench_q.score_files([first, again])
    assert "unparsable answers: 2 of 5" in table  # "The rabbit" and "I cannot tell"; the empty answer was redone
    assert "1 id(s) have more than one result (the last one is scored): 3" in table
    assert "model: tiny-vl3" in table and "protocol: VideoRefer-VL3" in table
    # The official rule still scores them by their first character: "I", "T" are wrong; 0 and 3 are right.
    assert table.splitlines()[-1] == "overall: 40.0"


def test_bench_d_scores_name_model_and_judge_and_refuse_mixed_runs(tmp_path):
    items = write_items(tmp_path / "bench_d.json", 3)
    scores = {"Subject Correspondence": 4, "Appearance Description": 3, "Temporal Description": 2,
              "Hallucination Detection": 1}

    def record(i: int, **run) -> dict:
        return {"id": i, "caption": "c", "pred": "p", **{**RUN, **run}, "question_file": str(items),
                "judge_model": "local-test-judge", "scores": scores, **scores}

    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(record(i)) + "\n" for i in (0, 1)))
    table = bench_d.score_files([str(path)], output=str(tmp_path / "d.json"))
    assert "model: tiny-vl3; mode: single; protocol: VideoRefer-VL3; judge: local-test-judge" in table
    assert "INCOMPLETE: 1 of 3 benchmark items have no result: ids 2" in table
    assert table.splitlines()[-1] == "average: 2.50"
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["judge"] == "local-test-judge" and saved["missing"] == ["2"] and saved["average"] == 2.5
    path.write_text("".join(json.dumps(record(i, mode=mode)) + "\n" for i, mode in ((0, "single"), (1, "multi"))))
    with pytest.raises(ValueError, match="different runs"):
        bench_d.score_files([str(path)])


def test_runner_progress_has_an_eta(tmp_path, capsys):
    from bench.common import _duration, run_resumable

    items = [{"id": i, "video": "v.mp4"} for i in range(10)]
    run_resumable(items, tmp_path / "out.jsonl", lambda item: {"id": item["id"], "pred": "A"}, label="t")
    out = capsys.readouterr().out
    assert "[t] 10/10 (" in out and "items/s, ETA 0s)" in out
    assert (_duration(3725), _duration(65), _duration(9.4)) == ("1h02m", "1m05s", "9s")
