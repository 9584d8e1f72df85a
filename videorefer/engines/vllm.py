"""`VLLMEngine`: VideoRefer answered by vLLM in this process (`vllm.LLM` / its `LLMEngine`), through the plugin in
`videorefer.serving.vllm` (registered by the package's `vllm.general_plugins` entry point).

Generation follows the transformers path: greedy by default, at most 512 new tokens, stopping at the tokenizer's
end-of-turn token, the checkpoint's repetition penalty on generated tokens only (`serving.vllm.penalty`), answers
decoded by the family's processor. `tensor_parallel_size`, `pipeline_parallel_size`, `distributed_executor_backend`
("ray" for several machines) and any other `vllm.LLM` argument pass through.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from typing import Any, Iterator, Sequence

import numpy as np

from ..caches import objects_key, source_key
from . import Request

__all__ = ["VLLMEngine", "sampling_params", "generation_settings", "vllm_prompt"]

_GREEDY_ONLY = ("temperature", "top_p", "top_k")


def _default_dtype() -> str:
    import torch

    return "auto" if torch.cuda.is_available() else "float32"


def sampling_params(generation: dict[str, Any], penalty: float, stop_token_ids: list[int]) -> Any:
    """`vllm.SamplingParams` for transformers-style generation settings (`max_new_tokens`, `min_new_tokens`,
    `do_sample`, `temperature`, `top_p`, `top_k`, `repetition_penalty`); anything else is refused by name."""
    from vllm import SamplingParams

    from ..serving.vllm.penalty import PENALTY_KEY

    settings = dict(generation)
    known = {"max_new_tokens", "min_new_tokens", "do_sample", "repetition_penalty", "eos_token_id", "pad_token_id",
             *_GREEDY_ONLY}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"the vllm engine does not take the generation settings {unknown}")
    sample = bool(settings.get("do_sample"))
    params = dict(
        max_tokens=int(settings.get("max_new_tokens") or 512),
        min_tokens=int(settings.get("min_new_tokens") or 0),
        temperature=float(settings.get("temperature") or 1.0) if sample else 0.0,
        stop_token_ids=stop_token_ids,
        extra_args={PENALTY_KEY: float(settings.get("repetition_penalty", penalty) or 1.0)},
        skip_special_tokens=True,
    )
    if sample:
        params.update(top_p=float(settings.get("top_p") or 1.0), top_k=int(settings.get("top_k") or 0) or -1)
    return SamplingParams(**params)


def _visual_key(request: Request) -> str:
    """A stable key of what the item's embeddings depend on: the decoded frames, the objects, and the conversation's
    first question (it places the video and region tokens, so it sets their order), not the later turns. vLLM keys
    its encoder cache and the prefix-cache blocks of the item with it, so a follow-up about the same video and objects
    reuses the visual tokens and the key/value blocks of the conversation so far (its processor cache, which would
    also hand back the first question's prompt ids, is off)."""
    video = request.video
    digest = hashlib.blake2b(digest_size=16)
    key = source_key(video)
    if key is None:
        digest.update(np.ascontiguousarray(np.asarray(getattr(video, "frames", video))).data)
    else:
        digest.update(key.encode())
    digest.update(repr((getattr(video, "frame_indices", None), getattr(video, "timestamps", None))).encode())
    digest.update(objects_key(request.objects).encode())
    digest.update((request.history[0][0] if request.history else request.question).encode())
    return digest.hexdigest()


def generation_settings(model_id: str | os.PathLike, processor: Any) -> tuple[float, list[int]]:
    """`(repetition penalty, stop token ids)` of a checkpoint: its generation config's penalty (applied to generated
    tokens only) and its tokenizer's end-of-turn token, as the transformers path uses them."""
    from transformers import GenerationConfig

    try:
        generation_config = GenerationConfig.from_pretrained(str(model_id))
    except OSError:
        generation_config = GenerationConfig()
    return float(generation_config.repetition_penalty or 1.0), [int(processor.tokenizer.eos_token_id)]


def vllm_prompt(placeholder_id: int, request: Request) -> dict[str, Any]:
    """The vLLM prompt of one request (its placeholder token, the `videorefer` item, a stable cache key)."""
    from ..serving.vllm.processing import request_prompt

    return request_prompt(placeholder_id, request.video, request.objects, request.question, request.history,
                          request.allow_empty_masks, uuid=_visual_key(request))


class VLLMEngine:
    """vLLM for one checkpoint of any family the plugin serves. Thread-safe: calls take turns on the engine."""

    submit_size = 256  # questions a caller hands over at once (the benchmarks: written to disk after each group)

    def __init__(self, model_id: str | os.PathLike, processor: Any, enable_prefix_caching: bool = True,
                 **llm_args: Any):
        from vllm import LLM

        from ..serving.vllm import MODALITY
        from ..serving.vllm.penalty import OutputRepetitionPenalty
        from ..serving.vllm.processing import embed_token_ids

        self.processor = processor
        self.model_id = str(model_id)
        llm_args.setdefault("dtype", _default_dtype())
        self.llm = LLM(
            self.model_id, enable_prefix_caching=enable_prefix_caching,
            logits_processors=[OutputRepetitionPenalty], limit_mm_per_prompt={MODALITY: 1},
            generation_config="vllm",  # the API's settings, not the checkpoint's sampling defaults
            mm_processor_cache_gb=0,  # the item's key leaves out the text (see `_visual_key`)
            **llm_args,
        )
        self.repetition_penalty, self.stop_token_ids = generation_settings(self.model_id, processor)
        self.placeholder_id = embed_token_ids(self.llm.llm_engine.model_config.hf_config)[0]
        self._lock = threading.Lock()
        self._ids = itertools.count()

    def prompt(self, request: Request) -> dict[str, Any]:
        return vllm_prompt(self.placeholder_id, request)

    def answer(self, requests: Sequence[Request], return_exceptions: bool = False, **generation: Any) -> list[Any]:
        """Every request's answer, all submitted at once. A request the processor refuses does not stop the others:
        its error is raised after they finish, or put in its place with `return_exceptions`."""
        outputs = self.outputs(requests, **generation)
        errors = [output for output in outputs if isinstance(output, Exception)]
        if errors and not return_exceptions:
            raise errors[0]
        return [o if isinstance(o, Exception) else self.processor.decode(list(o.outputs[0].token_ids))
                for o in outputs]

    def outputs(self, requests: Sequence[Request], logprobs: int | None = None, **generation: Any) -> list[Any]:
        """vLLM's final `RequestOutput` of each request (`outputs[0].token_ids`; `outputs[0].logprobs`, the top
        `logprobs` entries per step, when asked; `num_cached_tokens`), or the exception that refused it."""
        results: list[Any] = [None] * len(requests)
        for index, output, finished in self.stream_many(requests, logprobs=logprobs, **generation):
            if finished:
                results[index] = output
        return results

    def stream_many(self, requests: Sequence[Request], logprobs: int | None = None,
                    **generation: Any) -> Iterator[tuple[int, Any, bool]]:
        """`(index, RequestOutput so far, finished)` each time one of `requests` advances, all of them batched
        together; a request the processor refuses comes once, finished, as its exception."""
        params = sampling_params(generation, self.repetition_penalty, self.stop_token_ids)
        params.logprobs = logprobs
        with self._lock:
            engine = self.llm.llm_engine
            index_of: dict[str, int] = {}
            refused: list[tuple[int, Exception]] = []
            for index, request in enumerate(requests):
                request_id = f"req-{next(self._ids)}"
                try:
                    engine.add_request(request_id, self.prompt(request), params)
                    index_of[request_id] = index
                except Exception as error:  # refused by the processor: this request only
                    refused.append((index, error))
            for index, error in refused:
                yield index, error, True
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.request_id in index_of:
                        yield index_of[output.request_id], output, output.finished

    def stream(self, request: Request, stop_event: threading.Event | None = None,
               **generation: Any) -> Iterator[str]:
        """The answer as it grows: the engine steps until this request finishes (or `stop_event` is set)."""
        params = sampling_params(generation, self.repetition_penalty, self.stop_token_ids)
        request_id = f"stream-{next(self._ids)}"
        with self._lock:
            engine = self.llm.llm_engine
            engine.add_request(request_id, self.prompt(request), params)
            finished = False
            try:
                while not finished and not (stop_event is not None and stop_event.is_set()):
                    for output in engine.step():
                        if output.request_id == request_id:
                            finished = output.finished
                            yield self.processor.decode(list(output.outputs[0].token_ids))
            finally:
                if not finished:
                    engine.abort_request([request_id])

    def close(self) -> None:
        del self.llm
