#!/usr/bin/env bash
# The GPU check: one command, nothing downloaded, 10 minutes on one H200 without vLLM. From the repository root:
#   bash benchmarks/gpu_check.sh          on a machine with a CUDA GPU; commit what it prints
#   bash benchmarks/gpu_check.sh --tiny   on the CPU with tiny models (CI runs this, so the script cannot rot)
# 1. the exactness sweep and the invariant tests with the models on the GPU (ECMH_TEST_DEVICE);
# 2. the transformers backend's ECMH cost per decoded token against plain `generate` at 1, 16 and 64 rows, on
#    random-weight Qwen2.5-0.5B and -7B configs in bfloat16 (benchmarks/gpu_check.py);
# 3. where vLLM is installed: the vLLM backend's tests, and the same timing through vLLM, once per model runner
#    (VLLM_USE_V2_MODEL_RUNNER=0: the V1 runner; =1: Model Runner V2 with ecmh's V2 logits processor; vLLM 0.34
#    has Model Runner V2 alone).
# Each part prints its own verdict; the script goes on after a failure and exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/.."
tiny=()
device=cuda
quick=()
quick_vllm=()
if [ "${1:-}" = "--tiny" ]; then
  tiny=(--tiny); device=cpu
  quick=(-k "v7-len3-gqa-eos or every_row")  # one model of the sweep and the invariants
  quick_vllm=(-k "v6-len3-plain and every_row or same_draws")  # one engine's invariants, the two processors
  export HYPOTHESIS_PROFILE=quick
elif [ -n "${1:-}" ]; then
  echo "usage: bash benchmarks/gpu_check.sh [--tiny]" >&2; exit 2
fi
# the exactness sweep's tiny models leave a GPU idle: where pytest-xdist is installed, eight workers share it
parallel=()
[ "$device" = cuda ] && python -c "import xdist" 2>/dev/null && parallel=(-n 8)
failed=0
part() { echo; echo "== $*"; "$@" || { failed=1; echo "!! failed: $*"; }; }

python - <<'PY'
import platform, torch, transformers, ecmh
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"ecmh {ecmh.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"python {platform.python_version()}, {gpu}")
PY
part env ECMH_TEST_DEVICE=$device python -m pytest -q -p no:cacheprovider tests/test_exactness.py tests/test_invariants.py "${quick[@]}" "${parallel[@]}"
part python -m benchmarks.gpu_check --backend transformers "${tiny[@]}"
if python -c "import vllm" 2>/dev/null; then
  python -c "import vllm; print('vllm', vllm.__version__)"
  part python -m pytest -q -p no:cacheprovider tests/test_vllm.py tests/test_vllm_processors.py "${quick_vllm[@]}"
  runners=(0 1)
  [ "$device" = cpu ] && runners=(0)  # Model Runner V2 needs Triton's GPU backend
  python -c "from ecmh.backends.vllm.engine import has_v1_runner; exit(not has_v1_runner())" || runners=(1)  # >= 0.34
  for runner in "${runners[@]}"; do
    part env VLLM_USE_V2_MODEL_RUNNER=$runner python -m benchmarks.gpu_check --backend vllm "${tiny[@]}"
  done
else
  echo; echo "== vLLM is not installed: its part is skipped"
fi
echo; [ $failed = 0 ] && echo "gpu_check: every part passed" || echo "gpu_check: some part failed (see !! above)"
exit $failed
