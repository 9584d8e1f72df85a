"""Engines compared on one machine and one random checkpoint: transformers (today's path, one request after another
behind the API) against vLLM (`VideoRefer.from_pretrained(..., engine="vllm")`: every request submitted at once).

    .venv-vllm/bin/python -m bench.speed_engines --out runs/speed-engines              # CPU: a mid-size random VL3
    .venv-vllm/bin/python -m bench.speed_engines --shape 7b --concurrency 1,8,32,64     # GPU: VL3-7B / -2B shapes

It runs in the vLLM venv (both engines live there; scripts/vllm_venv.sh). Each request: a 16-frame video with 2
objects, exactly `--new-tokens` (64) new tokens, greedy; every concurrency level gets fresh videos (no cache helps).
Reported per engine and concurrency: requests/s, output tokens/s, time to first token p50 / p95 (from the moment all
requests are handed over), and peak GPU memory on CUDA. A warm-up request per engine runs first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: The CPU checkpoint: big enough that the language model, not Python, dominates each step (~60M parameters).
CPU_SHAPE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=12,
                 num_key_value_heads=4, max_position_embeddings=8192)


def requests(count: int, seed: int, size: int = 112) -> list[tuple]:
    """`count` distinct (video, objects, question): 16 frames, two objects (one on 3 frames, one on 1)."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        video = rng.integers(0, 255, (16, size, size, 3), dtype=np.uint8)
        a, b = np.zeros((size, size), bool), np.zeros((size, size), bool)
        y, x = rng.integers(0, size // 2, 2)
        a[y: y + size // 3, x: x + size // 3] = True
        b[size // 2:, size // 2:] = True
        items.append((video, [{0: a, 5: a, 10: a}, {8: b}], "What is <object0> doing to <object1>?"))
    return items


class FirstToken:
    """A transformers streamer that notes when the first new token arrives."""

    def __init__(self) -> None:
        self.at: float | None = None

    def put(self, value: torch.Tensor) -> None:
        if self.at is None and value.numel() > 0:
            self.at = time.monotonic()

    def end(self) -> None:
        pass


def run_transformers(vr, items: list[tuple], new_tokens: int) -> tuple[float, list[float]]:
    """All requests handed over at once to the transformers path, which answers them one after another."""
    start = time.monotonic()
    first = []
    for video, objects, question in items:
        streamer = FirstToken()
        vr.generate(vr.prepare(video, objects, question), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                    streamer=streamer)
        first.append(streamer.at - start)
    return time.monotonic() - start, first


def run_vllm(vr, items: list[tuple], new_tokens: int) -> tuple[float, list[float]]:
    """All requests submitted to vLLM at once."""
    engine = vr.engine
    requests_ = [vr._request(video, objects, question, None, None, False) for video, objects, question in items]
    start = time.monotonic()
    first: dict[int, float] = {}
    for index, output, _ in engine.stream_many(requests_, max_new_tokens=new_tokens, min_new_tokens=new_tokens):
        if isinstance(output, Exception):
            raise output
        if index not in first and len(output.outputs[0].token_ids) > 0:
            first[index] = time.monotonic() - start
    return time.monotonic() - start, [first[i] for i in range(len(items))]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(name: str, vr, run, levels: list[int], new_tokens: int, device: str, threads: int) -> list[dict]:
    rows = []
    torch.set_num_threads(threads)  # the same for both engines (vLLM's CPU worker runs in this process)
    run(vr, requests(1, seed=999), new_tokens)  # warm-up
    for level in levels:
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        wall, first = run(vr, requests(level, seed=level), new_tokens)
        row = dict(engine=name, concurrency=level, threads=torch.get_num_threads(), wall_s=round(wall, 3),
                   requests_per_s=round(level / wall, 3),
                   output_tokens_per_s=round(level * new_tokens / wall, 1),
                   ttft_p50_s=round(statistics.median(first), 3), ttft_p95_s=round(percentile(first, 0.95), 3))
        if device == "cuda":
            row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    columns = ["engine", "concurrency", "requests_per_s", "output_tokens_per_s", "ttft_p50_s", "ttft_p95_s"]
    if any("peak_gib" in row for row in rows):
        columns.append("peak_gib")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/speed-engines")
    parser.add_argument("--shape", choices=["cpu", "2b", "7b"], default="cpu")
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--engines", default="transformers,vllm")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for both engines (1: steady on shared cores)")
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    from videorefer import VideoRefer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    levels = [int(c) for c in args.concurrency.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = build_shape(args.shape, Path(tempfile.mkdtemp(prefix="speed-engines-")), device)
    meta = dict(shape=args.shape, device=device, new_tokens=args.new_tokens, threads=args.threads,
                load_before=os.getloadavg(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
    rows: list[dict] = []
    for name in args.engines.split(","):
        if name == "transformers":
            vr = VideoRefer.from_pretrained(folder, device=device)
            vr.reuse_prefix_cache = False
            rows += measure(name, vr, run_transformers, levels, args.new_tokens, device, args.threads)
        else:
            vr = VideoRefer.from_pretrained(folder, engine="vllm", engine_args=dict(max_model_len=8192))
            rows += measure(name, vr, run_vllm, levels, args.new_tokens, device, args.threads)
            vr.engine.close()
        del vr
    meta["load_after"] = os.getloadavg()
    (out / "speed_engines.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2))
    table = markdown(rows)
    (out / "speed_engines.md").write_text(f"{json.dumps(meta)}\n\n{table}\n")
    print(table)
    return 0


def build_shape(shape: str, folder: Path, device: str) -> Path:
    """A random VL3 checkpoint: `cpu` (CPU_SHAPE with the tiny vision side) or the published `2b` / `7b` shapes
    (random N(0, 0.02) weights, bf16; written with bench.speed's saver)."""
    from videorefer.testing.tiny import build_tiny

    if shape == "cpu":
        return build_tiny("vl3", folder, initializer_range=0.02, **CPU_SHAPE)
    from bench.speed_vl3 import build_random_vl3

    return build_random_vl3(folder, shape, torch.bfloat16, device)


if __name__ == "__main__":
    raise SystemExit(main())
