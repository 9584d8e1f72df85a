"""What a score is computed from, checked so that it cannot mislead: one run only, every item of the benchmark.

Both scorers (``bench_q score``, ``bench_d score``) read their files through ``read_run``: records of different runs
(another model, protocol, mode, frame count or fps) are refused, naming the files; ids answered twice are reported
(the last record kept); items of the benchmark without a result are named, and a shard set with shards missing
(``q.shard0of2.jsonl`` without ``q.shard1of2.jsonl``) is named as such. The benchmark's item list comes from
``--question-file``, else from the ``question_file`` the runner recorded in every prediction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videorefer.data.jsonl import read_jsonl

__all__ = ["RUN_FIELDS", "ScoredRun", "read_run", "run_settings", "write_score_file"]

#: Fields every prediction records that identify its run: records that differ in one of them are another run.
RUN_FIELDS = ("model", "protocol", "mode", "num_frames", "fps")
SHARD_NAME = re.compile(r"\.shard(\d+)of(\d+)\.")
SHOWN_IDS = 20


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN_IDS]) + (f" ... (+{len(ids) - SHOWN_IDS} more)" if len(ids) > SHOWN_IDS else "")


def run_settings(records_by_file: dict[str, list[dict]]) -> dict[str, Any]:
    """The run fields all records share; a ``ValueError`` naming the files when two runs are mixed."""
    settings: dict[str, Any] = {}
    for key in RUN_FIELDS:
        files_by_value: dict[str, set[str]] = {}
        for path, records in records_by_file.items():
            for record in records:
                if key in record:
                    files_by_value.setdefault(json.dumps(record[key]), set()).add(path)
        if len(files_by_value) > 1:
            found = "; ".join(f"{key}={value} in {', '.join(sorted(files))}"
                              for value, files in sorted(files_by_value.items()))
            raise ValueError(f"these predictions come from different runs ({found}); score each run on its own")
        settings[key] = json.loads(next(iter(files_by_value))) if files_by_value else None
    return settings


@dataclass
class ScoredRun:
    """The records to score (the last one per id) with the run's settings and what is wrong with the set."""

    records: list[dict]
    settings: dict[str, Any]
    expected: int | None = None  # items in the benchmark (None: its item list was not found)
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # ids that are not in the benchmark
    missing_shards: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.expected is not None and not self.missing and not self.missing_shards and not self.unknown

    def warnings(self) -> list[str]:
        lines = list(self.notes)
        if self.missing_shards:
            lines.append(f"INCOMPLETE shard set: {', '.join(self.missing_shards)} missing")
        if self.missing:
            lines.append(f"INCOMPLETE: {len(self.missing)} of {self.expected} benchmark items have no result: ids "
                         f"{_shown(self.missing)}")
        if self.unknown:
            lines.append(f"{len(self.unknown)} result(s) are for ids not in the benchmark: {_shown(self.unknown)}")
        if self.duplicates:
            lines.append(f"{len(self.duplicates)} id(s) have more than one result (the last one is scored): "
                         f"{_shown(self.duplicates)}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {**self.settings, "items": len(self.records), "expected": self.expected, "complete": self.complete,
                "missing": self.missing, "missing_shards": self.missing_shards, "duplicates": self.duplicates,
                "unknown": self.unknown}


def _missing_shards(paths: list[str]) -> list[str]:
    shards: dict[tuple[str, int], set[int]] = {}
    for path in paths:
        match = SHARD_NAME.search(Path(path).name)
        if match:
            stem = Path(path).name[: match.start()]
            shards.setdefault((stem, int(match.group(2))), set()).add(int(match.group(1)))
    return [f"{stem}.shard{i}of{n}" for (stem, n), present in sorted(shards.items()) for i in range(n)
            if i not in present]


def _expected_ids(question_file: str | None) -> list[str] | None:
    if not question_file or not Path(question_file).is_file():
        return None
    return [str(item["id"]) for item in json.loads(Path(question_file).read_text(encoding="utf-8"))]


def read_run(paths: list[str], result_key: str, question_file: str | None = None) -> ScoredRun:
    """Read prediction / score files of one run (see the module docstring); ``result_key`` marks a record that holds
    a result (``pred``, ``scores``): an id with two such records is a duplicate, an id without one is missing."""
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"file not found: {path}")
    by_file = {str(path): read_jsonl(path) for path in paths}
    settings = run_settings(by_file)
    latest: dict[str, dict] = {}
    results: dict[str, int] = {}
    for records in by_file.values():
        for record in records:
            if "id" not in record:
                raise ValueError(f"record without an 'id' field: {str(record)[:200]}")
            key = str(record["id"])
            latest[key] = record
            results[key] = results.get(key, 0) + (result_key in record)
    if not latest:
        raise ValueError(f"no records in {', '.join(map(str, paths))}")
    recorded = sorted({str(r["question_file"]) for r in latest.values() if r.get("question_file")})
    question_file = question_file or (recorded[0] if len(recorded) == 1 else None)
    run = ScoredRun(records=list(latest.values()), settings=settings,
                    duplicates=sorted(k for k, n in results.items() if n > 1),
                    missing_shards=_missing_shards(list(by_file)))
    expected = _expected_ids(question_file)
    if expected is None:
        run.notes.append("cannot tell whether every benchmark item is here: "
                         + (f"{question_file} not found" if question_file else "no question file recorded")
                         + " (pass --question-file)")
    else:
        have = {k for k, n in results.items() if n}
        run.expected, run.missing = len(expected), [i for i in expected if i not in have]
        run.unknown = sorted(set(latest) - set(expected))
    run.settings["question_file"] = question_file
    return run


def write_score_file(path: str | Path, benchmark: str, run: ScoredRun, judge: str, files: list[str],
                     scores: dict[str, Any]) -> None:
    """A JSON score file naming what was scored: model, protocol, mode, frames, judge, files, completeness."""
    data = {"benchmark": benchmark, **run.as_dict(), "judge": judge, "files": [str(f) for f in files], **scores}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, indent=1))
