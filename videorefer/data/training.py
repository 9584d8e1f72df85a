"""Training samples in the official formats, read into model inputs with labels through the family's processor.

One reader for `train.data` (the dataset the trainer iterates) and `videorefer.train_parity` (the check against the
official trainers), so what is checked is what trains. A sample (one JSON object of a list, or one JSONL line)::

    {"video": "videos/abc.mp4",            # a video file or a frame folder; a list of one path too; "image": a picture
     "conversations": [{"from": "human", "value": "<video>\\nWhat is <region> doing?"},
                       {"from": "gpt", "value": "It is running."}, ...],
     "annotation": [{"12": {"segmentation": RLE | polygon | null}, ...}, ...],   # one dict per object, in order
     "height": 720, "width": 1280}         # needed for polygons and uncompressed RLE (else the video's size)

The official VL3 trainer's layout `"masks": [{"12": RLE | polygon}, ...]` is read too; either key takes either form
of a frame's value (with or without the `{"segmentation": ...}` wrapper). `<video>` stays in the first question for
the processor to place (v1: at the head of that turn; VL3: where it is written; absent: at the start); a `<video>` in
a later turn is refused (the official v1 trainer would move the video there, VL3 would add a second one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from PIL import Image
from transformers import BatchFeature

from ..prompts import REGION_PLACEHOLDER, VIDEO_PLACEHOLDER
from ..regions import annotation_to_objects

__all__ = [
    "load_samples", "sample_name", "conversation_turns", "count_regions", "sample_annotation", "masks_per_object",
    "annotated_frames", "source_path", "sample_source", "build_example",
]

USER_ROLES = ("human", "user")
ASSISTANT_ROLES = ("gpt", "assistant")


def load_samples(data_path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """Samples from one or more JSON (a list) or JSONL (one sample per line) files."""
    paths = [data_path] if isinstance(data_path, (str, os.PathLike)) else list(data_path)
    samples: list[dict] = []
    for path in paths:
        text = Path(path).read_text()
        if str(path).endswith(".jsonl"):
            samples.extend(json.loads(line) for line in text.splitlines() if line.strip())
        else:
            data = json.loads(text)
            if not isinstance(data, list):
                raise ValueError(f"{path} must hold a JSON list of samples (or use .jsonl)")
            samples.extend(data)
    return samples


def sample_name(sample: Mapping[str, Any], index: int) -> str:
    """How errors name a sample: its position and, when it has one, its id and video."""
    parts = [f"sample {index}"]
    if "id" in sample:
        parts.append(f"id {sample['id']!r}")
    if "video" in sample or "image" in sample:
        parts.append(f"video {sample.get('video', sample.get('image'))!r}")
    return " ".join(parts)


def conversation_turns(sample: Mapping[str, Any], name: str, keep_video: bool = False) -> list[tuple[str, str]]:
    """`(user, assistant)` pairs. `keep_video`: the first question keeps its `<video>` where written (training: the
    processor places it); otherwise it is taken out (a question as a user asks it)."""
    messages = sample.get("conversations")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{name}: 'conversations' must be a non-empty list")
    if len(messages) % 2:
        raise ValueError(f"{name}: 'conversations' must alternate human / gpt turns, got {len(messages)} messages")
    turns = []
    for k in range(0, len(messages), 2):
        user, answer = messages[k], messages[k + 1]
        if user.get("from") not in USER_ROLES or answer.get("from") not in ASSISTANT_ROLES:
            raise ValueError(
                f"{name}: message {k} must be from human and message {k + 1} from gpt, "
                f"got {user.get('from')!r} and {answer.get('from')!r}"
            )
        question = str(user["value"])
        if k and VIDEO_PLACEHOLDER in question:
            raise ValueError(f"{name}: message {k} holds {VIDEO_PLACEHOLDER}; the video belongs in the first question")
        if question.count(VIDEO_PLACEHOLDER) > 1:
            raise ValueError(f"{name}: message {k} holds {question.count(VIDEO_PLACEHOLDER)} {VIDEO_PLACEHOLDER}s")
        if not keep_video:
            question = question.replace(VIDEO_PLACEHOLDER + "\n", "").replace(VIDEO_PLACEHOLDER, "").strip()
        turns.append((question, str(answer["value"])))
    return turns


def count_regions(sample: Mapping[str, Any]) -> int:
    return sum(str(m.get("value", "")).count(REGION_PLACEHOLDER) for m in sample.get("conversations") or [])


def _wrapped(value: Any) -> dict | None:
    """A frame's value in either form (`{"segmentation": X}` or X itself) as `{"segmentation": X}`, None for null."""
    if value is None:
        return None
    if isinstance(value, Mapping) and "segmentation" in value:
        return dict(value)
    return {"segmentation": value}


