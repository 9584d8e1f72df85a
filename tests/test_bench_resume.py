"""Resumable runs: JSONL durability, a killed runner loses no finished item and repeats none, sharding.

The model is replaced by a test double (``--answer-fn``): the runner, not the model, is under test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import restrict_annotation
from videorefer.data.jsonl import JsonlWriter, read_jsonl
from videorefer.data.sharding import parse_shard, shard_items, shard_output_path

REPO = Path(__file__).resolve().parents[1]

# The test double: logs every call, and SIGKILLs its own process when asked to (a crash with no cleanup at all).
FAKE_MODEL = '''
import json, os, signal

def answer(video, annotation, question, mode, num_frames):
    calls = os.environ["FAKE_CALLS"]
    with open(calls, "a") as f:
        f.write(json.dumps({"video": video, "frames": [sorted(o) for o in annotation], "question": question,
                            "mode": mode, "num_frames": num_frames}) + "\\n")
    n_calls = sum(1 for _ in open(calls))
    if n_calls == int(os.environ.get("FAKE_KILL_AT", "0")):
        os.kill(os.getpid(), signal.SIGKILL)
    return "(" + "ABCD"[n_calls % 4] + ") answer"


def answer_vl3(video, annotation, question, mode, num_frames, fps=None):
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({"video": video, "frames": [sorted(o) for o in annotation], "question": question,
                            "mode": mode, "num_frames": num_frames, "fps": fps}) + "\\n")
    return "(A) answer"


from videorefer.bench_protocol import VIDEOREFER_VL3_PROTOCOL  # an answer function for a VL3 model
answer_vl3.protocol = VIDEOREFER_VL3_PROTOCOL
'''


def _make_bench(root: Path, n: int) -> None:
    """A Bench-Q folder in the official layout: DAVIS-style frame folders and the JSON list."""
    items = []
    for i in range(n):
        video = f"DAVIS/JPEGImages/480p/vid{i}"
        (root / video).mkdir(parents=True)
        (root / video / "00000.jpg").write_bytes(b"")
        items.append({
            "id": i, "video": video, "Question": f"What does <object{i}><region> do?", "type": "Basic Questions",
            "options": ["(A) run", "(B) sit"], "Answer": "(A) run", "frame_idx": "3",
            "annotation": [{"0": {"segmentation": None}, "3": {"segmentation": None}, "6": {"segmentation": None}}],
        })
    (root / "VideoRefer-Bench-Q.json").write_text(json.dumps(items))


def _run(tmp_path: Path, output: Path, *extra: str, kill_at: int = 0, module: str = "bench.bench_q",
         answer_fn: str = "fake_model:answer") -> subprocess.CompletedProcess:
    (tmp_path / "fake_model.py").write_text(FAKE_MODEL)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}", FAKE_CALLS=str(tmp_path / "calls.jsonl"),
               FAKE_KILL_AT=str(kill_at), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", module, "run", "--bench-dir", str(tmp_path / "bench"),
           "--output", str(output), "--answer-fn", answer_fn, *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def test_killed_run_resumes_without_losing_or_repeating_items(tmp_path: Path) -> None:
    _make_bench(tmp_path / "bench", 7)
    output = tmp_path / "preds.jsonl"

    first = _run(tmp_path, output, kill_at=4)  # items 0-2 finish, the process dies inside item 3
    assert first.returncode == -9, first.stderr
    finished = [r["id"] for r in read_jsonl(output)]
    assert finished == [0, 1, 2]
    assert "num_frames = 8 (official eval default" in first.stdout  # the default is announced

    second = _run(tmp_path, output)
    assert second.returncode == 0, second.stderr
    assert "3 already in" in second.stdout
    records = read_jsonl(output)
    assert sorted(r["id"] for r in records) == list(range(7))  # nothing lost, each id exactly once
    videos_called = [Path(c["video"]).name for c in _calls(tmp_path)]
    # run 1 called vid0..vid3 (vid3 was killed unfinished), run 2 redid only vid3..vid6
    assert videos_called == ["vid0", "vid1", "vid2", "vid3", "vid3", "vid4", "vid5", "vid6"]
    assert set(records[0]) >= {"video", "Answer", "pred", "type"}  # the official fields the scorer reads

    third = _run(tmp_path, output)  # a finished run is a no-op
    assert third.returncode == 0 and "0 to run" in third.stdout
    assert len(_calls(tmp_path)) == 8


def test_runner_passes_official_prompt_mode_and_frames(tmp_path: Path) -> None:
    _make_bench(tmp_path / "bench", 2)
    result = _run(tmp_path, tmp_path / "single.jsonl")
    assert result.returncode == 0, result.stderr
    call = _calls(tmp_path)[0]
    assert call["mode"] == "single" and call["num_frames"] == 8
    assert call["frames"] == [["3"]]  # single mode: only the mask at frame_idx, as the official scripts
    assert call["question"].startswith("What does <object0>[<region>] do? (A) run (B) sit. Answer with")
    assert Path(call["video"]) == tmp_path / "bench" / "DAVIS/JPEGImages/480p/vid0"

    result = _run(tmp_path, tmp_path / "multi.jsonl", "--mode", "multi", "--num-frames", "16")
    assert result.returncode == 0, result.stderr
    call = _calls(tmp_path)[-1]
    assert call["mode"] == "multi" and call["num_frames"] == 16 and call["frames"] == [["0", "3", "6"]]


def test_shards_are_disjoint_and_cover_everything(tmp_path: Path) -> None:
    _make_bench(tmp_path / "bench", 5)
    for i in range(2):
        assert _run(tmp_path, tmp_path / "p.jsonl", "--shard", f"{i}/2").returncode == 0
    ids = [[r["id"] for r in read_jsonl(tmp_path / f"p.shard{i}of2.jsonl")] for i in range(2)]
    assert ids == [[0, 1], [2, 3, 4]]
    scored = subprocess.run([sys.executable, "-m", "bench.bench_q", "score", str(tmp_path / "p.shard0of2.jsonl"),
                             str(tmp_path / "p.shard1of2.jsonl")], cwd=REPO, capture_output=True, text=True)
    assert scored.returncode == 0, scored.stderr
    overall_row = next(line for line in scored.stdout.splitlines() if line.startswith("overall "))
    assert overall_row.split()[1] == "5"  # both shards merged: 5 items


def test_missing_videos_fail_before_any_inference(tmp_path: Path) -> None:
    _make_bench(tmp_path / "bench", 3)
    (tmp_path / "bench/DAVIS/JPEGImages/480p/vid1/00000.jpg").unlink()
    (tmp_path / "bench/DAVIS/JPEGImages/480p/vid1").rmdir()
    result = _run(tmp_path, tmp_path / "p.jsonl")
    assert result.returncode != 0 and "1 video(s) not found" in result.stderr and "vid1" in result.stderr
    assert not (tmp_path / "calls.jsonl").exists()


def test_truncated_last_line_is_ignored_then_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 0, "pred": "A"}\n{"id": 1, "pr')  # killed in the middle of writing id 1
    assert [r["id"] for r in read_jsonl(path)] == [0]
    with JsonlWriter(path) as writer:
        writer.write({"id": 1, "pred": "B"})
    assert path.read_text() == '{"id": 0, "pred": "A"}\n{"id": 1, "pred": "B"}\n'


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 0}\nnot json\n{"id": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(path)


def test_shard_helpers() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)
    items = list(range(10))
    parts = [shard_items(items, i, 3) for i in range(3)]
    assert sum(parts, []) == items and all(parts)
    assert shard_items([1, 2], 2, 3) == [2] and shard_items([1], 0, 3) == []  # more shards than items: no crash
    assert shard_output_path("out/p.jsonl", (1, 4)) == Path("out/p.shard1of4.jsonl")


def test_single_mode_needs_the_mask_at_frame_idx() -> None:
    item = {"id": 9, "frame_idx": 5, "annotation": [{"5": {"segmentation": 1}}, {"2": {"segmentation": 2}}]}
    with pytest.raises(ValueError, match=r"id=9.*object 1.*frame_idx=5"):
        restrict_annotation(item, "single")
    assert restrict_annotation(item, "multi") is item["annotation"]


def test_bench_d_runner_uses_official_layout_prompt_and_resumes(tmp_path: Path) -> None:
    videos = tmp_path / "bench" / "Panda-70M-part"  # the default video folder of the official layout
    videos.mkdir(parents=True)
    items = []
    for i in range(4):
        (videos / f"clip{i}.mp4").write_bytes(b"")
        items.append({"id": i, "video": f"clip{i}.mp4", "caption": f"a cat number {i}", "frame_idx": "2",
                      "annotation": [{"2": {"segmentation": None}, "9": {"segmentation": None}}]})
    (tmp_path / "bench" / "VideoRefer-Bench-D.json").write_text(json.dumps(items))
    output = tmp_path / "d.jsonl"
    assert _run(tmp_path, output, kill_at=3, module="bench.bench_d").returncode == -9
    assert [r["id"] for r in read_jsonl(output)] == [0, 1]
    mixed = _run(tmp_path, output, "--mode", "multi", module="bench.bench_d")  # other settings: refused
    assert mixed.returncode != 0 and "mode=['single']" in mixed.stderr
    result = _run(tmp_path, output, module="bench.bench_d")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(output)
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    assert set(records[0]) >= {"video", "caption", "pred"}  # what the judge reads
    calls = _calls(tmp_path)
    assert [Path(c["video"]).stem for c in calls] == ["clip0", "clip1", "clip2", "clip2", "clip3"]
    assert calls[0]["question"] == ("Please give a detailed description of the highlighted object [<region>] "
                                    "in the video.")
    assert all(c["frames"] == [["2"]] and c["mode"] == "single" for c in calls)


def test_a_vl3_answer_fn_gets_vl3_questions_and_frames(tmp_path: Path) -> None:
    """An answer function whose `protocol` is VL3's is asked VL3's official Bench-Q / Bench-D questions at 1 / 4 fps
    (at most 768 frames), as written in the official infer_videorefer_q.py / infer_videorefer_d.py."""
    _make_bench(tmp_path / "bench", 1)
    result = _run(tmp_path, tmp_path / "q.jsonl", answer_fn="fake_model:answer_vl3")
    assert result.returncode == 0, result.stderr
    assert "num_frames = 768 (official eval default of VideoRefer-VL3: 1 fps, at most 768 frames)" in result.stdout
    call = _calls(tmp_path)[-1]
    assert call["question"] == ("What does <object0><region> do? (A) run (B) sit. Answer with the option's letter "
                                "from the given choices directly.")
    assert (call["num_frames"], call["fps"], call["frames"]) == (768, 1.0, [["3"]])
    assert read_jsonl(tmp_path / "q.jsonl")[0]["fps"] == 1.0
    capped = _run(tmp_path, tmp_path / "q.jsonl", "--num-frames", "64", answer_fn="fake_model:answer_vl3")
    assert capped.returncode != 0 and "num_frames=['768']" in capped.stderr  # no mixing in one file

    items = [{"id": 0, "video": "DAVIS/JPEGImages/480p/vid0", "caption": "a cat", "frame_idx": "3",
              "annotation": [{"3": {"segmentation": None}}]}]
    (tmp_path / "bench" / "VideoRefer-Bench-D.json").write_text(json.dumps(items))
    result = _run(tmp_path, tmp_path / "d.jsonl", "--num-frames", "64", module="bench.bench_d",
                  answer_fn="fake_model:answer_vl3")
    assert result.returncode == 0, result.stderr
    call = _calls(tmp_path)[-1]
    assert call["question"] == "Please describe in detail the marked object <region> in the video.\n<video>"
    assert (call["num_frames"], call["fps"]) == (64, 4.0)  # --num-frames caps the official 4 fps sampling
