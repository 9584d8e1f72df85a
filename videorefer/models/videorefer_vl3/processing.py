"""`VideoReferVL3Processor`: a video (or image), object masks and a question -> VL3 model inputs, as the official
VideoRefer-VideoLLaMA3 inference computes them (see `image_processing` for pixels, `prompting` for text).

Output of one request (batch of one; `collate` joins several):
* `input_ids`, `attention_mask` `(1, L)`: each frame's `<image>` expanded to its (unpruned) token count
  `gh * gw / merge²`, each `<region>` to `[` + `<REGION>` x n_k + `]`;
* `pixel_values (P, 588)`, `grid_thw (F, 3)`, `merge_sizes (F,)` (2 for video frames, 1 for a still image),
  `frames_per_sample (1,)`;
* `region_inputs` (`VL3RegionInputs`: the crops' patches and mask grids), `layout` (`VL3Layout`, for follow-ups).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, BatchFeature, ProcessorMixin

from videorefer.bench_protocol import VIDEOREFER_VL3_PROTOCOL
from videorefer.prompts import DESCRIBE_PROMPT_VL3, IGNORE_LABEL, object_tag
from videorefer.video_io import (
    FOLDER_FPS,
    IMAGE_SUFFIXES,
    Video,
    VideoSource,
    load_video_by_fps,
    sample_file_frames_by_fps,
    sample_frames_by_fps,
)

from ..base import RegionProcessorMixin
from .configuration import (
    KNOWN_ENCODER_PREPROCESSORS,
    VL3_IMAGE_TOKEN,
    VL3_REGION_TOKEN,
    VideoReferVL3Config,
    resolve_vision_path,
)
from .image_processing import IMAGE_MEAN, IMAGE_STD, MIN_PIXELS, PATCH_SIZE, crop_regions, pixel_budget, preprocess_images
from .inputs import MAX_REGION_TOKENS, VL3RegionInputs
from .prompting import (
    VL3Layout,
    accepted_placeholder_counts,
    check_region_placeholders,
    region_conversation,
    render_conversation,
    render_prompt,
    training_turns,
)

__all__ = ["VideoReferVL3Processor", "SAMPLING_FPS", "MAX_FRAMES"]

SAMPLING_FPS = 1.0  # the official inference scripts' `load_video(..., fps=1, max_frames=768)`
MAX_FRAMES = 768
ObjectMasks = Mapping[int, Any]  # raw frame index -> (H, W) mask: array, tensor, COCO RLE dict or polygon list


class VideoReferVL3Processor(RegionProcessorMixin, ProcessorMixin):
    """Tokenizer + the official VL3 pixel and prompt rules. Settings: the checkpoint's `mm_max_length` and
    `spatial_merge_size`, the encoder's normalisation, the frame sampling (`fps`, `max_frames`)."""

    visual_keys = ("pixel_values", "grid_thw", "merge_sizes", "frames_per_sample", "region_inputs")
    describe_prompt = DESCRIBE_PROMPT_VL3
    answers_images = True  # a still image (H, W, 3) goes to `__call__` as is (merge size 1), not as a video
    bench_protocol = VIDEOREFER_VL3_PROTOCOL  # how the official evaluation asks VideoRefer-Bench

    def __init__(
        self,
        tokenizer=None,
        mm_max_length: int = 10240,
        spatial_merge_size: int = 2,
        image_mean: Sequence[float] = IMAGE_MEAN,
        image_std: Sequence[float] = IMAGE_STD,
        min_pixels: int = MIN_PIXELS,
        fps: float = SAMPLING_FPS,
        max_frames: int = MAX_FRAMES,
        **kwargs,
    ):
        self.mm_max_length = int(mm_max_length)
        self.spatial_merge_size = int(spatial_merge_size)
        self.image_mean = [float(x) for x in image_mean]
        self.image_std = [float(x) for x in image_std]
        self.min_pixels = int(min_pixels)
        self.fps = float(fps)
        self.max_frames = int(max_frames)
        super().__init__(tokenizer, **kwargs)
        self.image_token_id = self._token_id(VL3_IMAGE_TOKEN)
        self.region_token_id = self._token_id(VL3_REGION_TOKEN)

    def _token_id(self, token: str) -> int:
        index = self.tokenizer.convert_tokens_to_ids(token)
        if index is None or index == self.tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token} token: it is not a VideoRefer-VL3 tokenizer")
        return int(index)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs) -> "VideoReferVL3Processor":
        """From a folder this class saved (`processor_config.json`) or an official checkpoint folder (settings from
        its config.json and its vision encoder's preprocessor_config.json, or the published encoder's known ones)."""
        for key in ("trust_remote_code", "use_fast", "_from_auto"):
            kwargs.pop(key, None)
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        saved = _read_json(path, "processor_config.json")
        if saved is not None:
            settings = {k: v for k, v in saved.items() if k in _SETTINGS}
        else:
            config = _read_json(path, "config.json") or {}
            if config.get("model_type") != VideoReferVL3Config.model_type:
                raise ValueError(f"{path} is not a VideoRefer-VL3 checkpoint (model_type {config.get('model_type')!r})")
            encoder = config.get("vision_encoder") or config.get("mm_vision_encoder") or ""
            pre = _read_json(resolve_vision_path(encoder, path), "preprocessor_config.json") if encoder else None
            pre = pre or KNOWN_ENCODER_PREPROCESSORS.get(encoder, {})
            settings = {
                "mm_max_length": config.get("mm_max_length", 10240),
                "spatial_merge_size": config.get("spatial_merge_size", 2),
            }
            settings.update({k: pre[k] for k in ("image_mean", "image_std") if k in pre})
        return cls(tokenizer, **settings)

    # ------------------------------------------------------------------ video
    def load_video(
        self,
        source: VideoSource | Video,
        extra_frame_indices: Sequence[int] = (),
        num_frames: int | None = None,
        fps: float | None = None,
    ) -> Video:
        """The official sampling: `fps` frames per second (default: this processor's; a frame folder counts as 3
        fps), at most `max_frames` (or `num_frames`, when given: a lower cap, e.g. the demo's or a benchmark's frame
        budget). Bench-D's official protocol samples at 4 fps (`bench_protocol`)."""
        if _is_image(source):
            raise ValueError("an image was given where a video is needed; pass it to the processor call instead")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        cap = min(int(num_frames), self.max_frames) if num_frames else self.max_frames
        return load_video_by_fps(source, fps or self.fps, cap, extra_frame_indices)

    def sample_frames(
        self, total_frames: int, fps: float | None = None, max_frames: int | None = None
    ) -> tuple[list[int], list[float]]:
        """`(raw frame indices, timestamps in s)` that `load_video` samples from a video file of `total_frames`
        frames at `fps` (no decoding): `self.fps` frames per second by the official rule, at most `max_frames`
        (and `self.max_frames`). `fps` None: a frame folder / array (taken as 3 fps, as the official loader does)."""
        cap = min(int(max_frames), self.max_frames) if max_frames else self.max_frames
        if fps:
            return sample_file_frames_by_fps(total_frames, fps, self.fps, cap)
        return sample_frames_by_fps(total_frames, FOLDER_FPS, self.fps, cap)

    # ------------------------------------------------------------------ requests
    def __call__(
        self,
        video: VideoSource | Video | Image.Image | np.ndarray,
        text: str,
        objects: Sequence[ObjectMasks] = (),
        history: Sequence[tuple[str, str]] | None = None,
        allow_empty_masks: bool = False,
    ) -> BatchFeature:
        """Inputs for one question about `objects` (each: frame index -> mask) in `video` or a still image.

        `text` names objects `<object0>`, ... and may already hold one `<region>` per mask (else they are listed
        first, see `prompting.region_question`); `history` holds earlier (question, answer) turns.
        """
        question, turns = self._laid_out(text, history, objects)  # text errors before any decoding
        visual, layout = self._visual_inputs(video, objects, allow_empty_masks)
        ids = self._ids(render_prompt(question, turns, layout), layout)
        return self._feature(ids, None, visual, layout)

    @staticmethod
    def region_conversation(
        question: str, history: Sequence[tuple[str, str]] | None, objects: Sequence[ObjectMasks]
    ) -> tuple[str, list[tuple[str, str]]]:
        """This family's layout of a conversation's region placeholders: one `<region>` per mask, in the first
        question (`prompting.region_conversation`)."""
        return region_conversation(question, history, [len(obj) for obj in objects])

    @classmethod
    def _laid_out(
        cls, text: str, history: Sequence[tuple[str, str]] | None, objects: Sequence[ObjectMasks]
    ) -> tuple[str, list[tuple[str, str]]]:
        masks_per_object = [len(obj) for obj in objects]
        question, turns = cls.region_conversation(text, history, objects)
        check_region_placeholders([user for user, _ in turns] + [question], sum(masks_per_object))
        return question, turns

    def text_inputs(
        self, text: str, history: Sequence[tuple[str, str]] | None, layout: VL3Layout
    ) -> dict[str, torch.Tensor]:
        """`input_ids`, `attention_mask` `(1, L)` of a follow-up whose visual features are known (from `layout`)."""
        question, turns = region_conversation(text, history, layout.masks_per_object)
        ids = self._ids(render_prompt(question, turns, layout), layout)
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}

    @staticmethod
    def region_placeholder_counts(masks_per_object: Sequence[int]) -> tuple[int, ...]:
        """`<region>` counts a training conversation may hold for objects with these mask counts: one per mask (the
        official VL3 data) or one per object (VideoRefer-700K), which then stands for all the object's masks."""
        return accepted_placeholder_counts(masks_per_object)

    def build_training_example(
        self,
        video: VideoSource | Video | Image.Image | np.ndarray,
        conversation: Sequence[tuple[str, str]],
        objects: Sequence[ObjectMasks] = (),
        allow_empty_masks: bool = False,
        num_frames: int | None = None,
    ) -> BatchFeature:
        """Inputs plus `labels` for (user, assistant) turns: only the answers and their `<|im_end|>` count.

        Each answer follows exactly the prompt inference builds for its turn; the conversation's `<region>`s (one per
        mask, or one per object standing for all its masks: `prompting.training_turns`) take the masks in order,
        object-major. `num_frames` caps the sampled frames when `video` is a path (a loaded `Video` is used as it is).
        """
        if not conversation:
            raise ValueError("the conversation has no turns")
        masks_per_object = [len(obj) for obj in objects]
        turns = training_turns(conversation, masks_per_object)
        check_region_placeholders([user for user, _ in turns], sum(masks_per_object))
        if num_frames and not isinstance(video, Video) and not _is_image(video):
            wanted = sorted({int(f) for obj in objects for f in obj})
            video = self.load_video(video, wanted, num_frames=num_frames)
        visual, layout = self._visual_inputs(video, objects, allow_empty_masks, training=True)
        full = render_conversation(turns, layout)
        # Split the full text at each answer: prompt pieces are ignored, answers (+ <|im_end|>) learnt.
        pieces, start = [], 0
        for _, answer in turns:
            marker = f"<|im_start|>assistant\n{answer}<|im_end|>"
            at = full.index(marker, start) + len("<|im_start|>assistant\n")
            pieces += [(full[start:at], False), (answer + "<|im_end|>", True)]
            start = at + len(answer) + len("<|im_end|>")
        pieces.append((full[start:], False))
        ids, labels = [], []
        for piece, learn in pieces:
            piece_ids = self._ids(piece, layout, check=False)
            ids += piece_ids
            labels += piece_ids if learn else [IGNORE_LABEL] * len(piece_ids)
        self._check_counts(ids, layout)
        return self._feature(ids, labels, visual, layout)

    # ------------------------------------------------------------------ pieces
    def _ids(self, prompt: str, layout: VL3Layout, check: bool = True) -> list[int]:
        """Token ids with each frame's single `<image>` repeated to its token count (same ids as tokenising the
        expanded text: `<image>` is an added token, so the text around it tokenises alike)."""
        ids = np.asarray(self.tokenizer(prompt, add_special_tokens=False).input_ids, dtype=np.int64)
        repeats = np.ones(len(ids), dtype=np.int64)
        at = np.flatnonzero(ids == self.image_token_id)
        if len(at) not in (0, len(layout.frame_tokens)):
            raise ValueError(f"the text holds {len(at)} {VL3_IMAGE_TOKEN} tokens for {len(layout.frame_tokens)} frames")
        if len(at):
            repeats[at] = layout.frame_tokens
        ids = np.repeat(ids, repeats).tolist()
        if check:
            self._check_counts(ids, layout)
        return ids

    def _check_counts(self, ids: list[int], layout: VL3Layout) -> None:
        regions = ids.count(self.region_token_id)
        if regions != sum(layout.tokens_per_mask):
            needed = sum(layout.tokens_per_mask)
            raise ValueError(f"the text holds {regions} {VL3_REGION_TOKEN} tokens, the masks need {needed}")

    def _visual_inputs(
        self, video: Any, objects: Sequence[ObjectMasks], allow_empty: bool, training: bool = False
    ) -> tuple[dict[str, torch.Tensor], VL3Layout]:
        if _is_image(video):
            image = _image_array(video)
            frame_of = lambda f: image  # noqa: E731
            bad = sorted({int(f) for obj in objects for f in obj} - {0})
            if bad:
                raise ValueError(f"masks of an image must be on frame 0, got frame {bad[0]}")
            merge, timestamps, frames = 1, None, image[None]
        else:
            wanted = sorted({int(f) for obj in objects for f in obj})
            loaded = self.load_video(video, extra_frame_indices=wanted)
            if loaded.timestamps is None:
                raise ValueError("the video has no timestamps: load it with this processor's load_video")
            frame_of = loaded.frame
            merge, timestamps, frames = self.spatial_merge_size, loaded.timestamps, loaded.frames
        budget = pixel_budget(self.mm_max_length, self.spatial_merge_size, merge, len(frames))
        pixels, grids = preprocess_images(frames, merge, budget, self.min_pixels, self.image_mean, self.image_std)
        region_inputs, tokens, per_object = self._region_inputs(
            objects, frame_of, frames.shape[1:3], allow_empty, training
        )
        visual = {
            "pixel_values": pixels,
            "grid_thw": grids,
            "merge_sizes": torch.full((len(grids),), merge, dtype=torch.long),
            "frames_per_sample": torch.tensor([len(grids)]),
            "region_inputs": region_inputs,
        }
        frame_tokens = (grids.prod(dim=1) // merge**2).tolist()
        return visual, VL3Layout(frame_tokens, timestamps, tokens, per_object)

    def _region_inputs(self, objects, frame_of, size, allow_empty, training) -> tuple[VL3RegionInputs, list, list]:
        """Masks object-major (each object's frames in time order) -> crops, mask grids and their patches. Inference
        divides the crops' pixel budget among the masks; the official trainer gives each crop the whole of it."""
        height, width = size
        masks, images, names = [], [], []
        for k, obj in enumerate(objects):
            if not obj:
                raise ValueError(f"{object_tag(k)} has no mask on any frame")
            for f in sorted(int(f) for f in obj):
                mask = _as_mask(obj[f], height, width)
                if mask.shape != (height, width):
                    raise ValueError(
                        f"{object_tag(k)}'s mask on frame {f} is {mask.shape[0]}x{mask.shape[1]} (HxW) but the video "
                        f"is {height}x{width}"
                    )
                if not allow_empty and not mask.any():
                    raise ValueError(f"{object_tag(k)}'s mask on frame {f} is empty")
                masks.append(mask)
                images.append(frame_of(f))
                names.append(f"{object_tag(k)}'s mask on frame {f}")
        per_object = [len(obj) for obj in objects]
        if not masks:
            empty = VL3RegionInputs(
                masks_per_object=[torch.zeros(0, dtype=torch.long)],
                pixel_values=torch.zeros(0, 3 * PATCH_SIZE**2),
                grid_thw=torch.zeros(0, 3, dtype=torch.long),
                mask_grids=[],
                masks_per_sample=torch.tensor([0]),
            )
            return empty, [], per_object
        crops = crop_regions(np.stack(images), np.stack(masks))
        cells = crops.cells
        for name, n in zip(names, cells):
            if n == 0:
                raise ValueError(f"{name} selects no patch cell after resizing (too thin); draw a larger mask")
        budget = pixel_budget(self.mm_max_length, self.spatial_merge_size, 1, 1 if training else len(masks))
        pixels, grids = preprocess_images(crops.crops, 1, budget, self.min_pixels, self.image_mean, self.image_std)
        inputs = VL3RegionInputs(
            masks_per_object=[torch.tensor(per_object, dtype=torch.long)],
            pixel_values=pixels,
            grid_thw=grids,
            mask_grids=crops.mask_grids,
            masks_per_sample=torch.tensor([len(masks)]),
        )
        return inputs, [min(MAX_REGION_TOKENS, n) for n in cells], per_object

    def _feature(self, ids: list[int], labels: list[int] | None, visual: dict, layout: VL3Layout) -> BatchFeature:
        data = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long), **visual}
        if labels is not None:
            data["labels"] = torch.tensor([labels])
        data["layout"] = layout
        return BatchFeature(data)


