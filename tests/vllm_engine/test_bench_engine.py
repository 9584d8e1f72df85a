"""The benchmark runners with `--engine vllm`: the whole item list handed over at once (`submit_size`), the same
predictions as the transformers engine, one after another, and a resumed run adds nothing."""

from __future__ import annotations

import contextlib
import io

from bench import bench_q
from bench.common import VideoReferAnswerFn, load_bench_json
from bench.mini import build_mini_bench
from videorefer.data.jsonl import read_jsonl


def test_bench_q_with_vllm_gives_the_transformers_predictions(vl3_pair, tmp_path):
    reference, served = vl3_pair
    q_path, _ = build_mini_bench(tmp_path / "bench", videos=1, seed=0)
    items = load_bench_json(q_path, bench_q.REQUIRED_FIELDS)
    generation = dict(max_new_tokens=12, min_new_tokens=12)
    predictions = {}
    for name, model in (("transformers", reference), ("vllm", served)):
        answer_fn = VideoReferAnswerFn(model, **generation)
        calls = []
        if name == "vllm":
            original = model.ask_batch
            model.ask_batch = lambda batch, **kw: calls.append(len(batch)) or original(batch, **kw)
        output = tmp_path / f"{name}.jsonl"
        with contextlib.redirect_stdout(io.StringIO()):
            bench_q.run_bench_q(items, q_path.parent, output, answer_fn, mode="single", num_frames=4)
            resumed = bench_q.run_bench_q(items, q_path.parent, output, answer_fn, mode="single", num_frames=4)
            assert resumed == 0
        if name == "vllm":
            del model.ask_batch
            assert calls == [len(items)] and served.submit_size >= len(items) > 1
        predictions[name] = {r["id"]: r["pred"] for r in read_jsonl(output)}
    assert predictions["vllm"] == predictions["transformers"]
