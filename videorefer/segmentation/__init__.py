"""Interactive video object segmentation with SAM 2.1 from transformers (`Sam2VideoModel`, `Sam2Model`).

    from videorefer.segmentation import Sam2Segmenter
    segmenter = Sam2Segmenter.from_pretrained("facebook/sam2.1-hiera-large", device="cuda")
    session = segmenter.init_state(frames)                      # uint8 (T, H, W, 3) or a video path
    session.add_points(frame_idx=10, obj_id=1, points=[[320, 180]], labels=[1])
    session.add_box(frame_idx=10, obj_id=2, box=[40, 60, 200, 220])
    objects = session.propagate(frame_indices=sampled)          # {obj_id: {frame_idx: bool (H, W)}}

Objects by name (Grounding DINO boxes -> SAM 2.1 masks): see `grounding.py` (`ObjectFinder`, `find_objects`).
"""

from .grounding import (
    DEFAULT_DETECTOR,
    MAX_PHRASE_CHARS,
    Detections,
    FindResult,
    FoundObject,
    GroundingDinoDetector,
    ObjectFinder,
    check_phrase,
    find_objects,
)
from .prompts import FramePrompt, prompt_from_dict
from .segmenter import DEFAULT_SAM2_CHECKPOINT, SMALLEST_SAM2_CHECKPOINT, Sam2Segmenter, load_frames
from .session import ProgressCallback, SegmentationSession

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_SAM2_CHECKPOINT",
    "MAX_PHRASE_CHARS",
    "Detections",
    "FindResult",
    "FoundObject",
    "GroundingDinoDetector",
    "ObjectFinder",
    "check_phrase",
    "find_objects",
    "SMALLEST_SAM2_CHECKPOINT",
    "FramePrompt",
    "ProgressCallback",
    "Sam2Segmenter",
    "SegmentationSession",
    "load_frames",
    "prompt_from_dict",
]
