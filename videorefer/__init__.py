"""VideoRefer: a Video LLM that understands any object at any time in a video.

Importing the package registers every model family (`videorefer.families`; VideoRefer-7B: `videorefer_qwen2`,
VideoRefer-VL3: `videollama3_qwen2`) with
transformers' `AutoConfig`, `AutoModelForCausalLM` and `AutoProcessor`.
"""

from .compat.quiet import quiet_library_noise

quiet_library_noise()  # before transformers (and the bitsandbytes it imports) load

from .models.videorefer_qwen2 import (
    REGION_TOKEN,
    VIDEO_TOKEN_INDEX,
    ObjectEncoder,
    PooledRegionInputs,
    VideoReferProcessor,
    VideoReferQwen2Config,
    VideoReferQwen2ForCausalLM,
    VisualFeatures,
    mask_pooling,
    temporal_merge,
)
from .models.videorefer_vl3 import (
    VideoReferVL3Config,
    VideoReferVL3ForCausalLM,
    VideoReferVL3Processor,
    VL3RegionInputs,
    VL3VisualFeatures,
)
from .families import Family, family_for, register_family, registered_families
from .prompts import DESCRIBE_PROMPT, region_question
from .region_inputs import RegionInputs
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
    "PooledRegionInputs",
    "VideoReferVL3Config",
    "VideoReferVL3ForCausalLM",
    "VideoReferVL3Processor",
    "VL3RegionInputs",
    "VL3VisualFeatures",
    "RegionInputs",
    "Family",
    "family_for",
    "register_family",
    "registered_families",
    "DESCRIBE_PROMPT",
    "region_question",
    "Video",
    "load_video",
    "VideoRefer",
    "DEFAULT_MODEL_ID",
    "load_model_and_processor",
]
