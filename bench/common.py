"""Shared plumbing for the VideoRefer-Bench runners: the official JSON files, the resumable runner, the ``run``
command both runners share; the default answer function is in ``bench.answer_fn`` (re-exported here).

Resumable JSONL and sharding live in ``videorefer.data`` (the data engine uses them too). The runners take an
``answer_fn``; only the default one (``videorefer_answer_fn``) loads a model, and only when it is built.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videorefer.bench_protocol import BenchProtocol, FrameSampling
from videorefer.data.jsonl import JsonlWriter, latest_by_id, read_jsonl
from videorefer.data.sharding import parse_shard, shard_items, shard_output_path
from videorefer.testing.tiny import TINY_FAMILIES

from bench.answer_fn import (  # noqa: F401  (re-exported: runners and tests import them from here)
    DEFAULT_PROTOCOL, VideoReferAnswerFn, annotation_to_model_objects, load_answer_fn, videorefer_answer_fn,
)

#: ``answer_fn(video_path_or_folder, annotation, question, mode, num_frames) -> str``. ``annotation`` is the item's
#: official annotation list ``[{"<frame>": {"segmentation": RLE | polygon | None}}, ...]`` (one dict per object, in
#: the order of the ``<region>`` tags; in single mode already reduced to the item's ``frame_idx``). An answer
#: function with a ``protocol`` attribute (a ``videorefer.bench_protocol.BenchProtocol``) gets the questions and
#: frames of that protocol, and ``fps=`` as a keyword when its sampling is time-based (``num_frames`` is then the
#: cap); one without gets VideoRefer-7B's (8 frames sampled uniformly).
AnswerFn = Callable[..., str]

OFFICIAL_NUM_FRAMES = DEFAULT_PROTOCOL.question_frames.num_frames  # VideoRefer-7B's official eval: 8 (trained on 16)
TINY_MAX_NEW_TOKENS = 32  # a random tiny model rarely stops by itself: keep its answers short


# --------------------------------------------------------------------------------------------- official bench JSON
def _fail(path: Path, index: int, item: Any, message: str) -> ValueError:
    ident = item.get("id", "?") if isinstance(item, dict) else "?"
    return ValueError(f"{path}: item #{index} (id={ident}): {message}")


def _check_annotation(path: Path, index: int, item: dict) -> None:
    annotation = item["annotation"]
    if not isinstance(annotation, list) or not annotation:
        raise _fail(path, index, item, "'annotation' must be a non-empty list (one dict per object)")
    for k, obj in enumerate(annotation):
        if not isinstance(obj, dict) or not obj:
            raise _fail(path, index, item, f"annotation[{k}] must be a non-empty dict frame -> {{'segmentation': ...}}")
        for frame, entry in obj.items():
            if not str(frame).lstrip("-").isdigit() or int(frame) < 0:
                raise _fail(path, index, item, f"annotation[{k}] has frame key {frame!r}, expected a frame index")
            if not isinstance(entry, dict) or "segmentation" not in entry:
                raise _fail(path, index, item, f"annotation[{k}][{frame!r}] has no 'segmentation' field")


def load_bench_json(path: str | Path, required: dict[str, type | tuple[type, ...]]) -> list[dict]:
    """Load an official benchmark JSON list and check each item's fields and the shape of its annotation."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"benchmark file not found: {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    seen: set[str] = set()
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise _fail(path, index, item, f"expected an object, got {type(item).__name__}")
        missing = [name for name in required if name not in item]
        if missing:
            raise _fail(path, index, item, f"missing field(s) {missing}")
        for name, kind in required.items():
            if not isinstance(item[name], kind):
                raise _fail(path, index, item, f"field {name!r} has type {type(item[name]).__name__}")
        _check_annotation(path, index, item)
        if str(item["id"]) in seen:
            raise _fail(path, index, item, "duplicate id")
        seen.add(str(item["id"]))
    return data


