"""Turns a video, object masks and a question into model inputs, exactly as the official inference does.

* frames: uniform sampling (`videorefer.video_io`), PIL bicubic resize to a square, x/255, (x - mean) / std;
* prompt: Qwen2 chat template, the first user turn is `<video>\\n` + question, each object written `[<region>]`;
* ids: the prompt is split at `<video>` and each piece tokenised alone, joined by the video placeholder id;
* masks: kept at the video's resolution (the model resizes them to the patch grid); each object's masks in time order.
"""

from __future__ import annotations

import functools
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, PreTrainedTokenizerBase

from .configuration import REGION_TOKEN, VIDEO_PLACEHOLDER, VIDEO_TOKEN_INDEX, VideoReferQwen2Config
from .vision import KNOWN_VISION_TOWERS, resolve_vision_path
from ...video_io import Video, VideoSource, load_video

__all__ = ["VideoReferProcessor", "ObjectMasks", "region_question", "region_conversation", "IMAGE_PROCESSOR_FILE"]

ObjectMasks = Mapping[int, Any]  # raw frame index -> (H, W) mask: array, tensor, COCO RLE dict or polygon list
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
PROCESSOR_FILE = "processor_config.json"
OBJECT_TAG = re.compile(r"<object(\d+)>")
IGNORE_LABEL = -100  # label of tokens that do not count in the loss (as `modeling.IGNORE_INDEX`)


def region_question(question: str, num_objects: int) -> str:
    """Write each object's region token into a question that names objects as `<object0>`, `<object1>`, ...

    A question that already holds `<region>` tokens is returned unchanged. Otherwise the first mention of each
    `<objectK>` becomes `<objectK> [<region>]`; objects the question does not name are listed first, as in the
    official examples ("There are two objects: <object0> [<region>], <object1> [<region>]. ...").
    """
    _check_not_empty(question)
    if REGION_TOKEN in question:
        return question  # already laid out (e.g. Bench-Q items, whose object numbers need not start at 0)
    named = _named_objects(question, num_objects)
    if num_objects == 0:
        return question
    if named == set(range(num_objects)):
        seen: set[int] = set()

        def first_mention(match: re.Match) -> str:
            k = int(match.group(1))
            if k in seen:
                return match.group(0)
            seen.add(k)
            return f"{match.group(0)} [{REGION_TOKEN}]"

        return OBJECT_TAG.sub(first_mention, question)
    listing = ", ".join(f"<object{k}> [{REGION_TOKEN}]" for k in range(num_objects))
    lead = "There is one object" if num_objects == 1 else f"There are {num_objects} objects"
    return f"{lead}: {listing}. {question}"


def _check_not_empty(question: str) -> None:
    if not question or not question.strip():
        raise ValueError("the question is empty")


def _named_objects(question: str, num_objects: int) -> set[int]:
    """The K of every `<objectK>` in the question; each must be one of the `num_objects` objects."""
    named = {int(k) for k in OBJECT_TAG.findall(question)}
    unknown = sorted(k for k in named if k >= num_objects)
    if unknown:
        have = f"<object0>..<object{num_objects - 1}>" if num_objects else "no objects"
        raise ValueError(f"the question refers to <object{unknown[0]}> but there are only {have}")
    return named


def region_conversation(
    question: str, history: Sequence[tuple[str, str]] | None, num_objects: int
) -> tuple[str, list[tuple[str, str]]]:
    """Lay out a conversation's region tokens once: in the first question of the conversation.

    A follow-up repeats the earlier turns exactly as they were first asked (so their prompt prefix, and its key/value
    cache, stay the same) and keeps the new question as written; it may still name objects as `<objectK>`.
    """
    history = list(history or [])
    if not history:
        return region_question(question, num_objects), history
    _check_not_empty(question)
    _named_objects(question, num_objects)
    first, answer = history[0]
    history[0] = (region_question(first, num_objects), answer)
    return question, history


