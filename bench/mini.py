"""Mini VideoRefer-Bench: the whole benchmark path (Bench-Q and Bench-D, runners, scoring, judge) in a few minutes.

Usage::

    python -m bench.mini OUT_DIR --tiny [vl3|v1]        # random tiny model built in code (CI, smoke tests)
    python -m bench.mini OUT_DIR --model PATH           # a real checkpoint of either family (folder or Hub id)
        [--videos 6] [--modes single multi] [--num-frames N] [--max-new-tokens N] [--seed 0]

It writes, in the official formats, ``OUT_DIR/VideoRefer-Bench-Q.json`` and ``OUT_DIR/VideoRefer-Bench-D.json`` built
from held-out videos of the synthetic moving-shapes task (``videorefer.data.synthetic``) and from
``examples/bigbuckbunny.mp4`` with its saved regions; answers them with the real runners (``bench.bench_q`` /
``bench.bench_d``, with the official prompts and frames of the model's family) and the real model path
(``videorefer.VideoRefer``: its processor and region encoder); scores
Bench-Q with the official rules; judges Bench-D through the real judge client over HTTP against ``bench.local_judge``,
a local word-overlap TEST judge whose scores mean nothing about quality; and prints both tables. Rerunning the same
command resumes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from bench import bench_d, bench_q
from bench.common import TINY_MAX_NEW_TOKENS, VideoReferAnswerFn
from bench.judge import JudgeClient, judge_predictions
from bench.local_judge import MODEL_NAME as JUDGE_MODEL
from bench.local_judge import local_judge
from bench.scoring import read_run
from videorefer.testing.tiny import TINY_FAMILIES, tiny_checkpoint

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_VIDEO = REPO_ROOT / "examples" / "bigbuckbunny.mp4"
EXAMPLE_REGIONS = REPO_ROOT / "examples" / "bigbuckbunny.regions.json"
CONFIG_FILE = "mini_config.json"

# Hand-written items about the example clip (saved object 0: the bunny, 1: the rock slab; masks on frame 60):
# (type, question, options, answer, saved objects in the order of the <region> tags). As in the official data, the
# <objectN> numbers of a question need not start at 0. Answers were checked on frames 0, 60 and 131 with the masks
# overlaid.
BUNNY_Q = [
    ("Basic Questions", "What is <object0><region>?",
     ["(A) A rabbit", "(B) A rock", "(C) A bird", "(D) A tree"], "(A) A rabbit", (0,)),
    ("Sequential Questions", "What does <object0><region> do during the video?",
     ["(A) It runs away to the right", "(B) It sleeps the whole time",
      "(C) It comes out of its burrow and stretches its arms", "(D) It climbs a tree"],
     "(C) It comes out of its burrow and stretches its arms", (0,)),
    ("Relationship Questions", "Where is <object0><region> relative to <object1><region>?",
     ["(A) To the right of it", "(B) To the left of it"], "(B) To the left of it", (0, 1)),
    ("Reasoning Questions", "Why does <object1><region> not move during the video?",
     ["(A) It is asleep", "(B) It is tied down", "(C) It is an inanimate rock", "(D) It is hiding"],
     "(C) It is an inanimate rock", (1,)),
]
BUNNY_D = [
    (0, "A big grey rabbit climbs out of its burrow on a grassy hillside, stands up, stretches its arms above its "
        "head and rubs its eyes."),
    (1, "A flat brown rock slab lies still on the grass on the right side of the scene, in front of the trees."),
]


# ------------------------------------------------------------------------------------------------ the benchmark
def example_items(out_dir: Path) -> tuple[list[dict], list[dict]]:
    """Bench-Q and Bench-D items on the example clip (copied to ``OUT_DIR/examples/``), official fields only."""
    from videorefer.regions import objects_from_json, objects_to_annotation

    objects, _names = objects_from_json(EXAMPLE_REGIONS.read_text())
    frame = sorted(objects[0])[0]
    annotation = objects_to_annotation(objects)
    (out_dir / "examples").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLE_VIDEO, out_dir / "examples" / EXAMPLE_VIDEO.name)
    video = f"examples/{EXAMPLE_VIDEO.name}"
    questions = [{"video": video, "Question": q, "type": kind, "options": options, "Answer": answer,
                  "frame_idx": str(frame), "annotation": [annotation[k] for k in objects_asked]}
                 for kind, q, options, answer, objects_asked in BUNNY_Q]
    descriptions = [{"video": video, "caption": caption, "frame_idx": str(frame), "annotation": [annotation[k]]}
                    for k, caption in BUNNY_D]
    return questions, descriptions


def build_mini_bench(out_dir: Path, videos: int, seed: int) -> tuple[Path, Path]:
    """Write ``VideoRefer-Bench-Q.json`` and ``VideoRefer-Bench-D.json`` (videos relative to ``out_dir``)."""
    from videorefer.data.synthetic import generate

    synthetic = out_dir / "synthetic"
    generate(synthetic, n_train=0, n_heldout=videos, seed=seed)
    q_items, d_items = [], []
    for name, items in (("bench_q.json", q_items), ("bench_d.json", d_items)):
        for item in json.loads((synthetic / name).read_text()):
            item["video"] = f"synthetic/{item['video']}"
            items.append(item)
    example_q, example_d = example_items(out_dir)
    q_path, d_path = out_dir / bench_q.QUESTION_FILE, out_dir / bench_d.QUESTION_FILE
    for path, items in ((q_path, q_items + example_q), (d_path, d_items + example_d)):
        renumbered = [{"id": i, **{k: v for k, v in item.items() if k != "id"}} for i, item in enumerate(items)]
        path.write_text(json.dumps(renumbered))
    return q_path, d_path


def check_config(out_dir: Path, config: dict) -> None:
    """Refuse to resume in a folder made with other settings (its predictions would not match the items)."""
    path = out_dir / CONFIG_FILE
    if path.exists():
        old = json.loads(path.read_text())
        if old != config:
            raise SystemExit(f"{out_dir} was made with {old}, not {config}: use a new OUT_DIR (or the same options)")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=1))


# ------------------------------------------------------------------------------------------------------- the run
def load_answer_fn(out_dir: Path, model: str | None, tiny: str | None,
                   max_new_tokens: int | None) -> VideoReferAnswerFn:
    """The default answer function on ``model``, or on the random tiny model of family ``tiny``
    (``videorefer.testing.tiny.tiny_checkpoint``, built once)."""
    if tiny:
        model = str(tiny_checkpoint(tiny))
        max_new_tokens = max_new_tokens or TINY_MAX_NEW_TOKENS
    generation = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
    answer_fn = VideoReferAnswerFn.from_pretrained(model, generation=generation)
    if tiny:
        answer_fn.name = f"tiny-{tiny}"
    return answer_fn


def run_mini(out_dir: str | Path, model: str | None = None, tiny: str | None = None, videos: int = 6,
             modes: tuple[str, ...] = ("single", "multi"), num_frames: int | None = None,
             max_new_tokens: int | None = None, seed: int = 0) -> dict[str, str]:
    """Build, run, score and judge the mini benchmark; return the tables by name (``q_single``, ``d_multi``, ...).

    ``tiny``: "vl3" or "v1" for a random tiny model of that family instead of ``model``; ``num_frames`` overrides
    the family's official frame count (VideoRefer-7B) or cap (VL3)."""
    if (model is None) == (not tiny):
        raise ValueError("give exactly one of model=PATH or tiny='vl3' / 'v1'")
    if tiny and tiny not in TINY_FAMILIES:
        raise ValueError(f"tiny must be one of {TINY_FAMILIES}, got {tiny!r}")
    if videos < 1:
        raise ValueError(f"need at least one synthetic video, got videos={videos}")
    out_dir = Path(out_dir)
    check_config(out_dir, {"videos": videos, "seed": seed, "model": f"tiny-{tiny}" if tiny else str(model),
                           "num_frames": num_frames})
    start = time.monotonic()
    q_path, d_path = build_mini_bench(out_dir, videos, seed)
    q_items, d_items = bench_q.load_bench_q(q_path), bench_d.load_bench_d(d_path)
    print(f"[mini] {len(q_items)} Bench-Q and {len(d_items)} Bench-D items in {out_dir} "
          f"({videos} synthetic videos + {EXAMPLE_VIDEO.name})")
    answer_fn = load_answer_fn(out_dir, model, tiny, max_new_tokens)
    tables: dict[str, str] = {}
    for mode in modes:
        preds = out_dir / f"preds_q_{mode}.jsonl"
        bench_q.run_bench_q(q_items, out_dir, preds, answer_fn, mode=mode, num_frames=num_frames,
                            question_file=q_path)
        tables[f"q_{mode}"] = bench_q.score_files([str(preds)])
    with local_judge() as judge_url:
        client = JudgeClient(url=judge_url, model=JUDGE_MODEL, timeout=30, retries=2, backoff=0.1)
        for mode in modes:
            preds, scores = out_dir / f"preds_d_{mode}.jsonl", out_dir / f"scores_d_{mode}.jsonl"
            bench_d.run_bench_d(d_items, out_dir, preds, answer_fn, mode=mode, num_frames=num_frames,
                                question_file=d_path)
            counts = judge_predictions(bench_d.latest_predictions([str(preds)]), str(scores), client, workers=2)
            if counts["errors"]:
                raise RuntimeError(f"the local judge failed on {counts['errors']} item(s); see {scores}")
            run = read_run([str(scores)], "scores")
            tables[f"d_{mode}"] = bench_d.format_table(bench_d.summarize(run.records),
                                                       label=f"ours, {mode} (TEST judge)", run=run)
    print(f"[mini] {answer_fn.summary()}")
    print(f"[mini] done in {time.monotonic() - start:.0f} s; outputs in {out_dir}")
    return tables


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mini", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path, help="output folder (created; rerun to resume)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="VideoRefer checkpoint (folder or Hub id)")
    which.add_argument("--tiny", nargs="?", const=TINY_FAMILIES[0], choices=TINY_FAMILIES,
                       help=f"a random tiny model built in code (no download) of family vl3 or v1 (default "
                            f"{TINY_FAMILIES[0]})")
    parser.add_argument("--videos", type=int, default=6, help="synthetic held-out videos (5 Bench-Q items and 1 "
                        "Bench-D item each), besides the example clip's 4 + 2 items")
    parser.add_argument("--modes", nargs="+", choices=["single", "multi"], default=["single", "multi"])
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames per video (default: the family's official eval: VideoRefer-7B 8; VL3 1 fps for "
                             "Bench-Q, 4 fps for Bench-D, at most 768, for which this is the cap)")
    parser.add_argument("--max-new-tokens", type=int,
                        help=f"generation limit (default: the model's; {TINY_MAX_NEW_TOKENS} with --tiny)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic videos")
    args = parser.parse_args(argv)
    tables = run_mini(args.out_dir, model=args.model, tiny=args.tiny, videos=args.videos, modes=tuple(args.modes),
                      num_frames=args.num_frames, max_new_tokens=args.max_new_tokens, seed=args.seed)
    if args.tiny:
        print("\nNOTE: a random tiny model and a word-overlap TEST judge: these numbers only show the path works.")
    for mode in args.modes:
        print("\n" + tables[f"q_{mode}"])
    for mode in args.modes:
        print("\n" + tables[f"d_{mode}"])


if __name__ == "__main__":
    main()
