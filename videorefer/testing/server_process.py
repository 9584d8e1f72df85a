"""A VideoRefer server (`python -m videorefer.serve`) in a child process on 127.0.0.1, for tests and benchmarks:
started, waited for (`/health`), killed, restarted on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import httpx

__all__ = ["ServerProcess", "SERVER_ENV"]

#: vLLM on a small shared CPU: the engine in few processes, 1 GiB of KV cache, no thread pinning, one OpenMP thread.
SERVER_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
              "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1"}


class ServerProcess:
    """`python -m videorefer.serve ARGS --port PORT` with `python` (a venv with vLLM), its log in `log`."""

    def __init__(self, args: Sequence[str], port: int, log: str | os.PathLike, python: str | None = None,
                 cwd: str | os.PathLike | None = None):
        self.args, self.port, self.log = list(args), port, Path(log)
        self.python = python or sys.executable
        self.cwd = cwd
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> "ServerProcess":
        env = {**os.environ, **SERVER_ENV}
        env.pop("PYTHONPATH", None)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.python, "-m", "videorefer.serve", *self.args, "--port",
                                             str(self.port)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                            cwd=self.cwd, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.kill()
        raise RuntimeError(f"the server did not become healthy in {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the server and everything it started (its process group), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
