"""transformers' repetition penalty when generation starts from spliced input embeddings.

Both families generate from `inputs_embeds` (the prompt's visual tokens have no ids), so the ids transformers hands to
its logits processors hold only the new tokens, and a repetition penalty sees only those: the official semantics
(VL3's published checkpoints carry 1.05 / 1.1). In a left-padded batch, transformers 5.24 also sets the penalty's
`prompt_ignore_length` to each row's padding length (read from the attention mask, meant for prompts given as ids):
a padded row then goes unpenalised for its first (padding) new tokens, and `ask_batch` answers differ from `ask`.
`output_only_penalty` takes the penalty out of transformers' own processor list and adds a
`RepetitionPenaltyLogitsProcessor` without that offset: every row is penalised on its new tokens only.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "output_only_penalty"]

ADAPTER = "videorefer/compat/generation.py"
FEATURE = "the repetition penalty on generated tokens only (videorefer.models.base generate)"


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless `RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length)` exists
    and `generate` takes a `logits_processor` list."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    from transformers import GenerationMixin, RepetitionPenaltyLogitsProcessor

    parameters = [n for n in inspect.signature(RepetitionPenaltyLogitsProcessor.__init__).parameters if n != "self"]
    require(parameters == ["penalty", "prompt_ignore_length"], FEATURE, ADAPTER,
            f"has RepetitionPenaltyLogitsProcessor({', '.join(parameters)})")
    require("logits_processor" in inspect.signature(GenerationMixin.generate).parameters, FEATURE, ADAPTER,
            "has a generate() without logits_processor")


def output_only_penalty(kwargs: dict[str, Any], generation_config: Any) -> dict[str, Any]:
    """`generate` keyword arguments for a prompt given as `inputs_embeds`: the repetition penalty (from `kwargs`,
    else its `generation_config`, else the model's `generation_config`) applied to every row's new tokens only."""
    check_supported()
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    config = kwargs.get("generation_config") or generation_config
    penalty = kwargs.get("repetition_penalty", getattr(config, "repetition_penalty", None))
    if penalty is None or float(penalty) == 1.0:
        return kwargs
    processors = LogitsProcessorList(kwargs.get("logits_processor") or [])
    processors.append(RepetitionPenaltyLogitsProcessor(float(penalty)))  # no prompt_ignore_length: ids are new only
    return {**kwargs, "repetition_penalty": 1.0, "logits_processor": processors}
