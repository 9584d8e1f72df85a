"""Time budgets per request (decoding, segmentation, tracking): no visitor holds the model slot for long, and work
whose visitor left or cancelled stops at the next step.

`Budget(seconds, what, advice, stop_event)`: `check()` raises `DemoError` once the budget is spent or the stop event
is set; `progress(report)` is a `(done, total)` callback for `SegmentationSession.propagate` that checks before
passing the progress on. The seconds come from `limits.Limits` (`decode_seconds`, `segment_seconds`, `track_seconds`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .limits import DemoError


class Budget:
    def __init__(self, seconds: float, what: str, advice: str = "", stop_event: threading.Event | None = None):
        self.seconds, self.what, self.advice, self.stop_event = float(seconds), what, advice, stop_event
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def check(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            raise DemoError(f"{self.what} was stopped.")
        if self.elapsed > self.seconds:
            advice = f" {self.advice}" if self.advice else ""
            raise DemoError(f"{self.what} took longer than {self.seconds:g} s, the limit per request.{advice}")

    def progress(self, report: Callable[[int, int], None] | None = None) -> Callable[[int, int], None]:
        def step(done: int, total: int) -> None:
            self.check()
            if report is not None:
                report(done, total)

        return step