_SETTINGS = ("mm_max_length", "spatial_merge_size", "image_mean", "image_std", "min_pixels", "fps", "max_frames")


def _is_image(source: Any) -> bool:
    if isinstance(source, Image.Image):
        return True
    if isinstance(source, np.ndarray):
        return source.ndim == 3
    if isinstance(source, torch.Tensor):
        return source.ndim == 3
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in IMAGE_SUFFIXES


def _image_array(source: Any) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        source = Image.open(source)
    if isinstance(source, Image.Image):
        return np.asarray(source.convert("RGB"))
    array = np.asarray(source)
    if array.shape[-1] != 3 or array.dtype != np.uint8:
        raise ValueError(f"an image must be (H, W, 3) uint8, got {array.shape} {array.dtype}")
    return array


def _as_mask(value: Any, height: int, width: int) -> np.ndarray:
    """A mask (array, tensor, COCO RLE dict or polygon list) as a bool array."""
    polygons = isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple))
    if isinstance(value, Mapping) or polygons:
        from videorefer.regions import decode_segmentation

        value = decode_segmentation(value, height, width)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value) > 0


def _read_json(path: str | os.PathLike, name: str) -> dict | None:
    from transformers.utils import cached_file

    try:
        found = cached_file(str(path), name, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        found = None
    return json.loads(Path(found).read_text()) if found else None


AutoProcessor.register(VideoReferVL3Config, VideoReferVL3Processor, exist_ok=True)
