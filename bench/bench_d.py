"""VideoRefer-Bench-D: detailed descriptions of objects in videos, judged on four dimensions by a GPT judge.

Usage::

    python -m bench.bench_d run --model PATH --bench-dir eval/VideoRefer-Bench-D --output preds_d.jsonl \
        [--mode single|multi] [--num-frames N] [--shard 0/4] [--answer-fn module:function]
    OPENAI_API_KEY=... python -m bench.bench_d judge preds_d.jsonl [more shard files] --output scores_d.jsonl \
        [--judge-url https://api.openai.com/v1] [--judge-model gpt-4o] [--api-key-env OPENAI_API_KEY] [--workers 8]
    python -m bench.bench_d score scores_d.jsonl [--question-file F] [--output score.json]

``judge`` and ``score`` refuse predictions of different runs (model, protocol, mode, frames); ``score`` names the
benchmark items without a score and says which model, mode, protocol and judge its numbers are for.

Videos default to ``BENCH_DIR/Panda-70M-part`` (the official layout) when that folder exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.common import AnswerFn, answer_items, load_bench_json, run_command, runner_parser
from bench.judge import DIMENSIONS, JudgeClient, judge_predictions
from bench.scoring import ScoredRun, read_run, write_score_file
from videorefer.data.jsonl import latest_by_id
from videorefer.prompts import DESCRIBE_PROMPT

QUESTION_FILE = "VideoRefer-Bench-D.json"
VIDEO_SUBFOLDER = "Panda-70M-part"
REQUIRED_FIELDS = {"id": (int, str), "video": str, "caption": str, "frame_idx": (int, str), "annotation": list}
PROMPT = DESCRIBE_PROMPT  # VideoRefer-7B's official Bench-D question (each family's: its processor's bench_protocol)

# Published scores (SC, AD, TD, HD, average): VideoRefer-7B and GPT-4o arXiv 2501.00599 Table 1, also in the official
# benchmark README (github.com/DAMO-NLP-SG/VideoRefer, benchmark/README.md at cbd4207), which adds
# VideoRefer-VideoLLaMA3-7B (single-frame only). VideoRefer-VideoLLaMA3-2B: only its average, 3.67, is published
# (quoted in our issue 12 from its model card; not verified offline). None: not published.
PUBLISHED = {
    "VideoRefer-7B single": [4.41, 3.27, 3.03, 2.97, 3.42],
    "VideoRefer-7B multi": [4.44, 3.27, 3.10, 3.04, 3.46],
    "VideoRefer-VL3-7B single": [4.63, 3.59, 3.38, 3.29, 3.72],
    "VideoRefer-VL3-2B single": [None, None, None, None, 3.67],
    "GPT-4o single": [3.34, 2.96, 3.01, 2.50, 2.95],
    "GPT-4o multi": [4.15, 3.31, 3.11, 2.43, 3.25],
}


def load_bench_d(path: str | Path) -> list[dict]:
    """Load and validate the official ``VideoRefer-Bench-D.json``."""
    return load_bench_json(path, REQUIRED_FIELDS)


def run_bench_d(items: list[dict], video_root: str | Path, output: str | Path, answer_fn: AnswerFn,
                mode: str = "single", num_frames: int | None = None, question_file: str | Path | None = None) -> int:
    """Describe every item not yet in ``output`` (JSONL with the official fields ``video, caption, pred``) with the
    answer function's official protocol (its describe question and frames; ``num_frames`` overrides the count)."""
    return answer_items(items, video_root, output, answer_fn, lambda item, protocol: protocol.describe_prompt,
                        ("caption",), "bench_d", "describe", mode, num_frames, question_file)


# --------------------------------------------------------------------------------------------------------- table
def summarize(records: list[dict]) -> dict:
    """Per-dimension averages over the scored items and their mean (as the official ``3.analyze_score.py``)."""
    latest = latest_by_id(records)
    scored = [r for r in latest.values() if "scores" in r]
    failed = sorted((r for r in latest.values() if "scores" not in r), key=lambda r: str(r["id"]))
    if not scored:
        raise ValueError(f"no scored items ({len(failed)} failed judge calls)")
    averages = {dim: sum(r["scores"][dim] for r in scored) / len(scored) for dim in DIMENSIONS}
    return {"n": len(scored), "failed": [r["id"] for r in failed], "averages": averages,
            "mean": sum(averages.values()) / len(DIMENSIONS)}


