"""Check a VideoRefer-700K style training file before any model loads: `python -m train.check_data DATA.json ...`.

    python -m train.check_data DATA.json [more files] [--data-folder DIR] [--model ID_OR_FOLDER | --tiny [vl3|v1]]

Reads every sample and prints a summary (samples, videos, objects / masks / turns per sample, null masks) and every
problem with the sample it is in: a missing or undecodable video (or image), a mask whose size is not the video's,
a frame index past the video's end, a malformed conversation or annotation, and, when the model family is known
(`--model` or `--tiny`: only its processor loads), a `<region>` count that does not fit the annotation. Exits 1 when
a sample has a problem. `python -m train.train` runs the same check first and stops before the model loads unless
`on_mismatch=skip` is set (then the bad samples are left out, counted and logged).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.data import (
    conversation_turns, count_regions, load_samples, masks_per_object, sample_annotation, sample_name, source_path,
)
from videorefer.prompts import REGION_PLACEHOLDER

__all__ = ["DataReport", "DataProblems", "check_samples", "check_data_files", "default_data_folder", "require_files",
           "main"]

#: `placeholder_counts(masks_per_object) -> accepted <region> counts` (a processor's `region_placeholder_counts`).
PlaceholderCounts = Callable[[Sequence[int]], Sequence[int]]
SHOWN_PROBLEMS = 50  # problems listed in an error message (all of them are in the report)


class DataProblems(ValueError):
    """Training data with problems: the message lists them (the first `SHOWN_PROBLEMS`) with their samples."""


@dataclass
class DataReport:
    """What a training file holds and what is wrong with it (`problems`: sample index -> messages)."""

    samples: list[dict]
    names: list[str]
    problems: dict[int, list[str]] = field(default_factory=dict)
    videos: set[str] = field(default_factory=set)
    objects: list[int] = field(default_factory=list)
    masks: list[int] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)
    null_masks: int = 0
    source: str = "the data"

    @property
    def good_samples(self) -> list[dict]:
        return [s for k, s in enumerate(self.samples) if k not in self.problems]

    def problem_lines(self, limit: int | None = None) -> list[str]:
        lines = [f"{self.names[k]}: {message}" for k in sorted(self.problems) for message in self.problems[k]]
        if limit is not None and len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(lines) - limit} more problem(s)"]
        return lines

    def summary(self) -> str:
        def spread(values: list[int]) -> str:
            if not values:
                return "-"
            return f"{min(values)}-{max(values)} (mean {statistics.fmean(values):.1f})"

        bad = len(self.problems)
        return (f"{self.source}: {len(self.samples)} samples, {len(self.videos)} videos; per sample: objects "
                f"{spread(self.objects)}, masks {spread(self.masks)}, turns {spread(self.turns)}; "
                f"{self.null_masks} null masks; {bad} sample(s) with problems")

    def error(self, hint: str = "") -> DataProblems:
        lines = self.problem_lines(SHOWN_PROBLEMS)
        return DataProblems(f"{len(self.problems)} of {len(self.samples)} samples in {self.source} have problems"
                            f"{hint}:\n  " + "\n  ".join(lines))


def default_data_folder(data_path: str | os.PathLike | Sequence[str | os.PathLike]) -> Path:
    """Where relative video paths start by default: the (first) data file's folder."""
    first = data_path if isinstance(data_path, (str, os.PathLike)) else list(data_path)[0]
    return Path(first).parent


