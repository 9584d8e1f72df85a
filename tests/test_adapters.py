"""An adapter goes only on the base it was made for: another family or size is refused naming both, at load and at
merge time (`python -m train.merge`, which merges any checkpoint-N)."""

from __future__ import annotations

import pytest


def make_adapter(base, folder):
    """An untrained LoRA adapter on `base`, saved as a LoRA run saves it (its config names `base`)."""
    from peft import LoraConfig, get_peft_model

    from train.train import LORA_TARGETS
    from videorefer.api import load_model_and_processor

    model, _ = load_model_and_processor(base, device="cpu")
    groups = model.module_groups
    lora = LoraConfig(r=2, lora_alpha=4, target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                      modules_to_save=[groups[name].rsplit(".", 1)[-1] for name in ("connector", "region_encoder")])
    get_peft_model(model, lora).save_pretrained(folder)
    return folder


def test_an_adapter_of_another_family_is_refused_naming_both(tiny_checkpoint, tiny_vl3_checkpoint, tmp_path):
    from videorefer import VideoRefer

    adapter = make_adapter(tiny_vl3_checkpoint, tmp_path / "vl3-adapter")
    with pytest.raises(ValueError) as error:
        VideoRefer.from_pretrained(tiny_checkpoint, device="cpu", adapter=adapter)
    message = str(error.value)
    assert str(tiny_vl3_checkpoint) in message and str(tiny_checkpoint) in message
    assert "videollama3_qwen2" in message and "videorefer_qwen2" in message


def test_an_adapter_of_another_size_is_refused(tiny_checkpoint, tmp_path):
    from videorefer.testing.tiny_model import build_tiny_videorefer
    from train.merge import main

    deeper = build_tiny_videorefer(tmp_path / "deeper", num_hidden_layers=3)
    adapter = make_adapter(deeper, tmp_path / "adapter")
    with pytest.raises(SystemExit, match=r"error: the adapter .* trained on .*deeper .*3 layers.*cannot go on"):
        main([str(adapter), "--base", str(tiny_checkpoint)])
    main([str(adapter)])  # its own base, named by the adapter: merged into adapter/merged
    assert (adapter / "merged" / "config.json").is_file()