def restrict_annotation(item: dict, mode: str) -> list[dict]:
    """The objects' annotation the model sees: all annotated frames (multi) or only ``frame_idx`` (single).

    Single mode follows the official inference scripts: every object keeps only its mask at ``item["frame_idx"]``.
    """
    if mode == "multi":
        return item["annotation"]
    if mode != "single":
        raise ValueError(f"mode must be 'single' or 'multi', got {mode!r}")
    frame = str(item.get("frame_idx"))
    out = []
    for k, obj in enumerate(item["annotation"]):
        keys = {str(key): key for key in obj}
        if frame not in keys:
            raise ValueError(
                f"item id={item.get('id')}: single mode needs object {k}'s mask at frame_idx={frame}, "
                f"but it is annotated at frames {sorted(keys, key=int)[:10]}"
            )
        out.append({frame: obj[keys[frame]]})
    return out


def resolve_video(video_root: str | Path, video: str) -> Path:
    """Path of an item's video (a file, or a DAVIS/MeViS-style folder of frames) under ``video_root``."""
    return Path(video_root) / video


def check_videos(items: list[dict], video_root: str | Path) -> None:
    """Fail before any inference if videos are missing (a multi-hour run should not die at item 900)."""
    missing = sorted({item["video"] for item in items if not resolve_video(video_root, item["video"]).exists()})
    if missing:
        shown = ", ".join(missing[:5]) + (f" ... (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} video(s) not found under {video_root}: {shown}")


# ----------------------------------------------------------------------------------------------------- the runner
def run_resumable(
    items: list[dict],
    output: str | Path,
    predict: Callable[[dict], dict],
    label: str = "bench",
    settings: dict | None = None,
    predict_many: Callable[[list[dict]], list[dict]] | None = None,
    chunk: int = 1,
) -> int:
    """Call ``predict(item)`` for every item whose id is not yet in ``output``; append each record as it finishes.
    With ``predict_many`` and ``chunk`` > 1, ``chunk`` items are answered at once (an engine that batches them) and
    written when that chunk finishes.

    Returns the number of new records. An exception from ``predict`` stops the run naming the item; everything
    finished so far is already on disk, so rerunning the same command continues where it stopped. ``settings``
    (e.g. mode and num_frames, also stored in each record) must match the records already in ``output``: resuming
    with other settings would silently mix two evaluations in one file.
    """
    existing = latest_by_id(read_jsonl(output))
    for key, value in (settings or {}).items():
        other = {record[key] for record in existing.values() if key in record} - {value}
        if other:
            raise ValueError(f"{output} holds results with {key}={sorted(map(str, other))}, but this run uses "
                             f"{key}={value}; use another --output (or the same settings) to resume")
    done = set(existing)
    pending = [item for item in items if str(item["id"]) not in done]
    print(f"[{label}] {len(items)} items, {len(items) - len(pending)} already in {output}, {len(pending)} to run")
    start = time.monotonic()
    size = chunk if predict_many is not None and chunk > 1 else 1
    with JsonlWriter(output) as writer:
        for first in range(0, len(pending), size):
            group = pending[first: first + size]
            try:
                records = predict_many(group) if size > 1 else [predict(group[0])]
            except Exception as err:
                ids = ", ".join(str(item["id"]) for item in group[:5]) + (" ..." if len(group) > 5 else "")
                raise RuntimeError(f"item id={ids} (video {group[0]['video']!r}) failed: {err}") from err
            for record in records:
                writer.write(record)
            count = first + len(group)
            if size > 1 or count % 10 == 0 or count == len(pending):
                rate = count / max(time.monotonic() - start, 1e-9)
                print(f"[{label}] {count}/{len(pending)} ({rate:.2f} items/s, ETA "
                      f"{_duration((len(pending) - count) / rate)})", flush=True)
    return len(pending)


def _duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def answer_fn_name(answer_fn: AnswerFn) -> str:
    """The model a prediction file records: the answer function's ``name``, else its ``module:function``."""
    name = getattr(answer_fn, "name", None)
    if name:
        return str(name)
    return f"{getattr(answer_fn, '__module__', '?')}:{getattr(answer_fn, '__qualname__', type(answer_fn).__name__)}"


