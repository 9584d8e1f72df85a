"""The Space repository built by `python -m videorefer.demo.space`: its configuration follows the Spaces conventions
(parsed, not string-matched), a non-empty folder is refused, and the built app starts in tiny mode and answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.requirements import Requirement

from videorefer.api import DEFAULT_MODEL_ID
from videorefer.demo.space import build_space, main
from videorefer.demo.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def front_matter(readme: Path) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", readme.read_text(), re.S)
    assert match, "README.md does not start with a YAML block"
    return yaml.safe_load(match.group(1))


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    return build_space(tmp_path_factory.mktemp("space") / "videorefer-space")


def test_the_configuration_follows_the_spaces_conventions(space):
    from huggingface_hub import SpaceHardware

    config = front_matter(space / "README.md")
    strings = ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file",
               "suggested_hardware", "short_description", "license")
    for key in strings:
        assert isinstance(config.get(key), str) and config[key], key
    assert config["sdk"] == "gradio"
    installed = metadata.version("gradio")
    assert config["sdk_version"] == installed and re.fullmatch(r"\d+\.\d+\.\d+", installed)
    pinned = next(Requirement(line) for line in (ROOT / "requirements.txt").read_text().splitlines()
                  if line.startswith("gradio") and not line.startswith("gradio_client"))
    assert pinned.specifier.contains(config["sdk_version"])
    assert (space / config["app_file"]).is_file()
    assert re.fullmatch(r"3\.\d+(\.\d+)?", config["python_version"])
    assert config["suggested_hardware"] in {h.value for h in SpaceHardware}
    assert config["suggested_hardware"].startswith("zero-")  # ZeroGPU
    assert config["colorFrom"] in COLOURS and config["colorTo"] in COLOURS
    assert len(config["short_description"]) <= 60
    models, preload = config["models"], config["preload_from_hub"]
    assert isinstance(models, list) and all(isinstance(m, str) and m.count("/") == 1 for m in models)
    assert {"DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B", "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-2B",
            "DAMO-NLP-SG/VideoRefer-7B", "facebook/sam2.1-hiera-large", "IDEA-Research/grounding-dino-base"
            } <= set(models)
    assert models[0] == preload[0] == DEFAULT_MODEL_ID  # the checkpoint `python app.py` serves comes first
    assert isinstance(preload, list) and preload
    assert {entry.split()[0] for entry in preload} <= set(models)  # "repo [files [revision]]"


def test_the_space_preloads_what_the_page_serves(space, monkeypatch):
    """`preload_from_hub` holds the models `python app.py` loads with no flags or variables (the default checkpoint,
    SAM 2.1, Grounding DINO) and no other checkpoint: the Space's build does not download weights it never serves."""
    from videorefer.demo.backend import parse_settings

    for name in ("VIDEOREFER_MODEL", "VIDEOREFER_SAM2", "VIDEOREFER_DETECTOR", "VIDEOREFER_TINY"):
        monkeypatch.delenv(name, raising=False)
    served = parse_settings([])
    config = front_matter(space / "README.md")
    preload = [entry.split()[0] for entry in config["preload_from_hub"]]
    assert sorted(preload) == sorted({served.model, served.sam2, served.detector})
    assert set(config["models"]) - set(preload) == {"DAMO-NLP-SG/VideoRefer-VideoLLaMA3-2B", "DAMO-NLP-SG/VideoRefer-7B"}


def test_the_requirements_suit_a_space(space):
    lines = [line for line in (space / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    requirements = {Requirement(line).name.lower(): Requirement(line) for line in lines}
    assert "gradio" not in requirements  # the SDK installs the Gradio of sdk_version
    assert "pytest" not in requirements and "playwright" not in requirements
    assert not any(s.operator == "==" for s in requirements["torch"].specifier)  # not the local CPU wheel's pin
    for name in ("transformers", "spaces", "av", "pycocotools"):
        assert name in requirements, name
    assert (space / "videorefer" / "demo" / "zerogpu.py").is_file() and (space / "examples").is_dir()
    assert not list(space.rglob("__pycache__"))


def test_a_non_empty_folder_is_refused_unless_overwritten(tmp_path, capsys):
    out = tmp_path / "space"
    (out / ".git").mkdir(parents=True)
    (out / "old.txt").write_text("x")
    assert main([str(out)]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "old.txt").exists()
    with pytest.raises(ValueError, match="not empty"):
        build_space(out)
    assert main([str(out), "--overwrite"]) == 0
    assert not (out / "old.txt").exists() and (out / ".git").is_dir() and (out / "app.py").is_file()


def test_the_built_app_starts_in_tiny_mode_and_answers(space, tmp_path):
    from gradio_client import Client, handle_file

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": ""}
    log = tmp_path / "space.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "app.py", "--tiny", "--port", str(port), "--scrub-frames", "4"],
                                   cwd=space, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 150
        while True:
            assert process.poll() is None, f"app.py exited:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, f"app.py did not start:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        client = Client(url, verbose=False)
        result = client.predict(handle_file(str(space / "examples" / "bigbuckbunny.mp4")), 60, [[470, 380]], [1], None,
                                api_name="/segment")
        assert result["frame_index"] == 60 and result["area"] > 0
    finally:
        process.terminate()
        process.wait(timeout=30)
