"""One open and one decoding pass per upload: check it, read its header, decode the frames a request needs, and hand
the decoded frames on (to SAM 2 and, as a `videorefer.video_io.Video`, to the video LLM). An image is a one-frame
video (`image_mode`): decoded once on opening, handed to the video LLM as its (H, W, 3) pixels.

Before this, an upload was opened four times (a PyAV probe, a decord header read, a decord frame read, and the
model's own decoding of the path for every question).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from videorefer.caches import source_key
from videorefer.video_io import Video

from .budget import Budget
from .limits import IMAGE_SUFFIXES, VIDEO_SUFFIXES, DemoError, Limits, VideoInfo, _short

logger = logging.getLogger(__name__)


class VideoFile:
    """An accepted upload, opened once with PyAV (an image: with Pillow, as a one-frame video): `info` from the
    header, `decode(indices)` in one pass.

    Raises `DemoError` (a sentence for the visitor) for a missing file, a wrong suffix, a file over the size limit,
    a file that is not a video (or image), one without frames, or one over the duration / resolution limits.
    Use as a context manager (`with VideoFile(path, limits) as video: ...`).
    """

    _container = None
    _image: np.ndarray | None = None  # an image's upright pixels (H, W, 3), decoded on opening

    def __init__(self, path: str | os.PathLike | None, limits: Limits):
        import av

        if path is None or str(path) == "":
            raise DemoError("Please upload a video first (or pick the example).")
        if not isinstance(path, (str, os.PathLike)):
            raise DemoError(f"The video must be a file, got {type(path).__name__}.")
        file = Path(path)
        if not file.is_file():
            raise DemoError("The video file could not be found; please upload it again.")
        self.name, self.path, self.limits = file.name, str(file), limits
        if file.suffix.lower() in IMAGE_SUFFIXES:
            from .image_mode import open_image

            self.info, self._image = open_image(file, limits)
            return
        if file.suffix.lower() not in VIDEO_SUFFIXES:
            raise DemoError(f"'{file.name}' is not a supported video: use one of {', '.join(VIDEO_SUFFIXES)} "
                            f"(or an image: {', '.join(IMAGE_SUFFIXES)}).")
        size_mb = file.stat().st_size / 1e6
        if size_mb > limits.max_file_mb:
            raise DemoError(f"The file is {size_mb:.1f} MB; the limit is {limits.max_file_mb:g} MB.")
        try:
            self._container = av.open(self.path)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as error:
            raise self._unreadable(error) from None
        try:
            self.info = self._read_header(limits)
        except BaseException:
            self.close()
            raise

    def _unreadable(self, error: BaseException) -> DemoError:
        logger.info("could not read %s as a video: %r", self.path, error)
        return DemoError(f"'{self.name}' could not be read as a video (is it corrupt?): "
                         f"{_short(error).replace(self.path, self.name)}")

    def _read_header(self, limits: Limits) -> VideoInfo:
        """The video's size, rate and frame count from the container, refused for its rate, length or size before any
        frame is decoded. A file without a frame count (some webm / avi) is refused by its duration when the container
        gives one; otherwise its packets are counted (demuxed, not decoded) up to `max_frames` + 1."""
        if not self._container.streams.video:
            raise DemoError(f"'{self.name}' has no video frames.")
        stream = self._container.streams.video[0]
        if stream.codec_context is None:  # a stream whose codec FFmpeg does not know (a corrupt header)
            raise DemoError(f"'{self.name}' could not be read as a video (is it corrupt?): unknown video codec")
        fps = float(stream.average_rate) if stream.average_rate else None
        height, width = int(stream.codec_context.height), int(stream.codec_context.width)
        if max(height, width) > limits.max_long_side or min(height, width) > limits.max_short_side:
            raise DemoError(
                f"The video is {width}×{height} px; the limit is {limits.max_long_side}×{limits.max_short_side}. "
                "Please downscale it."
            )
        if fps is not None and fps > limits.max_fps:
            raise DemoError(f"The video has {fps:g} frames per second; the limit is {limits.max_fps:g}. "
                            "Please re-encode it at a lower frame rate.")
        total, counted = int(stream.frames or 0), False
        if total <= 0:
            self._check_seconds(self._duration(stream), limits)
            total, counted = self._count_packets(limits), True
        if total <= 0 or height <= 0 or width <= 0:
            raise DemoError(f"'{self.name}' has no video frames.")
        if total > limits.max_frames:
            shown = f"more than {limits.max_frames}" if counted else str(total)
            raise DemoError(f"The video has {shown} frames; the limit is {limits.max_frames} ({limits.max_seconds:g} s "
                            f"at {limits.max_fps:g} fps). Please trim it.")
        info = VideoInfo(self.path, total, fps, height, width)
        self._check_seconds(info.seconds, limits)
        return info

    def _duration(self, stream) -> float | None:
        if stream.duration and stream.time_base:
            return float(stream.duration * stream.time_base)
        return self._container.duration / 1e6 if self._container.duration else None

    @staticmethod
    def _check_seconds(seconds: float | None, limits: Limits) -> None:
        if seconds is not None and seconds > limits.max_seconds:
            raise DemoError(f"The video lasts {seconds:.1f} s; the limit is {limits.max_seconds:g} s. Please trim it.")

    def _count_packets(self, limits: Limits) -> int:
        """Frames counted as the video stream's packets (demuxed only), stopping past `max_frames` or the decoding
        budget."""
        import av

        budget = Budget(limits.decode_seconds, f"Reading '{self.name}'", "Please upload a shorter video.")
        count = 0
        try:
            for packet in self._container.demux(video=0):
                if packet.size and packet.pts is not None:
                    count += 1
                    if count > limits.max_frames:
                        break
                    if count % 256 == 0:
                        budget.check()
            self._container.seek(0)
        except av.error.FFmpegError as error:
            raise self._unreadable(error) from None
        return count

    def decode(self, indices: Iterable[int], budget: Budget | None = None) -> np.ndarray:
        """Frames `indices` (raw, any order, repeats allowed) as uint8 (len(indices), H, W, 3), decoded in one
        in-order pass (faster than seeking for the few dozen frames of a short clip), within `budget` (default: the
        limits' `decode_seconds`). A frame of another size than the header's is refused."""
        import av

        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < self.info.total_frames]
        if bad:
            raise DemoError(f"Frame {bad[0]} is outside the video (0..{self.info.total_frames - 1}).")
        if self._image is not None:
            return np.repeat(self._image[None], len(indices), axis=0)
        budget = budget or Budget(self.limits.decode_seconds, f"Decoding '{self.name}'",
                                  "Please upload a shorter or smaller video.")
        wanted, found, last = set(indices), {}, max(indices, default=-1)
        try:
            self._container.seek(0)
            stream = self._container.streams.video[0]
            for i, frame in enumerate(self._container.decode(stream)):
                if i in wanted:
                    if (frame.height, frame.width) != (self.info.height, self.info.width):
                        raise DemoError(f"'{self.name}' changes size: frame {i} is {frame.width}×{frame.height}, "
                                        f"the header says {self.info.width}×{self.info.height}.")
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
                if i % 32 == 0:
                    budget.check()
        except av.error.FFmpegError as error:
            raise self._unreadable(error) from None
        missing = sorted(wanted - found.keys())
        if missing:
            if not found:
                raise DemoError(f"'{self.name}' has no video frames.")
            raise DemoError(f"'{self.name}' ends early: frame {missing[0]} could not be decoded (is it truncated?).")
        return np.stack([found[i] for i in indices])

    @property
    def is_image(self) -> bool:
        return self._image is not None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def as_model_video(
    info: VideoInfo, indices: Sequence[int], frames: np.ndarray, sampling: tuple[Sequence[int], Sequence[float] | None]
) -> Video | np.ndarray:
    """The decoded frames (raw `indices`, which hold the model's sampled frames) as the `videorefer.video_io.Video`
    the model takes, so that it does not decode the file again; for an image, its (H, W, 3) pixels
    (`service.ask_stream` answers those through `image_mode.ask_image_stream`).

    `sampling`: `(sampled raw indices, their timestamps or None)`, what the loaded family's processor samples
    (`Backend.model_frames`): the Video is exactly what its `load_video` would have decoded."""
    from .image_mode import is_image

    if is_image(info.path):
        return frames[0]
    sampled, timestamps = list(sampling[0]), sampling[1]
    row = {raw: k for k, raw in enumerate(indices)}
    missing = sorted(set(sampled) - row.keys())
    if missing:
        raise ValueError(f"the model's frames {missing} were not decoded")
    return Video(
        frames=frames[[row[raw] for raw in sampled]],
        frame_indices=list(sampled),
        total_frames=info.total_frames,
        fps=info.fps,
        extra={raw: frames[k] for raw, k in row.items() if raw not in set(sampled)},
        key=source_key(info.path),
        timestamps=list(timestamps) if timestamps is not None else None,
    )
