"""VideoRefer: a Video LLM that understands any object at any time in a video.

Importing the package registers both families (`videorefer_qwen2`, `videollama3_qwen2`) with transformers'
`AutoConfig` and `AutoModelForCausalLM`.
"""

from .models.videorefer_qwen2.configuration import REGION_TOKEN, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .models.videorefer_qwen2.modeling import VideoReferQwen2ForCausalLM, VisualFeatures
from .models.videorefer_qwen2.object_encoder import ObjectEncoder, mask_pooling, temporal_merge
from .models.videorefer_qwen2.processing import VideoReferProcessor, region_question
from .models.videorefer_vl3.configuration import VideoReferVL3Config
from .models.videorefer_vl3.modeling import VideoReferVL3ForCausalLM, VL3VisualFeatures
from .video_io import Video, load_video
from .api import DEFAULT_MODEL_ID, VideoRefer, load_model_and_processor

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
    "VideoReferVL3Config",
    "VideoReferVL3ForCausalLM",
    "VL3VisualFeatures",
    "region_question",
    "Video",
    "load_video",
    "VideoRefer",
    "DEFAULT_MODEL_ID",
    "load_model_and_processor",
]
