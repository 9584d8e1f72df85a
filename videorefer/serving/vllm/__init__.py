"""The vLLM plugin: VideoRefer's published checkpoints served by vLLM unchanged.

vLLM loads `register` through the `vllm.general_plugins` entry point (pyproject.toml) in every process it starts. It
registers the architecture names the published configs carry with vLLM's `ModelRegistry`; the model classes import
vLLM lazily (module paths), so importing this package never needs vLLM.

What lives here is glue only (see `videorefer/compat/vllm.py` for the vLLM internals it relies on):
- `processing`: vLLM's multimodal processor for a `videorefer` item (one question about objects in a video or an
  image) that calls the family's own processor (frame sampling, resizing, crops, prompt layout) and frame pruning;
- `model`: vLLM's own Qwen2 for the language model beside the family's own vision side;
- `vl3`, `v1`: each family's processor output as vLLM prompt ids + tensors, and its vision modules
  (`VL3VisualEncoding`, `V1VisualEncoding`: the transformers models' own `encode_visual`);
- `keys`: the official checkpoint layout -> the plugin's module names, in one place;
- `penalty`: the repetition penalty on generated tokens only (the official semantics), as a logits processor.
"""

from __future__ import annotations

__all__ = ["register", "ARCHITECTURES", "MODALITY"]

#: The item type of a request: {"video", "objects", "text", "history", "allow_empty_masks"} (see `processing`).
MODALITY = "videorefer"
#: Architecture names in the published configs (VideoRefer-VideoLLaMA3-7B / -2B, VideoRefer-7B) -> the plugin's model.
ARCHITECTURES = {
    "Videollama3Qwen2ForCausalLM": "videorefer.serving.vllm.vl3:VideoReferVL3ForVLLM",
    "VideoReferQwen2ForCausalLM": "videorefer.serving.vllm.v1:VideoReferV1ForVLLM",  # VideoRefer-7B
}


def register() -> None:
    """The `vllm.general_plugins` entry point: our families' configs for `AutoConfig`, our architectures for vLLM."""
    from vllm import ModelRegistry

    from ...compat import vllm as compat_vllm
    from ... import models  # noqa: F401  (registers every family's config with AutoConfig)

    compat_vllm.check_supported()
    supported = set(ModelRegistry.get_supported_archs())
    for architecture, model_class in ARCHITECTURES.items():
        if architecture not in supported:
            ModelRegistry.register_model(architecture, model_class)
