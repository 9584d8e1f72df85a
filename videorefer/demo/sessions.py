"""Visitors coming and going: which state belongs to which browser session, and what is freed when they leave.

A visitor's GPU memory is the SAM 2 image features of their video (the segmentation session's feature store) and the
video LLM's cached frames and visual tokens of their video (`VideoRefer.cache`). When the tab closes (`demo.unload`)
their running answer is stopped and that memory freed at once (the caches refill on demand if they come back within
gradio's grace period); when gradio finally deletes the state (`gr.State(delete_callback=...)`), their files go too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from videorefer.caches import source_key

from .playback import release_files
from .state import DemoState

logger = logging.getLogger(__name__)


class Sessions:
    """session hash -> the visitor's `DemoState` (only what is needed to clean up after them)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self._states: dict[str, DemoState] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._states)

    def register(self, request: Any, state: DemoState) -> None:
        session = getattr(request, "session_hash", None)
        if session:
            with self._lock:
                previous = self._states.get(session)
                self._states[session] = state
            if previous is not None and previous is not state:
                self.free_gpu_memory(previous)

    def leave(self, request: Any) -> None:
        """The visitor's tab closed: stop their answer and free their GPU memory."""
        session = getattr(request, "session_hash", None)
        with self._lock:
            state = self._states.get(session) if session else None
        if state is not None:
            state.stop_event.set()
            self.free_gpu_memory(state)
            logger.info("visitor %s left: answer stopped, GPU caches freed", session[:8])

    def release(self, state: DemoState | None) -> None:
        """The state is gone for good: GPU memory, files and the registry entry."""
        if state is None:
            return
        state.stop_event.set()
        self.free_gpu_memory(state)
        release_files(state)
        state.forget_stop_event()
        with self._lock:
            for session in [s for s, kept in self._states.items() if kept.uid == state.uid]:
                del self._states[session]

    def free_gpu_memory(self, state: DemoState) -> None:
        """Drop the SAM 2 features of the visitor's video and the model's cached frames / visual tokens of it."""
        store = getattr(state.session, "_store", None)
        if store is not None:
            store.clear()
        drop_cached_video(self.backend.model, state.info.path)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except RuntimeError:  # no usable CUDA driver: nothing was cached there
            logger.debug("torch.cuda.empty_cache failed", exc_info=True)


def drop_cached_video(model: Any, path: str) -> int:
    """Remove the entries of `model.cache` (`videorefer.caches.VisualCache`) about the video at `path`; returns how
    many."""
    cache = getattr(model, "cache", None)
    if cache is None:
        return 0
    return cache.drop(source_key(path) or path)  # an upload already removed: match on the path alone
