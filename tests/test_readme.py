"""The README stays true: its test command is what CI runs, and its Python example runs (on tiny models)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [line for block in code_blocks("bash") for line in block.splitlines() if "pytest" in line]
    assert commands, "the README gives no test command"
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[0].strip() in ci


def test_the_python_api_example_runs(family_checkpoint, tmp_path, monkeypatch):
    """The example, with each family's tiny model in place of the published one."""
    from videorefer.testing.tiny_sam2 import build_tiny_sam2

    sam2 = build_tiny_sam2(tmp_path / "sam2")
    example = next(block for block in code_blocks("python") if "VideoRefer.from_pretrained" in block)
    example = example.replace('"DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B"', repr(str(family_checkpoint)))
    example = example.replace('"facebook/sam2.1-hiera-large"', repr(str(sam2)))
    # Random tiny models rarely stop by themselves: keep their answers short.
    example = re.sub(r'(vr = VideoRefer\.from_pretrained\(.*\))', r'\1; vr.generation_defaults["max_new_tokens"] = 4', example)
    monkeypatch.chdir(ROOT)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    tracked = namespace["tracked"]
    video = namespace["video"]
    assert set(tracked[0]) >= set(video.frame_indices)  # the object was tracked over every sampled frame
    assert tracked[0][60].shape == (720, 1280)
