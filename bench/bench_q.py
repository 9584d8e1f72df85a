"""VideoRefer-Bench-Q: multiple-choice questions about objects in videos (runner + official scoring).

Usage::

    python -m bench.bench_q run --model PATH --bench-dir eval/VideoRefer-Bench-Q --output preds_q.jsonl \
        [--mode single|multi] [--num-frames N] [--shard 0/4] [--answer-fn module:function]
    python -m bench.bench_q score preds_q.jsonl [more shard files ...] [--question-file F] [--output score.json]

``score`` refuses predictions of different runs (model, protocol, mode, frames), names benchmark items without a
prediction (and missing shards), reports ids answered twice and counts the answers without an option letter.

Prompt, frames and answer parsing follow the official evaluation of the loaded model's family character for
character (``videorefer.bench_protocol``: VideoRefer-7B's ``inference_videorefer_q_bench.py`` /
``eval_videorefer_bench_q.py``; VideoRefer-VL3's ``infer_videorefer_q.py`` / ``eval_videorefer_q_bench.py``, whose
scoring rules are the same), so that numbers are comparable with the published ones.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.common import DEFAULT_PROTOCOL, AnswerFn, answer_items, load_bench_json, run_command, runner_parser
from bench.scoring import ScoredRun, read_run, write_score_file
from videorefer.bench_protocol import BENCH_Q_SUFFIX, BenchProtocol

QUESTION_FILE = "VideoRefer-Bench-Q.json"
REQUIRED_FIELDS = {
    "id": (int, str),
    "video": str,
    "Question": str,
    "type": str,
    "options": list,
    "Answer": str,
    "frame_idx": (int, str),
    "annotation": list,
}
ANSWER_SUFFIX = BENCH_Q_SUFFIX
JUDGE = "official Bench-Q letter matching"
TYPES = ["Basic Questions", "Sequential Questions", "Relationship Questions", "Reasoning Questions",
         "Future Predictions"]

# Published accuracies (%), single-frame mode (the mode both official evaluations use by default):
# * VideoRefer-7B: arXiv 2501.00599 Table 2 (its average, 71.9, is the single-frame average of Table 5); the same row
#   is in the official benchmark README (github.com/DAMO-NLP-SG/VideoRefer, benchmark/README.md at cbd4207).
# * VideoRefer-VideoLLaMA3-7B: the official benchmark README (same file; its fifth row is labelled "Reasoning
#   Questions" a second time, it is Future Predictions by position).
# * VideoRefer-VideoLLaMA3-2B: only the average is published (77.7, quoted in our issue 12 from the official model
#   card; not in the GitHub repository, not verified offline).
# VideoRefer-7B's multi-frame row is only partly published (Table 5: SQ, RQ and the average); we read it from a
# secondary source (an AI-written summary of the paper), so it is marked unverified.
PUBLISHED = {
    "VideoRefer-7B single": {"Basic Questions": 75.4, "Sequential Questions": 68.6, "Relationship Questions": 59.3,
                             "Reasoning Questions": 89.4, "Future Predictions": 78.1, "overall": 71.9},
    "VideoRefer-7B multi": {"Sequential Questions": 70.6, "Relationship Questions": 60.5, "overall": 72.1},
    "VL3-7B single": {"Basic Questions": 88.1, "Sequential Questions": 77.7, "Relationship Questions": 70.2,
                      "Reasoning Questions": 88.8, "Future Predictions": 79.8, "overall": 80.1},
    "VL3-2B single": {"overall": 77.7},
}
PUBLISHED_COLUMNS = {"VideoRefer-7B single": "7B-single", "VideoRefer-7B multi": "7B-multi",
                     "VL3-7B single": "VL3-7B", "VL3-2B single": "VL3-2B"}
PUBLISHED_NOTE = ("published (single-frame unless marked): VideoRefer-7B arXiv 2501.00599 Table 2, its multi-frame "
                  "SQ/RQ/average from Table 5 via a secondary source (unverified); VideoRefer-VideoLLaMA3-7B official "
                  "benchmark/README.md; -2B average from its model card (via issue 12)")


def load_bench_q(path: str | Path) -> list[dict]:
    """Load and validate the official ``VideoRefer-Bench-Q.json``."""
    items = load_bench_json(path, REQUIRED_FIELDS)
    for item in items:
        if not all(isinstance(option, str) for option in item["options"]) or not item["options"]:
            raise ValueError(f"{path}: item id={item['id']}: 'options' must be a non-empty list of strings")
        regions = item["Question"].count("<region>")
        if regions != len(item["annotation"]):
            # Not fatal: the official code does not check it either, but the model will see a mismatch.
            print(f"[bench_q] warning: item id={item['id']} has {regions} <region> tag(s) but "
                  f"{len(item['annotation'])} annotated object(s)", file=sys.stderr)
    return items


def build_bench_q_prompt(item: dict, protocol: BenchProtocol = DEFAULT_PROTOCOL) -> str:
    """The official prompt of ``protocol``'s family: the question (VideoRefer-7B: ``[<region>]``, VL3: ``<region>``),
    the options joined by spaces, then the instruction."""
    return protocol.bench_q_question(item["Question"], item["options"])


# ------------------------------------------------------------------------------------------------------- scoring
def parse_answer(pred: str) -> str | None:
    """The letter the official scorer reads from a prediction: first ``(X)``, then ``X)``, then the first character.

    As in the official script the two patterns only match capital letters, and the fallback is the first character
    once periods are removed (so "Answer: B" reads as "A"). We strip leading whitespace first (the official model
    output is already stripped) and return None for an empty prediction, where the official script crashes.
    """
    match = re.search(r"\(([A-Z])\)", pred) or re.search(r"([A-Z])\)", pred)
    if match:
        return match.group(1)
    rest = pred.replace(".", "").lstrip()
    return rest[0] if rest else None


def has_option_letter(pred: str) -> bool:
    """Whether a prediction names an option letter (A-H; Bench-Q items have at most 5 options): ``(X)``, ``X)``, or
    the letter standing alone at its start (``B``, ``B.``, ``B: ...``). Others are unparsable: the official rule
    still reads their first character (``I cannot tell`` is option I to it)."""
    text = pred.strip()
    return bool(re.search(r"\(([A-H])\)", text) or re.search(r"([A-H])\)", text)
                or re.match(r"[A-H](?![A-Za-z0-9])", text))


def parse_ground_truth(answer: str) -> str:
    """The letter of an official ``Answer`` such as ``"(A) A helmet"`` (the whole string if it has no ``(X)``)."""
    match = re.search(r"\(([A-Z])\)", answer)
    return match.group(1) if match else answer


def is_correct(record: dict) -> bool:
    """Official comparison: case-insensitive equality of the parsed letters."""
    letter = parse_answer(record["pred"])
    return letter is not None and letter.lower() == parse_ground_truth(record["Answer"]).lower()


def score(records: list[dict]) -> dict[str, tuple[int, int]]:
    """``{type: (correct, total)}`` plus ``"overall"`` (micro-average over all items, as the official script)."""
    for k, record in enumerate(records):
        missing = [name for name in ("Answer", "pred", "type") if name not in record]
        if missing:
            raise ValueError(f"prediction #{k} (id={record.get('id', '?')}) lacks field(s) {missing}")
    result: dict[str, tuple[int, int]] = {}
    for record in records:
        right, total = result.get(record["type"], (0, 0))
        result[record["type"]] = (right + is_correct(record), total + 1)
    result["overall"] = (sum(r for r, _ in result.values()), sum(t for _, t in result.values()))
    return result


def format_table(result: dict[str, tuple[int, int]], mode: str | None, run: ScoredRun | None = None,
                 unparsable: int | None = None) -> str:
    """Accuracy per type beside the published rows of both families, the run it scores and what is wrong with the
    set (missing items, duplicates, unparsable answers); the last line is ``overall: X``."""
    def cell(value: float | None) -> str:
        return f"{value:>10.1f}" if value is not None else f"{'-':>10}"

    types = [t for t in TYPES if t in result] + sorted(t for t in result if t not in TYPES and t != "overall")
    settings = run.settings if run else {}
    lines = [f"VideoRefer-Bench-Q (mode: {mode or 'unknown'}; model: {settings.get('model') or 'unknown'}; "
             f"protocol: {settings.get('protocol') or 'unknown'}; judge: {JUDGE})",
             f"{'type':<24}{'n':>6}{'right':>7}{'ours':>7}" + "".join(f"{c:>10}" for c in PUBLISHED_COLUMNS.values())]
    for name in types + ["overall"]:
        right, total = result[name]
        lines.append(f"{name:<24}{total:>6}{right:>7}{100 * right / total:>7.1f}"
                     + "".join(cell(PUBLISHED[row].get(name)) for row in PUBLISHED_COLUMNS))
    lines.append(PUBLISHED_NOTE)
    lines += [f"WARNING: {line}" for line in (run.warnings() if run else [])]
    right, total = result["overall"]
    if unparsable is not None:
        lines.append(f"unparsable answers: {unparsable} of {total} (no option letter; the official rule reads their "
                     "first character)")
    lines.append(f"overall: {100 * right / total:.1f}")
    return "\n".join(lines)


def score_files(paths: list[str], question_file: str | None = None, output: str | None = None) -> str:
    """Score prediction files of one run (e.g. its shards; ``bench.scoring.read_run`` refuses mixed runs and finds
    missing items) and format the table; ``output``: also write a JSON score file."""
    run = read_run(paths, "pred", question_file)
    result = score(run.records)
    unparsable = sum(not has_option_letter(r["pred"]) for r in run.records)
    if output:
        accuracy = {name: {"right": right, "total": total, "accuracy": round(100 * right / total, 2)}
                    for name, (right, total) in result.items()}
        write_score_file(output, "VideoRefer-Bench-Q", run, JUDGE, paths,
                         {"accuracy": accuracy, "unparsable": unparsable})
    return format_table(result, run.settings.get("mode"), run, unparsable)


# -------------------------------------------------------------------------------------------------------- runner
def run_bench_q(items: list[dict], video_root: str | Path, output: str | Path, answer_fn: AnswerFn,
                mode: str = "single", num_frames: int | None = None, question_file: str | Path | None = None) -> int:
    """Answer every item not yet in ``output`` (JSONL, one record per line, official fields plus id/mode) with the
    answer function's official protocol (its Bench-Q question and frames; ``num_frames`` overrides the count)."""
    return answer_items(items, video_root, output, answer_fn, build_bench_q_prompt, ("Answer", "type"), "bench_q",
                        "question", mode, num_frames, question_file)


def main(argv: list[str] | None = None) -> None:
    parser, sub = runner_parser("python -m bench.bench_q", __doc__.split("\n")[0], QUESTION_FILE,
                                "answer the questions")
    score_parser = sub.add_parser("score", help="accuracy per type from predictions JSONL")
    score_parser.add_argument("predictions", nargs="+")
    score_parser.add_argument("--question-file", help="the benchmark JSON whose items must all be answered "
                              "(default: the one the predictions recorded)")
    score_parser.add_argument("--output", help="also write the scores, with the run they score, to this JSON file")
    args = parser.parse_args(argv)

    if args.command == "score":
        try:
            print(score_files(args.predictions, args.question_file, args.output))
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
        return
    question_file = args.question_file or Path(args.bench_dir) / QUESTION_FILE
    items = load_bench_q(question_file)
    run_command(args, items, args.video_folder or args.bench_dir, run_bench_q, "bench_q",
                "score with: python -m bench.bench_q score {output}", question_file)


if __name__ == "__main__":
    main()
