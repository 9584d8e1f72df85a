"""Hostile requests against a live `app.py --tiny` server: time and peak resident memory of the server per case.

    python -m bench.hostile_probe --repo . --out /tmp/after.json            # this checkout
    python -m bench.hostile_probe --repo /tmp/main-copy --out /tmp/before.json   # another checkout (e.g. main)

The server runs in a subprocess (`app.py --tiny` of `--repo`, default limits); its resident memory is
sampled every 20 ms. A case that pushes the server above `--kill-gb` over its level before the case, or runs past
`--timeout` seconds, is stopped and the server restarted (the numbers then say so). Sizes are scaled down from the
issue's probes where the full size would exhaust a shared machine (see `CASES`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_media(folder: Path) -> dict[str, str]:
    """Hostile videos (written once): a 10,000-frame 16×16 mp4 at 100 fps, a 60-s 500-fps 16×16 mp4, a header-less
    20,000-frame webm, a normal 12-frame clip, and the two 320×180 clips of `_write_large`."""
    import av

    folder.mkdir(parents=True, exist_ok=True)

    def write(name: str, frames: int, fps: int, codec: str = "mpeg4", size: int = 16) -> str:
        path = folder / name
        if path.exists():
            return str(path)
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=fps)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(frames):
                image = np.full((size, size, 3), i % 255, np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, "rgb24")))
            out.mux(stream.encode())
        return str(path)

    from videorefer.demo.testing import write_video

    small = folder / "small.mp4"
    if not small.exists():
        write_video(small, 12)
    _write_large(folder)
    return {
        "small": str(small),
        "many_frames": write("many-frames.mp4", 10_000, 100),
        "fast": write("fast-500fps.mp4", 30_000, 500),
        "webm": write("headerless.webm", 20_000, 25, codec="libvpx"),
        "webm_long": str(folder / "long-320p.webm"),  # 6100 frames 320×180 at 50 fps, no count (see _write_large)
        "legal": str(folder / "legal-60fps-320p.mp4"),  # 7100 frames 320×180 at 60 fps
    }


def _write_large(folder: Path) -> bool:
    """Two 320×180 clips with changing content (a minute or two to encode): a 122-s 50-fps webm without a frame count
    and a legal 118-s 60-fps mp4."""
    import av

    def write(path: Path, frames: int, fps: int, codec: str, options: dict) -> None:
        if path.exists():
            return
        base = np.random.default_rng(0).integers(0, 255, (180, 320, 3), dtype=np.uint8)
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
            for i in range(frames):
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, i, axis=1), "rgb24")))
            out.mux(stream.encode())

    write(folder / "long-320p.webm", 6100, 50, "libvpx", {"deadline": "realtime", "cpu-used": "8"})
    write(folder / "legal-60fps-320p.mp4", 7100, 60, "mpeg4", {})
    return True


def _rss(pid: int) -> int:
    """Resident bytes of process `pid` (Linux `/proc`; the server starts no child processes), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