def sample_annotation(sample: Mapping[str, Any], name: str = "the sample") -> list[Any]:
    """The sample's objects as `[{frame: {"segmentation": ...} | None}, ...]`, from VideoRefer-700K's `annotation` or
    the official VL3 trainer's `masks`, each frame's value with or without the wrapping dict."""
    if sample.get("annotation") is not None and sample.get("masks") is not None:
        raise ValueError(f"{name} has both 'annotation' and 'masks'; keep one")
    objects = sample.get("annotation") if sample.get("annotation") is not None else sample.get("masks") or []
    if isinstance(objects, (Mapping, str, bytes)):
        raise ValueError(f"{name}: the annotation must be a list with one dict per object")
    return [{key: _wrapped(value) for key, value in per_frame.items()} if isinstance(per_frame, Mapping) else per_frame
            for per_frame in objects]


def masks_per_object(annotation: Sequence[Any]) -> list[int]:
    """Masks of each object (`null` segmentations left out), counted without decoding any."""
    return [sum(1 for value in per_frame.values() if value is not None and value.get("segmentation") is not None)
            if isinstance(per_frame, Mapping) else 0 for per_frame in annotation]


def annotated_frames(annotation: Sequence[Any]) -> list[int]:
    """Frames that hold a mask of some object (`null` segmentations left out), sorted, without decoding any mask
    (the official v1 trainer orders them by iterating a set: arbitrary)."""
    frames = set()
    for per_frame in annotation:
        for key, value in per_frame.items() if isinstance(per_frame, Mapping) else ():
            if value is not None and value.get("segmentation") is not None:
                frames.add(int(key))
    return sorted(frames)


def source_path(sample: Mapping[str, Any], data_folder: str | os.PathLike | None, name: str) -> tuple[str, Path]:
    """`("video" | "image", path)` of a sample (`["a.mp4"]` as the official VL3 data writes it), relative paths
    joined to `data_folder`; nothing is opened."""
    key = "video" if "video" in sample else "image" if "image" in sample else None
    if key is None:
        raise ValueError(f"{name}: has neither 'video' nor 'image'")
    path = sample[key]
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}: {key!r} must be a path (or a list of one path), got {path!r}")
    path = Path(path)
    if not path.is_absolute() and data_folder is not None:
        path = Path(data_folder) / path
    return key, path


def sample_source(sample: Mapping[str, Any], data_folder: str | os.PathLike | None, name: str) -> Any:
    """The video's path (file or frame folder), or the picture of an `image` sample (each family's processor takes a
    still image its own way)."""
    key, path = source_path(sample, data_folder, name)
    if key == "image":
        return Image.open(path).convert("RGB")
    return path


def build_example(
    sample: Mapping[str, Any],
    processor: Any,
    data_folder: str | os.PathLike | None = None,
    num_frames: int | None = None,
    name: str = "sample",
) -> BatchFeature:
    """One sample as inputs + labels (a batch of one): frames by the family's `load_video` (sampled and annotated
    frames in one pass), masks decoded at the video's size, text and labels by `processor.build_training_example`.
    Errors are `ValueError`s that start with `name`."""
    try:
        turns = conversation_turns(sample, name, keep_video=True)
        annotation = sample_annotation(sample, name)
        source = sample_source(sample, data_folder, name)
        frames = {"num_frames": num_frames} if num_frames else {}
        if isinstance(source, Image.Image):
            height, width = int(sample.get("height") or source.height), int(sample.get("width") or source.width)
            objects = annotation_to_objects(annotation, height, width, num_frames=1)
            return processor.build_training_example(source, turns, objects, **frames)
        video = processor.load_video(source, annotated_frames(annotation), **frames)
        height = int(sample.get("height") or video.height)
        width = int(sample.get("width") or video.width)
        objects = annotation_to_objects(annotation, height, width, num_frames=video.total_frames)
        return processor.build_training_example(video, turns, objects, **frames)
    except ValueError as error:
        if str(error).startswith(name):
            raise
        raise ValueError(f"{name}: {error}") from error
