"""`python -m train.data_engine run CONFIG --videos DIR_OR_LIST --out OUT [--stage ...] [--shard i/n] [--workers N]`,
or offline on tiny models and a scripted chat server: `python -m train.data_engine offline --out OUT [--tiny vl3|v1]`.

`--stage all` (default) runs the five stages in order, then writes `OUT/videorefer_700k.json` and the report once
every video of every shard is done. Run one stage at a time (`--stage analyze`, ...) to keep one model in memory per
pass; `--stage export` only assembles the output and the report. Rerunning resumes: finished videos are skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from videorefer.data.sharding import parse_shard, shard_items

from .config import load_config
from .inputs import load_inputs
from .store import STAGES

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train.data_engine",
                                     description="VideoRefer multi-agent data engine")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run stages over videos (resumable)")
    run.add_argument("config", type=Path, help="engine config (.yaml / .json), see train/data_engine/configs/")
    run.add_argument("--videos", required=True, type=Path,
                     help="a JSON/JSONL list of {video, caption[, id]} or a folder (captions.jsonl or <stem>.txt)")
    run.add_argument("--out", required=True, type=Path, help="output folder (stage JSONL files, final JSON, report)")
    run.add_argument("--stage", default="all", choices=("all", *STAGES, "export"))
    run.add_argument("--shard", default=None, help="process shard i of n ('i/n', 0-based), e.g. one per GPU")
    run.add_argument("--workers", type=int, default=None, help="concurrent requests per endpoint agent")
    run.add_argument("--batch-size", type=int, default=None, help="videos per step (overrides the config)")
    run.add_argument("--retry-failed", action="store_true", help="redo videos whose record in a stage failed")
    run.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    offline = sub.add_parser("offline", help="every stage on tiny random models and a scripted chat server (no "
                             "download, no API): shows the path and the output format")
    offline.add_argument("--out", required=True, type=Path, help="output folder (rerun to resume)")
    offline.add_argument("--tiny", nargs="?", const="vl3", default="vl3", choices=("vl3", "v1"),
                         help="family of the tiny region captioner (default vl3)")
    offline.add_argument("--videos", type=Path, default=None,
                         help="videos with captions, as for run (default: examples/bigbuckbunny.mp4)")
    return parser


def run_command(args: argparse.Namespace) -> dict | None:
    """Run what the arguments ask; returns the report when the output was written."""
    from .export import export
    from .report import write_report
    from .stages import Engine

    config = load_config(args.config)
    if args.batch_size:
        config.batch_size = args.batch_size
    items = load_inputs(args.videos)
    shard = parse_shard(args.shard) if args.shard else None
    mine = shard_items(items, *shard) if shard else items
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage != "export":
        stages = STAGES if args.stage == "all" else (args.stage,)
        engine = Engine(config, str(args.out), shard, args.workers, progress=not args.no_progress)
        engine.run(mine, stages, args.retry_failed)
        if args.stage != "all":
            return None
    try:
        path = export(items, args.out)
    except RuntimeError as err:
        if args.stage == "export":
            raise
        print(f"[data_engine] {err}", file=sys.stderr)
        return None
    samples = json.loads(path.read_text())
    report = write_report(items, args.out, samples)
    print(f"[data_engine] wrote {len(samples)} samples to {path}; report in {args.out / 'report.md'}")
    print(json.dumps({stage: info for stage, info in report["stages"].items()}, indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "offline":
            from .offline import run_offline

            run_offline(args.out, args.tiny, args.videos)
        else:
            run_command(args)
    except ValueError as err:  # configuration and input errors: one clear line
        raise SystemExit(f"error: {err}") from None
