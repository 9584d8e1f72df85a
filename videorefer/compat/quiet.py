"""Library messages that mean nothing to a user of this project, silenced once at import (`import videorefer`).

- bitsandbytes' CPU backend logs a warning at import when the optional `kernels` package (which fetches kernels from
  the Hugging Face Hub) is missing; its plain-PyTorch fallback is what runs, and it is correct.
- peft reads transformers' deprecated `is_gradient_checkpointing` property, so every LoRA model build warns
  (`FutureWarning`) about code that is not ours.

Only these exact messages are filtered; every other warning of these libraries still shows.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_library_noise"]

_BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


def _not_kernels_notice(record: logging.LogRecord) -> bool:
    return "kernels-community" not in record.getMessage()


def quiet_library_noise() -> None:
    """Install the filters (idempotent); must run before bitsandbytes is first imported (transformers imports it)."""
    logger = logging.getLogger(_BNB_CPU_LOGGER)
    if _not_kernels_notice not in logger.filters:
        logger.addFilter(_not_kernels_notice)
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
