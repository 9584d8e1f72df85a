"""Processor parity against a VL3 parity fixture (layout: the fixture README's "Layout contract").

The fixture's raw frames are written as PNGs into a temporary folder and go through our whole path: fps sampling of
a frame folder (3 fps), resize and patches, the prompt, the region crops of the fixture's masks. Every official
processor output is compared: ids exactly, the rest by max |diff|.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from .processing import VideoReferVL3Processor

__all__ = ["ProcessorParityReport", "run_processor_parity"]


@dataclass
class ProcessorParityReport:
    """`exact[name]`: equal or not (ids, indices, grids, timestamps); `max_abs[name]`: max |ours - official|."""

    exact: dict[str, bool] = field(default_factory=dict)
    max_abs: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.exact.values()) and all(v == 0 for v in self.max_abs.values())

    def lines(self) -> list[str]:
        out = [f"{name}: {'equal' if same else 'DIFFERENT'}" for name, same in self.exact.items()]
        return out + [f"{name}: max |diff| {value:.3g}" for name, value in self.max_abs.items()]


def _max_abs(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    if ours.shape != theirs.shape:
        return float("inf")
    return float((ours.double() - theirs.double()).abs().max()) if ours.numel() else 0.0


def run_processor_parity(fixture_dir: str | Path) -> ProcessorParityReport:
    """Run our processor on a fixture's raw frames, masks and question; compare with the official outputs."""
    fixture_dir = Path(fixture_dir)
    io = json.loads((fixture_dir / "io.json").read_text())
    inputs = load_file(str(fixture_dir / "inputs.safetensors"))
    processor = VideoReferVL3Processor.from_pretrained(fixture_dir)
    raw = inputs["raw_frames_uint8"].numpy()
    masks = inputs["masks_uint8"].numpy()
    objects: list[dict[int, np.ndarray]] = []
    for entry, mask in zip(io["masks"], masks):
        while len(objects) <= entry["object"]:
            objects.append({})
        objects[entry["object"]][int(entry["raw_frame"])] = mask
    question = io["question"]
    report = ProcessorParityReport()
    with tempfile.TemporaryDirectory() as folder:
        for t, frame in enumerate(raw):
            Image.fromarray(frame).save(Path(folder) / f"{t:05d}.png")
        video = processor.load_video(folder, extra_frame_indices=sorted({f for obj in objects for f in obj}))
        out = processor(video, question, objects)
    report.exact["sampled frames"] = video.frame_indices == io["video_raw_frame_indices"]
    report.exact["timestamps"] = np.allclose(video.timestamps, io["timestamps"], rtol=0, atol=1e-12)
    report.exact["input_ids"] = out["input_ids"][0].tolist() == io["input_ids"]
    report.exact["video_grid_thw"] = torch.equal(out["grid_thw"], inputs["video_grid_thw"])
    report.max_abs["pixel_values_video"] = _max_abs(out["pixel_values"], inputs["pixel_values_video"])
    regions = out["region_inputs"]
    for k in range(len(io["masks"])):
        crop = torch.from_numpy(np.ascontiguousarray(processor_crop(processor, video, objects, k)))
        report.max_abs[f"region_crop_uint8.{k}"] = _max_abs(crop, inputs[f"region_crop_uint8.{k}"])
        report.max_abs[f"region_mask_resized.{k}"] = _max_abs(regions.mask_grids[k], inputs[f"region_mask_resized.{k}"])
    report.max_abs["pixel_values_regions"] = _max_abs(regions.pixel_values, inputs["pixel_values_regions"])
    report.exact["region_grid_thw"] = torch.equal(regions.grid_thw, inputs["region_grid_thw"])
    report.exact["tokens per mask"] = out["layout"].tokens_per_mask == io["mask_nums"]
    return report


def processor_crop(processor: VideoReferVL3Processor, video, objects, k: int) -> np.ndarray:
    """The uint8 crop of mask k (object-major, frames in order), as the region path computes it."""
    from .image_processing import crop_regions

    flat = [(obj[f], f) for obj in objects for f in sorted(obj)]
    mask, frame = flat[k]
    return crop_regions(video.frame(frame)[None], (np.asarray(mask) > 0)[None]).crops[0]