def answer_protocol(answer_fn: AnswerFn) -> BenchProtocol:
    """The official protocol an answer function's model was evaluated with (VideoRefer-7B's when it has none)."""
    return getattr(answer_fn, "protocol", None) or DEFAULT_PROTOCOL


def task_sampling(answer_fn: AnswerFn, task: str, num_frames: int | None, label: str) -> FrameSampling:
    """The frames of ``task`` ("question" / "describe") under the answer function's protocol, ``num_frames``
    (a count, or a cap for time-based sampling) overriding its frame number; announced on stdout."""
    protocol = answer_protocol(answer_fn)
    official = protocol.frames(task)
    sampling = official.with_num_frames(num_frames)
    if num_frames is None:
        print(f"[{label}] num_frames = {sampling.num_frames} (official eval default of {protocol.name}: {sampling})")
    else:
        print(f"[{label}] num_frames = {sampling.num_frames} (--num-frames: {sampling}; the official eval of "
              f"{protocol.name} uses {official})")
    return sampling


def answer_items(items: list[dict], video_root: str | Path, output: str | Path, answer_fn: AnswerFn,
                 prompt: Callable[[dict, BenchProtocol], str], kept_fields: tuple[str, ...], label: str, task: str,
                 mode: str = "single", num_frames: int | None = None, question_file: str | Path | None = None) -> int:
    """Answer ``prompt(item, protocol)`` about every item not yet in ``output`` on the frames of ``task`` under the
    answer function's protocol (``num_frames`` overrides its frame count); each record keeps ``id``, ``video`` and
    ``kept_fields`` of the item, plus ``pred``, the run's ``model``, ``protocol``, ``mode``, ``num_frames`` (and
    ``fps`` for time-based sampling) and ``question_file`` (the benchmark the scorer checks completeness against).
    Returns the number of new records."""
    check_videos(items, video_root)
    protocol = answer_protocol(answer_fn)
    sampling = task_sampling(answer_fn, task, num_frames, label)
    fps = {"fps": sampling.fps} if sampling.fps is not None else {}

    def call(item: dict) -> tuple:
        video = str(resolve_video(video_root, item["video"]))
        return video, restrict_annotation(item, mode), prompt(item, protocol), mode, sampling.num_frames

    def record(item: dict, pred: str) -> dict:
        return {"id": item["id"], "video": item["video"], **{name: item[name] for name in kept_fields},
                "pred": pred, **run, **fps, **source}

    def predict_many(group: list[dict]) -> list[dict]:  # an answer function that submits many at once
        return [record(item, pred) for item, pred in zip(group, answer_fn.answer_many([call(i) for i in group], **fps))]

    run = {"model": answer_fn_name(answer_fn), "protocol": protocol.name, "mode": mode,
           "num_frames": sampling.num_frames}
    source = {"question_file": str(question_file)} if question_file else {}
    settings = {**run, "fps": sampling.fps}
    return run_resumable(items, output, lambda item: record(item, answer_fn(*call(item), **fps)), label=label,
                         settings=settings, predict_many=predict_many if hasattr(answer_fn, "answer_many") else None,
                         chunk=getattr(answer_fn, "submit_size", 1))


# ------------------------------------------------------------------------------------------ the `run` subcommand
#: ``runner(items, video_root, output, answer_fn, mode=..., num_frames=None | N, question_file=...) -> new records``
Runner = Callable[..., int]


