"""The server's request format without a server (no vLLM needed): what the client writes is what the server reads,
decoded frames travel losslessly, refusals name the problem, and paths stay under the media root."""

from __future__ import annotations

import numpy as np
import pytest

from videorefer.regions import objects_from_json
from videorefer.serving.protocol import RequestError, build_body, decode_frames, encode_frames, parse_request
from videorefer.video_io import Video


def test_the_body_the_client_writes_is_what_the_server_reads():
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:5] = True
    body = build_body({"path": "a.mp4"}, [{3: mask}], "And <object0>?", [("What is <object0>?", "a box")],
                      stream=True, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    chat = parse_request(body, max_question_chars=100, max_objects=2)
    assert chat.video == {"path": "a.mp4"} and chat.stream
    assert (chat.question, chat.history) == ("And <object0>?", [("What is <object0>?", "a box")])
    assert chat.generation == {"max_new_tokens": 5, "min_new_tokens": 5}
    objects, _ = objects_from_json(chat.regions)
    assert np.array_equal(objects[0][3], mask)
    sampled = parse_request({**body, "temperature": 0.7}, 100, 2).generation
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7


def test_decoded_frames_travel_losslessly():
    rng = np.random.default_rng(0)
    video = Video(frames=rng.integers(0, 255, (3, 6, 8, 3), dtype=np.uint8), frame_indices=[0, 4, 8],
                  total_frames=10, fps=5.0, extra={5: rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)},
                  timestamps=[0.0, 0.8, 1.6])
    back = decode_frames(encode_frames(video))
    assert np.array_equal(back.frames, video.frames) and back.frame_indices == video.frame_indices
    assert (back.total_frames, back.fps, back.timestamps) == (10, 5.0, [0.0, 0.8, 1.6])
    assert np.array_equal(back.extra[5], video.extra[5])
    image = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    assert np.array_equal(decode_frames(encode_frames(image)), image)
    with pytest.raises(RequestError, match="frames archive"):
        decode_frames("bm90IGFuIG5weg==")


@pytest.mark.parametrize("body, status, words", [
    ([], 400, "JSON object"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "role 'user'"),
    ({"messages": [{"role": "user", "content": "x" * 101}]}, 413, "the limit is 100"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, 400, "last message"),
    ({"messages": [{"role": "user", "content": "q"}], "video": {"path": "a", "data": "b"}}, 400, "exactly one"),
    ({"messages": [{"role": "user", "content": "q"}], "video": {"path": "a"}, "regions": {}}, 400, "regions document"),
    ({"messages": [{"role": "user", "content": "q"}], "video": {"path": "a"},
      "regions": {"objects": [{}] * 3}}, 413, "at most 2"),
    ({"messages": [{"role": "user", "content": "q"}], "video": {"path": "a"}, "regions": {"objects": []},
      "max_tokens": 0}, 400, "at least 1"),
])
def test_refusals_name_the_problem(body, status, words):
    with pytest.raises(RequestError, match=words) as refused:
        parse_request(body, max_question_chars=100, max_objects=2)
    assert refused.value.status == status


def test_paths_stay_under_the_media_root(tmp_path):
    pytest.importorskip("fastapi")
    from videorefer.serving.endpoint import ServerConfig, _media_path

    root = tmp_path / "media"
    (root / "clips").mkdir(parents=True)
    (tmp_path / "outside").symlink_to(tmp_path)
    (root / "escape").symlink_to(tmp_path)
    config = ServerConfig({"VIDEOREFER_MEDIA_ROOT": str(root)})
    assert _media_path(config, "clips/a.mp4") == root / "clips" / "a.mp4"
    for path in ("../secret.mp4", "/etc/passwd", "clips/../../x.mp4", "escape/secret.mp4"):
        with pytest.raises(RequestError, match="outside the server's media root") as refused:
            _media_path(config, path)
        assert refused.value.status == 403
    with pytest.raises(RequestError, match="without --media-root"):
        _media_path(ServerConfig({}), "clips/a.mp4")


def _archive_declaring(shapes: dict[str, tuple[int, ...]]) -> str:
    """A frames archive whose arrays' headers declare `shapes` but hold (almost) no data: what a bomb looks like."""
    import base64
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, shape in shapes.items():
            member = io.BytesIO()
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": shape})
            archive.writestr(f"{name}.npy", member.getvalue() + b"\0" * 64)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize("shapes, words", [
    ({"frames": (16, 100_000, 100_000, 3)}, "at most 4096 px"),
    ({"frames": (100_000, 8, 8, 3)}, "at most 7200 frames"),
    ({"frames": (4000, 1080, 1920, 3)}, "more than 1024 MiB"),
    ({"image": (60_000, 60_000, 3)}, "at most 4096 px"),
])
def test_a_frames_archive_is_sized_by_its_headers_before_it_is_inflated(shapes, words):
    with pytest.raises(RequestError, match=words):
        decode_frames(_archive_declaring(shapes), max_bytes=2**30, max_frames=7200, max_side=4096)


def test_decoded_frames_must_lie_inside_the_video_they_declare():
    video = Video(frames=np.zeros((2, 8, 8, 3), np.uint8), frame_indices=[0, 5], total_frames=3, fps=1.0)
    with pytest.raises(RequestError, match="indices outside"):
        decode_frames(encode_frames(video))
    ok = Video(frames=np.zeros((2, 8, 8, 3), np.uint8), frame_indices=[0, 2], total_frames=3, fps=1.0)
    assert decode_frames(encode_frames(ok)).frame_indices == [0, 2]
