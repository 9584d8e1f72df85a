"""Check one training step of ours against a fixture written by an official trainer (`fixture.json` kind
`train-parity`): `python -m videorefer.parity FIXTURE_DIR` (or `run_train_parity(folder)`).

Everything goes through our own path: the sample file is read by `videorefer.data.training.build_example` (what
`train.data` iterates), batched by `processor.collate`, the stage's trainable set is `videorefer.stages`, the loss is
our model's forward. Compared: `input_ids` / `labels` (exact), the visual tensors (frames, masks, crops: max |Δ|),
the loss (|Δ| <= 1e-5), the trainable tensors (same names), every gradient norm (relative error <= 1e-3), the full
projector and region-encoder gradients (allclose), the loss after one AdamW step at lr 1e-3 (|Δ| <= 1e-4).

Where the official order is arbitrary (v1 orders annotated frames by iterating a Python set) masks and frames are
matched by (object, raw frame), not by position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .api import load_model_and_processor
from .data.training import build_example, load_samples, sample_annotation
from .stages import set_trainable, stage_of

__all__ = ["TrainParityReport", "run_train_parity", "is_train_fixture", "TOLERANCES"]

TOLERANCES = {
    "pixels": 1e-5, "loss": 1e-5, "grad_norm_rel": 1e-3, "grad_rtol": 1e-4, "grad_atol": 1e-6, "loss_after_step": 1e-4,
}
SEED = 1234  # the fixtures seed the global RNG with it right before each forward
LR = 1e-3


@dataclass
class TrainParityReport:
    family: str = ""
    stage: str = ""
    ids_match: bool = False
    labels_match: bool = False
    visual_diffs: dict[str, float] = field(default_factory=dict)  # name -> max |diff| (inf: shapes differ)
    loss: float = float("nan")
    expected_loss: float = float("nan")
    trainable_match: bool = False
    trainable: int = 0
    grad_norm_max_rel: float = float("inf")
    grad_norm_worst: str = ""
    grads_checked: int = 0
    full_grad_max_diff: float = float("inf")
    full_grads_close: bool = False
    loss_after_step: float = float("nan")
    expected_loss_after_step: float | None = None

    @property
    def loss_diff(self) -> float:
        return abs(self.loss - self.expected_loss)

    @property
    def step_diff(self) -> float:
        return float("nan") if self.expected_loss_after_step is None else abs(self.loss_after_step - self.expected_loss_after_step)

    @property
    def passed(self) -> bool:
        step_ok = self.expected_loss_after_step is None or self.step_diff <= TOLERANCES["loss_after_step"]
        return (
            self.ids_match and self.labels_match and self.trainable_match and self.full_grads_close and step_ok
            and all(d <= TOLERANCES["pixels"] for d in self.visual_diffs.values())
            and self.loss_diff <= TOLERANCES["loss"] and self.grad_norm_max_rel <= TOLERANCES["grad_norm_rel"]
        )

    def lines(self) -> list[str]:
        visual = [f"  {name + ' max |diff|:':<30} {d:.3e}" for name, d in self.visual_diffs.items()]
        step = ("(not in this fixture for this stage)" if self.expected_loss_after_step is None else
                f"{self.loss_after_step:.7f} (official {self.expected_loss_after_step:.7f}, |diff| {self.step_diff:.3e},"
                f" tolerance {TOLERANCES['loss_after_step']:g})")
        return [
            f"training parity: {self.family}, stage {self.stage}",
            f"input ids match:                {self.ids_match}",
            f"labels match:                   {self.labels_match}",
            f"visual tensors (tolerance {TOLERANCES['pixels']:g}):", *visual,
            f"loss:                           {self.loss:.7f} (official {self.expected_loss:.7f}, |diff| "
            f"{self.loss_diff:.3e}, tolerance {TOLERANCES['loss']:g})",
            f"trainable tensors match:        {self.trainable_match} ({self.trainable})",
            f"gradient norms, max rel. error: {self.grad_norm_max_rel:.3e} over {self.grads_checked} tensors "
            f"(worst {self.grad_norm_worst}; tolerance {TOLERANCES['grad_norm_rel']:g})",
            f"projector + region-encoder gradients: max |diff| {self.full_grad_max_diff:.3e}, allclose(rtol="
            f"{TOLERANCES['grad_rtol']:g}, atol={TOLERANCES['grad_atol']:g}) {self.full_grads_close}",
            f"loss after one AdamW step (lr {LR:g}): {step}",
            f"PARITY {'OK' if self.passed else 'FAILED'}",
        ]


def is_train_fixture(folder: str | Path) -> bool:
    path = Path(folder) / "fixture.json"
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == "train-parity"
    except (json.JSONDecodeError, AttributeError):
        return False


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


def _mask_keys(sample: dict) -> list[tuple[int, int]]:
    """(object, raw frame) of each mask in our order: object-major, frames in time order, null frames left out."""
    return [(k, int(f)) for k, per_frame in enumerate(sample_annotation(sample))
            for f in sorted(per_frame, key=int) if per_frame[f] is not None and per_frame[f]["segmentation"] is not None]


def _v1_visual(batch: dict, official: dict, meta: dict, keys: list[tuple[int, int]]) -> dict[str, float]:
    """Sampled frames, masks and the frame under each mask, matched by (object, raw frame)."""
    regions = batch["region_inputs"]
    pixels = batch["pixel_values"][0]
    official_keys = [(int(o), int(f)) for o, f in meta["per_sample"][0]["mask_order"]]
    frame_rows = [row for per_object in meta["ann_indices"][0] for row in per_object]
    ours_frames = torch.cat([pixels, regions.extra_frames[0]])[regions.mask_frames[0]]
    order = [keys.index(key) if key in keys else -1 for key in official_keys]
    if -1 in order or len(order) != len(keys):
        return {"masks (object, frame)": float("inf")}
    return {
        "sampled frames": _max_diff(pixels, official["images.0"]),
        "masks": _max_diff(regions.masks[0][order].float(), official["masks.0"]),
        "frames under the masks": _max_diff(ours_frames[order], official["frame.0"][frame_rows]),
    }


def _vl3_visual(batch: dict, official: dict, meta: dict, keys: list[tuple[int, int]]) -> dict[str, float]:
    """Frame patches and grids, each mask's crop patches, crop grid and mask grid, matched by (object, raw frame)."""
    regions = batch["region_inputs"]
    n_frames = len([k for k in official if k.startswith("images.0.frames.")])
    frames = torch.cat([official[f"images.0.frames.{t}"] for t in range(n_frames)])
    grids = torch.cat([official[f"images.0.grid_thws.{t}"] for t in range(n_frames)])
    official_keys = [(int(o), int(f)) for o, f, _ in meta["mask_order_object_rawframe_additionalframe"]]
    order = [keys.index(key) if key in keys else -1 for key in official_keys]
    if -1 in order or len(order) != len(keys):
        return {"masks (object, frame)": float("inf")}
    crops = torch.split(regions.pixel_values, regions.grid_thw.prod(-1).tolist())
    crop_diffs = [_max_diff(crops[ours], official[f"additional_images.0.images.{k}"]) for k, ours in enumerate(order)]
    crop_grids = [_max_diff(regions.grid_thw[ours][None], official[f"additional_images.0.grid_thws.{k}"])
                  for k, ours in enumerate(order)]
    mask_grids = [_max_diff(torch.as_tensor(regions.mask_grids[ours]).to(torch.uint8), official[f"masks.0.{k}"])
                  for k, ours in enumerate(order)]
    return {
        "frame patches": _max_diff(batch["pixel_values"], frames),
        "frame grids": _max_diff(batch["grid_thw"], grids),
        "crop patches": max(crop_diffs, default=0.0),
        "crop grids": max(crop_grids, default=0.0),
        "mask grids": max(mask_grids, default=0.0),
    }


