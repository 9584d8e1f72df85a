"""Per-stage results on disk: `OUT/<stage>.jsonl` (or `OUT/<stage>.shard<i>of<n>.jsonl`), one line per video.

Lines are appended and forced to disk as each video finishes (`videorefer.data.jsonl.JsonlWriter`), so a killed run
loses at most the video in progress; a truncated last line is ignored on reading and cut off before appending. Readers
merge every shard's file of a stage; a later line for the same video supersedes an earlier one (e.g. `--retry-failed`).
"""

from __future__ import annotations

from pathlib import Path

from videorefer.data.jsonl import JsonlWriter, read_jsonl
from videorefer.data.sharding import shard_output_path

__all__ = ["STAGES", "StageStore"]

STAGES = ("analyze", "annotate", "segment", "review", "refine")


class StageStore:
    """Read all records of a stage and append this shard's records."""

    def __init__(self, out: str | Path, stage: str, shard: tuple[int, int] | None = None):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
        self.out, self.stage = Path(out), stage
        self.path = shard_output_path(self.out / f"{stage}.jsonl", shard)

    def files(self) -> list[Path]:
        return sorted(set(self.out.glob(f"{self.stage}.jsonl")) | set(self.out.glob(f"{self.stage}.shard*.jsonl")))

    def records(self) -> dict[str, dict]:
        """Latest record per video id over every shard's file."""
        out: dict[str, dict] = {}
        for path in self.files():
            for record in read_jsonl(path):
                out[str(record["id"])] = record
        return out

    def writer(self) -> JsonlWriter:
        return JsonlWriter(self.path)
