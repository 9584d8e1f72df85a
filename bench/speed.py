"""Speed and memory of VideoRefer on CPU or CUDA: one command, a Markdown table and a JSON file.

    python -m bench.speed --device cpu  --out runs/speed-cpu            # encoder, decoding, tiny end to end, SAM2 tiny
    python -m bench.speed --device cuda --out runs/speed-gpu --parts encoder,7b,sam2

Every figure is the median of `--repeats` runs after a warm-up. Parts:
* `encoder`: the object encoder (mask pooling + temporal merge + MLP) at the real 7B sizes (27x27x1152 -> 3584,
  16 frames, masks 480x640) for 1, 4 and 8 objects, against a per-object, per-frame loop of the same math;
* `decode`: 16 frames from an `examples/` video with decord and with PyAV;
* `tiny`: end to end on the random tiny model (time to first token with 1 and 4 objects, decode tokens/s, follow-up);
* `7b`: the same on a VideoRefer-7B-shaped model with random weights (bf16, then 4-bit and 8-bit through the real
  quantised loading path), with peak GPU memory; static cache + compiled decoding as well;
* `sam2`: SAM 2 tracking frames/s (tiny random model on CPU; hiera-large shapes on CUDA);
* `vl3-regions`, `vl3-tiny`, `vl3-7b`, `vl3-2b`: VideoRefer-VL3 (`bench.speed_vl3`): the region encoder batched
  against a loop over masks at the real encoder size, and end to end on the tiny / 7B / 2B shapes.
Results are written after each part, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_VIDEO = ROOT / "examples" / "bigbuckbunny.mp4"


# ---------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn: Callable[[], Any], device: str, repeats: int, warmup: int = 1,
                setup: Callable[[], Any] | None = None) -> float:
    """Median wall time of `fn` in seconds; `setup` (untimed) runs before every call."""
    for _ in range(warmup):
        if setup:
            setup()
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if setup:
            setup()
            sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ---------------------------------------------------------------------- object encoder
def _loop_pool_and_merge(encoder, features, masks, per_object: list[int]) -> list:
    from videorefer.testing.reference import loop_mask_pooling, loop_temporal_merge

    out, start = [], 0
    for n in per_object:
        pooled = loop_mask_pooling(features[start : start + n], masks[start : start + n])
        out.append(loop_temporal_merge(pooled, encoder.tokens_per_object))
        start += n
    return out


def random_masks(n: int, height: int, width: int, device: str, seed: int = 0) -> torch.Tensor:
    """Ellipses of random size and place, as uint8 `(n, H, W)`."""
    gen = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    masks = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        cy, cx = gen.uniform(0.2, 0.8) * height, gen.uniform(0.2, 0.8) * width
        ry, rx = gen.uniform(0.05, 0.3) * height, gen.uniform(0.05, 0.3) * width
        masks[i] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return torch.from_numpy(masks).to(device)


def bench_encoder(device: str, repeats: int, dtype: torch.dtype) -> list[dict]:
    from videorefer.models.videorefer_qwen2.object_encoder import ObjectEncoder
    from videorefer.testing.reference import loop_object_encoder

    encoder = ObjectEncoder(1152, 3584).to(device, dtype).eval()
    rows = []
    for objects in (1, 4, 8):
        per_object = [16] * objects
        n = sum(per_object)
        features = torch.randn(n, 27, 27, 1152, device=device, dtype=dtype)
        masks = random_masks(n, 480, 640, device)
        counts = torch.tensor(per_object, device=device)
        with torch.inference_mode():
            ours = encoder(features, masks, counts)[0]
            loop = loop_object_encoder(encoder, features, masks, per_object)
            same = torch.allclose(ours.float(), loop.float(), atol=1e-2 if dtype != torch.float32 else 1e-4, rtol=1e-3)
            t_ours = median_time(lambda: encoder(features, masks, counts), device, repeats)
            t_loop = median_time(lambda: loop_object_encoder(encoder, features, masks, per_object), device, max(3, repeats // 2))
            # Pooling + merge alone (the MLP is the same matrix product in both, and dominates on a CPU).
            t_pool = median_time(lambda: encoder.pool_and_merge(features, masks, counts), device, repeats)
            t_pool_loop = median_time(lambda: _loop_pool_and_merge(encoder, features, masks, per_object), device,
                                      max(3, repeats // 2))
        rows.append(dict(part="encoder", objects=objects, frames=16, ours_ms=t_ours * 1e3, loop_ms=t_loop * 1e3,
                         speedup=t_loop / t_ours, pool_merge_ms=t_pool * 1e3, pool_merge_loop_ms=t_pool_loop * 1e3,
                         pool_merge_speedup=t_pool_loop / t_pool, outputs_equal=bool(same)))
    return rows


# ---------------------------------------------------------------------- video decoding
def bench_decode(repeats: int) -> list[dict]:
    """16 frames of the 720p example clip, sampled as the model samples them, with each backend installed."""
    from videorefer import video_io

    if not EXAMPLE_VIDEO.exists():
        return []
    path = str(EXAMPLE_VIDEO)
    indices = video_io.sample_frame_indices(video_io.video_info(path)[0], 16)
    rows = []
    for backend, decode in (("decord", video_io.decode_with_decord), ("pyav", video_io.decode_with_pyav)):
        try:
            decode(path, indices)
        except ImportError:
            continue
        t = median_time(lambda: decode(path, indices), "cpu", repeats)
        rows.append(dict(part="decode", backend=backend, video=EXAMPLE_VIDEO.name, frames=16, ms=t * 1e3))
    return rows


# ---------------------------------------------------------------------- end to end
def end_to_end(vr, label: str, device: str, repeats: int, new_tokens: int, objects_counts=(1, 4),
               static: bool = False, mask_frames: int = 16) -> list[dict]:
    """Time to first token (vision + prefill), decode tokens/s and a follow-up, with peak memory, on 16 random
    480x640 frames (1 s apart) with each object masked on its first `mask_frames` frames. Any family."""
    from videorefer.video_io import Video

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (16, 480, 640, 3), dtype=np.uint8)
    video = Video(frames=frames, frame_indices=list(range(16)), total_frames=16, key=f"bench:{label}",
                  timestamps=[float(t) for t in range(16)])
    masks = random_masks(64, 480, 640, "cpu").numpy().astype(bool)
    rows = []
    settings = dict(do_sample=False, eos_token_id=None)
    if static:
        settings["cache_implementation"] = "static"
    for n_objects in objects_counts:
        objects = [{t: masks[(k * 16 + t) % 64] for t in range(mask_frames)} for k in range(n_objects)]
        question = "Describe " + ", ".join(f"<object{k}>" for k in range(n_objects)) + " in detail."

        def run(max_new_tokens: int, fresh_video: bool, question: str = question, history=None) -> None:
            if fresh_video:  # nothing cached: frames, vision tower, object encoder, prefill
                vr.clear_caches()
            vr.prefix_cache.clear()
            prepared = vr.prepare(video, objects, question, history=history)
            vr.generate(prepared, **settings, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens)

        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        ttft = median_time(lambda: run(1, True), device, repeats, warmup=2)
        # The model alone, from preprocessed tensors (as the official figures are taken): vision, encoder, prefill.
        inputs = vr.processor(video, vr.processor.region_conversation(question, None, objects)[0], objects)

        def model_only() -> None:
            vr.prefix_cache.clear()
            visual = vr.encode(inputs)
            prepared = dict(input_ids=inputs["input_ids"].to(vr.device), attention_mask=inputs["attention_mask"].to(vr.device),
                            visual_features=visual)
            vr.generate(prepared, **settings, max_new_tokens=1)

        with torch.inference_mode():
            model_ttft = median_time(model_only, device, repeats, warmup=1)
        prefill = median_time(lambda: run(1, False), device, repeats, warmup=1)
        answer = median_time(lambda: run(new_tokens, False), device, max(2, repeats // 2), warmup=1)
        decode_rate = (new_tokens - 1) / max(answer - prefill, 1e-9)
        # Follow-up: the previous answer is in the history; visual tokens and the prompt's key/value cache are reused.
        vr.prefix_cache.clear()
        prepared = vr.prepare(video, objects, question)
        ids = vr.generate(prepared, **settings, max_new_tokens=16, min_new_tokens=16)
        history = [(question, vr.processor.decode(ids[0]))]
        state = vr.prefix_cache.snapshot()

        def restore_conversation() -> None:  # what a user's previous question left behind (not part of the timing)
            vr.prefix_cache.restore(state)

        def follow_up() -> None:
            prepared = vr.prepare(video, objects, "And what happens next?", history=history)
            vr.generate(prepared, **settings, max_new_tokens=1)

        t_follow = median_time(follow_up, device, repeats, warmup=1, setup=restore_conversation)
        reused = vr.prefix_cache.reused_tokens
        prompt_tokens = int(prepared["input_ids"].shape[1])
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
        rows.append(dict(part="end_to_end", model=label, objects=n_objects, frames=16, mask_frames=mask_frames,
                         prompt_ids=prompt_tokens,
                         ttft_ms=ttft * 1e3, model_ttft_ms=model_ttft * 1e3, prefill_only_ms=prefill * 1e3, decode_tokens_per_s=decode_rate,
                         follow_up_ttft_ms=t_follow * 1e3, follow_up_reused_positions=reused, peak_gib=peak,
                         static_cache=static))
    return rows


def load_tiny(device: str):
    from videorefer import VideoRefer
    from videorefer.testing.tiny_model import build_tiny_videorefer

    folder = build_tiny_videorefer(Path(tempfile.mkdtemp()) / "tiny", image_size=56, num_frames=16)
    return VideoRefer.from_pretrained(folder, device=device)


def build_random_7b(folder: Path, dtype: torch.dtype, device: str) -> Path:
    """A VideoRefer-7B-shaped checkpoint with N(0, 0.02) weights, built on `device` and saved in the official layout.

    `BENCH_7B_OVERRIDES` (JSON) overrides config fields, for a dry run of this benchmark at small sizes.
    """
    from videorefer import VideoReferQwen2ForCausalLM
    from videorefer.models.videorefer_qwen2.processing import VideoReferProcessor
    from videorefer.testing.tiny_model import build_tiny_tokenizer, videorefer_7b_config

    tokenizer = build_tiny_tokenizer()  # the real tokenizer is not reachable here; its ids fit the 7B vocabulary
    overrides = json.loads(os.environ.get("BENCH_7B_OVERRIDES", "{}"))
    config = videorefer_7b_config(region_token_index=tokenizer.convert_tokens_to_ids("<region>"), **overrides)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = VideoReferQwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.02)
    model.save_pretrained(folder, max_shard_size="20GB")
    VideoReferProcessor(tokenizer, image_size=config.vision_config.image_size, num_frames=16).save_pretrained(folder)
    del model
    return folder


def bench_7b(device: str, repeats: int, new_tokens: int, steps: list[str], deadline: float,
             out: Callable[[list[dict]], None]) -> list[dict]:
    """`bench_random_model` on a random VideoRefer-7B (objects masked on all 16 frames)."""
    def build(folder: Path, dtype: torch.dtype) -> Path:
        return build_random_7b(folder, dtype, device)

    return bench_random_model("7B", build, device, repeats, new_tokens, steps, deadline, out)


def bench_random_model(name: str, build: Callable[[Path, torch.dtype], Path], device: str, repeats: int,
                       new_tokens: int, steps: list[str], deadline: float, out: Callable[[list[dict]], None],
                       mask_frames: int = 16) -> list[dict]:
    """End to end on the checkpoint `build(folder, dtype)` writes, for steps like `bf16`, `4bit`, `bf16-static`,
    `8bit`, in order, each skipped once `deadline` has passed."""
    from videorefer import VideoRefer

    rows: list[dict] = []
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    folder = build(Path(tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"))) / f"{name.lower()}-random", dtype)
    loaded: dict[str, Any] = {}
    for step in steps:
        quant, _, mode = step.partition("-")
        label = f"{name} {step}"
        if time.time() > deadline:
            rows.append(dict(part="end_to_end", model=label, error="skipped: out of time"))
            out(rows)
            continue
        if loaded.get("quant") != quant:
            loaded.clear()
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            try:
                loaded["vr"] = VideoRefer.from_pretrained(
                    folder, device=device, dtype=dtype, quantization=None if quant == "bf16" else quant,
                    attn_implementation="sdpa",
                )
            except Exception as error:  # e.g. bitsandbytes missing: record it, go on
                rows.append(dict(part="end_to_end", model=label, error=repr(error)))
                out(rows)
                continue
            loaded.update(quant=quant, load_s=time.perf_counter() - start)
        tokens = new_tokens if quant == "bf16" else min(new_tokens, 32)  # bitsandbytes decoding is slow: fewer tokens
        try:
            result = end_to_end(loaded["vr"], label, device, repeats, tokens, static=mode == "static",
                                mask_frames=mask_frames)
        except Exception as error:
            result = [dict(part="end_to_end", model=label, error=repr(error))]
        for row in result:
            row["load_s"] = loaded.get("load_s")
            row["new_tokens"] = tokens
        rows.extend(result)
        out(rows)
    return rows


# ---------------------------------------------------------------------- SAM 2
def bench_sam2(device: str, large: bool, frames: int = 16) -> list[dict]:
    from videorefer.segmentation import Sam2Segmenter
    from videorefer.testing.tiny_sam2 import build_tiny_sam2

    folder = Path(tempfile.mkdtemp()) / "sam2"
    if large:
        from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor
        from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

        backbone = Sam2HieraDetConfig(  # SAM 2.1 hiera-large (224M parameters)
            hidden_size=144, embed_dim_per_stage=[144, 288, 576, 1152], num_attention_heads_per_stage=[2, 4, 8, 16],
            blocks_per_stage=[2, 6, 36, 4], window_size_per_stage=[8, 4, 16, 8], global_attention_blocks=[23, 33, 43],
        )
        config = Sam2VideoConfig(vision_config=Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[1152, 576, 288, 144]))
        Sam2VideoModel(config).save_pretrained(folder)
        Sam2VideoProcessor(image_processor=Sam2ImageProcessor(), video_processor=Sam2VideoVideoProcessor()).save_pretrained(folder)
    else:
        build_tiny_sam2(folder)
    segmenter = Sam2Segmenter.from_pretrained(folder, device=device)
    size = 480
    video = np.random.default_rng(0).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)
    session = segmenter.init_state(video)
    session.add_points(frame_idx=frames // 2, obj_id=1, points=[[size // 2, size // 2]], labels=[1])
    session.propagate()  # warm-up
    session.reset()
    session.add_points(frame_idx=frames // 2, obj_id=1, points=[[size // 2, size // 2]], labels=[1])
    sync(device)
    start = time.perf_counter()
    masks = session.propagate()
    sync(device)
    elapsed = time.perf_counter() - start
    tracked = len(masks[1]) - 1  # the prompted frame is not tracked
    return [dict(part="sam2", model="hiera-large shapes (random)" if large else "tiny (random)", frame_size=size,
                 frames_tracked=tracked, frames_per_s=tracked / elapsed)]


# ---------------------------------------------------------------------- report
def markdown(rows: list[dict], meta: dict) -> str:
    lines = [f"Measured {meta['date']} on {meta['hardware']} (torch {meta['torch']}, transformers {meta['transformers']}).", ""]
    parts: dict[str, list[dict]] = {}
    for row in rows:
        parts.setdefault(row["part"], []).append(row)
    for part, items in parts.items():
        keys = [k for k in items[0] if k != "part"]
        for item in items[1:]:
            keys += [k for k in item if k not in keys and k != "part"]
        lines += [f"### {part}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for item in items:
            cells = [f"{item[k]:.3g}" if isinstance(item.get(k), float) else str(item.get(k, "")) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="runs/speed")
    parser.add_argument("--parts", default=None,
                        help="comma-separated: encoder,decode,tiny,7b,sam2,vl3-regions,vl3-tiny,vl3-7b,vl3-2b")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--steps-7b", default="bf16,4bit,bf16-static,8bit", help="7B variants, in order")
    parser.add_argument("--steps-vl3", default="bf16,4bit", help="VL3-7B / -2B variants, in order")
    parser.add_argument("--vl3-vision-layers", type=int, default=None,
                        help="vl3-regions: encoder layers (default: the real 27; fewer on a slow CPU)")
    parser.add_argument("--budget-s", type=float, default=480, help="7B steps starting after this are skipped")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    default_parts = "encoder,sam2,7b,vl3-regions,vl3-7b,vl3-2b" if cuda else "encoder,decode,tiny,sam2,vl3-regions,vl3-tiny"
    parts = (args.parts or default_parts).split(",")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    import transformers

    from bench import speed_vl3  # imports this module's helpers: import it here, once they exist

    meta = dict(
        date=time.strftime("%Y-%m-%d"),
        hardware=torch.cuda.get_device_name() if cuda else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        torch=torch.__version__, transformers=transformers.__version__, threads=torch.get_num_threads(),
    )
    rows: list[dict] = []
    deadline = time.time() + args.budget_s

    def write(extra: list[dict] | None = None) -> None:
        everything = rows + (extra or [])
        (out_dir / "speed.json").write_text(json.dumps(dict(meta=meta, rows=everything), indent=2))
        (out_dir / "speed.md").write_text(markdown(everything, meta))

    runners: dict[str, Callable[[], list[dict]]] = {
        "encoder": lambda: bench_encoder(args.device, args.repeats, torch.bfloat16 if cuda else torch.float32),
        "decode": lambda: bench_decode(args.repeats),
        "tiny": lambda: end_to_end(load_tiny(args.device), "tiny", args.device, args.repeats, min(args.new_tokens, 64)),
        "7b": lambda: bench_7b(args.device, args.repeats, args.new_tokens, args.steps_7b.split(","), deadline, write),
        "sam2": lambda: bench_sam2(args.device, large=cuda),
        "vl3-regions": lambda: speed_vl3.bench_vl3_regions(args.device, args.repeats, torch.bfloat16 if cuda else torch.float32,
                                                           args.vl3_vision_layers),
        "vl3-tiny": lambda: speed_vl3.vl3_tiny(args.device, args.repeats, min(args.new_tokens, 64)),
        "vl3-7b": lambda: speed_vl3.bench_vl3_llm("7b", args.device, args.repeats, args.new_tokens,
                                                  args.steps_vl3.split(","), deadline, write),
        "vl3-2b": lambda: speed_vl3.bench_vl3_llm("2b", args.device, args.repeats, args.new_tokens,
                                                  args.steps_vl3.split(","), deadline, write),
    }
    unknown = sorted(set(parts) - set(runners))
    if unknown:
        raise SystemExit(f"unknown part(s) {unknown}; known: {', '.join(runners)}")
    for part in parts:
        start = time.perf_counter()
        try:
            rows.extend(runners[part]())
        except Exception as error:  # one failing part must not lose the others
            rows.append(dict(part=part, error=repr(error)))
        print(f"[speed] {part} done in {time.perf_counter() - start:.1f} s", flush=True)
        write()
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
