"""Fine-tune VideoRefer: `python -m train.train CONFIG.yaml|json [key=value ...]`.

Either model family (VideoRefer-7B or VideoRefer-VL3: the checkpoint's config decides); what a stage trains comes from
the model's `module_groups` (vision, connector, region_encoder), never from the family's name. Two stages, as in the
paper, each a config file in `train/configs/` (VL3: the `vl3_` files):

* `region_alignment` (stage 1): only the object encoder trains (lr 1e-3); the run saves `region_encoder.bin` alone,
  in the official format (`train.checkpoints`), and its checkpoints hold only that file plus the optimizer state.
* `instruction` (stage 2): the LLM, the connector and the object encoder train, the vision side stays frozen
  (lr 1e-5), with `tuning: full`, `lora` or `qlora` (4-bit bitsandbytes base, LoRA on the LLM's linear layers,
  object encoder and connector trained fully as peft `modules_to_save`).

Config keys of our own are listed in `OWN_KEYS`; every other key is a `transformers.TrainingArguments` field
(`output_dir`, `learning_rate`, `per_device_train_batch_size`, `bf16`, `deepspeed`, ...). Overrides on the command
line are `key=value` (values parsed as YAML) or `--key value`; `--tiny [vl3|v1]` trains a tiny random model built in
code instead of `model_name_or_path` (offline). Re-running the same command resumes from the last checkpoint in
`output_dir` (`resume: auto`). Multi-GPU: `accelerate launch -m train.train CONFIG deepspeed=...`.

Before the model loads, the whole data file is read and checked (`train.check_data`): a summary is logged and any
bad sample stops the run with every problem named, unless `on_mismatch=skip` (then they are left out and counted).
Settings that depend on the hardware are chosen at run time and logged (`fit_to_device`): without a GPU, bf16 / fp16 /
tf32 are turned off and data-loader workers capped, so the shipped configs also run on a CPU.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from transformers import TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from train.checkpoints import (
    REGION_ENCODER_FILE, copy_vision_folder, load_region_encoder, save_merged_adapter, save_region_encoder,
)
from train.check_data import DataProblems, DataReport, check_data_files, default_data_folder, require_files
from train.data import ON_MISMATCH, VideoReferCollator, VideoReferDataset
from videorefer.api import load_model_and_processor
from videorefer.compat.trainer import PartialCheckpointTrainer
from videorefer.testing.tiny import TINY_FAMILIES, tiny_checkpoint

logger = logging.getLogger("train")

STAGES = ("region_alignment", "instruction")
TUNINGS = ("full", "lora", "qlora")
# The LLM's linear layers (not the vision tower's, whose layers live under `vision_model.encoder.layers`).
LORA_TARGETS = r"model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
OWN_KEYS: dict[str, Any] = {
    "model_name_or_path": None,  # a checkpoint in the official layout (folder or Hub id)
    "tiny": None,  # vl3 | v1: a tiny random model built in code replaces model_name_or_path (`--tiny` alone: vl3)
    "stage": "instruction",  # region_alignment | instruction
    "tuning": "full",  # full | lora | qlora (instruction stage)
    "data_path": None,  # JSON / JSONL file(s) in the VideoRefer-700K format
    "data_folder": None,  # where relative video paths start (default: the data file's folder)
    "eval_data_path": None,  # optional held-out file(s), same format: eval loss every eval_steps (default logging_steps)
    "num_frames": None,  # frames per video (default: the model's)
    "on_mismatch": "error",  # a bad sample (train.check_data: video, mask size, frame, <region> count): error | skip
    "dtype": "auto",  # weights' dtype: auto (bfloat16 if bf16 else float32) | float32 | bfloat16 | float16
    "pretrain_region_encoder": None,  # a region_encoder.bin (stage 1 output, official or ours) to start from
    "freeze_vision_tower": True,
    "lora_r": 64,
    "lora_alpha": 128,
    "lora_dropout": 0.05,
    "save_merged": True,  # LoRA / QLoRA: also save the adapter merged into the base, official layout, in merged/
    "resume": "auto",  # auto (last checkpoint if any) | true | false | a checkpoint folder
    "upcast_trainable": "auto",  # keep trained weights in float32 (auto: yes unless full tuning)
}
TRAINING_DEFAULTS: dict[str, Any] = {
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.03,  # a float below 1 is a ratio of the total steps
    "weight_decay": 0.0,
    "save_strategy": "steps",
    "save_steps": 500,
    "save_total_limit": 2,
    "logging_steps": 10,
    "activation_checkpointing": True,  # gradient checkpointing (its transformers 5 name)
    "activation_checkpointing_kwargs": {"use_reentrant": False},
    "remove_unused_columns": False,  # the model takes masks and frames the Trainer cannot see in its signature
    "label_names": ["labels"],
    "report_to": "none",
    "disable_tqdm": False,
    "dataloader_num_workers": 0,
}


# ---------------------------------------------------------------------------------------------------- config
def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`key=value`, `--key=value` or `--key value` pairs; values are read as YAML (numbers, booleans, lists)."""
    out: dict[str, Any] = {}
    items = list(items)
    while items:
        item = items.pop(0)
        key, sep, value = item.lstrip("-").partition("=")
        if item == "--tiny" and (not items or "=" in items[0] or items[0].startswith("--")):
            sep, value = "=", TINY_FAMILIES[0]  # `--tiny` alone, as app.py and bench.mini read it
        if not sep:
            if not item.startswith("--") or not items:
                raise ValueError(f"cannot read the override {item!r}: write key=value")
            value = items.pop(0)
        out[key.replace("-", "_")] = _number(yaml.safe_load(value))
    return out


