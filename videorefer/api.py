"""The high-level API: load a published checkpoint of any registered family and ask about objects in a video.

    from videorefer import VideoRefer
    vr = VideoRefer.from_pretrained("DAMO-NLP-SG/VideoRefer-7B", quantization="4bit")
    vr.describe("video.mp4", {0: mask})                       # one object: frame index -> (H, W) mask
    vr.ask("video.mp4", [obj_a, obj_b], "What is <object0> doing to <object1>?")
    vr.ask_image("photo.jpg", [mask], "What is <object0>?")  # a still image: one mask per object

`VideoRefer.from_pretrained(..., engine="vllm")` answers the same questions through vLLM (`videorefer.engines`).
The checkpoint's `model_type` picks the family (`videorefer.families`); everything here goes through the family
contract (the processor's `load_video`, `__call__`, `text_inputs`, `collate`, `decode`, `visual_keys`; the model's
`encode_visual`, `prepare_multimodal_inputs`, `generate`, `full_precision_modules`). Follow-up questions about the
same video and objects reuse the decoded frames and the visual features (see `VisualCache`), and the language model's
key/value cache of the shared prompt prefix (`PrefixCache`), so only the new tokens run again.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from transformers import TextIteratorStreamer

from . import models  # noqa: F401  (registers every family)
from .caches import PrefixCache, VisualCache, objects_key, source_key
from .families import family_for_checkpoint
from .loading import DEFAULT_MODEL_ID, load_model_and_processor
from .prompts import DESCRIBE_PROMPT
from .region_inputs import RegionInputs
from .regions import ObjectMasks
from .video_io import Video, VideoSource

__all__ = ["VideoRefer", "load_model_and_processor", "DEFAULT_MODEL_ID"]  # the loader re-exported from .loading


def _is_still_image(video: Any) -> bool:
    """An (H, W, 3) array: a still image (a video array is (T, H, W, 3))."""
    return isinstance(video, np.ndarray) and video.ndim == 3


def _image_pixels(image: Any) -> np.ndarray:
    """A path, PIL image or array as uint8 (H, W, 3) pixels (a photo's EXIF orientation applied)."""
    from PIL import Image, ImageOps

    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as opened:
            return np.asarray(ImageOps.exif_transpose(opened).convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"an image must be (H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
    return pixels


def still_image_source(processor: Any, image: Any) -> np.ndarray:
    """What a family's processor is given for a still image (a path, PIL image or array): its (H, W, 3) pixels when
    the family answers images natively (`processor.answers_images`), else a one-frame video (1, H, W, 3)."""
    pixels = _image_pixels(image)
    return pixels if getattr(processor, "answers_images", False) else pixels[None]


class VideoRefer:
    """A loaded model + processor of any family with the questions people ask: `describe`, `ask`, `ask_stream`,
    `ask_batch`; and the steps they are made of (`prepare`, `encode`, `generate`) for tools that time or batch them."""

    def __init__(self, model: Any, processor: Any, cache_size: int = 4, engine: Any = None):
        self.model = model  # None when another engine (`engine`) runs the language model
        self.processor = processor
        self.engine = engine  # a `videorefer.engines.Engine`, or None: this process's transformers model
        self.cache = VisualCache(cache_size)
        self.prefix_cache = PrefixCache()
        self.reuse_prefix_cache = True
        self.generation_defaults: dict[str, Any] = dict(do_sample=False, max_new_tokens=512)

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike = DEFAULT_MODEL_ID,
        quantization: str | None = None,
        adapter: str | os.PathLike | None = None,
        engine: str = "transformers",
        engine_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> "VideoRefer":
        """Load any registered family's checkpoint (its config's `model_type` decides); see
        `load_model_and_processor` for the other arguments (device, device_map, dtype, attn_implementation).
        `engine="vllm"` answers through vLLM instead (`videorefer.engines`; `engine_args` go to `vllm.LLM`, e.g.
        `tensor_parallel_size`)."""
        if engine == "transformers":
            return cls(*load_model_and_processor(model_id, quantization=quantization, adapter=adapter, **kwargs))
        from .engines import load_engine

        if quantization not in (None, "none") or adapter is not None:
            raise ValueError(f"the {engine} engine loads the checkpoint itself: quantization and adapter are "
                             "options of the transformers engine")
        processor = family_for_checkpoint(str(model_id)).processor_class.from_pretrained(str(model_id))
        return cls(None, processor, engine=load_engine(engine, str(model_id), processor, **dict(engine_args or {})))

    @property
    def submit_size(self) -> int:
        """How many questions callers should hand over at once (`ask_batch`): 1 for this process's transformers model
        (one after another), the engine's for an engine that batches them itself."""
        return getattr(self.engine, "submit_size", 1)

    @property
    def device(self) -> torch.device:
        return next(p for p in self.model.parameters()).device

    @property
    def base_model(self) -> Any:
        """The family's model, under a peft wrapper if there is one."""
        model = self.model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def clear_caches(self) -> None:
        """Forget decoded videos, visual features and the last conversation's key/value cache."""
        self.cache = VisualCache(self.cache.size, self.cache.max_bytes)
        self.prefix_cache.clear()

    # ------------------------------------------------------------------ inputs
    def encode(self, inputs: Mapping[str, Any]) -> Any:
        """The model's visual features of a processor output (`processor(video, text, objects)` or `collate`)."""
        visual_inputs = {key: self._to_device(inputs[key]) for key in self.processor.visual_keys}
        with torch.inference_mode():
            return self.base_model.encode_visual(**visual_inputs)

    def _to_device(self, value: Any) -> Any:
        if isinstance(value, (torch.Tensor, RegionInputs)):
            return value.to(self.device)  # the model casts pixels to its own dtype
        return value

    def prepare(
        self,
        video: VideoSource | Video,
        regions: Sequence[ObjectMasks],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
    ) -> dict[str, Any]:
        """Model inputs for a question: `input_ids`, `attention_mask` `(1, L)` and `visual_features`.

        Reuses cached frames and visual features of the same video and regions. `allow_empty_masks` lets an all-zero
        mask through (its pooled feature is zero), as the official benchmark code does for annotations whose
        segmentation is null; by default an empty mask is an error. `num_frames` overrides the family's frame count.
        """
        text, history = self.processor.region_conversation(question, history, regions)
        frames = {"num_frames": num_frames} if num_frames else {}
        video_source = source_key(video)
        frame_count = num_frames or getattr(self.processor, "num_frames", None)
        visual_key = f"visual:{video_source}:{frame_count}:{objects_key(regions)}" if video_source else None
        cached = self.cache.get(visual_key) if visual_key else None
        if cached is not None:  # a follow-up: neither frames nor masks are processed again
            visual, layout = cached
            inputs = self.processor.text_inputs(text, history, layout)
        else:
            frames_needed = sorted({int(f) for obj in regions for f in obj})
            video_key = f"video:{video_source}:{frame_count}:{frames_needed}"
            decoded = self.cache.get(video_key) if video_source else None
            if decoded is None and _is_still_image(video):
                decoded = video  # only a family that answers images natively gets one (see `ask_image_stream`)
            if decoded is None:
                decoded = self.processor.load_video(video, frames_needed, **frames)
                if video_source is not None:
                    self.cache.put(video_key, decoded)
            inputs = self.processor(decoded, text, regions, history=history, allow_empty_masks=allow_empty_masks)
            visual = self.encode(inputs)
            if visual_key:
                if hasattr(visual, "frame_features"):
                    visual.frame_features = None  # keep only what later questions need
                self.cache.put(visual_key, (visual, inputs["layout"]))
        return {
            "input_ids": inputs["input_ids"].to(self.device),
            "attention_mask": inputs["attention_mask"].to(self.device),
            "visual_features": visual,
        }

    # ------------------------------------------------------------------ questions
    def ask(
        self,
        video: VideoSource | Video,
        regions: Sequence[ObjectMasks],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
        **generation: Any,
    ) -> str:
        """Answer `question` about `regions` (objects named `<object0>`, `<object1>`, ... in the question).

        `history` holds earlier (question, answer) turns as the caller asked them; region placeholders are laid out
        in the first question of the conversation (see `videorefer.prompts.region_conversation`).
        """
        if self.engine is not None:
            request = self._request(video, regions, question, history, num_frames, allow_empty_masks)
            return self.engine.answer([request], **self._engine_generation(generation))[0]
        inputs = self.prepare(video, regions, question, history, num_frames, allow_empty_masks=allow_empty_masks)
        return self.processor.decode(self.generate(inputs, **generation)[0])

    def _request(self, video, regions, question, history, num_frames, allow_empty_masks) -> Any:
        """An engine's request: the question laid out, the video decoded (cached) as `prepare` does."""
        from .engines import Request

        text, history = self.processor.region_conversation(question, history, regions)
        if not _is_still_image(video):
            frames = {"num_frames": num_frames} if num_frames else {}
            frame_count = num_frames or getattr(self.processor, "num_frames", None)
            frames_needed = sorted({int(f) for obj in regions for f in obj})
            video_source = source_key(video)
            video_key = f"video:{video_source}:{frame_count}:{frames_needed}"
            decoded = self.cache.get(video_key) if video_source else None
            if decoded is None:
                decoded = self.processor.load_video(video, frames_needed, **frames)
                if video_source is not None:
                    self.cache.put(video_key, decoded)
            video = decoded
        return Request(video, list(regions), text, list(history or []), allow_empty_masks)

    @property
    def describe_prompt(self) -> str:
        """The family's official captioning question: its processor's `describe_prompt`, else `DESCRIBE_PROMPT`."""
        return getattr(self.processor, "describe_prompt", DESCRIBE_PROMPT)

    def describe(self, video: VideoSource | Video, region: ObjectMasks, **kwargs: Any) -> str:
        """A detailed description of one object, with the family's official captioning question."""
        return self.ask(video, [region], self.describe_prompt, **kwargs)

    def ask_batch(
        self,
        items: Sequence[tuple[VideoSource | Video, Sequence[ObjectMasks], str]],
        num_frames: int | None = None,
        allow_empty_masks: bool = False,
        **generation: Any,
    ) -> list[str]:
        """Answers to several first questions `(video, regions, question)` at once: one padded batch through the
        processor's `collate` (the path training uses too). No history, no caches."""
        if not items:
            return []
        if self.engine is not None:  # every item submitted at once: the engine batches them as they come
            requests = [self._request(video, regions, question, None, num_frames, allow_empty_masks)
                        for video, regions, question in items]
            return self.engine.answer(requests, **self._engine_generation(generation))
        frames = {"num_frames": num_frames} if num_frames else {}
        singles = [
            self.processor(
                self.processor.load_video(video, sorted({int(f) for obj in regions for f in obj}), **frames),
                self.processor.region_conversation(question, None, regions)[0], regions,
                allow_empty_masks=allow_empty_masks,
            )
            for video, regions, question in items
        ]
        batch = self.processor.collate(singles, padding_side="left")
        keys = ("input_ids", "attention_mask", *self.processor.visual_keys)
        inputs = {key: self._to_device(batch[key]) for key in keys}
        with torch.inference_mode():
            ids = self.model.generate(**inputs, **self._generation(generation))
        return [self.processor.decode(row) for row in ids]

    def ask_stream(
        self,
        video: VideoSource | Video,
        regions: Sequence[ObjectMasks],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        num_frames: int | None = None,
        stop_event: threading.Event | None = None,
        allow_empty_masks: bool = False,
        **generation: Any,
    ) -> Iterator[str]:
        """Like `ask`, yielding the answer as it grows. Setting `stop_event` ends generation early."""
        if self.engine is not None:
            request = self._request(video, regions, question, history, num_frames, allow_empty_masks)
            yield from self.engine.stream(request, stop_event, **self._engine_generation(generation))
            return
        inputs = self.prepare(video, regions, question, history, num_frames, allow_empty_masks=allow_empty_masks)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=False, skip_special_tokens=True)
        settings = {**generation, "streamer": streamer}
        if stop_event is not None:
            from transformers import StoppingCriteria, StoppingCriteriaList

            class _Stop(StoppingCriteria):
                def __call__(self, input_ids, scores, **kwargs) -> bool:
                    return stop_event.is_set()

            settings["stopping_criteria"] = StoppingCriteriaList([_Stop()])
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.generate(inputs, **settings)
            except BaseException as error:  # re-raised in the caller's thread
                failure.append(error)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield text.strip()
        worker.join()
        if failure:
            raise failure[0]

    def ask_image_stream(
        self,
        image: Any,
        masks: Sequence[Any],
        question: str,
        history: Sequence[tuple[str, str]] | None = None,
        stop_event: threading.Event | None = None,
        **generation: Any,
    ) -> Iterator[str]:
        """`ask_stream` about a still image (a path, PIL image or (H, W, 3) uint8 array) with one (H, W) mask per
        object (`<object0>`, ...). A family that answers images natively (its processor's `answers_images`, e.g.
        VideoRefer-VL3) takes the image as one; the others get it as a one-frame video (VideoRefer-7B, as its
        official code does)."""
        regions = [{0: mask} for mask in masks]
        source = still_image_source(self.processor, image)
        yield from self.ask_stream(source, regions, question, history, stop_event=stop_event, **generation)

    def ask_image(self, image: Any, masks: Sequence[Any], question: str, **kwargs: Any) -> str:
        """The answer of `ask_image_stream`."""
        answer = ""
        for answer in self.ask_image_stream(image, masks, question, **kwargs):
            pass
        return answer

    @torch.inference_mode()
    def generate(self, prepared: Mapping[str, Any], **generation: Any) -> torch.Tensor:
        """New token ids `(1, n)` for `prepare`'s output; `generation` overrides `generation_defaults`.

        Reuses the key/value cache of a prompt prefix shared with the last call (`prefix_cache`), and stores this
        call's prompt and answer there for the next one.
        """
        settings = self._generation(generation)
        model = self.base_model
        embeds, attention_mask, _, _ = model.prepare_multimodal_inputs(
            prepared["input_ids"], prepared["attention_mask"], visual_features=prepared["visual_features"],
            padding_side="left",
        )
        room = int(settings.get("max_new_tokens", 512))
        cache = self.prefix_cache.take(embeds, room) if self.reuse_prefix_cache else None
        if cache is None:
            from transformers import DynamicCache, StaticCache

            if settings.get("cache_implementation") == "static":
                # Room for follow-ups, in steps of 512 so compiled decoding sees few distinct shapes.
                length = -(-(embeds.shape[1] + room + 256) // 512) * 512
                cache = StaticCache(config=model.config, max_cache_len=length)
            else:
                cache = DynamicCache(config=model.config)
        settings = {k: v for k, v in settings.items() if k != "cache_implementation"}
        ids = self.model.generate(inputs_embeds=embeds, attention_mask=attention_mask, cache=cache, **settings)
        if self.reuse_prefix_cache and embeds.shape[0] == 1:
            self.prefix_cache.store(embeds, model.get_input_embeddings()(ids[0]), cache)
        return ids

    def _engine_generation(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.generation_defaults, **overrides}

    def _generation(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        settings = {**self.generation_defaults, **overrides}
        tokenizer = self.processor.tokenizer
        settings.setdefault("eos_token_id", tokenizer.eos_token_id)
        settings.setdefault("pad_token_id", tokenizer.eos_token_id)
        if not settings.get("do_sample"):
            settings.pop("temperature", None)
            settings.pop("top_p", None)
        return settings