def runner_parser(prog: str, description: str, question_file: str,
                  run_help: str) -> tuple[argparse.ArgumentParser, Any]:
    """A runner's command line with its ``run`` subcommand (see ``add_run_arguments``); returns the parser and its
    subparsers, to which the runner adds its other subcommands."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(sub.add_parser("run", help=run_help), question_file)
    return parser, sub


def add_run_arguments(parser: argparse.ArgumentParser, question_file: str) -> None:
    """Arguments shared by the Bench-Q and Bench-D runners."""
    parser.add_argument("--bench-dir", required=True, help="folder with the benchmark JSON (and, by default, videos)")
    parser.add_argument("--question-file", help=f"benchmark JSON (default: BENCH_DIR/{question_file})")
    parser.add_argument("--video-folder", help="root the items' 'video' paths are relative to")
    parser.add_argument("--output", required=True, help="predictions JSONL (appended to; rerun to resume)")
    parser.add_argument("--mode", choices=["single", "multi"], default="single",
                        help="single: only the mask at frame_idx (official default); multi: all annotated masks")
    parser.add_argument("--num-frames", type=int, default=None,
                        help="frames per video (default: the model family's official eval: VideoRefer-7B 8 sampled "
                             "uniformly (trained on 16); VideoRefer-VL3 at 1 fps (Bench-Q) / 4 fps (Bench-D), at most "
                             "768, for which this is the cap)")
    parser.add_argument("--shard", help="i/n: run the i-th of n contiguous parts (one per GPU)")
    parser.add_argument("--limit", type=int, help="only the first N items (smoke tests)")
    parser.add_argument("--max-new-tokens", type=int, help="generation limit (default: the model's, 512)")
    parser.add_argument("--engine", choices=["transformers", "vllm"], default="transformers",
                        help="who runs the model: transformers (one item after another) or vllm (items submitted "
                             "together, batched continuously; README: Serving with vLLM)")
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="vllm engine: GPUs per model replica")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="VideoRefer checkpoint (path or Hub id) for the default answer function")
    model.add_argument("--tiny", nargs="?", const=TINY_FAMILIES[0], choices=TINY_FAMILIES,
                       help="a random tiny model built in code (offline; vl3 or v1, default vl3): checks the path, "
                            f"answers are gibberish ({TINY_MAX_NEW_TOKENS} new tokens unless --max-new-tokens)")
    model.add_argument("--answer-fn", help="module:function with the answer_fn signature (other models, tests)")


def prepare_run(args: argparse.Namespace, items: list[dict]) -> tuple[list[dict], Path, AnswerFn]:
    """Shard/limit the items, pick the output file, build the answer function."""
    shard = parse_shard(args.shard) if args.shard else None
    if shard:
        items = shard_items(items, *shard)
    if args.limit is not None:
        items = items[: args.limit]
    output = shard_output_path(args.output, shard)
    if args.num_frames is not None and args.num_frames < 1:
        raise ValueError(f"--num-frames must be at least 1, got {args.num_frames}")
    if args.answer_fn:
        answer_fn = load_answer_fn(args.answer_fn)
    else:
        model, max_new_tokens = args.model, args.max_new_tokens
        if args.tiny:
            from videorefer.testing.tiny import tiny_checkpoint

            model, max_new_tokens = str(tiny_checkpoint(args.tiny)), max_new_tokens or TINY_MAX_NEW_TOKENS
        generation = {"max_new_tokens": max_new_tokens} if max_new_tokens else {}
        engine = {} if args.engine == "transformers" else {
            "engine": args.engine, "engine_args": {"tensor_parallel_size": args.tensor_parallel_size}}
        answer_fn = videorefer_answer_fn(model, generation=generation, **engine)
        if args.tiny:
            answer_fn.name = f"tiny-{args.tiny}"
    return items, output, answer_fn


def run_command(args: argparse.Namespace, items: list[dict], video_root: str | Path, runner: Runner, label: str,
                next_step: str, question_file: str | Path | None = None) -> Path:
    """The ``run`` subcommand of a runner: check the videos, shard, build the answer function, answer every item not
    yet done, and say where the predictions are and ``next_step`` (``{output}`` is filled in). Returns the output."""
    check_videos(items, video_root)  # before loading a 7B model
    items, output, answer_fn = prepare_run(args, items)
    runner(items, video_root, output, answer_fn, mode=args.mode, num_frames=args.num_frames,
           question_file=question_file)
    if hasattr(answer_fn, "summary"):
        print(f"[{label}] {answer_fn.summary()}")
    print(f"[{label}] predictions in {output}; {next_step.format(output=output)}")
    return output
