"""VideoRefer-7B (VideoLLaMA2.1-based): SigLIP tower, STC connector, object encoder (mask pooling + temporal merge),
Qwen2. `model_type` `videorefer_qwen2`."""

from .configuration import REGION_TOKEN, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .modeling import VideoReferQwen2ForCausalLM, VisualFeatures
from .object_encoder import ObjectEncoder, mask_pooling, temporal_merge
from .processing import VideoReferProcessor

__all__ = [
    "REGION_TOKEN",
    "VIDEO_TOKEN_INDEX",
    "VideoReferQwen2Config",
    "VideoReferQwen2ForCausalLM",
    "VisualFeatures",
    "ObjectEncoder",
    "mask_pooling",
    "temporal_merge",
    "VideoReferProcessor",
]