def _number(value: Any) -> Any:
    """YAML 1.1 reads `1e-5` (no dot) as a string; configs mean a number."""
    return float(value) if isinstance(value, str) and SCIENTIFIC.match(value) else value


def load_config(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A YAML or JSON config file with command-line overrides applied; unknown keys are an error."""
    text = Path(path).read_text()
    config = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    config = {k: _number(v) for k, v in (config or {}).items()}
    config = {**OWN_KEYS, **TRAINING_DEFAULTS, **config, **parse_overrides(overrides)}
    unknown = sorted(k for k in config if k not in OWN_KEYS and k not in TrainingArguments.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown config keys {unknown} in {path} (neither ours nor TrainingArguments fields)")
    if config["stage"] not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {config['stage']!r}")
    if config["tuning"] not in TUNINGS:
        raise ValueError(f"tuning must be one of {TUNINGS}, got {config['tuning']!r}")
    if config["on_mismatch"] not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}, got {config['on_mismatch']!r}")
    if config["tiny"] is not None:
        if config["tiny"] not in TINY_FAMILIES:
            raise ValueError(f"tiny must be one of {TINY_FAMILIES}, got {config['tiny']!r}")
        config["model_name_or_path"] = str(tiny_checkpoint(config["tiny"]))
    for key in ("model_name_or_path", "data_path", "output_dir"):
        if not config.get(key):
            raise ValueError(f"the config needs {key}")
    return config


def fit_to_device(config: dict[str, Any]) -> list[str]:
    """Choose the hardware-dependent settings for this machine (in place) and say what changed: without CUDA,
    bf16 / fp16 / tf32, DeepSpeed and pinned memory go off (float32 on the CPU); on a GPU older than Ampere tf32 goes
    off and bf16 becomes fp16; data-loader workers are capped by the CPU cores this process may use (half of them
    without a GPU)."""
    changes = []

    def set_(key: str, value: Any, why: str) -> None:
        old = config[key] if key in config else TrainingArguments.__dataclass_fields__[key].default
        if old != value:
            changes.append(f"{key}={value} ({why}; was {old})")
            config[key] = value

    if not torch.cuda.is_available():
        for key in ("bf16", "fp16", "tf32"):
            if config.get(key):
                set_(key, False, "no GPU")
        if config.get("deepspeed"):
            set_("deepspeed", None, "no GPU: DeepSpeed's ZeRO shards over GPUs")
        set_("dataloader_pin_memory", False, "no GPU")
    elif torch.cuda.get_device_capability()[0] < 8:
        if config.get("tf32"):
            set_("tf32", False, "GPU older than Ampere")
        if config.get("bf16"):
            set_("bf16", False, "GPU older than Ampere")
            set_("fp16", True, "GPU older than Ampere")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cap = cores if torch.cuda.is_available() else cores // 2
    if (config.get("dataloader_num_workers") or 0) > cap:
        set_("dataloader_num_workers", cap, f"{cores} CPU cores")
    return changes


def training_arguments(config: dict[str, Any]) -> TrainingArguments:
    return TrainingArguments(**{k: v for k, v in config.items() if k not in OWN_KEYS})


# ---------------------------------------------------------------------------------------------------- model
def _dtype(config: dict[str, Any]) -> torch.dtype:
    if config["dtype"] == "auto":
        return torch.bfloat16 if config.get("bf16") else torch.float16 if config.get("fp16") else torch.float32
    return getattr(torch, config["dtype"])


def _device() -> str:
    """Quantised weights are placed at load time: on this process's GPU (`LOCAL_RANK` under accelerate / torchrun)."""
    return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"


def build_model(config: dict[str, Any]):
    """Load the model through the package's loader and mark what trains for the stage; returns (model, processor)."""
    stage, tuning = config["stage"], config["tuning"]
    quantization = "4bit" if stage == "instruction" and tuning == "qlora" else None
    model, processor = load_model_and_processor(
        config["model_name_or_path"], quantization=quantization, dtype=_dtype(config),
        device=_device() if quantization else "cpu",  # the Trainer / DeepSpeed moves unquantised models
    )
    model.config.use_cache = False  # no KV cache in training (and it conflicts with gradient checkpointing)
    if config["pretrain_region_encoder"]:
        load_region_encoder(model, config["pretrain_region_encoder"])
        logger.info("region encoder loaded from %s", config["pretrain_region_encoder"])
    else:
        logger.info("region encoder: the one in %s (pretrain_region_encoder not set)", config["model_name_or_path"])
    model.requires_grad_(False)
    groups = model.module_groups  # the family's named parts: vision, connector, region_encoder
    if stage == "region_alignment":
        model.get_submodule(groups["region_encoder"]).requires_grad_(True)
    elif tuning == "full":
        model.requires_grad_(True)
        model.get_submodule(groups["vision"]).requires_grad_(not config["freeze_vision_tower"])
    else:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config["lora_r"], lora_alpha=config["lora_alpha"], lora_dropout=config["lora_dropout"],
            target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
            modules_to_save=[groups[name].rsplit(".", 1)[-1] for name in ("connector", "region_encoder")],
        )
        model = get_peft_model(model, lora)
        if not config["freeze_vision_tower"]:
            model.get_base_model().get_submodule(groups["vision"]).requires_grad_(True)
    upcast = config["upcast_trainable"]
    if upcast is True or (upcast == "auto" and not (stage == "instruction" and tuning == "full")):
        # Optimiser updates of lr 1e-5 vanish in bf16 weights; bf16 autocast still runs the matmuls in bf16.
        for param in model.parameters():
            if param.requires_grad and param.dtype != torch.float32:
                param.data = param.data.float()
    model.train()
    return model, processor


