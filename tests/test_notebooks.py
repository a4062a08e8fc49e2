"""notebooks/: each runs top to bottom (at toy size), and the committed copies read well and leak nothing.

They run in a scratch copy, with fewer tokens or chains (`TOY_SIZE`), so the committed
outputs change only when someone re-executes and commits them.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
LOCAL_PATH = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|[A-Z]:\\\\Users)")
SECRET = re.compile(r"(hf_[A-Za-z0-9]{30,}|sk-[A-Za-z0-9]{20,}|api[_-]?key|password|HF_TOKEN=)", re.IGNORECASE)


def test_there_are_six_notebooks_each_linked_from_the_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert [path.stem for path in NOTEBOOKS] == [
        "01_quickstart", "02_exactness", "03_decision_points", "04_mixing", "05_benchmark_report", "06_smc_vs_mh"]
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_outputs_one_parameters_cell_and_no_local_paths_or_secrets(path):
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert sum("parameters" in cell.metadata.get("tags", []) for cell in code) == 1
    assert all(cell.execution_count for cell in code), "re-execute the notebook before committing it"
    assert any(output.get("output_type") == "display_data" for cell in code for output in cell.outputs) \
        or path.stem == "01_quickstart", "a plot should render"
    for cell in code:
        for output in cell.outputs:
            if output.get("output_type") == "error":
                pytest.fail(f"{path.name} was committed with an error: {output.get('ename')}")
            text = nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=[output])]))
            assert not LOCAL_PATH.search(text), f"{path.name}: a local path in an output"
            assert not SECRET.search(text), f"{path.name}: something like a secret in an output"
        assert not LOCAL_PATH.search(cell.source) and not SECRET.search(cell.source)


# parameters at toy size, injected after each notebook's parameters cell as papermill does (`-p NAME VALUE`): every
# cell runs, on fewer tokens or chains; the committed outputs come from the defaults
TOY_SIZE = {"01_quickstart": "MAX_NEW_TOKENS = 16", "02_exactness": "CHAINS = 500",
            "03_decision_points": "MAX_NEW_TOKENS = 32\nMCMC_STEPS = 2", "04_mixing": "MAX_NEW_TOKENS = 16",
            "05_benchmark_report": "MAX_NEW_TOKENS = 32", "06_smc_vs_mh": "ANSWERS = 500"}


def with_parameters(nb, source: str):
    """`nb` with a cell of `source` after its parameters cell, each name it sets being one of the parameters."""
    at = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    for name in re.findall(r"^(\w+) =", source, re.MULTILINE):
        assert re.search(rf"^{name} =", nb.cells[at].source, re.MULTILINE), f"{name} is not a parameter of the notebook"
    nb.cells.insert(at + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path):
    nb = with_parameters(nbformat.read(path, as_version=4), TOY_SIZE[path.stem])
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
