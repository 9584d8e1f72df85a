"""fetch_bench: laying out a downloaded snapshot in the official folders, and a clear error when offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from bench.fetch_bench import main

REPO = Path(__file__).resolve().parents[1]


def test_layout_from_a_snapshot(tmp_path: Path) -> None:
    hub = tmp_path / "eval" / ".hub"
    (hub / "sub").mkdir(parents=True)
    (hub / "VideoRefer-Bench-D.json").write_text(json.dumps([{"id": 0}]))
    (hub / "sub" / "VideoRefer-Bench-Q.json").write_text(json.dumps([{"id": 1}]))  # found wherever it lies
    with zipfile.ZipFile(hub / "Panda-70M-part.zip", "w") as zf:
        zf.writestr("Panda-70M-part/a.mp4", b"video-a")
        zf.writestr("Panda-70M-part/b.mp4", b"video-b")
    davis = tmp_path / "DAVIS"
    (davis / "JPEGImages" / "480p" / "bear").mkdir(parents=True)

    main(["--out", str(tmp_path / "eval"), "--skip-download", "--davis", str(davis)])

    d, q = tmp_path / "eval" / "VideoRefer-Bench-D", tmp_path / "eval" / "VideoRefer-Bench-Q"
    assert json.loads((d / "VideoRefer-Bench-D.json").read_text()) == [{"id": 0}]
    assert json.loads((q / "VideoRefer-Bench-Q.json").read_text()) == [{"id": 1}]
    assert sorted(p.name for p in (d / "Panda-70M-part").iterdir()) == ["a.mp4", "b.mp4"]  # no extra nesting
    assert (q / "DAVIS" / "JPEGImages" / "480p" / "bear").is_dir()
    main(["--out", str(tmp_path / "eval"), "--skip-download"])  # rerunning is harmless


def test_offline_download_fails_with_a_clear_message(tmp_path: Path) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    result = subprocess.run([sys.executable, "-m", "bench.fetch_bench", "--out", str(tmp_path / "eval")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "could not download DAMO-NLP-SG/VideoRefer-Bench" in result.stderr
    assert "needs network access" in result.stderr
