"""VideoRefer-VL3 (VideoLLaMA3-based, 7B and 2B): NaViT SigLIP encoder with 2D RoPE, MLP projector, frame pruning,
region encoder (crop re-encoding + k-means), Qwen2. `model_type` `videollama3_qwen2`. Importing the package registers the family (`videorefer.families`)."""

from ...families import Family, register_family
from .configuration import VideoReferVL3Config, resolve_vision_config
from .frame_pruning import FramePruning, frame_pruning
from .modeling import VideoReferVL3ForCausalLM, VL3VisualFeatures
from .region_encoder import RegionEncoder, default_kmeans_generator, kmeans, mask_cell_features, pool_region_tokens
from .inputs import VL3RegionInputs
from .processing import VideoReferVL3Processor
from .vision import VisionEncoder, spatial_downsample

FAMILY = register_family(
    Family("VideoRefer-VL3", VideoReferVL3Config.model_type, VideoReferVL3Config, VideoReferVL3ForCausalLM,
           VideoReferVL3Processor)
)

__all__ = [
    "FAMILY",
    "VL3RegionInputs",
    "VideoReferVL3Processor",
    "VideoReferVL3Config",
    "resolve_vision_config",
    "VideoReferVL3ForCausalLM",
    "VL3VisualFeatures",
    "FramePruning",
    "frame_pruning",
    "RegionEncoder",
    "default_kmeans_generator",
    "kmeans",
    "mask_cell_features",
    "pool_region_tokens",
    "VisionEncoder",
    "spatial_downsample",
]
