"""Visitors coming and going: which state belongs to which browser session, what each holds, and what is freed when
they leave, go idle, or others need the room.

A visitor's memory is the decoded frames, masks and SAM 2 image features of their video (their segmentation session)
and the video LLM's cached frames and visual tokens of their video (`VideoRefer.cache`). The bounds are
`limits.Limits`: `session_mb` per visitor (checked before tracking, restoring or finding adds masks),
`sessions_mb` for every visitor together (the longest idle are closed first) and `session_idle_minutes`.
When the tab closes (`demo.unload`) their running answer is stopped and all of it is freed at once (gradio gives a
reloaded page a new session, so the state cannot come back); a visitor idle too long is closed the same way, by a
background thread. A closed state keeps only why it was closed (`DemoState.closed`): the next event shows that.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from videorefer.caches import source_key

from .limits import DemoError, Limits
from .playback import release_files
from .state import DemoState, live_state

logger = logging.getLogger(__name__)
MB = 2**20


class Sessions:
    """session hash -> the visitor's state: its uid, resolved to the copy their last event used (`state.live_state`;
    ZeroGPU hands back copies), so that closing frees what the visitor really holds and a replaced copy is not kept."""

    def __init__(self, backend: Any, limits: Limits | None = None):
        self.backend = backend
        self.limits = limits or backend.settings.limits
        self._uids: dict[str, str] = {}  # session hash -> DemoState.uid
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self.states())

    def states(self) -> list[DemoState]:
        """The registered visitors' live states."""
        with self._lock:
            live = {session: live_state(uid) for session, uid in self._uids.items()}
            for session in [s for s, state in live.items() if state is None]:  # gradio dropped it
                del self._uids[session]
        return [state for state in live.values() if state is not None]

    @property
    def nbytes(self) -> int:
        """Bytes held by every registered visitor's state."""
        return sum(state.nbytes for state in self.states())

    def register(self, request: Any, state: DemoState) -> None:
        state.touch()
        session = getattr(request, "session_hash", None)
        if session:
            with self._lock:
                previous = self._uids.get(session)
                self._uids[session] = state.uid
            if previous is not None and previous != state.uid and (old := live_state(previous)) is not None:
                self.close(old, None)
        self.make_room(keep=state)
        self._start_reaper()

    def leave(self, request: Any) -> None:
        """The visitor's tab closed: stop their answer and free their frames, masks and GPU memory."""
        session = getattr(request, "session_hash", None)
        with self._lock:
            uid = self._uids.get(session) if session else None
        state = live_state(uid) if uid else None
        if state is not None:
            self.close(state, "This page was closed; please reload it and load the video again.")
            logger.info("visitor %s left: answer stopped, GPU caches freed, frames and masks freed", session[:8])

    def release(self, state: DemoState | None) -> None:
        """The state is gone for good (gradio deleted it): memory, files and the registry entry."""
        if state is None:
            return
        self.close(state, state.closed)
        state.forget_stop_event()

    def close(self, state: DemoState, reason: str | None) -> None:
        """Stop the visitor's work and free everything their state holds; `reason` is what their next event says."""
        state.stop_event.set()
        self.free_gpu_memory(state)
        release_files(state)
        state.closed = reason or "Your session has ended; please load the video again."
        state.session = None  # the decoded frames, masks and SAM 2 features
        with self._lock:
            for session in [s for s, uid in self._uids.items() if uid == state.uid]:
                del self._uids[session]

    def make_room(self, keep: DemoState | None = None) -> int:
        """Close the longest idle visitors (never `keep`) until every state together fits `sessions_mb`; returns how
        many were closed."""
        states = sorted(self.states(), key=lambda s: s.last_used)
        total, closed = sum(s.nbytes for s in states), 0
        for state in states:
            if total <= self.limits.sessions_mb * MB:
                break
            if keep is not None and state.uid == keep.uid:
                continue
            total -= state.nbytes
            self.close(state, "Your session was closed to make room for other visitors; please load the video again.")
            closed += 1
        return closed

    def reap(self, now: float | None = None) -> int:
        """Close every visitor idle for more than `session_idle_minutes`; returns how many."""
        now = time.monotonic() if now is None else now
        idle = self.limits.session_idle_minutes * 60
        stale = [s for s in self.states() if now - s.last_used > idle]
        for state in stale:
            self.close(state, f"Your session was idle for more than {self.limits.session_idle_minutes:g} minutes "
                              "and was closed to free memory; please load the video again.")
        return len(stale)

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="videorefer-sessions", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        period = max(1.0, min(30.0, self.limits.session_idle_minutes * 60 / 4))
        while not self._stop.wait(period):
            try:
                self.reap()
                self.make_room()
            except Exception:  # noqa: BLE001 - the reaper must outlive any one bad state
                logger.exception("closing idle sessions failed")

    def stop(self) -> None:
        self._stop.set()

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


def check_room(state: DemoState, objects: int, frames: int, limits: Limits, what: str) -> None:
    """`DemoError` unless `objects` masks on each of `frames` frames fit the visitor's `session_mb` beside their
    decoded frames."""
    frame_bytes = state.info.height * state.info.width
    need = len(state.frame_indices) * frame_bytes * 3 + objects * frames * frame_bytes
    if need > limits.session_mb * MB:
        raise DemoError(f"{what} would hold {need / MB:.0f} MB of frames and masks; the limit per visitor is "
                        f"{limits.session_mb} MB: use fewer objects or a smaller video.")


def drop_cached_video(model: Any, path: str) -> int:
    """Remove the entries of `model.cache` (`videorefer.caches.VisualCache`) about the video at `path`; returns how
    many."""
    cache = getattr(model, "cache", None)
    if cache is None:
        return 0
    return cache.drop(source_key(path) or path)  # an upload already removed: match on the path alone
