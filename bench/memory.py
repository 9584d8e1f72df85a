"""GPU memory for the weights of each published model in bf16, 8-bit and 4-bit, computed from tensor listings.

    python -m bench.memory            # a Markdown table for VideoRefer-7B, VideoRefer-VL3-7B and -2B

The listings are the official models' tensor names and shapes at the real sizes (built by the official code on the
meta device; tests/fixtures/*/). Quantisation follows our loading path (`VideoRefer.from_pretrained(...,
quantization=...)`): bitsandbytes replaces the language model's decoder `Linear` weights; the embeddings, norms,
biases, output layer, vision encoder, projector and region / object encoder stay in bf16. Bytes per quantised weight:
8-bit (LLM.int8) 1 byte plus one fp32 scale per output row; 4-bit NF4 with double quantisation 0.5 byte plus one 8-bit
absmax per 64 weights plus one fp32 constant per 256 blocks. Activations, the KV cache and CUDA's own context come on
top (the GPU speed bench measures peaks: BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LISTINGS = {
    "DAMO-NLP-SG/VideoRefer-7B": ROOT / "tests/fixtures/official-tiny/videorefer7b_param_shapes.tsv",
    "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B": ROOT / "tests/fixtures/official-vl3-tiny/videorefer_vl3_7b_param_shapes.tsv",
    "DAMO-NLP-SG/VideoRefer-VideoLLaMA3-2B": ROOT / "tests/fixtures/official-vl3-tiny/videorefer_vl3_2b_param_shapes.tsv",
}
QUANTISED = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")
BF16 = 2


def read_listing(path: Path) -> dict[str, tuple[int, ...]]:
    """`name -> shape` from a `name<TAB>shape` file; shapes written as `[a, b]` or `(a, b)`."""
    shapes = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape = line.split("\t")
        shapes[name] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return shapes


def weight_bytes(shapes: dict[str, tuple[int, ...]], quantization: str | None) -> int:
    """Bytes of all weights when the decoder's linear weights are stored as `quantization` (None, "8bit", "4bit")."""
    if quantization not in (None, "8bit", "4bit"):
        raise ValueError(f"quantization must be None, '8bit' or '4bit'; got {quantization!r}")
    total = 0.0
    for name, shape in shapes.items():
        n = math.prod(shape)
        if quantization is None or not QUANTISED.match(name):
            total += n * BF16
        elif quantization == "8bit":
            total += n + shape[0] * 4
        else:
            blocks = math.ceil(n / 64)
            total += n / 2 + blocks + math.ceil(blocks / 256) * 4
    return int(total)


def table() -> str:
    rows = ["| model | parameters | bf16 | 8-bit | 4-bit |", "|---|---|---|---|---|"]
    for model_id, path in LISTINGS.items():
        shapes = read_listing(path)
        params = sum(math.prod(s) for s in shapes.values())
        cells = [f"{weight_bytes(shapes, q) / 2**30:.1f} GiB" for q in (None, "8bit", "4bit")]
        rows.append(f"| `{model_id}` | {params / 1e9:.2f} B | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(table())


if __name__ == "__main__":
    main()
