"""SAM 2.1 from transformers (`Sam2VideoModel` + `Sam2VideoProcessor`, and a weight-sharing `Sam2Model`).

`Sam2Segmenter` owns the model and knows how to pre/post-process frames and run one prompted image; the per-video
state lives in `SegmentationSession` (see `session.py`), created with `segmenter.init_state(frames)`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..compat.sam2 import image_model_sharing
from .prompts import FramePrompt, prompt_from_dict

DEFAULT_SAM2_CHECKPOINT = "facebook/sam2.1-hiera-large"
SMALLEST_SAM2_CHECKPOINT = "facebook/sam2.1-hiera-tiny"  # the one to use on CPU

# Mask prompts are low-res logits; a binary mask becomes -10 / +10 (sigmoid ~ 0 / 1), as SAM 2 does for mask inputs.
_MASK_LOGIT_SCALE, _MASK_LOGIT_BIAS = 20.0, -10.0


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class Sam2Segmenter:
    """SAM 2.1 image + video segmenter on one device (bf16 autocast on CUDA).

    Example:
        segmenter = Sam2Segmenter.from_pretrained("facebook/sam2.1-hiera-tiny", device="cpu")
        session = segmenter.init_state(frames)            # uint8 (T, H, W, 3), list of frames, or a video path
        session.add_points(0, obj_id=1, points=[[120, 80]], labels=[1])
        masks = session.propagate(frame_indices=[0, 8, 16])  # {obj_id: {frame_idx: bool (H, W)}}
    """

    def __init__(
        self,
        model,
        processor,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None = torch.bfloat16,
        feature_cache_size: int = 4,
    ):
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        # Autocast only on CUDA: bf16 on CPU is slow and not what SAM 2 was validated with.
        self.autocast_dtype = autocast_dtype if self.device.type == "cuda" else None
        self.feature_cache_size = feature_cache_size
        self._image_model = None

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike = DEFAULT_SAM2_CHECKPOINT,
        device: str | torch.device | None = None,
        autocast_dtype: torch.dtype | None = torch.bfloat16,
        feature_cache_size: int = 4,
        **kwargs: Any,
    ) -> Sam2Segmenter:
        """Load a SAM 2.1 checkpoint (Hub id or local folder) with its processor. `kwargs` go to both loaders."""
        from transformers import Sam2VideoModel, Sam2VideoProcessor

        model = Sam2VideoModel.from_pretrained(model_id, **kwargs)
        processor = Sam2VideoProcessor.from_pretrained(model_id, **kwargs)
        return cls(model, processor, device, autocast_dtype, feature_cache_size)

    # ------------------------------------------------------------------------------------------------ plumbing
    @property
    def image_size(self) -> int:
        """The model's square input resolution (1024 for the released checkpoints)."""
        return int(self.processor.target_size)

    def inference_context(self) -> contextlib.ExitStack:
        """`inference_mode` plus bf16 autocast on CUDA; wrap every model call in it."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.autocast_dtype is not None:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.autocast_dtype))
        return stack

    def preprocess_frame(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float32 pixel values (3, S, S) on the CPU (resized and normalised as in SAM 2)."""
        out = self.processor.video_processor(videos=[frame[None]], return_tensors="pt")
        return out.pixel_values_videos[0, 0]

    def postprocess_masks(self, logits: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Low-res mask logits (N, 1, h, w) -> bool masks (N, H, W) at the frame's resolution."""
        masks = self.processor.post_process_masks([logits.float().cpu()], [[height, width]], binarize=True)[0]
        return masks[:, 0].numpy().astype(bool)

    @property
    def image_model(self):
        """A `Sam2Model` sharing this video model's image encoder, prompt encoder and mask decoder (no extra memory).

        The video model always treats an input mask as the answer; refining a brush mask with SAM (a mask *prompt*)
        needs the image model's forward, which accepts masks as dense prompts.
        """
        if self._image_model is None:
            self._image_model = image_model_sharing(self.model)
        return self._image_model

    # --------------------------------------------------------------------------------------------------- images
    def segment_image(
        self, image: np.ndarray, prompts: Mapping[int, FramePrompt | Mapping[str, Any]]
    ) -> dict[int, np.ndarray]:
        """Segment several objects on one image: `{obj_id: FramePrompt | {"points", "labels", "box", "mask",
        "as_drawn"}}` -> `{obj_id: bool (H, W)}`. The image is encoded once for all objects."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        checked: dict[int, FramePrompt] = {}
        for obj_id, spec in prompts.items():
            try:
                checked[obj_id] = prompt_from_dict(spec, height, width)
            except ValueError as err:
                raise ValueError(f"object {obj_id}: {err}") from None
        pixel_values = self.preprocess_frame(image)[None].to(self.device)  # (1, 3, S, S)
        return self._segment_prompts(pixel_values, checked, height, width)

    def _segment_prompts(
        self, pixel_values: torch.Tensor, prompts: Mapping[int, FramePrompt], height: int, width: int
    ) -> dict[int, np.ndarray]:
        """Encode the image once (only if some prompt needs the model), then decode each object."""
        embeddings = None
        if any(not p.is_drawn_mask for p in prompts.values()):
            with self.inference_context():
                embeddings = self.image_model.get_image_embeddings(pixel_values)  # list of (1, C, h, w)
        return {obj_id: self._predict_image(embeddings, p, height, width) for obj_id, p in prompts.items()}

    def _predict_image(
        self, embeddings: Sequence[torch.Tensor] | None, prompt: FramePrompt, height: int, width: int
    ) -> np.ndarray:
        """One object on one image from the image model's embeddings (None only for a drawn mask)."""
        if prompt.is_drawn_mask:
            return prompt.mask.copy()
        enc = self.processor(
            original_sizes=[[height, width]],
            input_points=None if prompt.points is None else [[prompt.points.tolist()]],
            input_labels=None if prompt.labels is None else [[prompt.labels.tolist()]],
            input_boxes=None if prompt.box is None else [[prompt.box.tolist()]],
            return_tensors="pt",
        )
        inputs = {k: enc[k].to(self.device) for k in ("input_points", "input_labels", "input_boxes") if k in enc}
        if prompt.mask is not None:
            logits = torch.from_numpy(prompt.mask).float() * _MASK_LOGIT_SCALE + _MASK_LOGIT_BIAS
            inputs["input_masks"] = logits[None, None].to(self.device)  # (1, 1, H, W), resized by the model
        # Several masks only for a lone click (ambiguous), as SAM 2 does; keep the one with the best predicted IoU.
        n_points = 0 if prompt.points is None else len(prompt.points)
        multimask = n_points == 1 and prompt.box is None and prompt.mask is None
        with self.inference_context():
            out = self.image_model(image_embeddings=embeddings, **inputs, multimask_output=multimask)
        logits = out.pred_masks[0, 0]  # (num_masks, h, w)
        best = int(out.iou_scores[0, 0].float().argmax())
        return self.postprocess_masks(logits[best][None, None], height, width)[0]

    # ---------------------------------------------------------------------------------------------------- video
    def init_state(self, frames: Any) -> SegmentationSession:
        """Start a per-video session. `frames`: uint8 (T, H, W, 3), a list of (H, W, 3) arrays / PIL images, or a
        video path / frame folder (decoded with `videorefer.video_io`)."""
        from .session import SegmentationSession

        return SegmentationSession(self, load_frames(frames))


def load_frames(frames: Any) -> np.ndarray:
    """Normalise a video to uint8 (T, H, W, 3)."""
    if isinstance(frames, (str, os.PathLike)):
        from videorefer.video_io import read_frames, video_info  # lazy: optional decoders

        total = video_info(frames)[0]
        return np.asarray(read_frames(frames, range(total)))
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("the video has no frames")
        frames = np.stack([np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames])
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {arr.dtype} {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("the video has no frames")
    return arr
