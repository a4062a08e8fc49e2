"""The shape of the package: no import cycle anywhere in `ecmh/` or `benchmarks/` (lazy imports inside functions
included).

The graph is read from the source (every `import` and `from ... import` statement, resolved to modules
of the package), not from what happens to be imported at run time."""

import ast
import subprocess
import sys
from pathlib import Path

import ecmh

PACKAGE = Path(ecmh.__file__).parent
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    modules = {}
    for path in package.rglob("*.py"):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports(name: str, path: Path, modules: dict) -> set[str]:
    """The package's modules that `name` imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{alias.name}" for alias in node.names]
            found |= {n for n in names if n in modules}
            if any(n not in modules for n in names):  # a name defined in the module `target` itself
                found.add(target)
    return (found & modules.keys()) - {name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state, found = {}, []

    def visit(node, path):
        state[node] = "open"
        for child in sorted(graph[node]):
            if state.get(child) == "open":
                found.append(path[path.index(child):] + [child])
            elif child not in state:
                visit(child, path + [child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(package)
    return {name: imports(name, path, modules) for name, path in modules.items()}


def test_no_module_of_the_package_imports_itself_back():
    assert cycles(import_graph()) == []


def test_no_module_of_the_benchmarks_imports_itself_back():
    assert cycles(import_graph(BENCHMARKS)) == []


def test_the_cycle_check_finds_a_cycle():
    graph = import_graph()
    graph["ecmh.backends.base"].add("ecmh.backends.factory")  # the contract importing its factory back
    assert ["ecmh.backends.base", "ecmh.backends.factory", "ecmh.backends.base"] in cycles(graph)
    benchmarks = import_graph(BENCHMARKS)
    benchmarks["benchmarks.sweep"].add("benchmarks.run")  # the runner's shared types importing the runner back
    assert ["benchmarks.sweep", "benchmarks.run", "benchmarks.sweep"] in cycles(benchmarks)


def test_optional_integrations_are_imported_only_when_used():
    """Ray and vLLM are extras: importing ecmh and the benchmark programs must not import them."""
    code = ("import sys, ecmh, benchmarks.__main__, benchmarks.run, benchmarks.ray_sweep; "
            "print(sorted({'ray', 'vllm'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "[]"


CONTRACT_ALONE = """
import importlib, sys
sys.modules.update(transformers=None, vllm=None)
base = importlib.import_module(sys.argv[1])
class Minimal(base.Backend):
    prepare = start = step = commit = select_rows = close = lambda self, *args, **kwargs: None
print(Minimal().speculate(None, None, None, None, None), Minimal().reject_early(None, None, None))
print(sorted(m for m in sys.modules if m.startswith("ecmh")))
"""


def import_alone(module: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CONTRACT_ALONE, module], capture_output=True, text=True,
                          cwd=PACKAGE.parent)


def test_the_backend_contract_imports_no_model_framework_and_declares_the_optional_capabilities():
    """`ecmh.backends.base` imports with transformers and vLLM made unimportable (`sys.modules[name] = None` makes
    importing them raise; nothing of ecmh is stubbed: the real `ecmh` and `ecmh.backends` packages load their names
    on first use), as a new backend's author sees it, and without the MH kernel. A backend that implements only the
    required methods gets the optional capabilities (`speculate`, `reject_early`) as the contract's do-nothing
    defaults."""
    done = import_alone("ecmh.backends.base")
    assert done.returncode == 0, done.stderr[-2000:]
    defaults, modules = done.stdout.splitlines()
    assert defaults == "None None"  # speculate and reject_early: do nothing unless a backend overrides them
    assert "'ecmh.backends.base'" in modules
    assert not {"'ecmh.kernel'", "'ecmh.models'", "'ecmh.mh'"} & set(modules.strip("[]").split(", "))
    blocked = import_alone("ecmh.backends.transformers")  # the negative control: a module that needs transformers
    assert blocked.returncode != 0 and "import of transformers halted" in blocked.stderr


MAX_LINES = 450  # issue 50: a reader takes a module in one pass


def test_every_library_and_benchmark_module_is_at_most_450_lines():
    lengths = {path: len(path.read_text().splitlines()) for package in (PACKAGE, BENCHMARKS)
               for path in module_files(package).values()}
    assert len(lengths) > 50  # both packages were read
    assert {str(path): n for path, n in lengths.items() if n > MAX_LINES} == {}
