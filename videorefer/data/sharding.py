"""Splitting a list of work items into contiguous shards (one per GPU or machine), each with its own output file."""

from __future__ import annotations

from pathlib import Path

__all__ = ["parse_shard", "shard_items", "shard_output_path"]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"i/n"`` (0-based shard i of n)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_items(items: list, i: int, n: int) -> list:
    """Contiguous shard i of n (like the official ``--chunk-idx``), balanced so no shard is ever missing."""
    return items[i * len(items) // n : (i + 1) * len(items) // n]


def shard_output_path(output: str | Path, shard: tuple[int, int] | None) -> Path:
    """``preds.jsonl`` -> ``preds.shard1of4.jsonl`` so shards on different GPUs never share a file."""
    output = Path(output)
    if shard is None:
        return output
    i, n = shard
    return output.with_name(f"{output.stem}.shard{i}of{n}{output.suffix}")
