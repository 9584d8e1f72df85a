"""The data engine offline: tiny random models built in code and a scripted chat server on 127.0.0.1.

    python -m train.data_engine offline --out OUT [--tiny vl3|v1] [--videos LIST_OR_FOLDER]

Runs every stage of the real engine (`run`: the same code, config, HTTP client, resumable files, export and report)
on `examples/bigbuckbunny.mp4` (or your `--videos`), with a tiny random Grounding DINO and SAM 2.1, the tiny
VideoRefer of `--tiny` (default vl3) as the region captioner, and `ScriptedAgents` standing in for the four chat
models: nouns taken from the caption, canned annotations, a reviewer that keeps everything and a refiner that writes
one multiple-choice question. The texts are the script's and the masks come from random weights: the output shows
the format and the path, not data worth training on. `build_models` and `engine_config` are what the tests use too.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from .testing import scripted_server

__all__ = ["ScriptedAgents", "build_models", "engine_config", "run_offline", "EXAMPLE_VIDEOS"]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_VIDEOS = [{"id": "bunny", "video": str(REPO / "examples" / "bigbuckbunny.mp4"),
                   "caption": "A big rabbit stands next to a rock while a butterfly flies by."}]
STOPWORDS = frozenset("a an the and or of to in on at by for with from while next stands flies moves big small "
                      "little some this that there".split())
AGENTS = ("analyzer", "annotator", "reviewer", "refiner")  # each agent's `model` name: how the script tells them apart


def caption_nouns(caption: str, limit: int = 3) -> list[str]:
    """The script's "analysis": the caption's first content words (at least 3 letters, no stop words)."""
    words = [w for w in re.findall(r"[a-z]+", caption.lower()) if len(w) >= 3 and w not in STOPWORDS]
    return list(dict.fromkeys(words))[:limit] or ["object"]


class ScriptedAgents:
    """Well-formed replies for the four chat agents, told apart by the request's `model` (see `engine_config`)."""

    def __init__(self, qa: int = 1):
        self.qa = qa

    def __call__(self, body: dict) -> tuple[int, object]:
        agent, user = body.get("model"), body["messages"][-1]["content"]
        if agent == "analyzer":
            return 200, json.dumps({"objects": caption_nouns(user.split("Caption:", 1)[-1])})
        if agent == "annotator":
            noun = user[-1]["text"].split(": ", 1)[1]
            return 200, json.dumps({"dynamics": f"The {noun} moves slowly.", "appearance": f"A grey {noun}."})
        if agent == "reviewer":
            return 200, json.dumps({"match": True, "reason": "the scripted offline reviewer keeps every object"})
        if agent == "refiner":
            noun = user.split("Object: ", 1)[1].split("\n")[0]
            qa = [{"question": "What does <region> do?", "options": ["It moves slowly", "It flies away",
                                                                      "It swims", "It sleeps"], "answer": "A"}]
            return 200, json.dumps({"detailed_caption": f"The {noun} is grey. It moves slowly across the scene.",
                                    "short_caption": f"A {noun} moving slowly.", "qa": qa[: self.qa]})
        return 400, {"error": {"message": f"the scripted server has no agent named {agent!r}"}}


def build_models(root: str | Path, words: list[str], captioner: str | Path) -> dict[str, str]:
    """A tiny random Grounding DINO that knows `words` and a tiny SAM 2.1, written under `root`; `captioner` is the
    region captioner's checkpoint (a tiny VideoRefer of either family)."""
    from videorefer.testing.tiny_grounding_dino import build_tiny_grounding_dino
    from videorefer.testing.tiny_sam2 import build_tiny_sam2

    root = Path(root)
    return {"detector": str(build_tiny_grounding_dino(root / "gdino", words)),
            "sam2": str(build_tiny_sam2(root / "sam2")), "captioner": str(captioner)}


def engine_config(url: str, models: dict[str, str], **llm: Any) -> dict:
    """An engine config (a dict for `config.json`) on tiny models: 4 frames, the chat agents at `url` named by
    `AGENTS`, every detection kept (random weights score low); `llm` overrides the chat settings (timeout, ...)."""
    llm = {"backend": "endpoint", "url": url, "model": "scripted", "timeout": 30.0, "retries": 2, "backoff": 0, **llm}
    return {
        "num_frames": 4, "max_objects": 4, "frame_size": 64, "batch_size": 2, "llm_defaults": llm,
        "analyzer": {"model": "analyzer"}, "annotator": {"model": "annotator"},
        "segmentor": {"detector": models["detector"], "sam2": models["sam2"], "box_threshold": 0.0,
                      "text_threshold": 0.0, "min_mask_fraction": 0.0, "device": "cpu"},
        "reviewer": {"captioner": models["captioner"], "captioner_device": "cpu", "captioner_max_new_tokens": 6,
                     "llm": {"model": "reviewer"}},
        "refiner": {"qa": 1, "llm": {"model": "refiner"}},
    }


def run_offline(out: str | Path, family: str = "vl3", videos: str | Path | None = None) -> dict | None:
    """Run the whole engine offline into `out` (rerunning resumes); returns the report."""
    from videorefer.testing.tiny import tiny_checkpoint

    from .cli import run_command, build_parser
    from .inputs import load_inputs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if videos is None:
        videos = out / "videos.jsonl"
        videos.write_text("".join(json.dumps(item) + "\n" for item in EXAMPLE_VIDEOS))
    words = sorted({w for item in load_inputs(videos) for w in caption_nouns(item.caption)})
    models_dir = out / "offline-models"
    shutil.rmtree(models_dir, ignore_errors=True)  # rebuilt from the captions' words (same seed: same weights)
    models = build_models(models_dir, words, tiny_checkpoint(family))
    print(f"[data_engine] OFFLINE: tiny random models ({family} captioner) and a scripted chat server; the texts are "
          "the script's, the masks random: this shows the path and the format, not usable data")
    with scripted_server(ScriptedAgents()) as url:
        config = out / "offline-config.json"
        config.write_text(json.dumps(engine_config(url, models), indent=1))
        args = build_parser().parse_args(["run", str(config), "--videos", str(videos), "--out", str(out),
                                          "--no-progress"])
        return run_command(args)
