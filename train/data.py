"""VideoRefer-700K style training data: a dataset that builds each sample's inputs the way inference does, and a collator.

A sample (one JSON object of a list, or one line of a JSONL file) is::

    {"video": "videos/abc.mp4",                    # a video file or a folder of frame images ("image": a picture)
     "conversations": [{"from": "human", "value": "<video>\\nWhat is <region> doing?"},
                       {"from": "gpt", "value": "It is running."}, ...],
     "annotation": [{"12": {"segmentation": RLE | polygon | null}, ...}, ...],   # one dict per object, in order
     "height": 720, "width": 1280}                 # optional; polygons use them (else the video's size)

The official VL3 trainer's layout is read too: `"masks": [{"12": RLE | polygon}, ...]` instead of `annotation`, one
`<region>` per mask, `"video": ["a.mp4"]`. Which `<region>` counts fit an annotation is the family's call
(`processor.region_placeholder_counts`: v1 one per object; VL3 one per object, standing for all its masks, or one per
mask). Everything model-specific goes through the model family's processor: frames are sampled with `processor.load_video`
(the union of annotated frames decoded as extra frames for the region encoder), masks decoded with
`videorefer.regions.annotation_to_objects`, the prompt built with the chat template and labels kept only on assistant
turns (`processor.build_training_example`). `VideoReferCollator` pads with `processor.collate`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from transformers import BatchFeature

from videorefer.prompts import IGNORE_LABEL, REGION_PLACEHOLDER, VIDEO_PLACEHOLDER
from videorefer.regions import annotation_to_objects

__all__ = ["VideoReferDataset", "VideoReferCollator", "load_samples", "ON_MISMATCH"]

logger = logging.getLogger(__name__)
ON_MISMATCH = ("error", "skip")
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


def conversation_turns(sample: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    """`(user, assistant)` pairs with the `<video>` placeholder taken out (the processor puts the video first)."""
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
        question = user["value"].replace(VIDEO_PLACEHOLDER + "\n", "").replace(VIDEO_PLACEHOLDER, "").strip()
        turns.append((question, answer["value"]))
    return turns


def count_regions(sample: Mapping[str, Any]) -> int:
    return sum(str(m.get("value", "")).count(REGION_PLACEHOLDER) for m in sample.get("conversations") or [])


def sample_annotation(sample: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The sample's objects as `[{frame: {"segmentation": ...} | None}, ...]`: VideoRefer-700K's `annotation`, or
    the official VL3 trainer's `masks` (`[{frame: RLE | polygon}, ...]`, segmentations without the wrapping dict)."""
    if sample.get("annotation") is not None:
        return list(sample["annotation"])
    masks = sample.get("masks") or []
    return [{key: None if value is None else {"segmentation": value} for key, value in per_frame.items()}
            if isinstance(per_frame, Mapping) else per_frame for per_frame in masks]


def masks_per_object(annotation: Sequence[Mapping[str, Any]]) -> list[int]:
    """Masks of each object (`null` segmentations left out), counted without decoding any."""
    return [sum(1 for value in per_frame.values() if isinstance(value, Mapping) and value.get("segmentation") is not None)
            if isinstance(per_frame, Mapping) else 0 for per_frame in annotation]


def annotated_frames(annotation: Sequence[Mapping[str, Any]]) -> list[int]:
    """Frames that hold a mask of some object (`null` segmentations left out), without decoding any mask."""
    frames = set()
    for per_frame in annotation:
        for key, value in per_frame.items():
            if isinstance(value, Mapping) and value.get("segmentation") is not None:
                frames.add(int(key))
    return sorted(frames)


def source_path(sample: Mapping[str, Any], data_folder: Path | None, name: str) -> tuple[str, Path]:
    """`("video" | "image", path)` of a sample, relative paths joined to `data_folder`."""
    key = "video" if "video" in sample else "image" if "image" in sample else None
    if key is None:
        raise ValueError(f"{name}: has neither 'video' nor 'image'")
    path = sample[key]
    if isinstance(path, list) and len(path) == 1:  # the official VL3 data writes `"video": ["a.mp4"]`
        path = path[0]
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{name}: {key!r} must be a path (or a list of one path), got {path!r}")
    path = Path(path)
    if not path.is_absolute() and data_folder is not None:
        path = Path(data_folder) / path
    return key, path


