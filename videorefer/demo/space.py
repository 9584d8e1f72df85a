"""Build a Hugging Face Space repository for the demo in one step.

    python -m videorefer.demo.space OUT_DIR [--overwrite]

OUT_DIR receives README.md (the Space's YAML configuration), requirements.txt, app.py, the `videorefer` package and
`examples/`. Push it to a Gradio Space (`git push` in a clone of the Space, or `hf upload <user>/<space> OUT_DIR
--repo-type space`) and pick ZeroGPU hardware. The Space runs `python app.py` on the checkpoint named by the Space
variable `VIDEOREFER_MODEL` (one of `models`; default VideoRefer-VL3 7B). The default checkpoint, SAM 2.1 and
Grounding DINO are downloaded when the Space is built (`preload_from_hub`), another checkpoint when the Space starts;
the models load once at start onto `cuda` (ZeroGPU lends a GPU to each call; see `videorefer.demo.zerogpu`).

A non-empty OUT_DIR is refused unless `--overwrite` is given; overwriting keeps a `.git` folder (a cloned Space).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from .backend import DEFAULT_DETECTOR, DEFAULT_SAM2, Settings

ROOT = Path(__file__).resolve().parents[2]
COPIED = ("app.py", "videorefer", "examples")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")

# The checkpoints the Space can serve (`models`, chosen with the Space variable `VIDEOREFER_MODEL`): the default
# (`videorefer.api.DEFAULT_MODEL_ID`) first, then the other VideoRefer checkpoints of both families, SAM 2.1 and
# Grounding DINO.
SPACE_MODELS = tuple(dict.fromkeys((
    Settings.model,
    "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B",
    "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-2B",
    "DAMO-NLP-SG/VideoRefer-7B",
    DEFAULT_SAM2,
    DEFAULT_DETECTOR,  # Find by name (Grounding DINO)
)))
# What the page serves, downloaded when the Space is built (`preload_from_hub`): the default checkpoint, SAM 2.1 and
# Grounding DINO (about 18 GB, against about 35 GB for every checkpoint). Another `VIDEOREFER_MODEL` downloads at start.
PRELOADED = tuple(dict.fromkeys((Settings.model, DEFAULT_SAM2, DEFAULT_DETECTOR)))
PYTHON_VERSION = "3.11"  # what the project is tested with
HARDWARE = "zero-a10g"  # ZeroGPU's hardware flavour name
TITLE = "VideoRefer"
SHORT_DESCRIPTION = "Point at objects in a video, track them, ask about them"
LICENSE = "apache-2.0"

# Lines of the project's requirements.txt the Space does not install: the SDK brings gradio (at `sdk_version`), the
# tests' tools are not needed, and the local CPU-wheel pins of torch / torchvision become plain lower bounds (the
# Space installs the CUDA wheels from PyPI).
SDK_PROVIDED = ("gradio", "gradio_client")
TEST_ONLY = ("pytest", "playwright")
UNPINNED = {"torch": "torch>=2.4", "torchvision": "torchvision>=0.19"}


def _name(line: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9_.\-]+)", line)
    return match.group(1).lower().replace("-", "_") if match else ""


def gradio_version(requirements: str) -> str:
    """The installed Gradio's version, checked against the requirement in `requirements` (it is the Space's
    `sdk_version`: the Space runs the Gradio the project was tested with)."""
    from packaging.requirements import Requirement

    version = metadata.version("gradio")
    for line in requirements.splitlines():
        if _name(line) == "gradio":
            requirement = Requirement(line.split("#")[0].strip())
            if not requirement.specifier.contains(version, prereleases=True):
                raise ValueError(f"the installed gradio {version} does not satisfy requirements.txt's {requirement}")
    return version


def space_requirements(requirements: str) -> str:
    """requirements.txt for the Space, from the project's."""
    lines = ["# The VideoRefer demo on a Hugging Face Space (built by `python -m videorefer.demo.space`).",
             "# gradio comes with the Space's SDK (sdk_version in README.md)."]
    for raw in requirements.splitlines():
        line = raw.strip()
        name = _name(line)
        if not line or line.startswith("#") or name in SDK_PROVIDED or name in TEST_ONLY:
            continue
        lines.append(UNPINNED.get(name, line))
    return "\n".join(lines) + "\n"


def front_matter(sdk_version: str) -> dict:
    """The Space's configuration (https://huggingface.co/docs/hub/spaces-config-reference)."""
    return {
        "title": TITLE,
        "emoji": "🎯",
        "colorFrom": "blue",
        "colorTo": "purple",
        "sdk": "gradio",
        "sdk_version": sdk_version,
        "python_version": PYTHON_VERSION,
        "app_file": "app.py",
        "suggested_hardware": HARDWARE,
        "models": list(SPACE_MODELS),
        "preload_from_hub": list(PRELOADED),
        "short_description": SHORT_DESCRIPTION,
        "license": LICENSE,
        "pinned": False,
    }


def readme(sdk_version: str) -> str:
    import yaml

    config = yaml.safe_dump(front_matter(sdk_version), sort_keys=False, allow_unicode=True)
    return f"""---
{config}---

# VideoRefer demo

Point at any object in a video or a photo (clicks, a box, a brush or its name), track it through the video with SAM 2.1, and ask the
VideoRefer video LLM about it: *What is `<object0>` doing to `<object1>`?*

- Model: `{Settings.model}` (VideoRefer-VL3) by default, downloaded when the Space is built with SAM 2.1 and
  Grounding DINO (`preload_from_hub`); set the Space variable `VIDEOREFER_MODEL` to another of the checkpoints listed in
  `models` (downloaded when the Space starts), `VIDEOREFER_SAM2` for SAM 2.1, `VIDEOREFER_DETECTOR` for Find by name.
- Hardware: ZeroGPU. Each GPU call asks for a duration computed from its work (frames × objects when tracking, new
  tokens when answering).
- API: `/segment`, `/track`, `/describe`, `/ask`, `/find` with `gradio_client` (see "Use via API" at the bottom of the page).

Built from the VideoRefer repository with `python -m videorefer.demo.space OUT_DIR`.
"""


def build_space(out_dir: str | Path, overwrite: bool = False, root: Path = ROOT) -> Path:
    """Write the Space repository into `out_dir` (see the module docstring). Returns its path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    existing = [p for p in out.iterdir() if p.name != ".git"] if out.is_dir() else []
    if existing and not overwrite:
        raise ValueError(f"{out} is not empty ({len(existing)} entries); pass --overwrite to replace its contents")
    for path in existing:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    requirements = (root / "requirements.txt").read_text()
    version = gradio_version(requirements)
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=IGNORED)
        else:
            shutil.copy2(source, out / name)
    (out / "requirements.txt").write_text(space_requirements(requirements))
    (out / "README.md").write_text(readme(version))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videorefer.demo.space", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the Space repository into")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty folder")
    args = parser.parse_args(argv)
    try:
        out = build_space(args.out_dir, args.overwrite)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Space repository written to {out}; push it to a Gradio Space with ZeroGPU hardware.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
