"""The README's "Try everything offline" commands, read from the README and run exactly as written (in this process,
as `python -m` would run them; `runs/try` pointed at a temporary folder), on a CPU with tiny models built in code."""

from __future__ import annotations

import glob
import json
import re
import runpy
import shlex
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Try everything offline"


def readme_commands() -> list[list[str]]:
    """The section's first bash block, one argument list per command (continuations joined, comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def run_python_module(argv: list[str], out: Path) -> None:
    assert argv[:2] == ["python", "-m"], f"not a `python -m` command: {argv}"
    args = [a.replace("runs/try", str(out)) for a in argv[2:]]
    args = [match for a in args for match in (sorted(glob.glob(a)) if "*" in a else [a])]
    saved = sys.argv
    sys.argv = [args[0], *args[1:]]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
            runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    except SystemExit as exit_info:
        assert exit_info.code in (0, None), f"{' '.join(argv)} exited with {exit_info.code}"
    finally:
        sys.argv = saved


def test_every_offline_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    commands = readme_commands()
    modules = [argv[2] for argv in commands]
    for needed in ("train.check_data", "train.train", "train.merge", "bench.bench_q", "bench.bench_d", "bench.mini",
                   "train.data_engine"):
        assert needed in modules, f"the README's offline section has no {needed} command"
    for argv in commands:
        run_python_module(argv, tmp_path)
    out = capsys.readouterr().out
    assert out.count("no problems found") == 2
    assert (tmp_path / "vl3-lora" / "adapter_config.json").is_file()
    assert (tmp_path / "vl3-lora" / "merged" / "config.json").is_file()
    assert (tmp_path / "vl3-lora" / "checkpoint-2" / "merged" / "config.json").is_file()
    assert (tmp_path / "v1-lora" / "adapter_config.json").is_file()
    history = json.loads((tmp_path / "vl3-lora" / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [h["step"] for h in history if "eval_loss" in h] == [2, 4]
    score = json.loads((tmp_path / "q_score.json").read_text())
    assert score["complete"] and score["model"] == "tiny-vl3" and score["items"] == score["expected"] == 5
    assert "model: tiny-vl3; mode: single; protocol: VideoRefer-VL3; judge: local-test-judge" in out
    assert "unparsable answers:" in out and "WARNING" not in out
    samples = json.loads((tmp_path / "engine" / "videorefer_700k.json").read_text())
    assert sorted(s["type"] for s in samples) == ["detailed_caption"] * 3 + ["qa"] * 3 + ["short_caption"] * 3
