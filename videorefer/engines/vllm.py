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
import queue
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
    """vLLM for one checkpoint of any family the plugin serves. Thread-safe: one thread drives the engine, so the
    requests of every caller (the demo's visitors, a benchmark's items) are batched together as they come."""

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
        self._ids = itertools.count()
        self._wake = threading.Condition()  # guards the fields below; wakes the driver thread
        self._incoming: list[tuple[str, Request, Any]] = []
        self._aborts: list[str] = []
        self._routes: dict[str, tuple[queue.Queue, int]] = {}  # request id -> (its caller's inbox, its index there)
        self._driver: threading.Thread | None = None
        self._closed = False

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
        """`(index, RequestOutput so far, finished)` each time one of `requests` advances. They are batched with each
        other and with every other caller's requests (one thread drives the engine); a request the processor refuses
        comes once, finished, as its exception. Leaving the loop early aborts the unfinished ones."""
        params = sampling_params(generation, self.repetition_penalty, self.stop_token_ids)
        params.logprobs = logprobs
        inbox: queue.Queue = queue.Queue()
        ids = {f"req-{next(self._ids)}": index for index in range(len(requests))}
        with self._wake:
            if self._closed:
                raise RuntimeError("the vLLM engine is closed")
            for (request_id, index), request in zip(ids.items(), requests):
                self._routes[request_id] = (inbox, index)
                self._incoming.append((request_id, request, params))
            self._wake.notify()
        self._start_driver()
        unfinished = set(ids)
        try:
            while unfinished:
                request_id, output = inbox.get()
                finished = isinstance(output, Exception) or output.finished
                if finished:
                    unfinished.discard(request_id)
                yield ids[request_id], output, finished
        finally:
            if unfinished:
                with self._wake:
                    self._aborts.extend(unfinished)
                    self._wake.notify()

    def stream(self, request: Request, stop_event: threading.Event | None = None,
               **generation: Any) -> Iterator[str]:
        """The answer as it grows (batched with everything else running); setting `stop_event` ends it."""
        for _, output, _ in self.stream_many([request], **generation):
            if isinstance(output, Exception):
                raise output
            yield self.processor.decode(list(output.outputs[0].token_ids))
            if stop_event is not None and stop_event.is_set():
                break

    # ------------------------------------------------------------------ the driver thread
    def _start_driver(self) -> None:
        with self._wake:
            if self._driver is None:
                self._driver = threading.Thread(target=self._drive, name="vllm-engine", daemon=True)
                self._driver.start()

    def _drive(self) -> None:
        """Adds new requests (processing them: the processor refuses a bad one alone), aborts abandoned ones and steps
        the engine while anything runs; each output goes to its caller's inbox."""
        engine = self.llm.llm_engine
        while True:
            with self._wake:
                while not (self._incoming or self._aborts or self._closed or engine.has_unfinished_requests()):
                    self._wake.wait()
                if self._closed:
                    return
                incoming, self._incoming = self._incoming, []
                aborts, self._aborts = self._aborts, []
            for request_id, request, params in incoming:
                try:
                    engine.add_request(request_id, self.prompt(request), params)
                except Exception as error:  # refused by the processor: this request only
                    self._deliver(request_id, error, finished=True)
            if aborts:
                engine.abort_request(aborts)
                with self._wake:
                    for request_id in aborts:
                        self._routes.pop(request_id, None)
            if engine.has_unfinished_requests():
                try:
                    outputs = engine.step()
                except Exception as error:  # every running request learns of it; the engine keeps serving
                    for request_id in list(self._routes):
                        self._deliver(request_id, error, finished=True)
                    continue
                for output in outputs:
                    self._deliver(output.request_id, output, output.finished)

    def _deliver(self, request_id: str, output: Any, finished: bool) -> None:
        with self._wake:
            route = self._routes.pop(request_id, None) if finished else self._routes.get(request_id)
        if route is not None:
            route[0].put((request_id, output))

    def close(self) -> None:
        """Stop the driver thread and free the engine."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        if self._driver is not None:
            self._driver.join(timeout=60)
        del self.llm
