"""The import layering: `videorefer` <- `train`, `bench`, `app.py`; `train` and `bench` never import each other, and
`videorefer` imports neither. Also: `pip install .` installs only the `videorefer` package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"train": {"bench"}, "bench": {"train"}, "videorefer": {"train", "bench", "app"}}


def imported_top_level(path: Path, package: str) -> dict[str, int]:
    """Top-level package of every import in `path` (relative imports resolved inside `package`) -> first line."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package if node.level else (node.module or "")]
        else:
            continue
        for name in names:
            found.setdefault(name.split(".")[0], node.lineno)
    return found


def layering_violations(root: Path) -> list[str]:
    """`"module.py:LINE imports X"` for every import that goes against `FORBIDDEN`."""
    violations = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((root / package).rglob("*.py")):
            for name, line in imported_top_level(path, package).items():
                if name in forbidden:
                    violations.append(f"{path.relative_to(root)}:{line} imports {name}")
    return violations


def test_train_and_bench_do_not_import_each_other() -> None:
    violations = layering_violations(ROOT)
    assert not violations, "imports against the layering (videorefer <- train, bench): " + "; ".join(violations)


def test_the_check_catches_a_crossing_import(tmp_path: Path) -> None:
    for package in FORBIDDEN:
        (tmp_path / package).mkdir()
    (tmp_path / "train" / "ok.py").write_text("from videorefer.data.jsonl import read_jsonl\nfrom . import ok\n")
    (tmp_path / "train" / "bad.py").write_text("import os\n\ndef f():\n    from bench.common import read_jsonl\n")
    (tmp_path / "videorefer" / "worse.py").write_text("import train.train as t\n")
    assert layering_violations(tmp_path) == ["train/bad.py:4 imports bench", "videorefer/worse.py:1 imports train"]


def test_only_the_videorefer_package_is_installed() -> None:
    """`train` and `bench` are folders of the repository, not packages `pip install .` puts in site-packages."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = pyproject["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["videorefer*"], f"packages.find.include is {find['include']}"
    find_packages = pytest.importorskip("setuptools").find_packages  # the build backend pyproject names

    packages = find_packages(str(ROOT), include=find["include"], exclude=find.get("exclude", ()))
    assert packages and all(p == "videorefer" or p.startswith("videorefer.") for p in packages), packages
    assert "videorefer.data" in packages and "videorefer.compat" in packages
