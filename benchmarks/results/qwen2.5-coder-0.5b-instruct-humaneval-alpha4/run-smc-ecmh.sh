#!/usr/bin/env bash
# Issue 45's pre-registered row (README.md, "SMC with ECMH moves"): smc_ecmh, seed 0, all 164 problems, the folder's
# settings, on the vLLM CPU build, one shard of two per core. Usage: bash run-smc-ecmh.sh SHARD (0 or 1), from the
# repository root, in the environment of .ci/vllm-install.sh with the optional Qwen model installed.
# The budget, from costs only: the pilot (HumanEval/0-7, 8 particles, a move at every check, on the vLLM CPU build as
# two shards; only its decoded tokens read) gave C8 = 1,177.75 mean decoded tokens per problem, so
# PARTICLES = round(8 * 1,120 / 1,177.75) = 8.
set -euo pipefail
shard=$1
PARTICLES=8
OUT=benchmarks/results/qwen2.5-coder-0.5b-instruct-humaneval-alpha4
export OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=$shard VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=7200
python -m benchmarks run --task humaneval --model qwen2.5-coder-0.5b-instruct --no-chat --alpha 4 --mcmc-steps 10 \
    --max-new-tokens 512 --block-size 32 --batch-size 8 --backend vllm --dtype float32 --shard "$shard/2" --out "$OUT" \
    --seeds 0 --method smc_ecmh --particles "$PARTICLES"
