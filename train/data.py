"""The training dataset and collator: samples in the official formats (`videorefer.data.training` reads them: the
700K `annotation` or the VL3 trainer's `masks`, both forms) built into inputs with labels by the family's processor.

Which `<region>` counts fit an annotation is the family's call (`processor.region_placeholder_counts`: v1 one per
object; VL3 one per object, standing for all its masks, or one per mask); a sample that fits none is an error or, with
`on_mismatch="skip"`, left out and counted. `VideoReferCollator` pads with `processor.collate`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset
from transformers import BatchFeature

from videorefer.data.training import (
    build_example, conversation_turns, count_regions, load_samples, masks_per_object, sample_annotation, sample_name,
)
from videorefer.prompts import IGNORE_LABEL, REGION_PLACEHOLDER

__all__ = ["VideoReferDataset", "VideoReferCollator", "load_samples", "conversation_turns", "ON_MISMATCH"]

logger = logging.getLogger(__name__)
ON_MISMATCH = ("error", "skip")


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
            annotation = sample_annotation(sample, name)
            accepted = processor.region_placeholder_counts(masks_per_object(annotation))
            if n_regions not in accepted:
                if on_mismatch == "error":
                    wanted = " or ".join(str(n) for n in accepted)
                    raise ValueError(
                        f"{name}: the conversation has {n_regions} {REGION_PLACEHOLDER} placeholders but this model "
                        f"family needs {wanted} for its annotation ({len(annotation)} objects); set "
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

    def __getitem__(self, index: int) -> BatchFeature:
        return build_example(self.samples[index], self.processor, self.data_folder, self.num_frames, self.names[index])


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
