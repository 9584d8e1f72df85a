"""transformers' SigLIP encoder layers, called one by one.

VideoRefer-7B uses the output of one inner layer of the SigLIP tower (`mm_vision_select_layer`) and must not pay for
the layers after it, so it runs `encoder.layers[:n]` itself instead of the encoder's forward. That relies on each
`SiglipEncoderLayer` taking `(hidden_states, attention_mask)` positionally and returning the hidden states (transformers
4 returned a tuple; that form is still accepted).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "run_encoder_layers"]

ADAPTER = "videorefer/compat/siglip.py"
FEATURE = "the VideoRefer-7B vision tower (videorefer.models.videorefer_qwen2.vision)"
LAYER_PARAMETERS = ["hidden_states", "attention_mask"]


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless `SiglipEncoderLayer.forward(hidden_states, attention_mask, ...)`."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    from transformers.models.siglip.modeling_siglip import SiglipEncoderLayer

    parameters = [name for name in inspect.signature(SiglipEncoderLayer.forward).parameters if name != "self"]
    require(parameters[:2] == LAYER_PARAMETERS, FEATURE, ADAPTER,
            f"has SiglipEncoderLayer.forward({', '.join(parameters)}), not ({', '.join(LAYER_PARAMETERS)}, ...)")


def run_encoder_layers(layers: Sequence[nn.Module], hidden: torch.Tensor) -> torch.Tensor:
    """Run `hidden` `(n, patches, C)` through `layers` in order, without an attention mask; `(n, patches, C)`."""
    for layer in layers:
        hidden = layer(hidden, None)
        if isinstance(hidden, tuple):
            hidden = hidden[0]
    return hidden
