"""transformers' SAM 2 internals: a video inference session fed by us, and an image model sharing the video model.

- `timeline_session`: a `Sam2VideoInferenceSession` whose frames come from a lazy mapping (pixel values made on a
  feature-cache miss) and whose feature cache is a stand-in keyed by our raw frame index, so one image encoding serves
  every object of a video. transformers has no public hook for either: we replace the session's `processed_frames`
  and `cache` attributes and set `video_height` / `video_width` ourselves.
- `image_model_sharing`: a `Sam2Model` (the image model, whose forward takes a mask as a dense prompt) built on the
  meta device, with the video model's image encoder, prompt encoder and mask decoder plugged in (no second copy of
  the weights). It must use the video model's private `_attn_implementation`, which `Sam2Model.__init__` copies to
  its mask decoder.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from . import TRANSFORMERS_SUPPORTED, require, require_version

__all__ = ["check_supported", "timeline_session", "image_model_sharing", "CACHE_METHODS", "SHARED_MODULES"]

ADAPTER = "videorefer/compat/sam2.py"
FEATURE = "SAM 2 tracking (videorefer.segmentation)"
#: What the session asks of its feature cache: `get_vision_features(frame_idx)`, `cache_vision_features(frame_idx,
#: features)`, `clear_all()`.
CACHE_METHODS = {"get_vision_features": ["frame_idx"], "cache_vision_features": ["frame_idx", "features"],
                 "clear_all": []}
SESSION_ATTRIBUTES = ("processed_frames", "video_height", "video_width", "cache")
#: The modules the image model takes from the video model.
SHARED_MODULES = ("shared_image_embedding", "vision_encoder", "prompt_encoder", "mask_decoder", "no_memory_embedding")


def _parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def check_supported() -> None:
    """Raise `UnsupportedVersionError` unless transformers' SAM 2 session, cache and image model look as tested."""
    require_version("transformers", TRANSFORMERS_SUPPORTED, FEATURE, ADAPTER)
    from transformers.models.sam2_video.modeling_sam2_video import (Sam2VideoInferenceCache,
                                                                    Sam2VideoInferenceSession)

    session = Sam2VideoInferenceSession()
    missing = [name for name in SESSION_ATTRIBUTES if not hasattr(session, name)]
    require(not missing, FEATURE, ADAPTER, f"has a Sam2VideoInferenceSession without {missing}")
    for name, parameters in CACHE_METHODS.items():
        method = getattr(Sam2VideoInferenceCache, name, None)
        require(method is not None and _parameters(method) == parameters, FEATURE, ADAPTER,
                f"has no Sam2VideoInferenceCache.{name}({', '.join(parameters)})")


def timeline_session(processor: Any, device: torch.device | str, height: int, width: int,
                     frames: Mapping[int, torch.Tensor], cache: Any) -> Any:
    """A video inference session over `frames` (timeline position -> pixel values (3, S, S)) at `height` x `width`,
    reading and writing vision features through `cache` (an object with the `CACHE_METHODS`)."""
    check_supported()
    lacking = [name for name in CACHE_METHODS if not callable(getattr(cache, name, None))]
    if lacking:
        raise TypeError(f"{type(cache).__name__} cannot stand in for the SAM 2 feature cache: it lacks {lacking}")
    session = processor.init_video_session(
        video=None, inference_device=device, video_storage_device="cpu", dtype=torch.float32
    )
    session.video_height, session.video_width = height, width
    session.processed_frames = frames
    session.cache = cache
    return session


def image_model_sharing(video_model: Any) -> Any:
    """A `Sam2Model` in eval mode whose every parameter and buffer is the `video_model`'s (`Sam2VideoModel`)."""
    check_supported()
    from transformers import Sam2Config, Sam2Model

    vconf = video_model.config

    def sub(cfg: Any) -> dict:
        return {k: v for k, v in cfg.to_dict().items() if k not in ("model_type", "transformers_version")}

    config = Sam2Config(
        vision_config=vconf.vision_config,
        prompt_encoder_config=sub(vconf.prompt_encoder_config),
        mask_decoder_config=sub(vconf.mask_decoder_config),
        initializer_range=vconf.initializer_range,
    )
    config._attn_implementation = vconf._attn_implementation
    with torch.device("meta"):  # build the shell without allocating, then plug in the shared modules
        image_model = Sam2Model(config)
    for name in SHARED_MODULES:
        setattr(image_model, name, getattr(video_model, name))
    tensors = list(image_model.named_parameters()) + list(image_model.named_buffers())
    leftovers = [name for name, t in tensors if t.is_meta]
    if leftovers:
        raise RuntimeError(f"could not share SAM 2 weights with the image model ({ADAPTER}): {leftovers[:5]}")
    return image_model.eval()
