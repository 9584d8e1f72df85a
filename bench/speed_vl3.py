"""The VideoRefer-VL3 parts of `bench.speed` (run them through `python -m bench.speed --parts ...`):

* `vl3-regions`: the region encoder at the real encoder size (VL3-SigLIP-NaViT: hidden 1152, 27 layers, 16 heads,
  MLP 4304, patch 14; random weights) on the crops our processor cuts around 1 and 4 masks of a 480x640 frame: all
  crops in one vision-encoder call + batched k-means (`VideoReferVL3ForCausalLM.encode_visual`) against one encoder
  call and one Python k-means per mask (`videorefer.testing.reference_vl3.loop_region_encoder`); and the k-means
  alone (`pool_region_tokens` against `loop_region_pooling`) on the same cell features.
  `--vl3-vision-layers N` measures fewer layers (both sides alike) where 27 are too slow.
* `vl3-tiny`: end to end on the random tiny VL3 (`bench.speed.end_to_end`: time to first token with 1 and 4 objects,
  decoding, follow-up), each object masked on one frame (the official protocol's single-frame mode).
* `vl3-7b`, `vl3-2b`: the same on VideoRefer-VL3-7B / -2B-shaped models with random weights (bf16, then 4-bit
  through the real quantised loading path), with peak GPU memory. `BENCH_VL3_OVERRIDES` (JSON: config fields, and
  `vision` for encoder fields) shrinks them for a dry run on a CPU.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.speed import bench_random_model, end_to_end, median_time, random_masks


# ---------------------------------------------------------------------- region encoder
def _region_model(vision_layers: int | None, device: str, dtype: torch.dtype):
    """A VL3 model with the real vision encoder and region MLP (VL3-7B: 1152 -> 3584), random weights, and a
    one-layer stand-in language model (not timed here), with a tokenizer and processor."""
    from videorefer import VideoReferVL3ForCausalLM, VideoReferVL3Processor
    from videorefer.testing.tiny_vl3 import build_tiny_vl3_tokenizer, videorefer_vl3_config

    tokenizer = build_tiny_vl3_tokenizer()
    config = videorefer_vl3_config(
        "7b", num_hidden_layers=1, intermediate_size=64, vocab_size=len(tokenizer),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        region_token_index=tokenizer.convert_tokens_to_ids("<REGION>"),
    )
    if vision_layers:
        config.vision_config.num_hidden_layers = vision_layers
    torch.manual_seed(0)
    model = VideoReferVL3ForCausalLM(config).to(device, dtype).eval()
    return model, VideoReferVL3Processor(tokenizer)


def bench_vl3_regions(device: str, repeats: int, dtype: torch.dtype, vision_layers: int | None = None,
                      mask_counts: tuple[int, ...] = (1, 4)) -> list[dict]:
    from videorefer.models.videorefer_vl3.region_encoder import (default_kmeans_generator, mask_cell_features,
                                                                 pool_region_tokens)
    from videorefer.testing.reference_vl3 import loop_region_encoder, loop_region_pooling

    model, processor = _region_model(vision_layers, device, dtype)
    layers = model.config.vision_config.num_hidden_layers
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    masks = random_masks(max(mask_counts), 480, 640, "cpu").numpy().astype(bool)
    rows = []
    for n in mask_counts:
        objects = [{0: masks[k]} for k in range(n)]
        text = " ".join(f"<object{k}>" for k in range(n))
        region_inputs = processor(frame, text, objects)["region_inputs"].to(device)

        def batched() -> Any:
            return model.encode_visual(region_inputs=region_inputs, return_intermediates=True)

        def loop() -> torch.Tensor:
            return loop_region_encoder(model, region_inputs, default_kmeans_generator())

        with torch.inference_mode():
            features = batched()
            same = torch.allclose(features.region_tokens.float(), loop().float(),
                                  atol=1e-4 if dtype == torch.float32 else 5e-2, rtol=1e-3)
            t_batched = median_time(batched, device, repeats)
            t_loop = median_time(loop, device, repeats)
            # k-means alone, on the cell features the encoder produced (masks of at most 10 cells keep them as they
            # are; larger ones are reduced to 10 centroids).
            cells, counts = mask_cell_features(features.extras["crop_features"], region_inputs.grid_thw,
                                               list(region_inputs.mask_grids))
            per_mask = list(torch.split(cells, counts.tolist()))
            t_kmeans = median_time(lambda: pool_region_tokens(cells, counts), device, repeats)
            t_kmeans_loop = median_time(
                lambda: loop_region_pooling(per_mask, 10, 20, default_kmeans_generator()), device, max(1, repeats // 2)
            )
        grids = region_inputs.grid_thw[:, 1:].tolist()
        rows.append(dict(
            part="vl3_regions", masks=n, vision_layers=layers, crop_grids=" ".join(f"{h}x{w}" for h, w in grids),
            crop_patches=int(region_inputs.grid_thw.prod(-1).sum()), cells=" ".join(map(str, counts.tolist())),
            batched_ms=t_batched * 1e3, loop_ms=t_loop * 1e3, speedup=t_loop / t_batched,
            kmeans_batched_ms=t_kmeans * 1e3, kmeans_loop_ms=t_kmeans_loop * 1e3,
            kmeans_speedup=t_kmeans_loop / t_kmeans, outputs_equal=bool(same),
        ))
    return rows


# ---------------------------------------------------------------------- end to end
def load_tiny_vl3(device: str):
    from videorefer import VideoRefer
    from videorefer.testing.tiny_vl3 import build_tiny_vl3

    return VideoRefer.from_pretrained(build_tiny_vl3(Path(tempfile.mkdtemp()) / "tiny-vl3"), device=device)


def build_random_vl3(folder: Path, size: str, dtype: torch.dtype, device: str) -> Path:
    """A VideoRefer-VL3-`size`-shaped checkpoint ("7b" / "2b") with N(0, 0.02) weights, built on `device` and saved
    with its tokenizer and processor. The real tokenizer is not reachable here; the tiny one's ids fit the vocabulary.
    """
    from videorefer import VideoReferVL3ForCausalLM, VideoReferVL3Processor
    from videorefer.testing.tiny_vl3 import build_tiny_vl3_tokenizer, videorefer_vl3_config

    tokenizer = build_tiny_vl3_tokenizer()
    overrides = json.loads(os.environ.get("BENCH_VL3_OVERRIDES", "{}"))
    vision = overrides.pop("vision", {})
    config = videorefer_vl3_config(
        size, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        region_token_index=tokenizer.convert_tokens_to_ids("<REGION>"), **overrides,
    )
    for key, value in vision.items():
        setattr(config.vision_config, key, value)
    if vision.get("hidden_size"):
        config.mm_hidden_size = vision["hidden_size"]
    config.eos_token_id = tokenizer.eos_token_id
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = VideoReferVL3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    model.save_pretrained(folder, max_shard_size="20GB")
    tokenizer.save_pretrained(folder)
    VideoReferVL3Processor(tokenizer, mm_max_length=config.mm_max_length).save_pretrained(folder)
    del model
    return folder


def bench_vl3_llm(size: str, device: str, repeats: int, new_tokens: int, steps: list[str], deadline: float,
                  out: Callable[[list[dict]], None]) -> list[dict]:
    """`bench.speed.bench_random_model` on a random VL3-`size`, each object masked on one frame."""
    def build(folder: Path, dtype: torch.dtype) -> Path:
        return build_random_vl3(folder, size, dtype, device)

    return bench_random_model(f"VL3-{size.upper()}", build, device, repeats, new_tokens, steps, deadline, out,
                              mask_frames=1)


def vl3_tiny(device: str, repeats: int, new_tokens: int) -> list[dict]:
    return end_to_end(load_tiny_vl3(device), "tiny VL3", device, repeats, new_tokens, mask_frames=1)
