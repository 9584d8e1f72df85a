"""The repetition penalty of the official code: on generated tokens only (the prompt enters the official model as
embeddings, so its tokens are never penalised). vLLM's own `repetition_penalty` also counts the prompt's tokens, so
requests carry the penalty in `SamplingParams.extra_args[PENALTY_KEY]` and this logits processor applies it, with
transformers' rule (a positive logit divided by the penalty, a negative one multiplied), once per distinct token."""

from __future__ import annotations

from typing import Any

import torch
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

__all__ = ["OutputRepetitionPenalty", "PENALTY_KEY", "penalise"]

PENALTY_KEY = "output_repetition_penalty"


def penalise(output_ids: list[int], logits: torch.Tensor, penalty: float) -> torch.Tensor:
    """`logits (V,)` with the penalty applied to the tokens in `output_ids`."""
    if not output_ids:
        return logits
    ids = torch.tensor(sorted(set(output_ids)), device=logits.device, dtype=torch.long)
    chosen = logits[ids]
    logits[ids] = torch.where(chosen < 0, chosen * penalty, chosen / penalty)
    return logits


class OutputRepetitionPenalty(AdapterLogitsProcessor):
    """Pass the class to `vllm.LLM(logits_processors=[...])`; requests opt in with `extra_args`."""

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def new_req_logits_processor(self, params: Any):
        penalty = float((params.extra_args or {}).get(PENALTY_KEY, 1.0))
        if penalty == 1.0:
            return None
        return lambda output_ids, logits: penalise(output_ids, logits, penalty)
