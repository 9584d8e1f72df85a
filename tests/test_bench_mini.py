"""End to end: the mini benchmark on a random tiny model of each family (real runners, real model path, local HTTP
test judge), each family asked with its own official prompts and frames."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import re

import numpy as np
import pytest

from bench import bench_d, bench_q
from bench.common import VideoReferAnswerFn, annotation_to_model_objects
from videorefer.data.jsonl import read_jsonl
from bench.judge import DIMENSIONS, JudgeClient
from bench.local_judge import local_judge, overlap_scores
from bench.mini import main as mini_main

OFFICIAL_IO = Path(__file__).parent / "fixtures" / "official-tiny" / "io.json"
VIDEOS = 1  # 1 x 5 + 4 Bench-Q items, 1 + 2 Bench-D items
BENCH_Q_SUFFIX = ". Answer with the option's letter from the given choices directly."
# Each family's official protocol, written from its evaluation scripts (independently of videorefer.bench_protocol):
# VideoRefer-7B (inference_videorefer_q_bench.py / _d_bench.py): 8 frames uniformly, `[<region>]`, its describe
# question; VL3 (infer_videorefer_q.py / infer_videorefer_d.py): load_video(fps=1 | 4, max_frames=768), the
# question's plain `<region>`, "Please describe in detail the marked object <region> in the video.\n<video>".
OFFICIAL = {
    "v1": {"region": "[<region>]", "q_frames": (8, None), "d_frames": (8, None),
           "describe": "Please give a detailed description of the highlighted object [<region>] in the video."},
    "vl3": {"region": "<region>", "q_frames": (768, 1.0), "d_frames": (768, 4.0),
            "describe": "Please describe in detail the marked object <region> in the video.\n<video>"},
}


@pytest.fixture(scope="module", params=["v1", "vl3"])
def mini_run(request, tmp_path_factory):
    """Run ``python -m bench.mini OUT --tiny FAMILY`` once, recording every question the model was asked (what it
    saw: text, masks, the decoded frames and the prompt its ids decode to).

    `VideoRefer.prepare` is where every question enters the model (the processor itself is skipped for follow-ups
    whose visual tokens are cached).
    """
    from videorefer import VideoRefer

    family = request.param
    out = tmp_path_factory.mktemp(f"mini-{family}")
    calls: list[dict] = []
    original = VideoRefer.prepare

    def spy(self, video, regions, question, history=None, num_frames=None, allow_empty_masks=False):
        inputs = original(self, video, regions, question, history, num_frames, allow_empty_masks)
        prompt = self.processor.tokenizer.decode([i for i in inputs["input_ids"][0].tolist() if i >= 0])
        calls.append({"text": question, "frames": [sorted(obj) for obj in regions], "num_frames": num_frames,
                      "prompt": prompt, "allow_empty_masks": allow_empty_masks,
                      "sampled": list(video.frame_indices), "timestamps": video.timestamps})
        return inputs

    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(VideoRefer, "prepare", spy)
        mini_main([str(out), "--tiny", family, "--videos", str(VIDEOS)])
    return family, out, stdout.getvalue(), calls


def _blocks(text: str) -> list[list[str]]:
    return [block.splitlines() for block in text.split("\n\n")]


def test_prints_both_tables_for_both_modes(mini_run):
    _family, _out, printed, _calls = mini_run
    blocks = _blocks(printed)
    q_tables = [b for b in blocks if b and b[0].startswith("VideoRefer-Bench-Q (mode:")]
    d_tables = [b for b in blocks if b and b[0].startswith("VideoRefer-Bench-D (")]
    family, protocol = _family, {"v1": "VideoRefer-7B", "vl3": "VideoRefer-VL3"}[_family]
    assert [b[0] for b in q_tables] == [
        f"VideoRefer-Bench-Q (mode: {mode}; model: tiny-{family}; protocol: {protocol}; judge: {bench_q.JUDGE})"
        for mode in ("single", "multi")]
    assert len(d_tables) == 2
    for table in q_tables:
        assert not any(line.startswith("WARNING") for line in table)  # every item of the benchmark was answered
        assert table[-1].startswith("overall: ") and float(table[-1].split(": ")[1]) >= 0
        assert any(line.startswith("overall") and line.split()[1] == str(5 * VIDEOS + 4) for line in table)
        for kind in bench_q.TYPES:  # the example clip adds the type the synthetic task lacks (Reasoning)
            assert any(line.startswith(kind) for line in table)
    for table, mode in zip(d_tables, ["single", "multi"]):
        assert table[0] == (f"VideoRefer-Bench-D ({VIDEOS + 2} items scored); model: tiny-{family}; mode: {mode}; "
                            f"protocol: {protocol}; judge: local-test-judge")
        assert any(line.startswith(f"ours, {mode} (TEST judge)") for line in table)
        assert table[-1].startswith("average: ")
        # the published rows of both families (official benchmark README)
        assert [line.split()[-1] for line in table if line.startswith(("VideoRefer-7B multi", "VideoRefer-VL3-7B"))] \
            == ["3.46", "3.72"]
    for table in q_tables:  # the published overall rows of both families, in the header's column order
        assert table[1].split()[-4:] == ["7B-single", "7B-multi", "VL3-7B", "VL3-2B"]
        assert [line.split()[-4:] for line in table if line.startswith("overall ")] == [["71.9", "72.1", "80.1", "77.7"]]
    assert "TEST judge" in printed and "0 item(s) had an empty or null mask" in printed


def test_writes_official_files_and_predictions(mini_run):
    family, out, _printed, _calls = mini_run
    q_items = bench_q.load_bench_q(out / "VideoRefer-Bench-Q.json")  # the official loaders validate the format
    d_items = bench_d.load_bench_d(out / "VideoRefer-Bench-D.json")
    assert len(q_items) == 5 * VIDEOS + 4 and len(d_items) == VIDEOS + 2
    assert set(q_items[0]) == set(bench_q.REQUIRED_FIELDS) and set(d_items[0]) == set(bench_d.REQUIRED_FIELDS)
    assert [item["id"] for item in q_items] == list(range(len(q_items)))
    assert (out / q_items[-1]["video"]).is_file() and q_items[-1]["video"] == "examples/bigbuckbunny.mp4"
    for mode in ("single", "multi"):
        preds = read_jsonl(out / f"preds_q_{mode}.jsonl")
        assert [p["id"] for p in preds] == [item["id"] for item in q_items]
        frames, fps = OFFICIAL[family]["q_frames"]
        assert all(p["mode"] == mode and p["num_frames"] == frames and p.get("fps") == fps
                   and isinstance(p["pred"], str) for p in preds)
        scores = read_jsonl(out / f"scores_d_{mode}.jsonl")
        assert sorted(s["id"] for s in scores) == [item["id"] for item in d_items]
        assert all(s["judge_model"] == "local-test-judge" and set(s["scores"]) == set(DIMENSIONS) for s in scores)
        # The judge's scores are the overlap of the item's caption and the model's prediction, sent over HTTP.
        assert all(s["scores"] == overlap_scores(s["caption"], s["pred"]) for s in scores)


def test_model_saw_the_official_prompt_and_masks(mini_run):
    family, out, _printed, calls = mini_run
    official = OFFICIAL[family]
    q_items = json.loads((out / "VideoRefer-Bench-Q.json").read_text())
    d_items = json.loads((out / "VideoRefer-Bench-D.json").read_text())
    n_q, n_d = len(q_items), len(d_items)
    assert len(calls) == 2 * n_q + 2 * n_d  # single Q, multi Q, then single D, multi D
    for k, item in enumerate(q_items):
        question = (item["Question"].replace("<region>", official["region"]) + " " + " ".join(item["options"])
                    + BENCH_Q_SUFFIX)
        single, multi = calls[k], calls[n_q + k]
        assert single["text"] == multi["text"] == question
        assert single["frames"] == [[int(item["frame_idx"])]] * len(item["annotation"])  # single: frame_idx only
        assert multi["frames"] == [sorted(int(f) for f in obj) for obj in item["annotation"]]
        assert not single["allow_empty_masks"]
    for k in range(n_d):
        assert calls[2 * n_q + k]["text"] == calls[2 * n_q + n_d + k]["text"] == official["describe"]
    assert calls[1]["text"].startswith("What shape is <object0>" + official["region"] + "? (A) ")
    # The frames: the example clip (a 24 fps file) is the last video of both files.
    example_q, example_d = calls[n_q - 1], calls[2 * n_q + n_d - 1]
    for call, (frames, fps) in ((example_q, official["q_frames"]), (example_d, official["d_frames"])):
        if fps is None:
            assert len(call["sampled"]) == frames and call["timestamps"] is None
        else:
            assert len(call["sampled"]) <= frames and np.allclose(np.diff(call["timestamps"]), 1 / fps, atol=0.05)
    if family == "v1":
        io_official = json.loads(OFFICIAL_IO.read_text())  # the prompt the official code built for its question
        # The ids the model got decode to the official prompt (the video placeholder id aside).
        single = calls[0]
        assert single["prompt"] == io_official["prompt"].replace(io_official["question"], single["text"]).replace(
            "<video>", "")
    else:
        # VL3's chat format (fixture official-vl3-tiny/io.json): no system turn; in Bench-Q the video comes first
        # (the question has no <video>), in Bench-D after the text (the question ends with it).
        frames = r"Time \d+\.\ds:(<image>)+(,Time \d+\.\ds:(<image>)+)*\n"
        user, end = re.escape("<|im_start|>user\n"), re.escape("<|im_end|>\n<|im_start|>assistant\n")

        def regions(text: str) -> str:
            return re.escape(text).replace(re.escape("<region>"), r"\[(<REGION>)+\]")

        assert re.fullmatch(user + frames + regions(example_q["text"]) + end, example_q["prompt"]), example_q["prompt"]
        describe = official["describe"].split("\n")[0]
        assert re.fullmatch(user + regions(describe) + frames + end, example_d["prompt"]), example_d["prompt"]


def test_rerun_resumes_and_other_settings_are_refused(mini_run, capsys):
    family, out, _printed, _calls = mini_run
    before = (out / "preds_q_single.jsonl").read_text()
    mini_main([str(out), "--tiny", family, "--videos", str(VIDEOS), "--modes", "single"])
    printed = capsys.readouterr().out
    assert f"{5 * VIDEOS + 4} already in" in printed and "0 to judge" in printed
    assert (out / "preds_q_single.jsonl").read_text() == before
    with pytest.raises(SystemExit, match="use a new OUT_DIR"):
        mini_main([str(out), "--tiny", family, "--videos", str(VIDEOS + 1)])
    with pytest.raises(SystemExit, match="use a new OUT_DIR"):
        mini_main([str(out), "--tiny", "v1" if family == "vl3" else "vl3", "--videos", str(VIDEOS)])


def test_null_mask_is_fed_as_zero_mask(mini_run, tiny_videorefer):
    """VideoRefer-7B's official behaviour: a null segmentation at frame_idx becomes an all-zero mask (zero pooled
    feature), on a video of the mini benchmark (whichever family's run wrote it). VL3's official evaluation has no such
    case: it decodes the segmentation at frame_idx unconditionally."""
    _family, out, _printed, _calls = mini_run
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
