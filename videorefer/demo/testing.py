"""Helpers for the demo's tests: small synthetic videos, broken files, a free port, a served tiny demo."""

from __future__ import annotations

import socket
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
