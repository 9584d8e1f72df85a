"""Kill-safe writes (`videorefer.data.atomic`, used by training, the data engine's report and export): a write or a
folder publish cut short at its last moment leaves the old content under the real name, never a part of the new."""

from __future__ import annotations

import json
import os

import pytest

from videorefer.data import atomic
from videorefer.data.atomic import publish_dir, remove_dir, write_json_atomic, write_text_atomic


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even `except Exception` handlers)."""


def kill_at_rename(monkeypatch):
    def replace(*args, **kwargs):
        raise Killed()

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_write_cut_short_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"videos": 1})
    kill_at_rename(monkeypatch)
    with pytest.raises(Killed):
        write_text_atomic(path, json.dumps({"videos": 2}) * 1000)
    assert json.loads(path.read_text()) == {"videos": 1}
    monkeypatch.undo()
    write_text_atomic(path, "new")
    assert path.read_text() == "new"


def test_a_folder_is_published_whole_or_not_at_all(tmp_path, monkeypatch):
    staged, final = tmp_path / ".staging" / "checkpoint-4", tmp_path / "checkpoint-4"
    staged.mkdir(parents=True)
    (staged / "model.safetensors").write_bytes(b"x" * 100)
    (staged / "trainer_state.json").write_text("{}")
    real_replace = os.replace
    calls = []

    def replace(source, target):  # the old folder may be moved away; the new one never arrives
        calls.append(target)
        if str(target) == str(final):
            raise Killed()
        return real_replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(Killed):
        publish_dir(staged, final)
    assert not final.exists()
    monkeypatch.undo()
    publish_dir(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["model.safetensors", "trainer_state.json"]
    assert not staged.exists()


def test_removal_renames_the_folder_away_first(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    (folder / "a").write_text("a")

    def rmtree(path, ignore_errors=False):
        raise Killed()

    monkeypatch.setattr(atomic.shutil, "rmtree", rmtree)
    with pytest.raises(Killed):
        remove_dir(folder)
    assert not folder.exists()  # killed mid-deletion: only a trash folder is left, under another name
    assert [p.name.startswith(atomic.TRASH_PREFIX) for p in tmp_path.iterdir()] == [True]
