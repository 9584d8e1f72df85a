"""Resumable JSONL files: one JSON object per line, each line durable once written.

Shared by the benchmark runners (predictions, judge scores) and the data engine (per-stage results): a killed run
loses at most the record in progress, and rerunning the same command continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["read_jsonl", "latest_by_id", "JsonlWriter"]

logger = logging.getLogger(__name__)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file, tolerating a truncated last line (a run killed mid-write).

    A broken line anywhere but at the end is an error naming the line: that is corruption, not an interrupted write.
    """
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict] = []
    lines = path.read_text(encoding="utf-8").split("\n")
    # A file written by JsonlWriter ends with "\n", so the final element is "" unless the last write was cut short.
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                logger.warning("%s: ignoring truncated last line %d (interrupted run)", path, number)
                continue
            raise ValueError(f"{path}: line {number} is not valid JSON ({err}); the file is corrupted") from err
        if not isinstance(record, dict):
            raise ValueError(f"{path}: line {number} is {type(record).__name__}, expected a JSON object")
        records.append(record)
    return records


def latest_by_id(records: Iterable[dict]) -> dict[str, dict]:
    """Map ``str(id)`` to the last record with that id (later lines supersede earlier ones, e.g. a retried judge)."""
    out: dict[str, dict] = {}
    for record in records:
        if "id" not in record:
            raise ValueError(f"record without an 'id' field: {str(record)[:200]}")
        out[str(record["id"])] = record
    return out


class JsonlWriter:
    """Append-only JSONL writer that makes every record durable before returning (flush + fsync per line).

    On open, a partial last line left by a killed run is cut off, so the next record starts on a fresh line; that
    item was never counted as finished (``read_jsonl`` ignores it) and is simply redone.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_tail()
        self._file = open(self.path, "a", encoding="utf-8")

    def _drop_partial_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1  # 0 when the only line is partial
        logger.warning("%s: dropping a partial last line (%d bytes)", self.path, len(data) - keep)
        with open(self.path, "r+b") as f:
            f.truncate(keep)

    def write(self, record: dict) -> None:
        """Write one record as one line and force it to disk."""
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
