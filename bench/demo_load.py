"""Concurrent visitors asking the demo (`/ask` through gradio_client): every answer compared with the sequential one,
the time for 8 and for 32 concurrent visitors, for the demo answering in-process and the demo on a VideoRefer server.

    python -m bench.demo_load                      # both setups on tiny VL3 models (the server: .venv-vllm)
    python -m bench.demo_load --only server --server-python .venv-vllm/bin/python

Each visitor is its own gradio_client; visitor k asks question k % 8 about the square of a small synthetic clip (8
distinct requests). Tiny models: the numbers measure the serving path (queueing, batching, transport), not a model.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ["What is <object0>?", "Where does <object0> go?", "What colour is <object0>?",
             "Describe <object0>.", "Is <object0> moving?", "How big is <object0>?",
             "What is next to <object0>?", "What does <object0> do?"]


def clip(folder: str | os.PathLike) -> tuple[str, dict]:
    """A small clip of a moving square and its regions document (the square on frame 3)."""
    from videorefer.demo.testing import write_video
    from videorefer.regions import objects_to_json

    path = write_video(Path(folder) / "square.mp4", 12)
    mask = np.zeros((48, 64), bool)
    mask[12:36, 6:30] = True
    return str(path), objects_to_json([{3: mask}])


def ask(url: str, video: str, regions: dict, question: str) -> str:
    from gradio_client import Client, handle_file

    return Client(url, verbose=False).predict(handle_file(video), regions, question, None, "auto", api_name="/ask")


def probe(url: str, video: str, regions: dict, visitors: int) -> tuple[list[str], float]:
    """`visitors` concurrent visitors; (their answers in order, seconds for all)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(visitors) as pool:
        answers = list(pool.map(lambda k: ask(url, video, regions, QUESTIONS[k % len(QUESTIONS)]), range(visitors)))
    return answers, time.perf_counter() - start


def sequential(url: str, video: str, regions: dict) -> list[str]:
    return [ask(url, video, regions, question) for question in QUESTIONS]


def measure(url: str, video: str, regions: dict) -> dict:
    """Sequential answers, then 8 and 32 concurrent visitors: times and whether every answer equals the sequential."""
    reference = sequential(url, video, regions)
    row = {}
    for visitors in (8, 32):
        answers, seconds = probe(url, video, regions, visitors)
        row[visitors] = seconds
        row[f"same_{visitors}"] = all(a == reference[k % len(QUESTIONS)] for k, a in enumerate(answers))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("in-process", "server"))
    parser.add_argument("--server-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import app
    from videorefer.demo.backend import Settings, load_backend
    from videorefer.demo.testing import free_port
    from videorefer.testing.server_process import ServerProcess

    folder = tempfile.mkdtemp(prefix="videorefer-load-")
    video, regions = clip(folder)
    rows = {}
    for setup in ("in-process", "server"):
        if args.only not in (None, setup):
            continue
        server = None
        if setup == "server":
            server = ServerProcess(["--tiny", "vl3", "--enforce-eager"], free_port(), Path(folder) / "server.log",
                                   python=args.server_python, cwd=ROOT).start()
        settings = Settings(tiny="vl3", device="cpu", port=free_port(), detector="none",
                            server=server.url if server else None)
        demo = app.launch(settings, backend=load_backend(settings), prevent_thread_lock=True, quiet=True)
        try:
            rows[setup] = measure(f"http://127.0.0.1:{settings.port}/", video, regions)
        finally:
            demo.close()
            if server is not None:
                server.kill()
    print("| demo | 8 visitors | 32 visitors | 32 / 8 | answers = sequential |")
    print("| --- | --- | --- | --- | --- |")
    for setup, row in rows.items():
        print(f"| {setup} | {row[8]:.2f} s | {row[32]:.2f} s | {row[32] / row[8]:.2f} | "
              f"{row['same_8'] and row['same_32']} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
