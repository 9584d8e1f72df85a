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


def _request_key(request: Request) -> str:
    """A stable key of everything the processor reads (vLLM's caches use it instead of hashing the frames)."""
    video = request.video
    digest = hashlib.blake2b(digest_size=16)
    key = source_key(video)
    if key is None:
        frames = getattr(video, "frames", video)
        digest.update(np.ascontiguousarray(np.asarray(frames)).data)
        digest.update(repr(getattr(video, "frame_indices", None)).encode())
    else:
        digest.update(key.encode())
    digest.update(objects_key(request.objects).encode())
    digest.update(repr((request.question, list(request.history), request.allow_empty_masks)).encode())
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
                          request.allow_empty_masks, uuid=_request_key(request))


class VLLMEngine:
    """vLLM for one checkpoint of any family the plugin serves. Thread-safe: calls take turns on the engine."""

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
        return [o if isinstance(o, Exception) else self.processor.decode(list(o.token_ids)) for o in outputs]

    def outputs(self, requests: Sequence[Request], logprobs: int | None = None, **generation: Any) -> list[Any]:
        """vLLM's `CompletionOutput` of each request (ids; `logprobs` top entries per step when asked), or the
        exception that refused it."""
        params = sampling_params(generation, self.repetition_penalty, self.stop_token_ids)
        params.logprobs = logprobs
        results: dict[str, Any] = {}
        order = []
        with self._lock:
            engine = self.llm.llm_engine
            for request in requests:
                request_id = f"req-{next(self._ids)}"
                order.append(request_id)
                try:
                    engine.add_request(request_id, self.prompt(request), params)
                except Exception as error:  # refused by the processor: this request only
                    results[request_id] = error
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if output.finished:
                        results[output.request_id] = output.outputs[0]
        return [results[request_id] for request_id in order]

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
