"""Helpers for the demo's tests: small synthetic videos, broken files, a free port, resident memory, regions."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np


def write_video(path: str | Path, num_frames: int, width: int = 64, height: int = 48, fps: int = 5) -> Path:
    """An mp4 of a white square moving right over a changing background (`num_frames` = 0 writes a file with a
    video header and no frames)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()
        for i in range(num_frames):
            frame = np.zeros((height, width, 3), np.uint8)
            frame[..., 0] = (i * 20) % 255
            x = (i * 2) % max(1, width - height // 2)
            frame[height // 4: 3 * height // 4, x: x + height // 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_junk(path: str | Path, size: int = 4096) -> Path:
    """A file of random bytes (a 'corrupt video' when named .mp4)."""
    path = Path(path)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resident_bytes() -> int:
    """This process's resident memory (Linux `/proc/self/statm`)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class PeakMemory:
    """`with PeakMemory() as memory: ...` samples this process's resident memory every 10 ms; afterwards
    `memory.extra` is the peak over the level at the start (bytes)."""

    def __enter__(self) -> PeakMemory:
        self.start = self.peak = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, resident_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())
        self.extra = self.peak - self.start


def square_rle(height: int = 48, width: int = 64, side: int = 20) -> dict:
    """COCO RLE of a centred `side`-pixel square on a `height`×`width` frame (the regions of `write_video`'s size)."""
    from videorefer.regions import mask_to_rle

    mask = np.zeros((height, width), bool)
    top, left = (height - side) // 2, (width - side) // 2
    mask[top: top + side, left: left + side] = True
    return mask_to_rle(mask)


def polygon_regions(*xy: float, height: int = 48, width: int = 64) -> dict:
    """A regions document whose one object is the polygon `xy` (x0, y0, x1, y1, ...) on frame 0."""
    return {"height": height, "width": width, "objects": [{"name": "a", "masks": {"0": [list(xy)]}}]}
