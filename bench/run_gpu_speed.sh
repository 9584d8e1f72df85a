#!/usr/bin/env bash
# The GPU half of bench.speed, as run through the device tool (one H200; see BENCHMARKS.md).
# Prepare on the development machine (wheels the GPU machine lacks, ~22 MB):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl transformers==5.24.0 tokenizers==0.23.3 safetensors==0.8.0
#   pip download --no-deps ... -d /tmp/bnb bitsandbytes==0.50.2 && unzip it into .devsite/ keeping only
#   libbitsandbytes_cpu.so and libbitsandbytes_cuda130.so (the wheel is 43 MB, mostly other CUDA versions)
# Then run this script there with .whl and .devsite carried; results land in $OUT (speed.md, speed.json, log.txt).
# Parts (one run fits one device call of <= 600 s; run it twice for both families):
#   bash bench/run_gpu_speed.sh                                   # VideoRefer-7B: object encoder, SAM 2.1, 7B shapes
#   PARTS=vl3-regions,vl3-2b,vl3-7b bash bench/run_gpu_speed.sh    # VideoRefer-VL3: region encoder, 2B and 7B shapes
# Every model has random N(0, 0.02) weights (no download); VL3 runs bf16 then 4-bit (STEPS_VL3).
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devsite:$PWD BENCH_TMP=/tmp PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/speed-gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'bitsandbytes', bitsandbytes.__version__)" | tee -a "$OUT/gpu.txt"
PARTS=${PARTS:-encoder,sam2,7b}
STEPS_VL3=${STEPS_VL3:-bf16,4bit}
timeout 530 python3 -m bench.speed --device cuda --out "$OUT" --parts "$PARTS" --steps-vl3 "$STEPS_VL3" --repeats 5 \
  --new-tokens 128 --budget-s 400 > "$OUT/log.txt" 2>&1
echo "exit $?"
grep -v "Loading\|Writing" "$OUT/log.txt" | tail -45

# Engines, transformers vs vLLM, on the VL3-7B and -2B shapes (concurrency 1/8/32/64, tokens/s, TTFT, peak memory).
# Needs a vLLM venv on the GPU machine (`bash scripts/vllm_venv.sh .venv-vllm cuda`: vllm's CUDA wheels come from
# PyPI, so not on the device tool's offline machine):
#   ENGINES=1 bash bench/run_gpu_speed.sh
if [ "${ENGINES:-0}" = 1 ]; then
  for shape in 2b 7b; do
    timeout 1500 .venv-vllm/bin/python -m bench.speed_engines --shape "$shape" --concurrency 1,8,32,64 \
      --threads 8 --out "$OUT/engines-$shape" > "$OUT/engines-$shape.log" 2>&1
    echo "engines $shape: exit $?"; tail -12 "$OUT/engines-$shape.log"
  done
fi