class VideoReferDataset(Dataset):
    """VideoRefer-700K samples as model inputs with labels (one `BatchFeature` of batch size 1 per sample).

    Args:
        data_path: JSON / JSONL file(s), or the list of samples itself.
        processor: the model's processor (prompt, frames, masks: one code path with inference).
        data_folder: where relative `video` paths start (default: the data file's folder).
        num_frames: frames sampled per video (default: the processor's, i.e. the model's).
        on_mismatch: a sample whose `<region>` count differs from its number of objects is an `"error"` (a
            `ValueError` naming it, raised here, before training) or is skipped (`"skip"`, counted in a warning).
    """

    def __init__(
        self,
        data_path: str | os.PathLike | Sequence[str | os.PathLike] | list[dict],
        processor: Any,
        data_folder: str | os.PathLike | None = None,
        num_frames: int | None = None,
        on_mismatch: str = "error",
    ):
        if on_mismatch not in ON_MISMATCH:
            raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, got {on_mismatch!r}")
        if isinstance(data_path, list) and data_path and isinstance(data_path[0], Mapping):
            samples, default_folder = data_path, None
        else:
            samples = load_samples(data_path)
            first = data_path if isinstance(data_path, (str, os.PathLike)) else list(data_path)[0]
            default_folder = Path(first).parent
        self.processor = processor
        self.data_folder = Path(data_folder) if data_folder is not None else default_folder
        self.num_frames = num_frames
        self.samples: list[dict] = []
        self.names: list[str] = []
        self.skipped = 0
        for index, sample in enumerate(samples):
            name = sample_name(sample, index)
            n_regions = count_regions(sample)
            accepted = processor.region_placeholder_counts(masks_per_object(sample_annotation(sample)))
            if n_regions not in accepted:
                if on_mismatch == "error":
                    wanted = " or ".join(str(n) for n in accepted)
                    raise ValueError(
                        f"{name}: the conversation has {n_regions} {REGION_PLACEHOLDER} placeholders but this model "
                        f"family needs {wanted} for its annotation ({len(sample_annotation(sample))} objects); set "
                        f"on_mismatch='skip' to leave such samples out"
                    )
                self.skipped += 1
                continue
            self.samples.append(sample)
            self.names.append(name)
        if self.skipped:
            logger.warning(
                "skipped %d of %d samples whose %s count differs from their number of objects",
                self.skipped, len(samples), REGION_PLACEHOLDER,
            )
        if not self.samples:
            raise ValueError("no usable training samples")

    def __len__(self) -> int:
        return len(self.samples)

    def _source(self, sample: Mapping[str, Any], name: str) -> Any:
        """The video's path (file or frame folder), or the picture of an `image` sample (each family's processor
        takes a still image its own way: v1 as a one-frame video, VL3 as an image)."""
        kind, path = source_path(sample, self.data_folder, name)
        if kind == "image":
            return Image.open(path).convert("RGB")
        return path

    def __getitem__(self, index: int) -> BatchFeature:
        sample, name = self.samples[index], self.names[index]
        try:
            turns = conversation_turns(sample, name)
            annotation = sample_annotation(sample)
            source = self._source(sample, name)
            frames = {"num_frames": self.num_frames} if self.num_frames else {}
            if isinstance(source, Image.Image):
                height, width = int(sample.get("height") or source.height), int(sample.get("width") or source.width)
                objects = annotation_to_objects(annotation, height, width, num_frames=1)
                return self.processor.build_training_example(source, turns, objects, **frames)
            # Decode first (sampled + annotated frames in one pass) so polygons can use the video's own size.
            video = self.processor.load_video(source, annotated_frames(annotation), **frames)
            height = int(sample.get("height") or video.height)
            width = int(sample.get("width") or video.width)
            objects = annotation_to_objects(annotation, height, width, num_frames=video.total_frames)
            return self.processor.build_training_example(video, turns, objects, **frames)
        except ValueError as error:
            if str(error).startswith(name):
                raise
            raise ValueError(f"{name}: {error}") from error


class VideoReferCollator:
    """Pads a list of dataset items into one batch (right padding; labels padded with `IGNORE_LABEL`)."""

    def __init__(self, processor: Any):
        self.processor = processor

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.processor.collate(features, padding_side="right")
        return dict(batch)


def count_label_tokens(batch: Mapping[str, torch.Tensor]) -> int:
    """Tokens that count in the loss (for token-weighted comparisons)."""
    return int((batch["labels"][:, 1:] != IGNORE_LABEL).sum())
