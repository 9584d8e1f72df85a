"""VideoRefer: a Video LLM that understands any object at any time in a video.

Importing the package registers `videorefer_qwen2` with transformers' `AutoConfig` and `AutoModelForCausalLM`.
"""

from .configuration_videorefer import REGION_TOKEN, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .modeling_videorefer import VideoReferQwen2ForCausalLM, VisualFeatures
from .object_encoder import ObjectEncoder, mask_pooling, temporal_merge

__all__ = [
    "REGION_TOKEN",
    "VIDEO_TOKEN_INDEX",
    "VideoReferQwen2Config",
    "VideoReferQwen2ForCausalLM",
    "VisualFeatures",
    "ObjectEncoder",
    "mask_pooling",
    "temporal_merge",
]
