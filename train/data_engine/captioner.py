"""The Reviewer's region captioner: describes the object inside a mask (default: our own VideoRefer model).

The paper used Osprey on single frames; we use `videorefer.VideoRefer.describe` with the object's masks on the
sampled frames (multi-frame mode), so the description sees the same frames the annotation was made from. Any
checkpoint of either family works (VideoRefer-7B, VideoRefer-VideoLLaMA3-7B / -2B, a folder): it is loaded through
`VideoRefer.from_pretrained`, whose config picks the family, and asked the family's own captioning question
(`VideoRefer.describe_prompt`) on the family's own frames.
"""

from __future__ import annotations

from typing import Any, Protocol

from videorefer.regions import annotation_to_objects

__all__ = ["RegionCaptioner", "VideoReferCaptioner"]


class RegionCaptioner(Protocol):
    def describe(self, video: str, annotation: dict, height: int, width: int) -> str: ...


class VideoReferCaptioner:
    """`VideoRefer.describe` (the family's describe prompt) on one object given as an official per-object annotation
    dict; `model_id`: a checkpoint of either family."""

    def __init__(self, model_id: str, device: str | None = None, quantization: str | None = None,
                 max_new_tokens: int = 256, model: Any = None, engine: str = "transformers"):
        if model is None:
            from videorefer import VideoRefer

            settings = dict(device=device, quantization=quantization) if engine == "transformers" else {}
            model = VideoRefer.from_pretrained(model_id, engine=engine, **settings)
        self.model = model
        self.max_new_tokens = max_new_tokens

    def describe(self, video: str, annotation: dict, height: int, width: int) -> str:
        region = annotation_to_objects([annotation], height, width)[0]
        return self.model.describe(video, region, max_new_tokens=self.max_new_tokens, do_sample=False).strip()
