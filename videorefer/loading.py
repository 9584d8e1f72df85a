"""Loading a checkpoint of any registered family for the transformers engine: model (optionally quantised, with a
peft adapter) and processor. `videorefer.api.VideoRefer.from_pretrained` and training use it."""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import BitsAndBytesConfig

from . import models  # noqa: F401  (registers every family)
from .families import family_for_checkpoint

__all__ = ["DEFAULT_MODEL_ID", "QUANTIZATIONS", "load_model_and_processor"]

DEFAULT_MODEL_ID = "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B"  # the best published checkpoint (VideoRefer-VL3 family)
QUANTIZATIONS = (None, "none", "8bit", "4bit")


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model_and_processor(
    model_id: str | os.PathLike = DEFAULT_MODEL_ID,
    quantization: str | None = None,
    device: str | None = None,
    device_map: str | dict | None = None,
    dtype: torch.dtype | str | None = None,
    adapter: str | os.PathLike | None = None,
    attn_implementation: str | None = None,
    **hub_kwargs: Any,
) -> tuple[Any, Any]:
    """Load a checkpoint in the official layout (a folder or a Hub id), optionally quantised and with a peft adapter.

    The config's `model_type` picks the family (`ValueError` naming the supported ones for any other). Quantisation
    (bitsandbytes `8bit` / `4bit`) applies to the language model's linear layers; the family's
    `full_precision_modules` (vision side, region encoder, output layer) stay in `dtype`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of none, 8bit, 4bit; got {quantization!r}")
    path = str(model_id)
    if os.path.isdir(path):
        missing = [name for name in ("config.json",) if not os.path.isfile(os.path.join(path, name))]
        if not any(f.endswith(".safetensors") or f.endswith(".bin") for f in os.listdir(path)):
            missing.append("model weights (*.safetensors or *.bin)")
        if missing:
            raise ValueError(f"the checkpoint folder {path} is missing {', '.join(missing)}")
    device = device or _default_device()
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    family = family_for_checkpoint(path, **hub_kwargs)
    config = family.config_class.from_pretrained(path, **hub_kwargs)
    kwargs: dict[str, Any] = dict(config=config, dtype=dtype, **hub_kwargs)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantization in ("8bit", "4bit"):
        skip = list(family.model_class.full_precision_modules)
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
            if quantization == "8bit"
            else BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                bnb_4bit_use_double_quant=True, llm_int8_skip_modules=skip,
            )
        )
        kwargs["device_map"] = device_map or {"": device}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    model = family.model_class.from_pretrained(path, **kwargs)
    if "device_map" not in kwargs:
        model.to(device)
    if adapter is not None:
        from .adapters import load_adapter

        model = load_adapter(model, adapter, path)
    model.eval()
    processor = family.processor_class.from_pretrained(path, **hub_kwargs)
    return model, processor
