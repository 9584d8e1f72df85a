"""The shipped training configs run on a CPU as they are: the hardware-dependent settings are chosen at run time."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.train import fit_to_device, load_config, training_arguments

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "train" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_builds_its_arguments_on_a_cpu(path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    config = load_config(path, ["data_path=x.json", "output_dir=out", "model_name_or_path=m"])
    changes = fit_to_device(config)
    args = training_arguments(config)  # raised "Your setup doesn't support bf16/gpu" before
    assert not (args.bf16 or args.fp16 or args.tf32) and args.deepspeed is None
    assert args.dataloader_num_workers <= 1 and not args.dataloader_pin_memory
    if "stage2_instruction_lora" in path.name:
        assert [c.split(" ")[0] for c in changes] == ["bf16=False", "tf32=False", "dataloader_pin_memory=False",
                                                      "dataloader_num_workers=1"]
        assert changes[0] == "bf16=False (no GPU; was True)"


def test_an_unknown_on_mismatch_is_refused_naming_it():
    with pytest.raises(ValueError, match="on_mismatch must be one of .* got 'skp'"):
        load_config(CONFIGS[0], ["data_path=x.json", "output_dir=out", "model_name_or_path=m", "on_mismatch=skp"])
