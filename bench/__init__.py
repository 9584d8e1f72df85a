"""VideoRefer-Bench runners and scorers (Bench-Q multiple choice, Bench-D descriptions with a GPT judge).

Entry points: ``python -m bench.bench_q``, ``python -m bench.bench_d``, ``python -m bench.fetch_bench``.
Only the default answer function imports the model package, lazily.
"""
