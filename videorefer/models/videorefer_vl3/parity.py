"""Model parity against a VL3 parity folder (the official code's outputs; layout in the fixture's README).

`run_model_parity(folder)` loads the folder's checkpoint through the public path, feeds the official processor's
stored outputs (`inputs.safetensors`), and compares every intermediate with `outputs.safetensors`: vision features,
downsampled features, video tokens, the pruning statistic and keep mask, crop features, k-means inputs, pooled
tokens, region tokens, spliced embeddings, logits and greedy ids. The k-means generator is seeded with the folder's
`kmeans_seed`, which makes it draw the official run's initial centroids (checked against `kmeans_calls`).
Nothing here assumes the shared fixture's sizes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .inputs import VL3RegionInputs
from .modeling import VideoReferVL3ForCausalLM
from .region_encoder import default_kmeans_generator

__all__ = ["run_model_parity", "fixture_model_inputs", "LOGITS_TOLERANCE"]

LOGITS_TOLERANCE = 1e-4


def fixture_model_inputs(folder: str | Path) -> dict[str, Any]:
    """The model's keyword inputs for a parity folder's single case, from the official processor outputs."""
    folder = Path(folder)
    inputs = load_file(folder / "inputs.safetensors")
    video_grid = inputs["video_grid_thw"].long()
    n_masks = sum(1 for key in inputs if key.startswith("region_mask_resized."))
    io = json.loads((folder / "io.json").read_text())
    # Masks are listed in `<region>` order; each object's masks are consecutive (see the folder's io.json).
    objects = [entry["object"] for entry in io["masks"]]
    per_object = torch.bincount(torch.tensor(objects, dtype=torch.long))
    region_inputs = VL3RegionInputs(
        masks_per_object=[per_object],
        pixel_values=inputs["pixel_values_regions"],
        grid_thw=inputs["region_grid_thw"].long(),
        mask_grids=[inputs[f"region_mask_resized.{k}"] for k in range(n_masks)],
        masks_per_sample=torch.tensor([n_masks]),
    )
    return dict(
        input_ids=inputs["input_ids"].long(),
        attention_mask=inputs["attention_mask"].long(),
        pixel_values=inputs["pixel_values_video"],
        grid_thw=video_grid,
        # The official path runs frames with the config's spatial_merge_size (its video downsampling).
        merge_sizes=torch.full((video_grid.shape[0],), int(io.get("spatial_merge_size", 2)), dtype=torch.long),
        frames_per_sample=torch.tensor([video_grid.shape[0]]),
        region_inputs=region_inputs,
    )


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


@torch.no_grad()
def run_model_parity(folder: str | Path, attn_implementation: str = "eager") -> dict[str, Any]:
    """Compare our model with the official outputs in `folder`. Returns a report: `max_abs_diff` per quantity,
    `greedy_ids` / `official_ids`, `kmeans_init_match`, and `ok` (logits within 1e-4, ids identical, pruning mask,
    token counts and k-means draws identical)."""
    folder = Path(folder)
    expected = load_file(folder / "outputs.safetensors")
    io = json.loads((folder / "io.json").read_text())
    model = VideoReferVL3ForCausalLM.from_pretrained(folder, attn_implementation=attn_implementation, dtype=torch.float32)
    model.eval()
    inputs = fixture_model_inputs(folder)
    visual_inputs = {k: inputs[k] for k in model.visual_keys}
    seed = int(io["kmeans_seed"])
    features = model.encode_visual(**visual_inputs, kmeans_generator=default_kmeans_generator(seed))
    extras = features.extras
    diffs: dict[str, float] = {
        "vision_features_video": _max_diff(extras["vision_features"], expected["vision_features_video"]),
        "video_features_downsampled": _max_diff(extras["downsampled"], expected["video_features_downsampled"]),
        "video_tokens": _max_diff(features.video_tokens, expected["video_tokens"]),
        "vision_features_regions": _max_diff(extras["crop_features"], expected["vision_features_regions"]),
        "region_pooled": _max_diff(extras["pooled"], expected["region_pooled"]),
        "region_tokens": _max_diff(features.region_tokens, expected["region_tokens"]),
    }
    # The pruning statistic: the official one puts a sentinel on the first frame, ours NaN (no previous frame).
    official_diff = expected["video_token_pixel_diff"].flatten()
    compared = ~torch.isnan(extras["pixel_difference"])
    diffs["video_token_pixel_diff"] = _max_diff(extras["pixel_difference"][compared], official_diff[compared])
    keep_match = bool(torch.equal(features.token_keep, expected["video_token_keep"].bool()))
    calls = io.get("kmeans_calls", [])
    kmeans_inputs = extras["kmeans_inputs"]
    diffs["kmeans_tokens"] = max(
        [_max_diff(x, expected[f"kmeans_tokens.{j}"]) for j, x in enumerate(kmeans_inputs)] or [0.0]
    )
    # Replay the draws: a generator seeded like the official run gives its randperm indices, call after call.
    replay = default_kmeans_generator(seed)
    drawn = [torch.randperm(call["n"], generator=replay)[: len(call["init_index"])].tolist() for call in calls]
    kmeans_init_match = drawn == [call["init_index"] for call in calls] and len(kmeans_inputs) == len(calls)
    per_mask = [expected[f"region_pooled.{k}"].shape[0] for k in range(len(features.region_tokens_per_mask))]
    counts_match = features.region_tokens_per_mask.tolist() == per_mask

    embeds, attention, position_ids, _ = model.splice_inputs(inputs["input_ids"], inputs["attention_mask"], features)
    diffs["inputs_embeds"] = _max_diff(embeds, expected["inputs_embeds"])
    attention_match = bool(torch.equal(attention.long(), expected["attention_mask_mm"].long()))
    logits = model(inputs_embeds=embeds, attention_mask=attention, position_ids=position_ids, use_cache=False).logits
    diffs["logits"] = _max_diff(logits, expected["logits"])
    official_ids = expected["generated_ids"].long()
    generated = model.generate(
        **inputs, kmeans_generator=default_kmeans_generator(seed), max_new_tokens=official_ids.shape[-1],
        min_new_tokens=official_ids.shape[-1],
    )
    ids_match = generated.shape == official_ids.shape and bool(torch.equal(generated, official_ids))
    ok = (
        diffs["logits"] <= LOGITS_TOLERANCE and ids_match and keep_match and counts_match and kmeans_init_match
        and attention_match
    )
    return dict(
        ok=ok,
        max_abs_diff=diffs,
        token_keep_match=keep_match,
        attention_mask_match=attention_match,
        region_token_counts_match=counts_match,
        kmeans_init_match=kmeans_init_match,
        greedy_ids=generated[0].tolist(),
        official_ids=official_ids[0].tolist(),
        ids_match=ids_match,
        attn_implementation=attn_implementation,
    )
