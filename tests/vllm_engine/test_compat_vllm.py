"""videorefer.compat.vllm in the venv where vLLM is installed: the installed release is accepted, another one or a
changed hook is refused with a message naming both."""

from __future__ import annotations

import pytest

import videorefer.compat as compat
from videorefer.compat import UnsupportedVersionError, vllm as compat_vllm


def test_the_installed_vllm_is_supported():
    compat_vllm.check_supported()


def test_another_release_is_refused(monkeypatch):
    name, _ = compat_vllm.vllm_distribution()
    monkeypatch.setattr(compat, "installed_version", lambda d: "0.33.1" if d == name else "not installed")
    with pytest.raises(UnsupportedVersionError) as info:
        compat_vllm.check_supported()
    assert f"{name} 0.33.1 is installed" in str(info.value) and "vllm>=0.32,<0.33" in str(info.value)


def test_a_changed_hook_is_refused(monkeypatch):
    from vllm.multimodal.processing import PromptUpdateDetails

    monkeypatch.setattr(PromptUpdateDetails, "select_token_ids", staticmethod(lambda seq: None))
    hook = r"PromptUpdateDetails\.select_token_ids\(seq, embed_token_ids\)"
    with pytest.raises(UnsupportedVersionError, match=hook):
        compat_vllm.check_supported()
