"""Video decoding and frame sampling.

Frames are sampled uniformly at segment midpoints, as the official VideoRefer / VideoLLaMA2 code does, and decoded in
one pass together with any extra frames that object masks refer to. decord is used when installed (fastest here);
PyAV is the fallback. A video can also be a folder of frame images, a uint8 array or a list of images.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np
from PIL import Image

__all__ = [
    "Video",
    "VideoSource",
    "sample_frame_indices",
    "load_video",
    "read_frames",
    "video_info",
    "FOLDER_FPS",
    "GIF_FPS",
    "uniform_frame_indices",
    "sample_frames_by_fps",
    "sample_file_frames_by_fps",
    "load_video_by_fps",
]

logger = logging.getLogger(__name__)
_FALLBACK_LOGGED: set[str] = set()


def _log_fallback_once(kind: str, reason: str) -> None:
    """Say once per process (per kind of cause) why PyAV decodes instead of decord."""
    if kind not in _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.add(kind)
        logger.info("decoding videos with PyAV instead of decord: %s", reason)


# decord's own decoding threads (0: one per core).
DECORD_THREADS = int(os.environ.get("VIDEOREFER_DECORD_THREADS", "0"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VideoSource = Union[str, os.PathLike, np.ndarray, Sequence[Union[Image.Image, np.ndarray]]]


@dataclass
class Video:
    """Sampled frames of a video plus the extra frames that masks are drawn on."""

    frames: np.ndarray  # (t, H, W, 3) uint8, the sampled frames
    frame_indices: list[int]  # raw frame index of each sampled frame
    total_frames: int
    fps: float | None = None
    extra: dict[int, np.ndarray] = field(default_factory=dict)  # raw index -> (H, W, 3), not among the sampled
    key: str | None = None  # identifies the source (e.g. path and modification time), for caches
    timestamps: list[float] | None = None  # seconds of each sampled frame, when the sampling is time-based (VL3)

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    def frame(self, index: int) -> np.ndarray:
        """The raw frame `index` if it was decoded (sampled or extra)."""
        if index in self.extra:
            return self.extra[index]
        if index in self.frame_indices:
            return self.frames[self.frame_indices.index(index)]
        raise ValueError(f"frame {index} was not decoded (sampled frames: {self.frame_indices})")


def sample_frame_indices(total_frames: int, num_frames: int) -> list[int]:
    """Indices of `num_frames` frames at the midpoints of equal segments of `[0, total_frames - 1]`.

    For videos shorter than `num_frames` indices repeat.
    """
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    segment = (total_frames - 1) / num_frames
    midpoints = segment * (np.arange(num_frames) + 0.5)
    return np.round(midpoints + 1e-6).astype(int).tolist()


# Frame rates the official VL3 loader assumes for sources that do not state one.
FOLDER_FPS = 3.0  # a folder of frame images (also used here for arrays and lists of frames)
GIF_FPS = 25.0


def uniform_frame_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """The official VL3 uniform rule: every frame when there are at most `num_frames`, else
    `linspace(0, total - 1, num_frames)` truncated to integers."""
    if total_frames <= num_frames:
        return np.arange(total_frames)
    return np.linspace(0, total_frames - 1, num_frames, dtype=int)


def sample_frames_by_fps(
    total_frames: int, video_fps: float, fps: float, max_frames: int
) -> tuple[list[int], list[float]]:
    """`(frame indices, timestamps in s)` of the official VL3 rule for frame folders (`load_video_from_ids`).

    One frame per `segment = min(video_fps // fps, T)` frames, at `arange(segment // 2, T, segment)` (segment
    midpoints), timestamp `index / video_fps`. A video of `max_frames` seconds or more, or an `fps` above `video_fps`
    (segment 0, where the official code catches the error), falls back to the uniform rule with `max_frames`
    (`uniform_frame_indices`). Unlike the official code, a fps-sampled result longer than `max_frames` (only possible
    with `fps > 1`) is thinned to `max_frames` by the same uniform rule, so the cap always holds.
    """
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if video_fps <= 0 or fps <= 0 or max_frames <= 0:
        raise ValueError(f"video_fps, fps and max_frames must be positive, got {video_fps}, {fps}, {max_frames}")
    segment = min(video_fps // fps, total_frames)
    if total_frames / video_fps < max_frames and segment > 0:
        indices = np.arange(segment // 2, total_frames, segment).astype(int)
        if len(indices) > max_frames:
            indices = indices[uniform_frame_indices(len(indices), max_frames)]
    else:
        indices = uniform_frame_indices(total_frames, max_frames)
    return indices.tolist(), [float(i / video_fps) for i in indices]


def sample_file_frames_by_fps(
    total_frames: int, video_fps: float, fps: float, max_frames: int, start_time: float = 0.0
) -> tuple[list[int], list[float]]:
    """`(frame indices, timestamps in s)` that the official VL3 loader gets for a video file.

    The official code decodes files with ffmpeg's `fps=fps:round=down` filter. Matched here (checked against that
    filter through PyAV on constant-frame-rate clips): frame i falls in slot `floor(i * fps / video_fps)`; slot n
    shows the last frame of slots <= n; there are `floor(T * fps / video_fps)` slots (at least one here; ffmpeg gives
    none for clips shorter than one slot); timestamps are `start_time + n / fps`. More than `max_frames` slots are
    thinned with `uniform_frame_indices`. Variable-frame-rate files are treated as constant-rate at their mean fps.
    """
    if total_frames <= 0:
        raise ValueError("the video has no frames")
    if video_fps <= 0 or fps <= 0 or max_frames <= 0:
        raise ValueError(f"video_fps, fps and max_frames must be positive, got {video_fps}, {fps}, {max_frames}")
    slots = np.arange(max(1, int(np.floor(total_frames * fps / video_fps + 1e-9))))
    # last i with floor(i * fps / video_fps) <= n  <=>  i < (n + 1) * video_fps / fps
    last = np.ceil((slots + 1) * video_fps / fps - 1e-9).astype(int) - 1
    indices = np.minimum(last, total_frames - 1)
    times = start_time + slots * (1.0 / fps)  # as np.arange(start, ..., 1 / fps) computes them
    if len(indices) > max_frames:
        keep = uniform_frame_indices(len(indices), max_frames)
        indices, times = indices[keep], times[keep]
    return indices.tolist(), [float(t) for t in times]


def load_video_by_fps(
    source: VideoSource | Video,
    fps: float = 1.0,
    max_frames: int = 768,
    extra_frame_indices: Iterable[int] = (),
    folder_fps: float = FOLDER_FPS,
) -> Video:
    """Decode the frames the official VL3 loader samples at `fps` (with their timestamps) and the frames in
    `extra_frame_indices`, in one pass.

    Files use their own frame rate and the ffmpeg rule (`sample_file_frames_by_fps`); folders, arrays and lists of
    frames are taken as `folder_fps` (official: 3) and GIFs as 25 fps, with the frame-index rule
    (`sample_frames_by_fps`). A `Video` is returned as it is (its frames must include `extra_frame_indices`).
    """
    if isinstance(source, Video):
        return load_video(source, extra_frame_indices=extra_frame_indices)
    reader = _Reader(source)
    is_file = reader._path is not None
    if is_file and not str(reader._path).lower().endswith(".gif") and reader.fps:
        sampled, timestamps = sample_file_frames_by_fps(reader.total, reader.fps, fps, max_frames)
    else:
        video_fps = GIF_FPS if is_file else folder_fps
        sampled, timestamps = sample_frames_by_fps(reader.total, video_fps, fps, max_frames)
    video = _decode(reader, source, sampled, extra_frame_indices)
    video.timestamps = timestamps
    return video


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"the folder {folder} holds no frame images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"a frame must be (H, W, 3), got shape {array.shape}")
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8, copy=False)


class _Reader:
    """Random access to the frames of any supported source."""

    def __init__(self, source: VideoSource):
        self.fps: float | None = None
        self._array: np.ndarray | None = None
        self._files: list[Path] | None = None
        self._path: str | None = None
        self._decord = None  # an open decord reader, reused for every read of this source
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise ValueError(f"video not found: {path}")
            if path.is_dir():
                self._files = _frame_files(path)
                self.total = len(self._files)
            else:
                self._path = str(path)
                self._decord, self.total, self.fps = _open_file(self._path)
        elif isinstance(source, np.ndarray):
            if source.ndim != 4 or source.shape[-1] != 3:
                raise ValueError(f"a video array must be (T, H, W, 3) uint8, got shape {source.shape}")
            self._array = source.astype(np.uint8, copy=False)
            self.total = source.shape[0]
        elif isinstance(source, Sequence):
            self._array = np.stack([_as_rgb_array(f) for f in source]) if len(source) else np.zeros((0, 1, 1, 3))
            self.total = len(source)
        else:
            raise ValueError(f"unsupported video source of type {type(source).__name__}")
        if self.total == 0:
            raise ValueError("the video has 0 frames")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        bad = [i for i in indices if not 0 <= i < self.total]
        if bad:
            raise ValueError(f"frame index {bad[0]} is outside the video (0..{self.total - 1})")
        if self._array is not None:
            return self._array[list(indices)]
        if self._files is not None:
            return np.stack([_as_rgb_array(Image.open(self._files[i])) for i in indices])
        if self._decord is not None:
            try:
                return self._decord.get_batch(list(indices)).asnumpy()
            except Exception as error:  # a stream decord cannot convert (e.g. some RGB codecs): PyAV decodes all
                _log_fallback_once(type(error).__name__, f"decord failed ({type(error).__name__}: {str(error)[:200]})")
                self._decord = None
        return decode_with_pyav(self._path, list(indices))


def _open_file(path: str) -> tuple[Any, int, float | None]:
    """`(decord reader or None, total frames, fps)`; PyAV probes the file when decord is not installed."""
    try:
        import decord

        reader = decord.VideoReader(path, num_threads=DECORD_THREADS)
        return reader, len(reader), float(reader.get_avg_fps())
    except ImportError:
        _log_fallback_once("ImportError", "decord is not installed")
    except Exception as error:  # decord raises its own error types
        raise ValueError(f"cannot decode video {path}: {error}") from error
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            total = stream.frames or sum(1 for _ in container.decode(video=0))
            return None, total, float(stream.average_rate) if stream.average_rate else None
    except (av.error.FFmpegError, IndexError) as error:
        raise ValueError(f"cannot decode video {path}: {error}") from error


def decode_with_decord(path: str, indices: list[int]) -> np.ndarray:
    import decord

    return decord.VideoReader(path, num_threads=DECORD_THREADS).get_batch(indices).asnumpy()


def decode_with_pyav(path: str, indices: list[int]) -> np.ndarray:
    """Decode in order and convert only the wanted frames (faster than seeking for a few frames of a short clip)."""
    import av

    wanted = set(indices)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            if stream.codec_context.width * stream.codec_context.height >= 256 * 256:
                stream.thread_type = "AUTO"  # frame threads: ~1.5x faster on 2 cores for 720p; overhead for tiny clips
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= max(wanted):
                    break
    except (av.error.FFmpegError, IndexError) as error:
        raise ValueError(f"cannot decode frames {indices} of {path}: {error}") from error
    missing = wanted - found.keys()
    if missing:
        raise ValueError(f"cannot decode frames {sorted(missing)} of {path}")
    return np.stack([found[i] for i in indices])


def video_info(source: VideoSource) -> tuple[int, float | None, int, int]:
    """`(total_frames, fps, height, width)` of a video."""
    reader = _Reader(source)
    first = reader.read([0])[0]
    return reader.total, reader.fps, int(first.shape[0]), int(first.shape[1])


def read_frames(source: VideoSource, indices: Iterable[int]) -> np.ndarray:
    """Frames `indices` of a video as `(len(indices), H, W, 3)` uint8."""
    return _Reader(source).read(list(indices))


def load_video(
    source: VideoSource | Video, num_frames: int = 16, extra_frame_indices: Iterable[int] = ()
) -> Video:
    """Decode `num_frames` uniformly sampled frames and the frames in `extra_frame_indices` in one pass.

    Videos shorter than `num_frames` repeat frames (the sampling rule's midpoints round to the same frame), as the
    official code does with decord, so the model always sees `num_frames` frames.
    """
    if isinstance(source, Video):
        missing = sorted(set(int(i) for i in extra_frame_indices) - set(source.frame_indices) - set(source.extra))
        if missing:
            raise ValueError(
                f"frames {missing} are not in this decoded video (sampled: {source.frame_indices}); pass the video's "
                "path, or decode them with load_video(..., extra_frame_indices=...)"
            )
        return source
    reader = _Reader(source)
    return _decode(reader, source, sample_frame_indices(reader.total, num_frames), extra_frame_indices)


def _decode(reader: _Reader, source: VideoSource, sampled: list[int], extra_frame_indices: Iterable[int]) -> Video:
    """`sampled` frames (may repeat) and the extra ones, decoded in one pass."""
    extra = sorted(set(int(i) for i in extra_frame_indices) - set(sampled))
    unique = sorted(set(sampled))
    decoded = reader.read(unique + extra)
    row = {index: k for k, index in enumerate(unique + extra)}
    key = None
    if isinstance(source, (str, os.PathLike)):
        stat = os.stat(source)
        key = f"{os.path.abspath(source)}:{stat.st_mtime_ns}:{stat.st_size}"
    return Video(
        frames=decoded[[row[i] for i in sampled]],
        frame_indices=sampled,
        total_frames=reader.total,
        fps=reader.fps,
        extra={index: decoded[row[index]] for index in extra},
        key=key,
    )