def _read_sizes(sources: set[tuple[str, Path]]) -> dict[tuple[str, Path], tuple[int, int, int] | str]:
    """`(total_frames, height, width)` of every video or image (first frame decoded), or the failure's message;
    read in threads (the decoders release the GIL), each path once."""
    from concurrent.futures import ThreadPoolExecutor

    ordered = sorted(sources)
    workers = max(1, min(16, os.cpu_count() or 1, len(ordered)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(ordered, pool.map(lambda source: _read_size(*source), ordered)))


def _read_size(kind: str, path: Path) -> tuple[int, int, int] | str:
    if not path.exists():
        return f"{kind} not found: {path}"
    try:
        if kind == "image":
            from PIL import Image

            with Image.open(path) as image:
                return 1, image.height, image.width
        from videorefer.video_io import video_info

        total, _fps, height, width = video_info(path)
        return total, height, width
    except Exception as err:  # noqa: BLE001 (any decoder failure is this sample's problem, reported with it)
        return f"cannot decode the {kind} {path}: {err}"


def _annotation_problems(annotation: Any, size: tuple[int, int, int] | None, kind: str = "video") -> list[str]:
    """Frame keys and mask sizes of one sample's annotation against its video or image (`size`: frames, height,
    width)."""
    if not isinstance(annotation, list):
        return ["'annotation' must be a list with one dict per object"]
    problems = []
    for k, per_frame in enumerate(annotation):
        if not isinstance(per_frame, Mapping):
            problems.append(f"annotation[{k}] must be a dict of frame index -> segmentation")
            continue
        for key, value in per_frame.items():
            try:
                frame = int(key)
            except (TypeError, ValueError):
                problems.append(f"object {k}: frame key {key!r} is not a frame index")
                continue
            if size is not None and not 0 <= frame < size[0]:
                problems.append(f"object {k}: frame {frame} is out of range (the {kind} has {size[0]} "
                                f"frame{'s' if size[0] != 1 else ''})")
            if value is not None and not (isinstance(value, Mapping) and "segmentation" in value):
                problems.append(f"object {k}: frame {frame} holds {str(value)[:60]!r}, not "
                                "{'segmentation': RLE | polygon | null}")
                continue
            segmentation = value.get("segmentation") if value is not None else None
            if segmentation is not None and not isinstance(segmentation, (Mapping, list)):
                problems.append(f"object {k}: the segmentation on frame {frame} is neither an RLE dict nor a "
                                "polygon list")
            if isinstance(segmentation, Mapping) and size is not None and "size" in segmentation:
                mask_size = tuple(int(v) for v in segmentation["size"])
                if mask_size != size[1:]:
                    problems.append(f"object {k}: the mask on frame {frame} is {mask_size[0]}x{mask_size[1]} but "
                                    f"the {kind} is {size[1]}x{size[2]} (height x width)")
    return problems


def check_samples(samples: list[dict], data_folder: str | os.PathLike | None,
                  placeholder_counts: PlaceholderCounts | None = None, source: str = "the data") -> DataReport:
    """Check every sample (see the module docstring); `placeholder_counts` adds the family's `<region>` rule."""
    report = DataReport(samples=samples, names=[sample_name(s, k) for k, s in enumerate(samples)], source=source)
    folder = Path(data_folder) if data_folder is not None else None
    sources: dict[int, tuple[str, Path] | str] = {}
    for index, sample in enumerate(samples):
        try:
            sources[index] = source_path(sample, folder, report.names[index]) if isinstance(sample, Mapping) else ""
        except ValueError as err:
            sources[index] = str(err).removeprefix(f"{report.names[index]}: ")
    sizes = _read_sizes({s for s in sources.values() if isinstance(s, tuple)})
    for index, sample in enumerate(samples):
        name, problems = report.names[index], []
        if not isinstance(sample, Mapping):
            report.problems[index] = [f"a sample must be a JSON object, got {type(sample).__name__}"]
            continue
        try:
            report.turns.append(len(conversation_turns(sample, name)))
        except (ValueError, AttributeError, KeyError, TypeError) as err:
            problems.append(str(err).removeprefix(f"{name}: "))
        raw = sample.get("annotation") if sample.get("annotation") is not None else sample.get("masks")
        try:
            if raw is not None and not isinstance(raw, list):
                raise ValueError("'annotation' (or 'masks') must be a list with one dict per object")
            annotation = sample_annotation(sample)
            per_object = masks_per_object(annotation) if isinstance(annotation, list) else []
        except (ValueError, AttributeError, TypeError) as err:  # a malformed annotation is this sample's problem
            annotation, per_object = None, []
            problems.append(str(err).removeprefix(f"{name}: ") or f"malformed annotation ({type(err).__name__})")
        report.objects.append(len(per_object))
        report.masks.append(sum(per_object))
        if isinstance(annotation, list):
            report.null_masks += sum(1 for per_frame in annotation if isinstance(per_frame, Mapping)
                                     for value in per_frame.values()
                                     if value is None or (isinstance(value, Mapping) and value.get("segmentation") is None))
        size = None
        if isinstance(sources[index], str):
            problems.append(sources[index])
        else:
            kind, path = sources[index]
            report.videos.add(str(path))
            info = sizes[sources[index]]
            if isinstance(info, str):
                problems.append(info)
            else:
                size = info
                declared = (sample.get("height"), sample.get("width"))
                if all(declared) and (int(declared[0]), int(declared[1])) != size[1:]:
                    problems.append(f"the sample says {declared[0]}x{declared[1]} but the {kind} is "
                                    f"{size[1]}x{size[2]} (height x width)")
        if annotation is not None:
            problems += _annotation_problems(annotation, size, sources[index][0] if size else "video")
        if placeholder_counts is not None and isinstance(annotation, list):
            regions, accepted = count_regions(sample), tuple(placeholder_counts(per_object))
            if regions not in accepted:
                problems.append(f"{regions} {REGION_PLACEHOLDER} in the conversation, but its {len(per_object)} "
                                f"object(s) need {' or '.join(map(str, accepted))} for this model family")
        if problems:
            report.problems[index] = problems
    return report


def require_files(data_path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """The data file(s) as a list; `DataProblems` naming the first that does not exist."""
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    for path in paths:
        if not Path(path).is_file():
            raise DataProblems(f"data file not found: {path}")
    return paths


def check_data_files(data_path: str | os.PathLike | Sequence[str | os.PathLike],
                     data_folder: str | os.PathLike | None = None,
                     placeholder_counts: PlaceholderCounts | None = None) -> DataReport:
    """Read JSON / JSONL file(s) whole and check them (relative videos start at `data_folder`, default the file's
    folder)."""
    paths = require_files(data_path)
    folder = data_folder if data_folder is not None else default_data_folder(paths)
    return check_samples(load_samples(paths), folder, placeholder_counts, source=", ".join(map(str, paths)))


def _placeholder_counts(model: str | None, tiny: str | None) -> PlaceholderCounts | None:
    """The family's `<region>` rule from its processor (only the processor loads; a tiny model is built first)."""
    if tiny:
        from videorefer.testing.tiny import tiny_checkpoint

        model = str(tiny_checkpoint(tiny))
    if not model:
        return None
    from transformers import AutoProcessor

    import videorefer  # noqa: F401 (registers the families with AutoProcessor)

    return AutoProcessor.from_pretrained(model).region_placeholder_counts


def main(argv: list[str] | None = None) -> None:
    from videorefer.testing.tiny import TINY_FAMILIES

    parser = argparse.ArgumentParser(prog="python -m train.check_data", description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="+", help="JSON / JSONL file(s) in the VideoRefer-700K format")
    parser.add_argument("--data-folder", help="where relative video paths start (default: the first file's folder)")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("--model", help="checkpoint whose family decides the <region> rule (only its processor loads)")
    family.add_argument("--tiny", nargs="?", const=TINY_FAMILIES[0], choices=TINY_FAMILIES,
                        help="use the <region> rule of a tiny model's family (vl3 or v1; no download)")
    args = parser.parse_args(argv)
    try:
        report = check_data_files(args.data, args.data_folder, _placeholder_counts(args.model, args.tiny))
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(report.summary())
    if args.model is None and args.tiny is None:
        print(f"(the {REGION_PLACEHOLDER} counts are not checked: pass --model or --tiny to name the model family)")
    for line in report.problem_lines():
        print(f"  {line}")
    if report.problems:
        sys.exit(1)
    print("no problems found")


if __name__ == "__main__":
    main()
