#!/usr/bin/env bash
# Issue 49's pre-registered row (README.md, "Multiple-try ECMH"): ecmh_mtm (entropy cuts, tries=8, mcmc_steps=2, as
# registered in benchmarks/registry.py), seed 0, all 164 problems, the folder's other settings, on the vLLM CPU build,
# one shard of two per core. Usage: bash run-ecmh-mtm.sh SHARD (0 or 1), from the repository root, in the environment
# of .ci/vllm-install.sh with the optional Qwen model installed.
set -euo pipefail
shard=$1
OUT=benchmarks/results/qwen2.5-coder-0.5b-instruct-humaneval-alpha4
export OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=$shard VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=7200
python -m benchmarks run --task humaneval --model qwen2.5-coder-0.5b-instruct --no-chat --alpha 4 --mcmc-steps 10 \
    --max-new-tokens 512 --block-size 32 --batch-size 8 --backend vllm --dtype float32 --shard "$shard/2" --out "$OUT" \
    --seeds 0 --method ecmh_mtm
