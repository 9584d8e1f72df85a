"""The VideoRefer server: vLLM's OpenAI-compatible server with the VideoRefer plugin and routes, for any checkpoint of
either family (it needs vLLM: `bash scripts/vllm_venv.sh`, then run it with that venv's python).

    python -m videorefer.serve DAMO-NLP-SG/VideoRefer-VideoLLaMA3-7B --media-root /data/videos
    python -m videorefer.serve --tiny [vl3|v1]      # a random tiny model built in code (tests, no download)
    python -m videorefer.serve MODEL --port 8000 --tensor-parallel-size 2    # any other flag goes to vLLM

Answers: `POST /v1/videorefer/chat/completions` (format: `videorefer.serving.protocol`; client: `videorefer.client`).
vLLM's own routes stay: `/health`, `/metrics`, `/v1/models`. The server listens on 127.0.0.1 unless `--host` says
otherwise; it reads paths only under `--media-root` and URLs only under `--allow-url` prefixes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Sequence

from .testing.tiny import TINY_FAMILIES

__all__ = ["main", "vllm_argv"]

PLUGIN = "videorefer"  # the name of both entry points (vllm.general_plugins, vllm.endpoint_plugins)


def parse(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    from .demo.limits import Limits

    base = Limits()
    parser = argparse.ArgumentParser(
        prog="python -m videorefer.serve", description=__doc__.split("\n\n")[0],
        epilog="Any other flag goes to vLLM's server (python -m vllm.entrypoints.openai.api_server --help).")
    parser.add_argument("model", nargs="?", help="a checkpoint of either family: Hub id or folder")
    parser.add_argument("--tiny", nargs="?", const=TINY_FAMILIES[0], choices=TINY_FAMILIES, type=str.lower,
                        help=f"serve a random tiny model built in code (default family {TINY_FAMILIES[0]})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--media-root", help="the folder whose videos requests may name by path (default: none)")
    parser.add_argument("--allow-url", action="append", default=[], metavar="PREFIX",
                        help="a URL prefix requests may fetch videos from (repeatable; default: none)")
    parser.add_argument("--max-objects", type=int, default=base.max_objects)
    parser.add_argument("--max-question-chars", type=int, default=base.max_question_chars)
    parser.add_argument("--max-file-mb", type=float, default=base.max_file_mb)
    parser.add_argument("--max-seconds", type=float, default=base.max_seconds)
    ours, rest = parser.parse_known_args(argv)
    if (ours.model is None) == (ours.tiny is None):
        parser.error("give a MODEL or --tiny (not both)")
    return ours, rest


def vllm_argv(model: str, ours: argparse.Namespace, rest: Sequence[str]) -> list[str]:
    """vLLM's server flags: the plugin's requirements, then the caller's own (which win)."""
    import torch

    argv = ["--model", model, "--host", ours.host, "--port", str(ours.port),
            "--logits-processors", "videorefer.serving.vllm.penalty:OutputRepetitionPenalty",
            "--limit-mm-per-prompt", json.dumps({"videorefer": 1}),
            "--generation-config", "vllm",
            "--mm-processor-cache-gb", "0"]  # the items' cache key leaves out later turns (engines.vllm._visual_key)
    if not torch.cuda.is_available() and not any(a.startswith("--dtype") for a in rest):
        argv += ["--dtype", "float32"]  # as the in-process engine on a CPU
    return argv + list(rest)


def configure_environment(ours: argparse.Namespace) -> None:
    """The plugin allow-listed (`VLLM_PLUGINS`) and the routes' configuration (`serving.endpoint.ServerConfig`)."""
    plugins = [p for p in os.environ.get("VLLM_PLUGINS", "").split(",") if p]
    os.environ["VLLM_PLUGINS"] = ",".join(dict.fromkeys([*plugins, PLUGIN]))
    if ours.media_root:
        if not os.path.isdir(ours.media_root):
            raise SystemExit(f"--media-root {ours.media_root!r} is not a folder")
        os.environ["VIDEOREFER_MEDIA_ROOT"] = os.path.abspath(ours.media_root)
    os.environ["VIDEOREFER_ALLOW_URLS"] = " ".join(ours.allow_url)
    os.environ["VIDEOREFER_MAX_OBJECTS"] = str(ours.max_objects)
    os.environ["VIDEOREFER_MAX_QUESTION_CHARS"] = str(ours.max_question_chars)
    os.environ["VIDEOREFER_MAX_FILE_MB"] = str(ours.max_file_mb)
    os.environ["VIDEOREFER_MAX_SECONDS"] = str(ours.max_seconds)


def main(argv: Sequence[str] | None = None) -> None:
    ours, rest = parse(argv)
    configure_environment(ours)
    model = ours.model
    if ours.tiny is not None:
        from .testing.tiny import ENGINE_SIZES, build_tiny

        folder = tempfile.mkdtemp(prefix="videorefer-serve-tiny-")
        # a context long enough for a few 720p frames (VL3 at 1 fps: ~1000 tokens a frame)
        model = str(build_tiny(ours.tiny, os.path.join(folder, f"videorefer-{ours.tiny}"),
                               max_position_embeddings=16384, **ENGINE_SIZES))
        print(f"serving a tiny random {ours.tiny} model built in {model} (answers are gibberish)", file=sys.stderr)
    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    cli_env_setup()
    args = make_arg_parser(FlexibleArgumentParser(prog="python -m videorefer.serve")).parse_args(
        vllm_argv(model, ours, rest))
    validate_parsed_serve_args(args)
    uvloop.run(run_server(args))


if __name__ == "__main__":
    main()
