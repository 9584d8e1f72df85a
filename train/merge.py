"""Merge a LoRA / QLoRA adapter into its base model and save the official layout: `python -m train.merge ADAPTER`.

    python -m train.merge work_dirs/my_lora/checkpoint-500 [--base ID_OR_FOLDER] [--out DIR] [--dtype float32]

ADAPTER is a LoRA run's `output_dir` or any `checkpoint-N` inside it (each holds `adapter_config.json`). The base is
the one the adapter names (`base_model_name_or_path` in its `adapter_config.json`) unless `--base` is given; an
adapter made for another base (family or size) is refused with both named. The merged model goes to `ADAPTER/merged`
unless `--out`, and loads with `VideoRefer.from_pretrained(OUT)`. The merge runs on the CPU in `--dtype`
(default float32; bfloat16 halves the memory: ~16 GB for a 7B model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from videorefer.adapters import adapter_base

DTYPES = ("float32", "bfloat16", "float16")


def named_base(adapter: str | Path) -> str:
    """The base model an adapter folder names (`base_model_name_or_path` of its `adapter_config.json`)."""
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ValueError(f"{adapter} holds no adapter_config.json: give a LoRA run's output_dir or one of its "
                         "checkpoint-N folders")
    base = adapter_base(adapter)
    if not base:
        raise ValueError(f"{adapter}/adapter_config.json does not name its base model: pass --base")
    return base


def merge(adapter: str | Path, base: str | None = None, out: str | Path | None = None,
          dtype: str = "float32") -> Path:
    """Merge `adapter` into `base` (default: the one it names) and save to `out` (default `adapter/merged`)."""
    from train.checkpoints import save_merged_adapter

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    base = base or named_base(adapter)
    out = Path(out) if out is not None else Path(adapter) / "merged"
    return save_merged_adapter(base, adapter, out, dtype=getattr(torch, dtype))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.merge", description=__doc__.split("\n")[0])
    parser.add_argument("adapter", help="a LoRA run's output_dir or one of its checkpoint-N folders")
    parser.add_argument("--base", help="base model (default: the one the adapter names)")
    parser.add_argument("--out", help="output folder (default: ADAPTER/merged)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    args = parser.parse_args(argv)
    try:
        out = merge(args.adapter, args.base, args.out, args.dtype)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"merged {args.adapter} into {args.base or named_base(args.adapter)}: {out} "
          f"(VideoRefer.from_pretrained({str(out)!r}))")


if __name__ == "__main__":
    main()
