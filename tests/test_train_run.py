"""Training runs on the tiny model of each family, CPU: the loss falls, a killed run resumes where it stopped with the same data
order, LoRA / QLoRA train and save adapters (and merged models), stage 1 saves and loads the object encoder alone,
and two data-parallel processes split the data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from videorefer.data import synthetic
from train.checkpoints import REGION_ENCODER_FILE, load_region_encoder
from train.train import load_config, run
from videorefer import VideoRefer
from transformers import AutoModelForCausalLM

CONFIG = Path(__file__).resolve().parents[1] / "train" / "configs" / "synthetic_tiny.yaml"


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """Three synthetic videos (12 samples) in the VideoRefer-700K format."""
    folder = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(folder, n_train=3, n_heldout=1, seed=0, size=48, num_frames=8)
    return folder


def config_for(family_checkpoint, task, output_dir, **overrides):
    items = [f"model_name_or_path={family_checkpoint}", f"data_path={task / 'train.json'}", f"output_dir={output_dir}",
             "per_device_train_batch_size=2", "logging_steps=1", "save_steps=1000", "warmup_steps=0",
             "num_frames=4", "disable_tqdm=true"]
    items += [f"{k}={v}" for k, v in overrides.items()]
    return load_config(CONFIG, items)


def losses(trainer) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def keys_of(model, group: str) -> list[str]:
    """State-dict keys of one of the family's named module groups (vision, connector, region_encoder)."""
    prefix = model.module_groups[group] + "."
    return [k for k in model.state_dict() if k.startswith(prefix)]


def test_config_overrides_and_unknown_keys(family_checkpoint, task, tmp_path):
    config = config_for(family_checkpoint, task, tmp_path, learning_rate="1e-4", **{"--lora-r": 8})
    assert config["learning_rate"] == 1e-4 and config["lora_r"] == 8 and config["activation_checkpointing"] is False
    with pytest.raises(ValueError, match="unknown config keys.*lerning_rate"):
        config_for(family_checkpoint, task, tmp_path, lerning_rate=1)


def test_short_run_loss_falls_and_saves_official_layout(family_checkpoint, task, tmp_path):
    config = config_for(family_checkpoint, task, tmp_path / "out", max_steps=40, learning_rate=1e-2,
                        lr_scheduler_type="constant")
    trainer = run(config)
    logged = list(losses(trainer).values())
    assert len(logged) == 40
    assert sum(logged[-5:]) / 5 < 0.5 * sum(logged[:5]) / 5
    # The output loads through the inference API and gives the trained model's weights.
    vr = VideoRefer.from_pretrained(tmp_path / "out", device="cpu")
    trained = trainer.model.state_dict()
    for key, value in vr.model.state_dict().items():
        assert torch.equal(value, trained[key]), key