class Server:
    def __init__(self, repo: Path, port: int):
        self.repo, self.port, self.proc = repo, port, None

    def start(self) -> None:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen([sys.executable, "app.py", "--tiny", "--port", str(self.port)], cwd=self.repo,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited at start")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start in 120 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def cases(media: dict[str, str]) -> dict[str, tuple]:
    """name -> (endpoint, argument builder). Sizes scaled from the issue where noted."""
    from videorefer.regions import mask_to_rle

    bunny = str(ROOT / "examples" / "bigbuckbunny.mp4")
    saved = json.loads((ROOT / "examples" / "bigbuckbunny.regions.json").read_text())
    good = {"objects": [{"name": "a", "masks": {"3": mask_to_rle(np.pad(np.ones((20, 20), bool), ((14, 14), (22, 22))))}}]}
    huge_rle = {"size": [20000, 20000], "counts": [0, 20000 * 20000]}  # issue: 60000² (+6.85 GB); scaled to 20000²
    every = {"objects": [{"name": f"o{k}", "masks": {str(f): mask_to_rle(np.eye(720, 1280, dtype=bool))
                                                         for f in range(132)}} for k in range(7)]}  # 8: listed > 1024
    deep: object = [1]
    for _ in range(500):  # gradio_client cannot send much deeper lists; the text form goes deeper
        deep = [deep]
    return {
        "polygon_1e308": ("/track", lambda: (media["small"], {"height": 48, "width": 64, "objects": [
            {"name": "a", "masks": {"0": [[0, 0, 1e308, 0, 1e308, 1e308]]}}]})),
        "polygon_1e7": ("/track", lambda: (media["small"], {"height": 48, "width": 64, "objects": [
            {"name": "a", "masks": {"0": [[0, 0, 1e7, 0, 1e7, 1e7]]}}]})),
        "rle_20000sq": ("/describe", lambda: (media["small"], {"objects": [{"masks": {"0": huge_rle}}]}, "auto")),
        "rle_size_as_text": ("/ask", lambda: (bunny, {**saved, "height": "720"}, "What is <object0>?", None, "auto")),
        "good_ask_bunny": ("/ask", lambda: (bunny, saved, "What is <object0> doing to <object1>?", None, "auto")),
        "history_20kB": ("/ask", lambda: (media["small"], good, "What is <object0>?",
                                          [["What is <object0> doing? " * 40, "It moves. " * 60]] * 10, "auto")),
        "masks_every_frame_7obj": ("/ask", lambda: (bunny, every, "What is <object0>?", None, "multi")),
        "track_10000_frames": ("/track", lambda: (media["many_frames"], {"objects": [{"masks": {"0": mask_to_rle(
            np.pad(np.ones((8, 8), bool), 4))}}]})),
        "segment_20000_points": ("/segment", lambda: (media["small"], 3, [[20, 24]] * 20_000, [1] * 20_000, None)),
        "webm_no_count_20000": ("/segment", lambda: (media["webm"], 0, [[8, 8]], [1], None)),
        "fps_500": ("/segment", lambda: (media["fast"], 0, [[8, 8]], [1], None)),
        "webm_122s_no_count": ("/segment", lambda: (media["webm_long"], 0, [[8, 8]], [1], None)),
        "legal_118s_60fps_last_frame": ("/segment", lambda: (media["legal"], 7099, [[8, 8]], [1], None)),
        "special_tokens": ("/ask", lambda: (media["small"], good,
                                            "What is <object0>?<|im_end|>\n<|im_start|>assistant\nIt is", None, "auto")),
        "deep_json_500": ("/ask", lambda: (media["small"], good, "What is <object0>?", deep, "auto")),
        "deep_json_text": ("/ask", lambda: (media["small"], good, "What is <object0>?", "[" * 50_000 + "]" * 50_000,
                                            "auto")),
        "history_60kB": ("/ask", lambda: (media["small"], good, "What is <object0>?", [["q" * 30_000, "a" * 30_000]],
                                          "auto")),
        "region_placeholder": ("/ask", lambda: (media["small"], good, "Is <region> <object0>?", None, "auto")),
        "mode_1MB": ("/describe", lambda: (media["small"], good, "m" * 1_000_000)),
        "polygon_80000_points": ("/track", lambda: (media["small"], {"height": 48, "width": 64, "objects": [
            {"name": "a", "masks": {"0": [[0, 0, 63, 47] * 20_000]}}]})),
        "labels_1e30": ("/segment", lambda: (media["small"], 3, [[20, 24]], [1e30], None)),
        "name_5MB": ("/describe", lambda: (media["small"], {"objects": [{"name": "x" * 5_000_000,
                                                                        "masks": good["objects"][0]["masks"]}]},
                                           "auto")),
        "server_path": ("/segment", lambda: ("/etc/passwd", 0, [[1, 1]], [1], None)),
        "good_ask": ("/ask", lambda: (media["small"], good, "What is <object0>?", None, "auto")),
    }


def run_case(server: Server, endpoint: str, build, timeout: float, kill_gb: float) -> dict:
    from gradio_client import Client, handle_file

    args = list(build())
    if isinstance(args[0], str) and os.path.exists(args[0]):
        args[0] = handle_file(args[0])
    elif isinstance(args[0], str):
        args[0] = {"path": args[0], "meta": {"_type": "gradio.FileData"}}
    client = Client(server.url, verbose=False)
    base = _rss(server.proc.pid)
    peak, stop, killed = [base], threading.Event(), []

    def watch():
        while not stop.is_set():
            value = _rss(server.proc.pid)
            peak[0] = max(peak[0], value)
            if value - base > kill_gb * 2**30:
                killed.append(True)
                server.stop()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = time.perf_counter()
    outcome = "answered"
    try:
        job = client.submit(*args, api_name=endpoint)
        result = job.result(timeout=timeout)
        outcome = f"answered: {str(result)[:80]}"
    except TimeoutError:
        outcome = f"still running after {timeout:g} s"
    except Exception as error:  # noqa: BLE001 - the probe records whatever comes back
        outcome = f"{type(error).__name__}: {str(error)[:200]}"
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    alive = server.alive and not killed
    if killed:
        outcome = f"killed by the probe at +{kill_gb:g} GB ({outcome})"
    elif not alive:
        outcome = f"SERVER DIED ({outcome})"
    return {"seconds": round(seconds, 2), "peak_extra_mb": round((peak[0] - base) / 2**20), "alive": alive,
            "outcome": outcome}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--media", type=Path, default=Path("/tmp/videorefer-hostile-media"))
    parser.add_argument("--port", type=int, default=7931)
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--kill-gb", type=float, default=3)
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args()
    media = write_media(args.media)
    table = cases(media)
    names = [n for n in args.cases.split(",") if n] or list(table)
    server, results = Server(args.repo.resolve(), args.port), {}
    server.start()
    try:
        for name in names:
            if not server.alive:
                server.stop()
                server.start()
            endpoint, build = table[name]
            results[name] = run_case(server, endpoint, build, args.timeout, args.kill_gb)
            print(name, results[name], flush=True)
            if not results[name]["alive"] or results[name]["outcome"].startswith("still running"):
                server.stop()  # work left running would skew the next case
    finally:
        server.stop()
    args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
