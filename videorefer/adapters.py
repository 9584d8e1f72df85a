"""Loading a peft adapter onto a base model, refused with both named when the adapter was made for another base.

An adapter's `adapter_config.json` names the model it was trained on (`base_model_name_or_path`). When that model's
config can be read (a folder, or a Hub id in the local cache), its family (`model_type`) and size (hidden size, layers)
are compared with the base being loaded before any weight is touched; otherwise peft's own key or shape error is
turned into a `ValueError` that names the adapter, the base it names and the base it was put on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_adapter", "adapter_base"]


def adapter_base(adapter: str | os.PathLike) -> str | None:
    """The base model an adapter folder names, or None."""
    path = Path(adapter) / "adapter_config.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("base_model_name_or_path") or None


def _shape(config: Any) -> tuple[str, int | None, int | None]:
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return (config.model_type, getattr(text, "hidden_size", None), getattr(text, "num_hidden_layers", None))


def _describe(shape: tuple[str, int | None, int | None]) -> str:
    return f"{shape[0]}, hidden size {shape[1]}, {shape[2]} layers"


def _named_base_shape(named: str | None) -> tuple[str, int | None, int | None] | None:
    """Family and size of the base an adapter names, when its config is at hand (no download)."""
    if not named:
        return None
    from transformers import AutoConfig

    try:
        return _shape(AutoConfig.from_pretrained(named, local_files_only=True))
    except Exception:  # noqa: BLE001 (not available offline, or not a config: fall back to peft's own check)
        return None


def load_adapter(model: Any, adapter: str | os.PathLike, base: str | os.PathLike) -> Any:
    """`PeftModel.from_pretrained(model, adapter)` for `model` loaded from `base`; an adapter made for another family
    or size is a `ValueError` naming both bases."""
    from peft import PeftModel

    named = adapter_base(adapter)
    here = _shape(model.config)
    wanted = _named_base_shape(named)
    if wanted is not None and wanted != here:
        raise ValueError(f"the adapter {adapter} was trained on {named} ({_describe(wanted)}); it cannot go on "
                         f"{base} ({_describe(here)}): load it with its own base model")
    try:
        return PeftModel.from_pretrained(model, str(adapter))
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"the adapter {adapter} (trained on {named or 'a base it does not name'}) does not fit "
                         f"{base} ({_describe(here)}): {str(err)[:300]}") from err
