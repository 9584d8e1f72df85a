"""VideoRefer-Bench-Q: official answer parsing, scoring against hand-computed accuracies, prompt, loading, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.bench_q import build_bench_q_prompt, load_bench_q, parse_answer, parse_ground_truth, score, score_files

REPO = Path(__file__).resolve().parents[1]

# (model output, letter the official eval_videorefer_bench_q.py reads). Real answer styles of chat models, including
# the ones where the official rule reads something surprising: we must reproduce it, not improve on it.
ANSWER_STYLES = [
    ("A", "A"),
    ("B.", "B"),
    ("(C)", "C"),
    ("(D) A watch", "D"),
    ("(A) A helmet.", "A"),
    ("C) Sunglasses", "C"),
    ("The answer is (B).", "B"),  # (X) anywhere wins
    ("The answer is B) the dog", "B"),  # then X) anywhere
    ("Option (C) is correct because (A) is wrong", "C"),  # the first (X)
    ("B. The red car", "B"),
    ("B (the red car)", "B"),  # "(the" is not (X): falls back to the first character
    ("...D", "D"),  # periods are removed before the fallback
    ("  A", "A"),
    ("b", "b"),  # lower case is compared case-insensitively
    ("(b) the cat", "("),  # official regexes are capital-only: lower-case "(b)" is read as "("
    ("Answer: D", "A"),  # official fallback is the first character, so this reads "A"
    ("The object is a dog", "T"),
    ("**B**", "*"),
    ("", None),  # the official script crashes here; we count it wrong
    ("1", "1"),
]


@pytest.mark.parametrize("pred, letter", ANSWER_STYLES)
def test_parse_answer_follows_official_rules(pred: str, letter: str | None) -> None:
    assert parse_answer(pred) == letter


def test_parse_ground_truth() -> None:
    assert parse_ground_truth("(A) A helmet") == "A"
    assert parse_ground_truth("(E) None of the above (really)") == "E"
    assert parse_ground_truth("B") == "B"  # no (X): the whole string, as officially


def _rec(type_: str, answer: str, pred: str, id_: int) -> dict:
    return {"id": id_, "video": f"v{id_}", "Answer": answer, "pred": pred, "type": type_}


def test_score_matches_hand_computed_accuracies() -> None:
    records = [
        # Basic: 2 of 3 right
        _rec("Basic Questions", "(A) x", "(A) x", 0),
        _rec("Basic Questions", "(B) y", "b", 1),  # case-insensitive
        _rec("Basic Questions", "(C) z", "Answer: C", 2),  # reads "A": wrong
        # Sequential: 1 of 2
        _rec("Sequential Questions", "(D) w", "D.", 3),
        _rec("Sequential Questions", "(A) w", "", 4),  # empty: wrong, no crash
        # Future: 0 of 1
        _rec("Future Predictions", "(B) q", "(C) q", 5),
    ]
    result = score(records)
    assert result["Basic Questions"] == (2, 3)
    assert result["Sequential Questions"] == (1, 2)
    assert result["Future Predictions"] == (0, 1)
    assert result["overall"] == (3, 6)  # micro-average over items, not the mean of the type accuracies


def test_score_rejects_records_without_official_fields() -> None:
    with pytest.raises(ValueError, match=r"id=7.*\['pred'\]"):
        score([{"id": 7, "Answer": "(A) x", "type": "Basic Questions"}])


def _item(**overrides: object) -> dict:
    item = {
        "id": 0,
        "video": "DAVIS/JPEGImages/480p/aerobatics",
        "Question": "What is <object3><region> not wearing?",
        "type": "Basic Questions",
        "options": ["(A) A helmet", "(B) A hat", "(C) Sunglasses", "(D) A watch"],
        "Answer": "(A) A helmet",
        "frame_idx": "57",
        "annotation": [{"0": {"segmentation": None}, "57": {"segmentation": {"size": [4, 4], "counts": "0@0"}}}],
    }
    item.update(overrides)
    return item


def test_prompt_is_exactly_official() -> None:
    prompt = build_bench_q_prompt(_item())
    # Built by hand from inference_videorefer_q_bench.py: Question with [<region>] + ' ' + ' '.join(options)
    # + ". Answer with the option's letter from the given choices directly."
    assert prompt == (
        "What is <object3>[<region>] not wearing? (A) A helmet (B) A hat (C) Sunglasses (D) A watch. "
        "Answer with the option's letter from the given choices directly."
    )
    two = _item(Question="Is <object0><region> left of <object1><region>?", options=["(A) Yes", "(B) No"])
    assert build_bench_q_prompt(two).startswith("Is <object0>[<region>] left of <object1>[<region>]? (A) Yes (B) No.")


def test_load_validates_items_and_names_them(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text(json.dumps([_item(), _item(id=1, options=[])]))
    with pytest.raises(ValueError, match=r"id=1.*options"):
        load_bench_q(path)
    path.write_text(json.dumps([_item(), {k: v for k, v in _item(id=5).items() if k != "Answer"}]))
    with pytest.raises(ValueError, match=r"item #1 \(id=5\).*\['Answer'\]"):
        load_bench_q(path)
    path.write_text(json.dumps([_item(), _item(id=0)]))
    with pytest.raises(ValueError, match="duplicate id"):
        load_bench_q(path)
    path.write_text(json.dumps([_item(annotation=[{"x": {"segmentation": None}}])]))
    with pytest.raises(ValueError, match="frame key 'x'"):
        load_bench_q(path)
    path.write_text(json.dumps([_item(), _item(id=1)]))
    assert [i["id"] for i in load_bench_q(path)] == [0, 1]


def test_score_cli_merges_shards_and_ends_with_overall(tmp_path: Path) -> None:
    records = [_rec("Basic Questions", "(A) x", "A", 0), _rec("Basic Questions", "(A) x", "B", 1),
               _rec("Reasoning Questions", "(C) x", "(C)", 2)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    (tmp_path / "b.jsonl").write_text(json.dumps(records[2]) + "\n")
    out = subprocess.run([sys.executable, "-m", "bench.bench_q", "score", str(tmp_path / "a.jsonl"),
                          str(tmp_path / "b.jsonl")], cwd=REPO, capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[-1] == "overall: 66.7"  # 2 of 3
    basic = next(line for line in lines if line.startswith("Basic Questions"))
    assert basic.split()[2:6] == ["2", "1", "50.0", "75.4"]  # n, right, ours, published single-frame
    assert "Reasoning Questions" in out and "89.4" in out
    assert score_files([str(tmp_path / "a.jsonl")]).splitlines()[-1] == "overall: 50.0"


def test_each_family_is_asked_its_official_question() -> None:
    from videorefer import VideoReferProcessor, VideoReferVL3Processor

    item = _item()
    # VL3, by hand from videorefer_videollama3/evaluation/infer_videorefer_q.py: Question (plain <region>: VL3's
    # processor adds its own brackets) + ' ' + ' '.join(options) + the same instruction.
    assert build_bench_q_prompt(item, VideoReferVL3Processor.bench_protocol) == (
        "What is <object3><region> not wearing? (A) A helmet (B) A hat (C) Sunglasses (D) A watch. "
        "Answer with the option's letter from the given choices directly."
    )
    assert build_bench_q_prompt(item, VideoReferProcessor.bench_protocol) == build_bench_q_prompt(item)
    assert "[<region>]" in build_bench_q_prompt(item)
