"""Frame sampling and decoding from files, frame folders, arrays and image lists."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from videorefer.video_io import load_video, read_frames, sample_frame_indices, video_info


def write_video(path, frames: np.ndarray, fps: int = 10) -> None:
    """Lossless RGB H.264 so decoded pixels equal the written ones."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=fps, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def frames_with_ids(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame i is filled with the value 5*i, so a decoded frame tells which it is."""
    return np.stack([np.full((h, w, 3), 5 * i, np.uint8) for i in range(n)])


def test_sampling_at_segment_midpoints():
    assert sample_frame_indices(8, 8) == list(range(8))
    assert sample_frame_indices(132, 16) == [4, 12, 20, 29, 37, 45, 53, 61, 70, 78, 86, 94, 102, 111, 119, 127]
    assert sample_frame_indices(3, 6) == [0, 1, 1, 1, 2, 2]  # short videos repeat frames
    with pytest.raises(ValueError, match="no frames"):
        sample_frame_indices(0, 4)


@pytest.mark.parametrize("kind", ["file", "folder", "array", "pil"])
def test_every_source_gives_the_same_frames(tmp_path, kind):
    frames = frames_with_ids(20)
    if kind == "file":
        source = tmp_path / "clip.mp4"
        write_video(source, frames)
        source = str(source)
    elif kind == "folder":
        for i, f in enumerate(frames):
            Image.fromarray(f).save(tmp_path / f"{i:05d}.png")
        source = str(tmp_path)
    elif kind == "array":
        source = frames
    else:
        source = [Image.fromarray(f) for f in frames]
    video = load_video(source, num_frames=4, extra_frame_indices=[0, 7, 9])
    assert video.frame_indices == sample_frame_indices(20, 4) == [2, 7, 12, 17]
    np.testing.assert_array_equal(video.frames[:, 0, 0, 0], 5 * np.array(video.frame_indices))
    assert sorted(video.extra) == [0, 9]  # frame 7 is already sampled
    assert video.extra[9][0, 0, 0] == 45
    assert video.frame(video.frame_indices[1])[0, 0, 0] == 5 * video.frame_indices[1]
    assert video_info(source)[0] == 20
    np.testing.assert_array_equal(read_frames(source, [3, 19])[:, 0, 0, 0], [15, 95])


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="video not found"):
        load_video(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no frame images"):
        load_video(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        load_video(np.zeros((4, 5, 6), np.uint8))
    with pytest.raises(ValueError, match="outside the video"):
        read_frames(frames_with_ids(3), [3])


def test_a_decoded_video_without_the_needed_frames_is_refused():
    video = load_video(frames_with_ids(20), num_frames=4)
    assert load_video(video, extra_frame_indices=[7]) is video
    with pytest.raises(ValueError, match=r"frames \[9\] are not in this decoded video"):
        load_video(video, extra_frame_indices=[9])