VISUAL_CHECKS = {"videorefer_qwen2": _v1_visual, "videollama3_qwen2": _vl3_visual}


def _forward_loss(model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
    """The loss with the global RNG seeded as the fixture's trainer did (VL3: the k-means draws come from it)."""
    torch.manual_seed(SEED)
    options = {}
    if "kmeans_generator" in getattr(model, "visual_options", ()):
        options["kmeans_generator"] = torch.Generator().manual_seed(SEED)
    return model(**inputs, **options).loss


def run_train_parity(folder: str | Path, stage: str | None = None) -> TrainParityReport:
    """Our training step on the fixture's sample, compared with the official trainer's (see the module docstring).
    `stage` (ours or official) replaces the fixture's: then only the loss after the step and the trainable set are
    compared against the figures of that stage, when the fixture records them."""
    folder = Path(folder)
    if not is_train_fixture(folder):
        raise ValueError(f"{folder} is not a training parity folder (no fixture.json of kind 'train-parity')")
    fixture = json.loads((folder / "fixture.json").read_text())
    meta = json.loads((folder / "batch.json").read_text())
    expected = json.loads((folder / "outputs.json").read_text())
    official = load_file(folder / "batch.safetensors")
    official_out = load_file(folder / "outputs.safetensors")
    own_stage = stage_of(stage or fixture["stage"])
    report = TrainParityReport(family=fixture["model_type"], stage=own_stage, expected_loss=float(expected["loss"]))
    if stage_of(fixture["stage"]) == own_stage:
        report.expected_loss_after_step = float(expected["loss_after_step"])

    model, processor = load_model_and_processor(
        (folder / fixture["checkpoint"]).resolve(), device="cpu", dtype=torch.float32, attn_implementation="eager"
    )
    if model.config.model_type != fixture["model_type"]:
        raise ValueError(f"the checkpoint is {model.config.model_type!r}, the fixture says {fixture['model_type']!r}")
    model.config.use_cache = False
    set_trainable(model, own_stage)
    model.train()

    sample_dir = folder / fixture["files"]["sample"]
    sample = load_samples(sample_dir / "train.json")[0]
    batch = dict(processor.collate([build_example(sample, processor, sample_dir)], padding_side="right"))
    flat = lambda rows: rows[0] if rows and isinstance(rows[0], list) else rows  # noqa: E731  (batch of one)
    report.ids_match = batch["input_ids"][0].tolist() == flat(meta["input_ids_list"])
    report.labels_match = batch["labels"][0].tolist() == flat(meta["labels_list"])
    report.visual_diffs = VISUAL_CHECKS[report.family](batch, official, meta, _mask_keys(sample))

    inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "labels", *processor.visual_keys)}
    loss = _forward_loss(model, inputs)
    report.loss = float(loss.detach())
    loss.backward()

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    report.trainable = len(trainable)
    same_stage = own_stage == stage_of(fixture["stage"])
    official_trainable = set(expected.get("trainable", expected["grad_norms"]))
    # Another stage than the fixture's: its trainable set must be a part of the fixture's, with the same gradients.
    report.trainable_match = set(trainable) == official_trainable if same_stage else set(trainable) <= official_trainable
    checked = lambda name: same_stage or name in trainable  # noqa: E731
    worst, worst_name = 0.0, ""
    for name, norm in expected["grad_norms"].items():
        if not checked(name):
            continue
        grad = trainable[name].grad if name in trainable else None
        ours = float(grad.double().norm()) if grad is not None else float("inf")
        rel = abs(ours - norm) / max(abs(norm), 1e-12)
        if rel > worst or worst_name == "":
            worst, worst_name = rel, name
        report.grads_checked += 1
    report.grad_norm_max_rel, report.grad_norm_worst = worst, worst_name
    full_diffs, close = [], True
    for key, reference in official_out.items():
        if not key.startswith("grad.") or not checked(key[len("grad."):]):
            continue
        param = dict(model.named_parameters()).get(key[len("grad."):])
        grad = None if param is None else param.grad
        if grad is None or grad.shape != reference.shape:
            full_diffs.append(float("inf"))
            close = False
            continue
        full_diffs.append(_max_diff(grad, reference))
        close &= bool(torch.allclose(grad, reference, rtol=TOLERANCES["grad_rtol"], atol=TOLERANCES["grad_atol"]))
    report.full_grad_max_diff = max(full_diffs, default=float("inf"))
    report.full_grads_close = close and bool(full_diffs)

    optimizer = torch.optim.AdamW(trainable.values(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    optimizer.step()
    with torch.no_grad():
        report.loss_after_step = float(_forward_loss(model, inputs))
    return report
