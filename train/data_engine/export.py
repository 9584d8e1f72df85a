"""Assemble the final VideoRefer-700K file from the stage records: `OUT/videorefer_700k.json`.

Per kept and refined object, in video order then object order: one detailed-caption sample, one short-caption
sample and one sample per multiple-choice question. Each sample is exactly what `train.data.VideoReferDataset` reads:
`video` (relative to the output folder), `conversations` with one `<region>`, `annotation` (one dict per `<region>`,
RLE masks on the sampled frames), `height` and `width`; extra keys `type`, `noun`, `source` are ignored by the loader.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from videorefer.data.atomic import write_text_atomic
from videorefer.prompts import DESCRIBE_PROMPT, SHORT_DESCRIBE_PROMPT

from .agents import LETTERS
from .inputs import VideoItem
from .store import STAGES, StageStore

__all__ = ["DETAILED_PROMPT", "SHORT_PROMPT", "build_samples", "export", "OUTPUT_NAME"]

OUTPUT_NAME = "videorefer_700k.json"
# Trained with exactly the question inference asks (`VideoRefer.describe`, the demo, Bench-D).
DETAILED_PROMPT = DESCRIBE_PROMPT
SHORT_PROMPT = SHORT_DESCRIBE_PROMPT
QA_SUFFIX = "Answer with the option's letter from the given choices directly."
SOURCE = "videorefer-data-engine"


def _turns(question: str, answer: str) -> list[dict]:
    return [{"from": "human", "value": "<video>\n" + question}, {"from": "gpt", "value": answer}]


def build_samples(item: VideoItem, segment: dict, refine: dict, out: Path) -> list[dict]:
    """The samples of one video."""
    samples: list[dict] = []
    video = os.path.relpath(item.video, out)
    for k, obj in enumerate(refine["objects"]):
        if obj.get("status") != "ok":
            continue
        base = {"video": video, "annotation": [segment["objects"][k]["annotation"]], "height": segment["height"],
                "width": segment["width"], "noun": obj["noun"], "source": SOURCE}
        samples.append({"id": f"{item.id}_obj{k}_detailed", "type": "detailed_caption",
                        "conversations": _turns(DETAILED_PROMPT, obj["detailed_caption"]), **base})
        samples.append({"id": f"{item.id}_obj{k}_short", "type": "short_caption",
                        "conversations": _turns(SHORT_PROMPT, obj["short_caption"]), **base})
        for q, qa in enumerate(obj.get("qa", [])):
            options = "\n".join(f"({LETTERS[i]}) {text}" for i, text in enumerate(qa["options"]))
            answer = f"({qa['answer']}) {qa['options'][LETTERS.index(qa['answer'])]}"
            samples.append({"id": f"{item.id}_obj{k}_qa{q}", "type": "qa",
                            "conversations": _turns(f"{qa['question']}\n{options}\n{QA_SUFFIX}", answer), **base})
    return samples


def export(items: list[VideoItem], out: str | Path) -> Path:
    """Write `OUT/videorefer_700k.json` once every video has a record in every stage (all shards merged)."""
    out = Path(out)
    records = {stage: StageStore(out, stage).records() for stage in STAGES}
    missing = {stage: sum(it.id not in recs for it in items) for stage, recs in records.items()}
    missing = {stage: n for stage, n in missing.items() if n}
    if missing:
        raise RuntimeError(f"cannot export yet: videos without a record per stage {missing} (run the remaining "
                           f"stages / shards first)")
    samples: list[dict] = []
    for item in items:
        refine = records["refine"][item.id]
        if refine["status"] == "ok":
            samples.extend(build_samples(item, records["segment"][item.id], refine, out))
    return write_text_atomic(out / OUTPUT_NAME, json.dumps(samples, ensure_ascii=False))  # never half-written
