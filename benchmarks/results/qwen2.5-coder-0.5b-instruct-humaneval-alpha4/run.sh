#!/usr/bin/env bash
# Issue 24's evidence run, as pre-registered in README.md ("The run"): one shard of two, on the vLLM CPU build
# (cheaper per ECMH answer on this machine than the transformers backend, README.md "Backend"), one core each.
# Usage: bash run.sh SHARD (0 or 1), from the repository root, in the environment of .ci/vllm-install.sh.
# SMC's 15 particles match its decoded tokens to ECMH's: seed 0's ECMH decoded 1,120 tokens per problem and
# low_temp 74.6 (a cost, not an outcome, fixed before any SMC row existed): 1,120 / 74.6 = 15.0.
set -euo pipefail
shard=$1
OUT=benchmarks/results/qwen2.5-coder-0.5b-instruct-humaneval-alpha4
common=(--task humaneval --model qwen2.5-coder-0.5b-instruct --no-chat --alpha 4 --mcmc-steps 10 --max-new-tokens 512
        --block-size 32 --batch-size 8 --backend vllm --dtype float32 --shard "$shard/2" --out "$OUT")
# a step of a starved worker (the machine shared with other work) may take minutes: vLLM's 300 s limit on one
# execute_model call ended shard 1 once (EngineDeadError; its batch in flight was lost, the rest resumed)
export OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=$shard VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=7200
python -m benchmarks run "${common[@]}" --seeds 0 --method ecmh,uniform_mh,bon_low_temp
python -m benchmarks run "${common[@]}" --seeds 0 --method smc,power_smc --particles 15
python -m benchmarks run "${common[@]}" --seeds 1 --method low_temp,ecmh
