"""The run report: per-stage counts, the Reviewer's keep rate, time per stage, rejected items with reasons.

Written as `OUT/report.json` and `OUT/report.md` from the stage records (so it also covers resumed and sharded runs).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from videorefer.data.atomic import write_text_atomic

from .inputs import VideoItem
from .store import STAGES, StageStore

__all__ = ["build_report", "write_report"]


def _objects(records: dict, items: list[VideoItem]) -> list[tuple[str, dict]]:
    """(video id, object entry) pairs; the Analyzer's records list plain nouns and yield none."""
    return [(it.id, obj) for it in items if it.id in records for obj in records[it.id].get("objects") or []
            if isinstance(obj, dict)]


def build_report(items: list[VideoItem], out: str | Path, samples: list[dict] | None = None,
                 max_examples: int = 10) -> dict:
    out = Path(out)
    recs = {stage: StageStore(out, stage).records() for stage in STAGES}
    report: dict = {"videos": len(items), "stages": {}}
    for stage in STAGES:
        rs = [recs[stage][it.id] for it in items if it.id in recs[stage]]
        report["stages"][stage] = {
            "videos": dict(Counter(r["status"] for r in rs)),
            "seconds": round(sum(r.get("seconds", 0.0) for r in rs), 2),
        }
    s = report["stages"]
    s["analyze"]["nouns"] = sum(len(r.get("objects") or []) for r in recs["analyze"].values())
    s["annotate"]["objects"] = dict(Counter(o["status"] for _, o in _objects(recs["annotate"], items)))
    segmented = _objects(recs["segment"], items)
    s["segment"]["objects"] = dict(Counter(o["status"] for _, o in segmented))
    s["segment"]["drop_reasons"] = dict(Counter(o["reason"].split(":")[0] for _, o in segmented
                                                if o["status"] == "dropped"))
    reviewed = _objects(recs["review"], items)
    decisions = Counter(o["decision"] for _, o in reviewed)
    s["review"]["objects"] = dict(decisions)
    judged = decisions["keep"] + decisions["reject"]
    s["review"]["keep_rate"] = round(decisions["keep"] / judged, 4) if judged else None
    s["refine"]["objects"] = dict(Counter(o["status"] for _, o in _objects(recs["refine"], items)))
    report["rejected_examples"] = [
        {"video": vid, "noun": o["noun"], "reason": o["reason"], "region_caption": o.get("region_caption")}
        for vid, o in reviewed if o["decision"] == "reject"][:max_examples]
    failures = []
    for stage in STAGES:
        failures += [{"stage": stage, "video": vid, "error": r.get("error")} for vid, r in recs[stage].items()
                     if r["status"] == "failed"]
        failures += [{"stage": stage, "video": vid, "noun": o["noun"], "error": o.get("error") or o.get("reason")}
                     for vid, o in _objects(recs[stage], items)
                     if o.get("status") == "failed" or o.get("decision") == "failed"]
    report["failure_examples"] = failures[:max_examples]
    report["failures"] = len(failures)
    if samples is not None:
        report["samples"] = dict(Counter(x["type"] for x in samples))
    return report


def _counts(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "-"


def to_markdown(report: dict) -> str:
    lines = ["# Data engine report", "", f"Videos: {report['videos']}", "",
             "| stage | videos | objects | seconds |", "| --- | --- | --- | --- |"]
    for stage, info in report["stages"].items():
        objects = info.get("objects", {"nouns": info["nouns"]} if "nouns" in info else {})
        lines.append(f"| {stage} | {_counts(info['videos'])} | {_counts(objects)} | {info['seconds']} |")
    review = report["stages"]["review"]
    lines += ["", f"Reviewer keep rate: {review['keep_rate']} (keep / (keep + reject))",
              f"Segmentor drop reasons: {report['stages']['segment']['drop_reasons']}",
              f"Samples written: {report.get('samples')}", f"Failures recorded: {report['failures']}", "",
              "## Rejected by the Reviewer (sample)", ""]
    lines += [f"- `{r['video']}` / {r['noun']}: {r['reason']}" for r in report["rejected_examples"]] or ["- none"]
    lines += ["", "## Failures (sample)", ""]
    lines += [f"- {f['stage']} `{f['video']}`{' / ' + f['noun'] if 'noun' in f else ''}: {str(f['error'])[:300]}"
              for f in report["failure_examples"]] or ["- none"]
    return "\n".join(lines) + "\n"


def write_report(items: list[VideoItem], out: str | Path, samples: list[dict] | None = None) -> dict:
    out = Path(out)
    report = build_report(items, out, samples)
    write_text_atomic(out / "report.json", json.dumps(report, indent=1))  # each file whole or not there
    write_text_atomic(out / "report.md", to_markdown(report))
    return report
