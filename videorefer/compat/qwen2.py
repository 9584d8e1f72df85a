"""transformers' `Qwen2ForCausalLM.__init__`, done our way.

`VideoReferQwen2ForCausalLM` is a `Qwen2ForCausalLM` (so generation, loading and peft treat it as one) whose inner
model is `VideoReferQwen2Model` (the Qwen2 decoder plus the vision side). `Qwen2ForCausalLM.__init__` would build a
plain `Qwen2Model` first, so we skip it and set what it sets ourselves; `ATTRIBUTES` lists those, and
`check_supported()` verifies (from its source) that transformers' `__init__` still assigns exactly them.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

from torch import nn

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "init_causal_lm", "ATTRIBUTES"]

ADAPTER = "videorefer/compat/qwen2.py"
FEATURE = "VideoReferQwen2ForCausalLM (videorefer.models.videorefer_qwen2.modeling)"
#: What `Qwen2ForCausalLM.__init__` sets beyond `Qwen2PreTrainedModel.__init__`.
ATTRIBUTES = ("model", "vocab_size", "lm_head")


@functools.cache
def causal_lm_attributes() -> tuple[str, ...]:
    """The `self.<name>` attributes `Qwen2ForCausalLM.__init__` assigns, read from its source (once per process)."""
    from transformers import Qwen2ForCausalLM

    source = textwrap.dedent(inspect.getsource(Qwen2ForCausalLM.__init__))
    names = {target.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign)
             for target in node.targets
             if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"}
    return tuple(sorted(names))


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless `Qwen2ForCausalLM.__init__` sets exactly `ATTRIBUTES`."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    found = causal_lm_attributes()
    require(found == tuple(sorted(ATTRIBUTES)), FEATURE, ADAPTER,
            f"has a Qwen2ForCausalLM.__init__ that sets {list(found)}, not {sorted(ATTRIBUTES)}")


def init_causal_lm(model: nn.Module, config: Any, build_inner_model: Callable[[], nn.Module]) -> None:
    """Initialise `model` (a `Qwen2ForCausalLM` subclass) as `Qwen2ForCausalLM.__init__` does, but with the inner model
    `build_inner_model()` (called after the module machinery is set up), then run `post_init`."""
    check_supported()
    from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel

    Qwen2PreTrainedModel.__init__(model, config)
    model.model = build_inner_model()
    model.vocab_size = config.vocab_size
    model.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
    model.post_init()