class VideoReferProcessor:
    """Tokenizer + frame preprocessing + mask layout for `VideoReferQwen2ForCausalLM`."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_size: int = 384,
        image_mean: Sequence[float] = (0.5, 0.5, 0.5),
        image_std: Sequence[float] = (0.5, 0.5, 0.5),
        num_frames: int = 16,
    ):
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.image_mean = np.asarray(image_mean, dtype=np.float32)
        self.image_std = np.asarray(image_std, dtype=np.float32)
        self.num_frames = int(num_frames)
        self.region_token_index = tokenizer.convert_tokens_to_ids(REGION_TOKEN)
        if self.region_token_index is None or self.region_token_index == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {REGION_TOKEN} token: it is not a VideoRefer tokenizer")

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, config: VideoReferQwen2Config | None = None, **hub_kwargs):
        """Tokenizer from the checkpoint; image settings from it, else from the vision tower the config names."""
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
        if config is None:
            config = VideoReferQwen2Config.from_pretrained(path, **hub_kwargs)
        settings = _read_json(path, IMAGE_PROCESSOR_FILE, hub_kwargs)
        if settings is None and config.mm_vision_tower:
            tower = resolve_vision_path(config.mm_vision_tower, path)
            settings = _read_json(tower, IMAGE_PROCESSOR_FILE, hub_kwargs)
            if settings is None and config.mm_vision_tower in KNOWN_VISION_TOWERS:
                settings = {"size": {"height": KNOWN_VISION_TOWERS[config.mm_vision_tower]["image_size"]}}
        if settings is None:
            raise ValueError(f"no {IMAGE_PROCESSOR_FILE} in {path} nor in the vision tower {config.mm_vision_tower!r}")
        size = settings.get("size", {})
        image_size = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
        extra = _read_json(path, PROCESSOR_FILE, hub_kwargs) or {}
        return cls(
            tokenizer,
            image_size=image_size,
            image_mean=settings.get("image_mean", (0.5, 0.5, 0.5)),
            image_std=settings.get("image_std", (0.5, 0.5, 0.5)),
            num_frames=extra.get("num_frames", config.num_frames),
        )

    def save_pretrained(self, path: str | os.PathLike) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(path)
        image_settings = {
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": True,
            "size": {"height": self.image_size, "width": self.image_size},
            "resample": int(Image.Resampling.BICUBIC),
            "do_rescale": True,
            "rescale_factor": 1 / 255,
            "do_normalize": True,
            "image_mean": self.image_mean.tolist(),
            "image_std": self.image_std.tolist(),
        }
        (Path(path) / IMAGE_PROCESSOR_FILE).write_text(json.dumps(image_settings, indent=2))
        (Path(path) / PROCESSOR_FILE).write_text(json.dumps({"num_frames": self.num_frames}, indent=2))

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
        """Chat-formatted prompt; the video goes before the first user message."""
        messages: list[dict[str, str]] = []
        turns = [*(history or []), (question, None)]
        for k, (user, assistant) in enumerate(turns):
            messages.append({"role": "user", "content": f"{VIDEO_PLACEHOLDER}\n{user}" if k == 0 else user})
            if assistant is not None:
                messages.append({"role": "assistant", "content": assistant})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
    ) -> BatchFeature:
        """Inputs for one question about `objects` (each: frame index -> mask) in `video`.

        `text` is the user's question with one `<region>` per object (see `region_question`); `history` holds
        earlier (question, answer) turns. Returns a batch of one; see `collate` for more.
        """
        ids = self.tokenize(self.build_prompt(text, history))
        return self._with_visual_inputs(ids, None, video, objects, num_frames, allow_empty_masks)

    def text_inputs(
        self, text: str, history: Sequence[tuple[str, str]] | None, num_objects: int
    ) -> dict[str, torch.Tensor]:
        """Only `input_ids` and `attention_mask` `(1, L)`: for follow-ups whose visual tokens are already known."""
        ids = self.tokenize(self.build_prompt(text, history))
        self._check_region_count(ids, num_objects)
        return {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}

    def _check_region_count(self, ids: Sequence[int], num_objects: int) -> None:
        n_regions = list(ids).count(self.region_token_index)
        if n_regions != num_objects:
            raise ValueError(f"the prompt has {n_regions} {REGION_TOKEN} tokens but {num_objects} objects were given")

    def build_training_example(
        self,
        video: VideoSource | Video,
        conversation: Sequence[tuple[str, str]],
        objects: Sequence[ObjectMasks] = (),
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
    ) -> BatchFeature:
        """Inputs plus `labels` for a (user, assistant) conversation: only assistant turns (+ `<|im_end|>`) count.

        The text is the chat prompt inference builds (`build_prompt` with the earlier turns as history) followed by
        the answer, so each answer is learnt from exactly the prompt it is later asked with. `<region>` tokens may sit
        in any user turn; object k is the k-th `<region>` of the whole conversation.
        """
        if not conversation:
            raise ValueError("the conversation has no turns")
        ids: list[int] = []
        labels: list[int] = []
        done = ""  # the text tokenised so far; each prompt must extend it
        for k, (user, answer) in enumerate(conversation):
            prompt = self.build_prompt(user, conversation[:k])
            if not prompt.startswith(done):
                raise ValueError("the chat template does not extend earlier turns; cannot mask labels by turn")
            for piece, learn in ((prompt[len(done):], False), (answer + self.tokenizer.eos_token, True)):
                piece_ids = self.tokenize(piece)
                ids.extend(piece_ids)
                labels.extend(piece_ids if learn else [IGNORE_LABEL] * len(piece_ids))
            done = prompt + answer + self.tokenizer.eos_token
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
        wanted = sorted({int(f) for obj in objects for f in obj})
        video = load_video(video, num_frames or self.num_frames, extra_frame_indices=wanted)
        masks, frames, per_object = self._layout_masks(video, objects, allow_empty_masks)
        extra_indices = sorted(video.extra)
        extra_pixels = self.preprocess_frames(np.stack([video.extra[i] for i in extra_indices])) if extra_indices else None
        data = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
            "pixel_values": self.preprocess_frames(video.frames).unsqueeze(0),
            "region_masks": [masks],
            "region_frames": [frames],
            "masks_per_object": [per_object],
            "region_pixel_values": [extra_pixels if extra_pixels is not None else torch.zeros(0, 3, self.image_size, self.image_size)],
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
            return torch.zeros(0, video.height, video.width, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.from_numpy(np.stack(masks)), torch.tensor(frames), torch.tensor(per_object)

    def collate(self, features: Sequence[Mapping[str, Any]], padding_side: str = "left") -> BatchFeature:
        """Batch single-sample inputs: pads ids (and `labels` if present), keeps region inputs as per-sample lists."""
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        longest = max(f["input_ids"].shape[-1] for f in features)

        def pad(row: torch.Tensor, value: int) -> torch.Tensor:
            filler = row.new_full((longest - row.shape[-1],), value)
            return torch.cat([filler, row] if padding_side == "left" else [row, filler])

        batch: dict[str, Any] = {
            "input_ids": torch.stack([pad(f["input_ids"][0], pad_id) for f in features]),
            "attention_mask": torch.stack([pad(f["attention_mask"][0], 0) for f in features]),
            "pixel_values": torch.cat([f["pixel_values"] for f in features]),
        }
        if all("labels" in f for f in features):
            batch["labels"] = torch.stack([pad(f["labels"][0], -100) for f in features])
        for key in ("region_masks", "region_frames", "masks_per_object", "region_pixel_values"):
            batch[key] = [item for f in features for item in f[key]]
        return BatchFeature(batch)

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _as_mask(value: Any, height: int, width: int) -> np.ndarray:
    """A mask given as an array / tensor, a COCO RLE dict or a COCO polygon list, as an array."""
    if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple))):
        from ...regions import decode_segmentation

        return decode_segmentation(value, None if isinstance(value, Mapping) else height, None if isinstance(value, Mapping) else width)
    return np.asarray(value)


PARALLEL_RESIZE_PIXELS = 256 * 256  # frames at least this large are resized in a thread pool


@functools.lru_cache(maxsize=1)
def _resize_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="videorefer-resize")


def _read_json(path: str | os.PathLike, name: str, hub_kwargs: dict) -> dict | None:
    local = Path(path) / name
    if local.is_file():
        return json.loads(local.read_text())
    if Path(path).is_dir():
        return None
    try:  # a Hub id
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(path), name, **hub_kwargs)).read_text())
    except Exception:  # missing file or no network: the caller falls back or reports
        return None