def format_table(summary: dict, label: str = "ours", run: ScoredRun | None = None) -> str:
    """The four averages and their mean beside the published rows, the run they score (model, mode, protocol, judge)
    and what is missing; the last line is ``average: X.XX``."""
    header = f"{'':<34}" + "".join(f"{name:>7}" for name in ["SC", "AD", "TD", "HD", "Avg."])
    ours = [summary["averages"][dim] for dim in DIMENSIONS] + [summary["mean"]]
    title = f"VideoRefer-Bench-D ({summary['n']} items scored)"
    if run is not None:
        s = run.settings
        title += (f"; model: {s.get('model') or 'unknown'}; mode: {s.get('mode') or 'unknown'}; protocol: "
                  f"{s.get('protocol') or 'unknown'}; judge: {judge_name(run.records)}")
    lines = [title, header,
             f"{label:<34}" + "".join(f"{v:7.2f}" for v in ours)]
    for name, row in PUBLISHED.items():
        lines.append(f"{name + ' (paper)':<34}" + "".join(f"{v:7.2f}" if v is not None else f"{'-':>7}" for v in row))
    lines.append("published: arXiv 2501.00599 Table 1 / official VideoRefer-Bench README (VL3-7B: README only; "
                 "VL3-2B: average only, model card); our judge rubric is our own wording (the official judge prompt "
                 "was published later with the VL3 evaluation code; it is not copied), so scores are comparable "
                 "only roughly")
    if summary["failed"]:
        shown = ", ".join(str(i) for i in summary["failed"][:10])
        lines.append(f"WARNING: {len(summary['failed'])} item(s) have no score (judge failed): {shown}"
                     f"{' ...' if len(summary['failed']) > 10 else ''}; rerun `judge` to retry them")
    lines += [f"WARNING: {line}" for line in (run.warnings() if run else [])]
    lines.append(f"average: {summary['mean']:.2f}")
    return "\n".join(lines)


def judge_name(records: list[dict]) -> str:
    """The judge model(s) that scored these records."""
    return ", ".join(sorted({str(r["judge_model"]) for r in records if r.get("judge_model")})) or "unknown"


def latest_predictions(paths: list[str]) -> list[dict]:
    """Merge prediction files of one run (e.g. shards) keeping the last record per id; mixed runs are refused and
    missing items printed (``bench.scoring.read_run``)."""
    run = read_run(paths, "pred")
    for line in run.warnings():
        print(f"[bench_d] WARNING: {line}")
    return run.records


def score_files(paths: list[str], question_file: str | None = None, output: str | None = None) -> str:
    """The table of judged scores of one run; ``output``: also write a JSON score file."""
    run = read_run(paths, "scores", question_file)
    summary = summarize(run.records)
    if output:
        write_score_file(output, "VideoRefer-Bench-D", run, judge_name(run.records), paths,
                         {"scored": summary["n"], "failed": summary["failed"], "averages": summary["averages"],
                          "average": summary["mean"]})
    return format_table(summary, run=run)


def main(argv: list[str] | None = None) -> None:
    parser, sub = runner_parser("python -m bench.bench_d", __doc__.split("\n")[0], QUESTION_FILE,
                                "describe the objects")
    judge = sub.add_parser("judge", help="score predictions with an OpenAI-compatible judge (resumable)")
    judge.add_argument("predictions", nargs="+")
    judge.add_argument("--output", required=True, help="scores JSONL (appended to; rerun to resume/retry)")
    judge.add_argument("--judge-url", default="https://api.openai.com/v1",
                       help="base URL of the chat API; 'local': start bench.local_judge, the word-overlap TEST judge "
                            "(offline; its scores mean nothing about quality)")
    judge.add_argument("--judge-model", default="gpt-4o")
    judge.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    judge.add_argument("--workers", type=int, default=4, help="concurrent requests")
    judge.add_argument("--retries", type=int, default=5, help="attempts per item")
    judge.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    judge.add_argument("--backoff", type=float, default=2.0, help="first retry delay in seconds (doubles)")
    judge.add_argument("--temperature", type=float, default=0.7, help="official judge setting: 0.7")
    score = sub.add_parser("score", help="table of the judged scores")
    score.add_argument("scores", nargs="+")
    score.add_argument("--question-file", help="the benchmark JSON whose items must all be scored (default: the one "
                       "the predictions recorded)")
    score.add_argument("--output", help="also write the scores, with the run they score, to this JSON file")
    args = parser.parse_args(argv)

    if args.command == "score":
        try:
            print(score_files(args.scores, args.question_file, args.output))
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    elif args.command == "judge":
        try:
            predictions = latest_predictions(args.predictions)
        except ValueError as err:  # predictions of different runs
            raise SystemExit(f"error: {err}") from None
        if args.judge_url == "local":
            from bench.local_judge import MODEL_NAME, local_judge

            print("[judge] the local TEST judge (word overlap): its scores say nothing about description quality")
            with local_judge() as url:
                client = JudgeClient(url=url, model=MODEL_NAME, timeout=args.timeout, retries=args.retries,
                                     backoff=args.backoff)
                counts = judge_predictions(predictions, args.output, client, workers=args.workers)
        else:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                print(f"[judge] ${args.api_key_env} is not set: sending requests without an Authorization header")
            client = JudgeClient(url=args.judge_url, model=args.judge_model, api_key=api_key, timeout=args.timeout,
                                 retries=args.retries, backoff=args.backoff, temperature=args.temperature)
            counts = judge_predictions(predictions, args.output, client, workers=args.workers)
        try:
            print(score_files([args.output]))
        except ValueError as err:  # every item failed: there is no table to print
            print(f"[judge] {err}")
        if counts["errors"]:
            raise SystemExit(f"{counts['errors']} item(s) failed to be judged; rerun the same command to retry")
    else:
        question_file = args.question_file or Path(args.bench_dir) / QUESTION_FILE
        items = load_bench_d(question_file)
        default_root = Path(args.bench_dir) / VIDEO_SUBFOLDER
        video_root = args.video_folder or (default_root if default_root.is_dir() else args.bench_dir)
        run_command(args, items, video_root, run_bench_d, "bench_d",
                    "judge with: python -m bench.bench_d judge {output} --output ...", question_file)


if __name__ == "__main__":
    main()