def trainable_summary(model: torch.nn.Module) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"


# ---------------------------------------------------------------------------------------------------- trainer
class VideoReferTrainer(PartialCheckpointTrainer):
    """`Trainer` whose stage-1 checkpoints and final output hold only the object encoder (`region_encoder.bin`)."""

    def __init__(self, *args: Any, encoder_only: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.encoder_only = encoder_only

    def save_model_files(self, output_dir: str, state_dict: dict | None) -> bool:
        if not self.encoder_only:
            return False
        if self.args.should_save:
            save_region_encoder(output_dir, self.model, state_dict)
        return True

    def load_model_files(self, folder: str, model: torch.nn.Module) -> bool:
        if not (self.encoder_only and os.path.isfile(os.path.join(folder, REGION_ENCODER_FILE))):
            return False
        load_region_encoder(model, folder)
        return True


def resume_checkpoint(config: dict[str, Any]) -> str | None:
    """The checkpoint to resume from: `resume: auto` takes the last one in `output_dir` when there is one."""
    resume = config["resume"]
    if resume in (False, None, "false", "no"):
        return None
    if resume in (True, "auto", "true", "yes"):
        last = get_last_checkpoint(config["output_dir"]) if os.path.isdir(config["output_dir"]) else None
        if last is None and resume is True:
            raise ValueError(f"resume=true but there is no checkpoint in {config['output_dir']}")
        return last
    return str(resume)


def checked_data(config: dict[str, Any], key: str, placeholder_counts: Any) -> DataReport:
    """Read and check the whole file(s) of `config[key]` before the model loads; log the summary. Bad samples stop
    the run with every problem named, unless `on_mismatch: skip`: then they are left out, counted and logged."""
    report = check_data_files(config[key], config["data_folder"], placeholder_counts)
    logger.info("%s: %s", key, report.summary())
    if report.problems:
        if config["on_mismatch"] != "skip":
            raise report.error("; fix them, or set on_mismatch=skip to leave them out")
        for line in report.problem_lines(50):
            logger.warning("skipped %s", line)
        logger.warning("skipped %d of %d samples of %s with problems (on_mismatch=skip)", len(report.problems),
                       len(report.samples), key)
    if not report.good_samples:
        raise ValueError(f"no usable samples in {config[key]}")
    return report


def dataset_for(config: dict[str, Any], key: str, report: DataReport, processor: Any) -> VideoReferDataset:
    folder = config["data_folder"] if config["data_folder"] is not None else default_data_folder(config[key])
    return VideoReferDataset(report.good_samples, processor, data_folder=folder, num_frames=config["num_frames"],
                             on_mismatch=config["on_mismatch"])


def run(config: dict[str, Any], callbacks: Sequence[Any] = ()) -> VideoReferTrainer:
    """Train as `config` says and save the outputs; returns the trainer (its `state.log_history` has the losses,
    `data_report` what the data check found)."""
    from videorefer.families import family_for_checkpoint

    for change in fit_to_device(config):
        logger.info("for this machine: %s", change)
    for key in ("data_path", "eval_data_path"):
        if config[key]:
            require_files(config[key])  # before the processor: a wrong path fails at once
    path = config["model_name_or_path"]
    counts = family_for_checkpoint(path).processor_class.from_pretrained(path).region_placeholder_counts
    report = checked_data(config, "data_path", counts)  # before the model: a bad file fails in seconds
    eval_report = checked_data(config, "eval_data_path", counts) if config["eval_data_path"] else None
    if eval_report is not None and config.get("eval_strategy", "no") == "no":
        config["eval_strategy"] = "steps"
        config["eval_steps"] = config.get("eval_steps") or config["logging_steps"]
        config["prediction_loss_only"] = True
        config.setdefault("per_device_eval_batch_size", config["per_device_train_batch_size"])
        logger.info("eval loss on %s every %s steps", config["eval_data_path"], config["eval_steps"])
    args = training_arguments(config)  # before the model: DeepSpeed ZeRO-3 must know at load time
    model, processor = build_model(config)
    logger.info(trainable_summary(model))
    trainer = VideoReferTrainer(
        model=model, args=args, train_dataset=dataset_for(config, "data_path", report, processor),
        eval_dataset=dataset_for(config, "eval_data_path", eval_report, processor) if eval_report else None,
        data_collator=VideoReferCollator(processor), callbacks=list(callbacks),
        encoder_only=config["stage"] == "region_alignment",
    )
    trainer.data_report = report
    checkpoint = resume_checkpoint(config)
    if checkpoint:
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    save_outputs(trainer, processor, config)
    if trainer.args.should_save:
        logger.info(outputs_summary(config))
    return trainer


def outputs_summary(config: dict[str, Any]) -> str:
    """Where the run's outputs are and how to load them."""
    out, base = Path(config["output_dir"]), config["model_name_or_path"]
    if config["stage"] == "region_alignment":
        return f"region encoder: {out / REGION_ENCODER_FILE} (stage 2: pretrain_region_encoder={out})"
    if config["tuning"] == "full":
        return f"model (official layout): {out} (VideoRefer.from_pretrained({str(out)!r}))"
    merged = (f"; merged model (official layout): {out / 'merged'}" if config["save_merged"]
              else "; merge it with: python -m train.merge " + str(out))
    return f"adapter: {out} (VideoRefer.from_pretrained({base!r}, adapter={str(out)!r})){merged}"


def save_outputs(trainer: VideoReferTrainer, processor, config: dict[str, Any]) -> None:
    """Stage 1: region_encoder.bin. Full: official layout. LoRA / QLoRA: the adapter (+ merged/ official layout)."""
    output_dir = Path(config["output_dir"])
    trainer.save_model(str(output_dir))  # gathers ZeRO-3 shards; stage 1 writes region_encoder.bin only
    if not trainer.args.should_save:
        return
    if config["stage"] == "region_alignment":
        return
    if config["tuning"] == "full":
        processor.save_pretrained(output_dir)
        model = trainer.model
        copy_vision_folder(config["model_name_or_path"], output_dir, getattr(model.config, model.vision_folder_key))
        return
    processor.save_pretrained(output_dir)
    if config["save_merged"]:
        save_merged_adapter(config["model_name_or_path"], output_dir, output_dir / "merged", dtype=_dtype(config))


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        config = load_config(argv[0], argv[1:])
        trainer = run(config)
    except DataProblems as err:  # the data check's findings: the list itself, without a traceback
        raise SystemExit(f"error: {err}") from None
    if trainer.args.should_save:  # the main process of a multi-process run
        print(f"saved to {config['output_dir']}")


if __name__ == "__main__":
    main()
