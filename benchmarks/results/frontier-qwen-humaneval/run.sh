#!/usr/bin/env bash
# Issue 49's frontier on Qwen2.5-Coder-0.5B over HumanEval/0-31: ECMH (`ecmh`, K = 1) and multiple-try ECMH
# (`ecmh --tries K`) at the evidence folder's settings (alpha 4, T 512, B 32, entropy cuts, seed 0, vLLM CPU build),
# one results folder per setting KxN. ECMH at N = 10 and plain low-temperature sampling are the evidence folder's own
# rows (qwen2.5-coder-0.5b-instruct-humaneval-alpha4), which used the same settings.
# Usage: bash run.sh KxN [CORE], from the repository root, in the environment of .ci/vllm-install.sh with the
# optional Qwen model installed; then `python -m benchmarks.frontier_humaneval` pairs the folders.
set -euo pipefail
setting=$1 core=${2:-0}
tries=${setting%x*} steps=${setting#*x}
OUT=benchmarks/results/frontier-qwen-humaneval/$setting
export OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=$core VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=7200
python -m benchmarks run --task humaneval --model qwen2.5-coder-0.5b-instruct --no-chat --alpha 4 --mcmc-steps "$steps" \
    --tries "$tries" --max-new-tokens 512 --block-size 32 --batch-size 8 --backend vllm --dtype float32 --limit 32 \
    --out "$OUT" --seeds 0 --method ecmh
