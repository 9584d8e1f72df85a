"""VideoRefer-Bench runners and scorers (Bench-Q multiple choice, Bench-D descriptions with a GPT judge).

Entry points: ``python -m bench.bench_q``, ``python -m bench.bench_d``, ``python -m bench.fetch_bench``,
``python -m bench.mini`` (the whole path on a mini benchmark) and ``python -m bench.local_judge`` (a TEST judge).
Only the default answer function imports the model package, lazily. See the "Benchmarks" section of the top-level README.
"""
