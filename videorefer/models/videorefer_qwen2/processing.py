"""Turns a video, object masks and a question into model inputs, exactly as the official inference does.

* frames: uniform sampling (`videorefer.video_io`), PIL bicubic resize to a square, x/255, (x - mean) / std;
* prompt: Qwen2 chat template, the first user turn is `<video>\\n` + question, each object written `[<region>]`;
* ids: the prompt is split at `<video>` and each piece tokenised alone, joined by the video placeholder id;
* masks: kept at the video's resolution (the model resizes them to the patch grid); each object's masks in time order.

`VideoReferProcessor` is a transformers `ProcessorMixin` whose one sub-processor is the tokenizer: the frame
preprocessing is its own (SigLIP's settings: size, mean, std), because transformers' SigLIP image processors do not
reproduce the official pixels bit for bit (the PIL one rounds differently by up to 1.2e-7, the torchvision one by
1.6e-2), and it resizes large frames in threads. Its settings are saved in `processor_config.json` beside the tokenizer;
an official checkpoint has no such file, so they are read from the vision tower's `preprocessor_config.json` and
`config.json` (`num_frames`) there.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin
from transformers.utils import cached_file

from ..base import RegionProcessorMixin
from ...bench_protocol import VIDEOREFER_7B_PROTOCOL
from ...prompts import DESCRIBE_PROMPT, IGNORE_LABEL, region_conversation
from ...regions import ObjectMasks, decode_segmentation
from ...video_io import Video, VideoSource, load_video, sample_frame_indices
from .configuration import REGION_TOKEN, VIDEO_PLACEHOLDER, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .inputs import PooledRegionInputs
from .vision import KNOWN_VISION_TOWERS, resolve_vision_path

__all__ = ["VideoReferProcessor"]

TOWER_PREPROCESSOR_FILE = "preprocessor_config.json"  # the vision tower's (SigLIP's) image settings
SETTINGS = ("image_size", "image_mean", "image_std", "num_frames")
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


class VideoReferProcessor(RegionProcessorMixin, ProcessorMixin):
    """Tokenizer + frame preprocessing + mask layout for `VideoReferQwen2ForCausalLM` (the family's processor).

    `processor(video, text, objects, history)` gives `input_ids`, `attention_mask`, `pixel_values`, `region_inputs`
    (a `PooledRegionInputs`) and `layout` (the number of objects, what `text_inputs` checks a follow-up against).
    """

    # What goes to the model's vision side (`encode_visual`, `prepare_multimodal_inputs`, forward / generate).
    visual_keys = ("pixel_values", "region_inputs")
    # The official captioning / Bench-D question of this family.
    describe_prompt = DESCRIBE_PROMPT
    answers_images = False  # a still image is a one-frame video here (the official v1 code repeats it num_frames times)
    bench_protocol = VIDEOREFER_7B_PROTOCOL  # how the official evaluation asks VideoRefer-Bench

    def __init__(
        self,
        tokenizer,
        image_size: int = 384,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        num_frames: int = 16,
        chat_template: str | None = None,
    ):
        super().__init__(tokenizer, chat_template=chat_template)
        self.image_size = int(image_size)
        self.image_mean = np.asarray(image_mean, dtype=np.float32)
        self.image_std = np.asarray(image_std, dtype=np.float32)
        self.num_frames = int(num_frames)
        self.region_token_index = tokenizer.convert_tokens_to_ids(REGION_TOKEN)
        if self.region_token_index is None or self.region_token_index == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {REGION_TOKEN} token: it is not a VideoRefer tokenizer")

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, config: VideoReferQwen2Config | None = None, **kwargs
    ) -> "VideoReferProcessor":
        """From a folder this processor saved, or an official checkpoint (settings from its vision tower and config).

        Raises `ValueError` when the tokenizer's `<region>` id is not the one the model's config expects.
        """
        path = pretrained_model_name_or_path
        hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        if config is None:
            config = VideoReferQwen2Config.from_pretrained(path, **hub)
        saved = _read_json(path, "processor_config.json", hub) or {}
        missing = [k for k in SETTINGS if k not in saved and k not in kwargs]
        if missing:
            kwargs.update({k: v for k, v in _official_settings(path, config, hub).items() if k in missing})
        processor = super().from_pretrained(path, **kwargs)
        if processor.region_token_index != config.region_id:
            raise ValueError(
                f"the tokenizer's {REGION_TOKEN} id {processor.region_token_index} differs from the model's "
                f"{config.region_id}: tokenizer and weights come from different checkpoints"
            )
        return processor

    # ------------------------------------------------------------------ pieces
    def preprocess_frames(self, frames: np.ndarray) -> torch.Tensor:
        """`(n, H, W, 3)` uint8 to `(n, 3, S, S)` float32: bicubic resize to a square (aspect not kept), normalise."""
        size = (self.image_size, self.image_size)
        resize = lambda f: np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC))  # noqa: E731
        # PIL releases the GIL while resizing: threads pay off for large frames, not for small ones (hand-off cost).
        large = frames.shape[1] * frames.shape[2] >= PARALLEL_RESIZE_PIXELS
        resized = np.stack(list(_resize_pool().map(resize, frames) if large else map(resize, frames)))
        pixels = (resized.astype(np.float32) * np.float32(1 / 255) - self.image_mean) / self.image_std
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()

    def build_prompt(self, question: str, history: Sequence[tuple[str, str]] | None = None) -> str:
        """Chat-formatted prompt; the video goes at the
        head of the first user message (a `<video>` written in it is moved there, as the official trainer does)."""
        return self._chat([*(history or []), (question, None)])

    def _chat(self, turns: Sequence[tuple[str, str | None]]) -> str:
        """The chat template's text of (user, assistant or None) turns; a generation prompt when the last is None."""
        messages: list[dict[str, str]] = []
        for k, (user, assistant) in enumerate(turns):
            if k == 0:
                if VIDEO_PLACEHOLDER in user:
                    user = user.replace(VIDEO_PLACEHOLDER, "").strip()
                user = f"{VIDEO_PLACEHOLDER}\n{user}"
            messages.append({"role": "user", "content": user})
            if assistant is not None:
                messages.append({"role": "assistant", "content": assistant})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=turns[-1][1] is None)

    def tokenize(self, prompt: str) -> list[int]:
        """Ids of a prompt; `<video>` becomes the video placeholder id."""
        pieces = prompt.split(VIDEO_PLACEHOLDER)
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            if k:
                ids.append(VIDEO_TOKEN_INDEX)
            ids.extend(self.tokenizer(piece, add_special_tokens=False).input_ids)
        return ids

    # ------------------------------------------------------------------ the whole input
    def __call__(
        self,
        video: VideoSource | Video,
        text: str,
        objects: Sequence[ObjectMasks] = (),
        history: Sequence[tuple[str, str]] | None = None,
        allow_empty_masks: bool = False,
        num_frames: int | None = None,
    ) -> BatchFeature:
        """Inputs for one question about `objects` (each: frame index -> mask) in `video`.

        `text` is the user's question with one `<region>` per object (see `videorefer.prompts.region_question`);
        `history` holds earlier (question, answer) turns. Returns a batch of one; see `collate` for more.
        """
        ids = self.tokenize(self.build_prompt(text, history))
        return self._with_visual_inputs(ids, None, video, objects, num_frames, allow_empty_masks)

    @staticmethod
    def region_conversation(
        question: str, history: Sequence[tuple[str, str]] | None, objects: Sequence[ObjectMasks]
    ) -> tuple[str, list[tuple[str, str]]]:
        """This family's layout of a conversation's region placeholders: one `[<region>]` per object, in the first
        question (`videorefer.prompts.region_conversation`)."""
        return region_conversation(question, history, len(objects))

    def text_inputs(
        self, text: str, history: Sequence[tuple[str, str]] | None, layout: int
    ) -> dict[str, torch.Tensor]:
        """Only `input_ids` and `attention_mask` `(1, L)`: for follow-ups whose visual tokens are already known.

        `layout` is the `layout` of the processor output the visual tokens came from (here: the number of objects).
        """
        ids = self.tokenize(self.build_prompt(text, history))
        self._check_region_count(ids, layout)
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}

    def load_video(
        self, source: VideoSource | Video, extra_frame_indices: Iterable[int] = (), num_frames: int | None = None
    ) -> Video:
        """This family's frames: `num_frames` (default: the model's) uniformly sampled, plus `extra_frame_indices`
        (frames masks lie on) decoded in the same pass. An already decoded `Video` is returned as it is; a still image
        (`PIL.Image`) is a one-frame video."""
        if isinstance(source, Image.Image):
            source = [np.asarray(source.convert("RGB"))]
        return load_video(source, num_frames or self.num_frames, extra_frame_indices=extra_frame_indices)

    def sample_frames(
        self, total_frames: int, fps: float | None = None, max_frames: int | None = None
    ) -> tuple[list[int], None]:
        """Which raw frames `load_video(num_frames=max_frames)` samples from a video of `total_frames` frames (no
        decoding): `num_frames` (at most `max_frames`) at the midpoints of equal segments, whatever the frame rate
        `fps`. No timestamps (None)."""
        count = min(self.num_frames, int(max_frames)) if max_frames else self.num_frames
        return sample_frame_indices(total_frames, count), None

    def _check_region_count(self, ids: Sequence[int], num_objects: int) -> None:
        n_regions = list(ids).count(self.region_token_index)
        if n_regions != num_objects:
            raise ValueError(f"the prompt has {n_regions} {REGION_TOKEN} tokens but {num_objects} objects were given")

    @staticmethod
    def region_placeholder_counts(masks_per_object: Sequence[int]) -> tuple[int, ...]:
        """`<region>` counts a training conversation may hold: one per object (its masks on all frames are pooled
        into one object token)."""
        return (len(masks_per_object),)

    def build_training_example(
        self,
        video: VideoSource | Video,
        conversation: Sequence[tuple[str, str]],
        objects: Sequence[ObjectMasks] = (),
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
    ) -> BatchFeature:
        """Inputs plus `labels` for a (user, assistant) conversation, as the official v1 trainer labels them: each
        answer with what the chat template writes after it (`<|im_end|>` and the newline) counts, nothing else.

        The text is the chat prompt inference builds (`build_prompt` with the earlier turns as history: the default
        system prompt, `<video>` at the head of the first turn) followed by the answer, so each answer is learnt from
        exactly the prompt it is later asked with. `<region>` tokens may sit in any user turn; object k is the k-th
        `<region>` of the whole conversation.
        """
        if not conversation:
            raise ValueError("the conversation has no turns")
        ids: list[int] = []
        labels: list[int] = []
        done = ""  # the text tokenised so far; each prompt must extend it
        for k in range(len(conversation)):
            prompt = self._chat([*conversation[:k], (conversation[k][0], None)])
            full = self._chat(conversation[: k + 1])
            if not (prompt.startswith(done) and full.startswith(prompt)):
                raise ValueError("the chat template does not extend earlier turns; cannot mask labels by turn")
            for piece, learn in ((prompt[len(done):], False), (full[len(prompt):], True)):
                piece_ids = self.tokenize(piece)
                ids.extend(piece_ids)
                labels.extend(piece_ids if learn else [IGNORE_LABEL] * len(piece_ids))
            done = full
        return self._with_visual_inputs(ids, labels, video, objects, num_frames, allow_empty_masks)

    def _with_visual_inputs(
        self,
        ids: list[int],
        labels: list[int] | None,
        video: VideoSource | Video,
        objects: Sequence[ObjectMasks],
        num_frames: int | None,
        allow_empty_masks: bool,
    ) -> BatchFeature:
        """A batch of one from token ids (and labels): decodes the frames and lays out the masks."""
        self._check_region_count(ids, len(objects))
        video = self.load_video(video, sorted({int(f) for obj in objects for f in obj}), num_frames=num_frames)
        masks, frames, per_object = self._layout_masks(video, objects, allow_empty_masks)
        extra_indices = sorted(video.extra)
        extra_pixels = (
            self.preprocess_frames(np.stack([video.extra[i] for i in extra_indices]))
            if extra_indices
            else torch.zeros(0, 3, self.image_size, self.image_size)
        )
        data = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values": self.preprocess_frames(video.frames).unsqueeze(0),
            "region_inputs": PooledRegionInputs(
                masks_per_object=[per_object], masks=[masks], mask_frames=[frames], extra_frames=[extra_pixels]
            ),
            "layout": len(objects),
        }
        if labels is not None:
            data["labels"] = torch.tensor([labels])
        return BatchFeature(data)

    def _layout_masks(
        self, video: Video, objects: Sequence[ObjectMasks], allow_empty: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks object-major `(k, H, W)`, the local frame of each `(k,)`, masks per object `(o,)`."""
        t = len(video.frame_indices)
        extra_row = {index: t + k for k, index in enumerate(sorted(video.extra))}
        masks, frames, per_object = [], [], []
        for k, obj in enumerate(objects):
            if not obj:
                raise ValueError(f"<object{k}> has no mask on any frame")
            for f in sorted(obj):
                mask = _as_mask(obj[f], video.height, video.width)
                if mask.shape != (video.height, video.width):
                    raise ValueError(
                        f"<object{k}>'s mask on frame {f} is {mask.shape[0]}x{mask.shape[1]} (HxW) but the video is "
                        f"{video.height}x{video.width}"
                    )
                if not allow_empty and not mask.any():
                    raise ValueError(f"<object{k}>'s mask on frame {f} is empty")
                masks.append(mask.astype(np.uint8, copy=False))
                frames.append(video.frame_indices.index(f) if f in video.frame_indices else extra_row[f])
            per_object.append(len(obj))
        if not masks:
            empty = torch.zeros(0, dtype=torch.long)
            return torch.zeros(0, video.height, video.width, dtype=torch.uint8), empty, empty.clone()
        return torch.from_numpy(np.stack(masks)), torch.tensor(frames), torch.tensor(per_object)



def _as_mask(value: Any, height: int, width: int) -> np.ndarray:
    """A mask given as an array / tensor, a COCO RLE dict or a COCO polygon list, as an array."""
    if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple))):
        return decode_segmentation(value, None if isinstance(value, Mapping) else height, None if isinstance(value, Mapping) else width)
    return np.asarray(value)


PARALLEL_RESIZE_PIXELS = 256 * 256  # frames at least this large are resized in a thread pool


@functools.lru_cache(maxsize=1)
def _resize_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="videorefer-resize")


def _read_json(path: str | os.PathLike, name: str, hub_kwargs: dict) -> dict | None:
    """`name` in a checkpoint folder or Hub repo as a dict, None when the checkpoint has no such file."""
    resolved = cached_file(
        str(path), name, _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if resolved is None:
        return None
    with open(resolved, encoding="utf-8") as file:
        return json.load(file)


def _official_settings(path: str | os.PathLike, config: VideoReferQwen2Config, hub_kwargs: dict) -> dict[str, Any]:
    """Processor settings of an official checkpoint: image settings of the vision tower its config names (its folder's
    `preprocessor_config.json`, else a known tower's size), `num_frames` from the config."""
    image = None
    if config.mm_vision_tower:
        tower = resolve_vision_path(config.mm_vision_tower, path)
        image = _read_json(tower, TOWER_PREPROCESSOR_FILE, hub_kwargs)
        if image is None and config.mm_vision_tower in KNOWN_VISION_TOWERS:
            image = {"size": {"height": KNOWN_VISION_TOWERS[config.mm_vision_tower]["image_size"]}}
    if image is None:
        raise ValueError(
            f"no processor_config.json in {path} and no {TOWER_PREPROCESSOR_FILE} in the vision tower "
            f"{config.mm_vision_tower!r}: cannot tell the image size"
        )
    size = image.get("size", {})
    return {
        "image_size": size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size,
        "image_mean": image.get("image_mean", (0.5, 0.5, 0.5)),
        "image_std": image.get("image_std", (0.5, 0.5, 0.5)),
        "num_frames": config.num_frames,
    }

