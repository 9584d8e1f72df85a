"""Check this implementation against outputs of the official VideoRefer code.

    python -m videorefer.parity FIXTURE_DIR [--stage STAGE]

A parity folder holds one case written by the official code: a checkpoint in the official layout, its tokenizer,
`inputs.safetensors` (raw frames, masks, ids, pixel values), `outputs.safetensors` (logits, object tokens, greedy ids,
...) and `io.json` (question, which raw frames were sampled / masked, ...). The model and processor are loaded through
the public loading path and fed the raw frames, masks and question. Exit status 0 only when the input ids match, the
logits differ by at most 1e-4 and the greedy ids match. A folder whose `fixture.json` has kind `train-parity` holds
one step of an official trainer instead: `videorefer.train_parity` checks ours against it (exit 0 / 1 / 2 alike).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from .api import load_model_and_processor
from .train_parity import is_train_fixture, run_train_parity
from .video_io import load_video

__all__ = ["ParityReport", "run_parity", "main"]

LOGITS_TOLERANCE = 1e-4
PIXEL_TOLERANCE = 1e-4


@dataclass
class ParityReport:
    input_ids_match: bool = False
    sampled_frames_match: bool = False
    pixel_values_max_diff: float = float("inf")
    logits_max_diff: float = float("inf")
    object_tokens_max_diff: float = float("inf")
    video_tokens_max_diff: float = float("inf")
    pooled_max_diff: float = float("inf")
    merged_max_diff: float = float("inf")
    tokens_per_object_match: bool = False
    greedy_ids_match: bool = False
    greedy_ids: list[int] = field(default_factory=list)
    expected_greedy_ids: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.input_ids_match
            and self.sampled_frames_match
            and self.pixel_values_max_diff <= PIXEL_TOLERANCE
            and self.logits_max_diff <= LOGITS_TOLERANCE
            and self.greedy_ids_match
        )

    def lines(self) -> list[str]:
        return [
            f"input ids match:               {self.input_ids_match}",
            f"sampled frames match:          {self.sampled_frames_match}",
            f"pixel values max |diff|:       {self.pixel_values_max_diff:.3e}",
            f"video tokens max |diff|:       {self.video_tokens_max_diff:.3e}",
            f"pooled object features |diff|: {self.pooled_max_diff:.3e}",
            f"merged object features |diff|: {self.merged_max_diff:.3e}",
            f"object tokens max |diff|:      {self.object_tokens_max_diff:.3e}",
            f"tokens per object match:       {self.tokens_per_object_match}",
            f"logits max |diff|:             {self.logits_max_diff:.3e} (tolerance {LOGITS_TOLERANCE:g})",
            f"greedy ids match:              {self.greedy_ids_match} (ours {self.greedy_ids}, "
            f"official {self.expected_greedy_ids})",
            f"PARITY {'OK' if self.passed else 'FAILED'}",
        ]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def run_parity(folder: str | Path) -> ParityReport:
    folder = Path(folder)
    for name in ("inputs.safetensors", "outputs.safetensors", "io.json"):
        if not (folder / name).is_file():
            raise ValueError(f"{folder} is not a parity folder: {name} is missing")
    inputs = load_file(folder / "inputs.safetensors")
    expected = load_file(folder / "outputs.safetensors")
    io = json.loads((folder / "io.json").read_text())
    report = ParityReport(expected_greedy_ids=expected["generated_ids"][0].tolist())

    model, processor = load_model_and_processor(folder, device="cpu", dtype=torch.float32, attn_implementation="eager")

    # Objects: masks_uint8 holds each object's masks in order, on the raw frames `object_raw_frames` lists.
    raw = inputs["raw_frames_uint8"].numpy()
    masks = inputs["masks_uint8"].numpy()
    objects, row = [], 0
    for frames in io["object_raw_frames"]:
        objects.append({int(f): masks[row + k] for k, f in enumerate(frames)})
        row += len(frames)
    num_frames = inputs["pixel_values_video"].shape[0]
    video = load_video(raw, num_frames, extra_frame_indices=[f for obj in objects for f in obj])
    report.sampled_frames_match = video.frame_indices == io["video_raw_frame_indices"]

    features = processor(video, io["question"], objects, num_frames=num_frames)
    report.input_ids_match = features["input_ids"][0].tolist() == io["input_ids"]

    # Pixel values: the sampled frames, and every frame a mask lies on (sampled or extra).
    ours_video = features["pixel_values"][0]
    diffs = [_max_diff(ours_video, inputs["pixel_values_video"])]
    extra_rows = {index: k for k, index in enumerate(sorted(video.extra))}
    for r, raw_index in enumerate(io["frame_raw_indices"]):
        if raw_index in video.frame_indices:
            ours = ours_video[video.frame_indices.index(raw_index)]
        else:
            ours = features["region_inputs"].extra_frames[0][extra_rows[raw_index]]
        diffs.append(_max_diff(ours, inputs["pixel_values_frame"][r]))
    report.pixel_values_max_diff = max(diffs)

    with torch.no_grad():
        visual = model.encode_visual(**{key: features[key] for key in processor.visual_keys})
        report.video_tokens_max_diff = _max_diff(visual.video_tokens[0], expected["video_tokens"][0])
        report.pooled_max_diff = _max_diff(visual.pooled[0], expected["region_pooled"])
        report.merged_max_diff = _max_diff(visual.merged[0], expected["region_merged"])
        report.object_tokens_max_diff = _max_diff(visual.object_tokens[0], expected["region_tokens"])
        report.tokens_per_object_match = visual.tokens_per_object[0].tolist() == io["region_token_nums"]
        logits = model(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"], visual_features=visual
        ).logits
        report.logits_max_diff = _max_diff(logits, expected["logits"])
        eos = processor.tokenizer.eos_token_id
        generated = model.generate(
            input_ids=features["input_ids"], attention_mask=features["attention_mask"], visual_features=visual,
            do_sample=False, max_new_tokens=len(report.expected_greedy_ids), eos_token_id=eos, pad_token_id=eos,
        )
    report.greedy_ids = generated[0].tolist()
    report.greedy_ids_match = report.greedy_ids == report.expected_greedy_ids
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a parity folder (e.g. tests/fixtures/official-tiny)")
    parser.add_argument("--stage", default=None, help="training fixtures: check this stage's freezing instead "
                        "(ours: region_alignment | instruction, or an official name such as stage2)")
    args = parser.parse_args(argv)
    if is_train_fixture(args.folder):
        return _main_train(args.folder, args.stage)
    if _model_type(args.folder) == "videollama3_qwen2":
        return _main_vl3(args.folder)
    try:
        report = run_parity(args.folder)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


def _main_train(folder: str | Path, stage: str | None) -> int:
    """A fixture of an official trainer (`fixture.json` kind `train-parity`): one training step of ours against it."""
    try:
        report = run_train_parity(folder, stage)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {folder} is not a usable training parity folder: {error}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


def _model_type(folder: str | Path) -> str | None:
    """The family of the folder's checkpoint (`model_type` of its config.json), None when there is none."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError):
        return None


def _main_vl3(folder: str | Path) -> int:
    """VideoRefer-VL3 folders: our processor from the raw frames and masks, then our model from the official
    processor's stored outputs (so a processor difference and a model difference are reported apart)."""
    from .models.videorefer_vl3.parity import report_lines, run_model_parity
    from .models.videorefer_vl3.parity_processor import run_processor_parity

    try:
        processor_report = run_processor_parity(folder)
        report = run_model_parity(folder)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {folder} is not a parity folder for VideoRefer-VL3: {error}", file=sys.stderr)
        return 2
    print("\n".join(["processor (raw frames and masks -> inputs):", *processor_report.lines(), "model:"]))
    print("\n".join(report_lines(report)))
    ok = processor_report.ok and report["ok"]
    print(f"PARITY {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
