"""Files and folders that are either complete or absent, whatever moment a run is killed at.

A file is written under a hidden temporary name in its folder, forced to disk and renamed over its final name
(`os.replace` is atomic on one file system); a folder is filled under a staging name and renamed into place the same
way. Readers therefore never see a half-written file or checkpoint under its real name. Used by training (checkpoints,
final outputs, the finished marker), the data engine and the benchmark score files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic", "publish_dir", "remove_dir", "fsync_dir", "TRASH_PREFIX"]

TRASH_PREFIX = ".trash-"  # a folder being removed is renamed to this first, so it never keeps its name half-deleted


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside `path` durable (no-op where folders cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` so that `path` holds either its old content or all of `text`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def remove_dir(path: str | os.PathLike) -> None:
    """Remove a folder: renamed to a hidden trash name first (atomic), then deleted (a kill leaves only trash)."""
    path = Path(path)
    if not path.exists():
        return
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{os.getpid()}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash, ignore_errors=True)


def publish_dir(staged: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Rename the completely written folder `staged` to `final` (an older `final` is removed first)."""
    staged, final = Path(staged), Path(final)
    for root, _, files in os.walk(staged):  # the files' data on disk before the name appears
        for name in files:
            with open(os.path.join(root, name), "rb") as file:
                os.fsync(file.fileno())
    remove_dir(final)
    os.replace(staged, final)
    fsync_dir(final.parent)
    return final