class StopAt(TrainerCallback):
    """Dies like a killed process right after the checkpoint of step `step` is written."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated kill")


class Recorder(TrainerCallback):
    def __init__(self):
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def test_resume_after_interrupt_continues_with_same_data_order(family_checkpoint, task, tmp_path):
    settings = dict(max_steps=6, save_steps=2, learning_rate=1e-3)
    reference = losses(run(config_for(family_checkpoint, task, tmp_path / "ref", **settings)))
    with pytest.raises(KeyboardInterrupt):
        run(config_for(family_checkpoint, task, tmp_path / "cut", **settings), callbacks=[StopAt(4)])
    assert (tmp_path / "cut" / "checkpoint-4").is_dir() and not (tmp_path / "cut" / "checkpoint-6").exists()
    steps = Recorder()
    resumed = run(config_for(family_checkpoint, task, tmp_path / "cut", **settings), callbacks=[steps])  # same command
    assert steps.steps == [5, 6]  # it went on after step 4, not from scratch
    continued = losses(resumed)  # steps 1-4 come back from the checkpoint's trainer state
    for step in range(1, 7):  # same weights and same batches as the uninterrupted run
        assert continued[step] == pytest.approx(reference[step], rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("tuning", ["lora", "qlora"])
def test_lora_and_qlora(family_checkpoint, task, tmp_path, tuning):
    pytest.importorskip("peft")
    if tuning == "qlora":
        pytest.importorskip("bitsandbytes")
    config = config_for(family_checkpoint, task, tmp_path / tuning, tuning=tuning, max_steps=3, learning_rate=1e-2,
                        lora_r=4, lora_alpha=8)
    base = weights(AutoModelForCausalLM.from_pretrained(family_checkpoint))
    trainer = run(config)
    model = trainer.model
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n and "model.layers.0.self_attn.q_proj" in n for n in names)
    assert any("region_encoder.modules_to_save" in n for n in names)
    assert any("mm_projector.modules_to_save" in n for n in names)
    vision = model.get_base_model().module_groups["vision"]
    assert not any(vision in n or "embed_tokens" in n or "lm_head" in n for n in names)
    if tuning == "qlora":
        import bitsandbytes as bnb

        q_proj = model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
        assert isinstance(q_proj, bnb.nn.Linear4bit)
    out = tmp_path / tuning
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    merged_model = VideoRefer.from_pretrained(out / "merged", device="cpu").model
    merged = merged_model.state_dict()
    # The object encoder trained fully; the vision side did not; the merged LLM differs from the base only through
    # the LoRA update.
    assert any(not torch.equal(merged[k], base[k]) for k in keys_of(merged_model, "region_encoder"))
    assert all(torch.equal(merged[k], base[k]) for k in keys_of(merged_model, "vision"))
    assert not torch.allclose(merged["model.layers.0.self_attn.q_proj.weight"],
                              base["model.layers.0.self_attn.q_proj.weight"])
    if tuning == "lora":  # the adapter on the base answers like the merged model
        adapted = VideoRefer.from_pretrained(family_checkpoint, device="cpu", adapter=out)
        merged_vr = VideoRefer.from_pretrained(out / "merged", device="cpu")
        batch = next(iter(trainer.get_train_dataloader()))
        with torch.no_grad():
            a = adapted.model(**batch).logits
            b = merged_vr.model(**batch).logits
        assert torch.allclose(a, b, atol=1e-4)


def test_stage1_saves_and_loads_the_object_encoder_alone(family_checkpoint, task, tmp_path):
    out = tmp_path / "stage1"
    config = config_for(family_checkpoint, task, out, stage="region_alignment", max_steps=4, save_steps=2,
                        learning_rate=1e-2)
    base = weights(AutoModelForCausalLM.from_pretrained(family_checkpoint))
    trainer = run(config)
    after = trainer.model.state_dict()
    changed = {k for k in base if not torch.equal(base[k], after[k])}
    assert changed and all(k.startswith("model.region_encoder.") for k in changed)
    # Only region_encoder.bin, in the final output and in the checkpoints; keys as in the official file.
    assert (out / REGION_ENCODER_FILE).is_file() and not (out / "model.safetensors").exists()
    assert (out / "checkpoint-4" / REGION_ENCODER_FILE).is_file()
    assert not (out / "checkpoint-4" / "model.safetensors").exists()
    saved = torch.load(out / REGION_ENCODER_FILE, weights_only=True)
    assert sorted(saved) == sorted(k for k in base if k.startswith("model.region_encoder."))
    fresh = AutoModelForCausalLM.from_pretrained(family_checkpoint)
    load_region_encoder(fresh, out / REGION_ENCODER_FILE)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, after[key]), key
    # Stage 2 starts from it through the config; a file without encoder weights is refused.
    stage2 = config_for(family_checkpoint, task, tmp_path / "stage2", pretrain_region_encoder=out, max_steps=1,
                        learning_rate=0.0)
    trainer2 = run(stage2)
    loaded = trainer2.model.state_dict()
    assert all(torch.equal(loaded[k], after[k]) for k in keys_of(fresh, "region_encoder"))
    torch.save({"model.mm_projector.x": torch.zeros(1)}, tmp_path / "wrong.bin")
    with pytest.raises(ValueError, match="region_encoder"):
        load_region_encoder(fresh, tmp_path / "wrong.bin")


def test_two_data_parallel_processes(family_checkpoint, task, tmp_path):
    """The multi-GPU path on CPU: `torch.distributed.run` (what `accelerate launch` starts on GPUs) runs two processes
    (gloo) that split the data: 12 samples, 2 per process and step, so one step is a third of an epoch (one process
    alone would take a sixth). Rank 0 saves a loadable, trained model."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "train.train",
               str(CONFIG), f"model_name_or_path={family_checkpoint}", f"data_path={task / 'train.json'}",
               f"output_dir={out}", "per_device_train_batch_size=2", "max_steps=2", "save_steps=1000",
               "warmup_steps=0", "num_frames=4", "logging_steps=1", "disable_tqdm=true"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
                            timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "'epoch': '0.3333'" in log and "'epoch': '0.6667'" in log, log[-3000:]
    assert log.count(f"saved to {out}") == 1  # only rank 0 reports (and writes) the output
    trained_model = VideoRefer.from_pretrained(out, device="cpu").model
    trained = trained_model.state_dict()
    base = weights(AutoModelForCausalLM.from_pretrained(family_checkpoint))
    assert any(not torch.equal(trained[k], base[k]) for k in keys_of(trained_model, "region_encoder"))


@pytest.mark.parametrize("path", sorted(CONFIG.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path, ["data_path=x.json", "output_dir=out", "model_name_or_path=m"])
    assert config["stage"] in ("region_alignment", "instruction")
    if path.name.startswith("vl3_"):  # each VL3 stage config mirrors a v1 one
        v1 = load_config(path.with_name(path.name[4:]), ["data_path=x.json", "output_dir=out", "model_name_or_path=m"])
        assert (config["stage"], config["tuning"], config["learning_rate"]) == (v1["stage"], v1["tuning"],
                                                                               v1["learning_rate"])
