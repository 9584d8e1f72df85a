"""VideoRefer-7B (VideoLLaMA2.1-based): SigLIP tower, STC connector, object encoder (mask pooling + temporal merge),
Qwen2. `model_type` `videorefer_qwen2`. Importing the package registers the family (`videorefer.families`)."""

from ...families import Family, register_family
from .configuration import REGION_TOKEN, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .inputs import PooledRegionInputs
from .modeling import VideoReferQwen2ForCausalLM, VisualFeatures
from .object_encoder import ObjectEncoder, mask_pooling, temporal_merge
from .processing import VideoReferProcessor

FAMILY = register_family(
    Family("VideoRefer-7B", VideoReferQwen2Config.model_type, VideoReferQwen2Config, VideoReferQwen2ForCausalLM,
           VideoReferProcessor)
)

__all__ = [
    "FAMILY",
    "REGION_TOKEN",
    "VIDEO_TOKEN_INDEX",
    "VideoReferQwen2Config",
    "VideoReferQwen2ForCausalLM",
    "VisualFeatures",
    "PooledRegionInputs",
    "ObjectEncoder",
    "mask_pooling",
    "temporal_merge",
    "VideoReferProcessor",
]
