"""The demo on a VideoRefer server (`app.py --server URL`): the page's API unchanged, answers from the server (one tiny
VL3 server for the session, `tiny_vllm_server` in conftest: run by the vLLM venv's python, shared with the demo API
suite's on-server run), 32 concurrent visitors answered as sequentially, and a server killed in the middle of an answer: the visitor
gets a clear message, nothing hangs, and the demo answers again once the server is back."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytest.importorskip("gradio")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

import app  # noqa: E402
from bench.demo_load import QUESTIONS, ask, clip, measure  # noqa: E402
from videorefer.demo.backend import Settings, load_backend  # noqa: E402
from videorefer.demo.limits import Limits  # noqa: E402
from videorefer.demo.testing import free_port  # noqa: E402
from videorefer.testing.server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="module")
def served(tiny_vllm_server):
    """(demo URL, backend, server): the tiny demo (`--tiny --server URL`) on the session's tiny VL3 server."""
    settings = Settings(tiny="vl3", device="cpu", port=free_port(), detector="none", server=tiny_vllm_server.url,
                        limits=Limits(max_file_mb=3, max_seconds=10, scrub_frames=6))
    backend = load_backend(settings)
    demo = app.launch(settings, backend=backend, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}/", backend, tiny_vllm_server
    finally:
        demo.close()


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    return clip(tmp_path_factory.mktemp("clip"))


def served_requests(server: ServerProcess) -> float:
    metrics = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("vllm:request_success_total"))


def test_the_page_api_answers_from_the_server(served, square):
    url, backend, server = served
    assert type(backend.model.engine).__name__ == "RemoteEngine" and backend.model.model is None
    assert backend.family == "VideoRefer-VL3"
    before = served_requests(server)
    client = Client(url, verbose=False)
    video, regions = square
    answer = client.predict(handle_file(video), regions, "What is <object0>?", None, "auto", api_name="/ask")
    assert isinstance(answer, str) and answer
    described = client.predict(handle_file(video), regions, "auto", api_name="/describe")
    assert isinstance(described, str) and described
    assert served_requests(server) == before + 2  # both answers came from the server
    with pytest.raises(AppError, match="<object3>"):  # the demo's own checks still come first
        client.predict(handle_file(video), regions, "Is <object3> there?", None, "auto", api_name="/ask")
    # segmentation stays in the demo process
    seg = client.predict(handle_file(video), 3, [[20, 24]], [1], None, api_name="/segment")
    assert seg["mask"]["size"] == [48, 64] and served_requests(server) == before + 2


def test_32_concurrent_visitors_get_the_sequential_answers(served, square):
    url, _, _ = served
    row = measure(url, *square)
    print(f"demo on a server: 8 visitors {row[8]:.2f} s, 32 visitors {row[32]:.2f} s", file=sys.stderr)
    assert row["same_8"] and row["same_32"]


def test_a_server_killed_mid_answer_gives_a_clear_message_and_the_demo_recovers(served, square):
    url, backend, server = served
    video, regions = square
    defaults = dict(backend.model.generation_defaults)
    backend.model.generation_defaults.update(max_new_tokens=3000, min_new_tokens=3000)  # an answer of seconds
    try:
        job = Client(url, verbose=False).submit(handle_file(video), regions, "What is <object0>?", None, "auto",
                                                api_name="/ask")
        deadline = time.monotonic() + 60
        while "vllm:num_requests_running" not in _running(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        server.kill()
        started = time.monotonic()
        with pytest.raises(AppError, match="server at .* (is not reachable|stopped)"):
            job.result(timeout=60)
        assert time.monotonic() - started < 30  # the visitor is told at once, not after a timeout
    finally:
        backend.model.generation_defaults.clear()
        backend.model.generation_defaults.update(defaults)
    with pytest.raises(AppError, match="not reachable"):  # while it is down: a message, not a hang
        ask(url, video, regions, QUESTIONS[0])
    server.start()
    assert ask(url, video, regions, QUESTIONS[0])


def _running(server: ServerProcess) -> str:
    """The metrics lines of running requests that are not zero ('' while none runs)."""
    try:
        metrics = httpx.get(server.url + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""
    return "\n".join(line for line in metrics.splitlines()
                     if line.startswith("vllm:num_requests_running") and not line.endswith(" 0.0"))


def test_many_visitors_share_one_server(served, square):
    """Two demo processes' worth of clients: a second demo on the same server answers as the first."""
    url, _, server = served
    settings = Settings(tiny="vl3", device="cpu", port=free_port(), detector="none", server=server.url)
    demo = app.launch(settings, backend=load_backend(settings), prevent_thread_lock=True, quiet=True)
    try:
        other = f"http://127.0.0.1:{settings.port}/"
        with ThreadPoolExecutor(4) as pool:
            first = list(pool.map(lambda q: ask(url, *square, q), QUESTIONS[:4]))
            second = list(pool.map(lambda q: ask(other, *square, q), QUESTIONS[:4]))
        assert first == second
    finally:
        demo.close()
