"""A newcomer's first hour: the README's Python example runs as written, and each ordinary mistake
gets one line that names the argument and the fix (exit code 2 in the command lines)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from packaging import version

import ecmh
from conftest import tiny_model

README = Path(__file__).resolve().parents[1] / "README.md"


def _cli(*args, module="ecmh.cli"):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""})


def _one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_the_readme_python_example_runs_and_answers(capsys):
    # On the embedded model, as written, with fewer tokens and MH steps so that it takes seconds. An
    # instruct model prompted without its chat template answers its end token at once: '' would fail.
    python_section = README.read_text().split("\n## Python\n")[1].split("\n## ")[0]
    [block] = re.findall(r"```python\n(.*?)```", python_section, re.DOTALL)
    quick = block.replace("max_new_tokens=128", "max_new_tokens=12").replace("mcmc_steps=10", "mcmc_steps=1")
    assert quick.count("max_new_tokens=12") == 2 and quick.count("mcmc_steps=1,") == 2
    through_transformers = "# the same call through transformers (>= 4.57):"
    assert through_transformers in quick
    if version.parse(transformers.__version__) < version.parse("4.57"):  # the floors job (.ci/floors.sh)
        quick = quick[: quick.index(through_transformers)]
    exec(compile(quick, "README.md", "exec"), {"__name__": "__main__"})
    captured = capsys.readouterr()
    assert "ECMH proposals" in captured.err  # a call that takes minutes on a CPU shows that it moves
    printed = captured.out.strip().splitlines()
    for answers in [ast.literal_eval(line) for line in printed if line.startswith("[")]:
        assert len(answers) == 2 and all(answer.strip() for answer in answers), printed
    assert len(printed) == (2 if through_transformers not in quick else 3), printed


@pytest.mark.parametrize("name, words", [
    ("/nonexistent/model", ["/nonexistent/model", "does not exist"]),
    ("./no/such/model", ["./no/such/model", "does not exist"]),
    ("smollm2-135m", ["smollm2-135m-instruct"]),  # a typo of an embedded name: the names, no network
])
def test_bad_model_names_are_one_clear_error_without_the_network(name, words, monkeypatch):
    import transformers

    def no_network(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_network)
    with pytest.raises(ValueError) as error:
        ecmh.load_model(name)
    assert all(word in str(error.value) for word in words)


def test_cli_bad_model_path_is_one_line_and_exit_2():
    _one_line_error(_cli("generate", "Hi", "--model", "./no/such/model"), "--model", "does not exist")


def test_cli_cuda_on_a_machine_without_it_is_one_line_and_exit_2():
    _one_line_error(_cli("generate", "Hi", "--device", "cuda"), "--device", "cpu")


def test_cli_empty_prompt_is_refused():
    _one_line_error(_cli("generate", "   "), "prompt")


def test_benchmarks_out_and_report_paths_are_checked(tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("")
    _one_line_error(_cli("run", "--task", "gsm8k", "--method", "ecmh", "--out", str(a_file), module="benchmarks"), "--out", "folder")
    _one_line_error(_cli("report", str(a_file), module="benchmarks"), "folder")
    _one_line_error(_cli("report", str(tmp_path / "missing"), module="benchmarks"), "does not exist")


def test_a_padded_batch_without_attention_mask_warns():
    model = tiny_model()
    ids = torch.tensor([[3, 3, 0, 1], [0, 1, 2, 1]])  # 3 is the pad token, on the left of row 0
    with pytest.warns(UserWarning, match="attention_mask"):
        ecmh.generate(model, ids, max_new_tokens=2, pad_token_id=3, seed=0)


def test_the_benchmark_runner_is_reachable_from_any_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0 and "ecmh-benchmarks report" in result.stdout
    script = Path(sys.executable).with_name("ecmh-benchmarks")
    assert subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True).returncode == 0


SHADOWED = "AttributeError: module 'ecmh' has no attribute 'load_model'"


def test_a_folder_named_ecmh_beside_a_script_is_explained_in_the_readme(tmp_path):
    """A script saved beside a clone folder named `ecmh` imports that folder as a namespace package, and no code of
    ecmh runs to say so: the README's troubleshooting quotes the error and gives the fix, which is checked here."""
    script = "import ecmh\nprint(callable(ecmh.load_model))\n"
    (tmp_path / "ecmh").mkdir()  # the clone: no __init__.py at its top
    (tmp_path / "try.py").write_text(script)
    run = lambda folder: subprocess.run([sys.executable, str(folder / "try.py")], capture_output=True,  # noqa: E731
                                        text=True, cwd=folder, timeout=120)
    shadowed = run(tmp_path)
    assert shadowed.returncode == 1 and shadowed.stderr.strip().splitlines()[-1] == SHADOWED
    troubleshooting = README.read_text().split("\n## Troubleshooting\n")[1].split("\n## ")[0]
    [entry] = [item for item in troubleshooting.split("\n- ") if SHADOWED in item]
    assert "mv ecmh ecmh-repo" in entry
    (tmp_path / "ecmh").rename(tmp_path / "ecmh-repo")  # the fix it gives
    fixed = run(tmp_path)
    assert fixed.returncode == 0 and fixed.stdout.strip() == "True", fixed.stderr
