"""Plugins, the way Python packages do it (issue 50): a package that declares entry points in the groups
`ecmh.samplers`, `ecmh.cuts` and `ecmh.backends` adds a sampler, a cut and a backend that the `ecmh` command line,
the benchmark runner and lm-eval's model take, with no line of the caller's code (`ecmh.plugins`).

The plugin here is a folder with a package and its `.dist-info` (what `pip install` writes), put on `PYTHONPATH` for
the programs run as subprocesses: its sampler is `tests/lowtemp_algorithm.py`'s, its cut cuts anywhere (as `uniform`),
its backend is the transformers backend announced on stderr. Each program runs without the folder too: the negative
control, where the plugin's names are refused. A cut registered with one line in the caller's process reaches
`generate` and the command line's choices (`ecmh.cuts.CUTS`).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ecmh
from ecmh import algorithms, cli, cuts
from ecmh.plugins import Registry

from conftest import tiny_model
from synopsis import subcommand
from test_third_algorithm import any_algorithm_task  # noqa: F401 (a fixture)

TESTS = Path(__file__).parent
ROOT = TESTS.parent
ENTRY_POINTS = """\
[ecmh.samplers]
toylowtemp = lowtemp_algorithm:ENTRY

[ecmh.cuts]
toy = toy_ecmh_plugin:CUT

[ecmh.backends]
toy = toy_ecmh_plugin:RUNTIME

[ecmh.test_broken]
broken = toy_ecmh_plugin:MISSING
wrong_kind = toy_ecmh_plugin:CUT
"""
PLUGIN = '''
import sys

import torch

from ecmh.backends.factory import Runtime
from ecmh.cuts import Cut


class AnywhereCut:
    normaliser_only_grows = True

    def log_weights(self, entropy, length):
        return torch.zeros_like(entropy)


def transformers_backend(model):
    from ecmh.backends.transformers import TransformersBackend

    print("toy backend runs the model", file=sys.stderr)
    return TransformersBackend(model)


CUT = Cut(lambda power: AnywhereCut(), "anywhere, as the toy plugin says")
RUNTIME = Runtime(lambda model: hasattr(model, "config"), transformers_backend)
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    (folder / "toy_ecmh_plugin").mkdir()
    (folder / "toy_ecmh_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = folder / "toy_ecmh_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-ecmh-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return folder


def program(words: list, plugin_dir: Path | None) -> subprocess.CompletedProcess:
    """A console program of this environment, with the plugin installed (on PYTHONPATH) or not."""
    path = [str(plugin_dir), str(TESTS)] if plugin_dir else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(words, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def ecmh_generate(model_dir, plugin_dir, *flags) -> subprocess.CompletedProcess:
    return program([str(Path(sys.executable).with_name("ecmh")), "generate", "What is 1 + 1?", "--model",
                    str(model_dir), "--max-new-tokens", "4", "--seed", "0", "--json", *flags], plugin_dir)


def test_the_command_line_takes_the_plugins_sampler_cut_and_backend(tiny_chat_model_dir, plugin_dir):
    sampled = ecmh_generate(tiny_chat_model_dir, plugin_dir, "--algorithm", "toylowtemp", "--alpha", "2")
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    record = json.loads(sampled.stdout)
    assert record["settings"]["algorithm"] == "toylowtemp" and "proposals" not in record  # its own output type
    assert "toy backend runs the model" in sampled.stderr
    cut = ecmh_generate(tiny_chat_model_dir, plugin_dir, "--cut", "toy", "--mcmc-steps", "1", "--block-size", "2")
    assert cut.returncode == 0, cut.stderr[-2000:]
    assert json.loads(cut.stdout)["settings"]["cut"] == "toy" and json.loads(cut.stdout)["proposals"] > 0


def test_without_the_plugin_its_names_are_refused(tiny_chat_model_dir):
    for flags in (["--algorithm", "toylowtemp"], ["--cut", "toy"]):
        refused = ecmh_generate(tiny_chat_model_dir, None, *flags)
        assert refused.returncode == 2 and "invalid choice" in refused.stderr


def test_the_benchmark_runner_runs_the_plugins_sampler_and_cut_as_methods(tiny_chat_model_dir, plugin_dir, tmp_path):
    words = [sys.executable, "-m", "benchmarks", "run", "--task", "gsm8k", "--model", str(tiny_chat_model_dir),
             "--method", "toylowtemp,toy_mh", "--limit", "1", "--max-new-tokens", "4", "--block-size", "2",
             "--mcmc-steps", "1", "--out", str(tmp_path)]
    done = program(words, plugin_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for path in sorted(tmp_path.rglob("*.jsonl")) for line in path.read_text().splitlines()]
    assert sorted(row["method"] for row in rows) == ["toy_mh", "toylowtemp"]
    refused = program(words, None)
    assert refused.returncode == 2 and "Unknown --method 'toylowtemp'" in refused.stderr


def test_lm_evals_model_takes_the_plugins_sampler(tiny_chat_model_dir, plugin_dir, any_algorithm_task):  # noqa: F811
    code = textwrap.dedent(f"""
        import json, lm_eval, ecmh.harness
        from lm_eval.tasks import TaskManager
        results = lm_eval.simple_evaluate(
            model="ecmh", model_args="pretrained={tiny_chat_model_dir},algorithm=toylowtemp,alpha=2,seed=1",
            tasks=["ecmh_local_arithmetic"], task_manager=TaskManager(include_path={str(any_algorithm_task)!r}),
            log_samples=True, limit=2)
        print(json.dumps([s["arguments"][0][1]["ecmh"] for s in results["samples"]["ecmh_local_arithmetic"]]))
    """)
    done = program([sys.executable, "-c", code], plugin_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads(done.stdout.splitlines()[-1])
    assert len(records) == 2 and all("proposals" not in record for [record] in records)  # not an MH output


def test_a_plugin_loads_when_its_registry_is_first_read_and_a_bad_one_is_left_out_with_a_warning(plugin_dir,
                                                                                               monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    registry = Registry("ecmh.test_broken", cuts.Cut)
    registry.register("wrong_kind", cuts.Cut(lambda power: None, "taken"))
    assert registry.registered_so_far().keys() == {"wrong_kind"}  # nothing loaded before a read
    with pytest.warns(UserWarning) as warned:
        assert list(registry) == ["wrong_kind"]
    said = sorted(str(warning.message) for warning in warned)
    assert "the entry point broken = 'toy_ecmh_plugin:MISSING'" in said[0] and "raised AttributeError" in said[0]
    assert "the name 'wrong_kind' is taken; rename the entry point" in said[1]
    registry = Registry("ecmh.test_broken", algorithms.Entry)
    with pytest.warns(UserWarning) as warned:
        assert list(registry) == [] and registry.plugins == {}
    said = sorted(str(warning.message) for warning in warned)
    assert "wrong_kind = 'toy_ecmh_plugin:CUT'" in said[1] and "gives a Cut, not an ecmh.algorithms.Entry" in said[1]


@pytest.fixture
def toy_cut():
    cuts.register("toy_in_process", cuts.Cut(lambda power: cuts.RestartCut(), "always at 0, registered in a test"))
    yield "toy_in_process"
    del cuts.CUTS["toy_in_process"]


def test_a_cut_is_one_registration_line_for_generate_and_the_command_line(toy_cut):
    model, prompts = tiny_model(), torch.tensor([[0, 1]])
    out = ecmh.generate(model, prompts, cut=toy_cut, mcmc_steps=2, block_size=2, max_new_tokens=4, seed=0,
                        record_history=True, return_dict_in_generate=True)
    assert (out.history.cut[~out.history.extension] == 0).all()  # every MH proposal restarts, as its class says
    parser = subcommand(cli._parser(), "generate")
    assert toy_cut in parser._option_string_actions["--cut"].choices
    assert "always at 0, registered in a test" in " ".join(parser.format_help().split())
    del cuts.CUTS[toy_cut]
    try:  # the negative control: unregistered, it is refused alike
        assert toy_cut not in subcommand(cli._parser(), "generate")._option_string_actions["--cut"].choices
        with pytest.raises(ValueError, match=f"Unknown `cut` '{toy_cut}'"):
            ecmh.generate(model, prompts, cut=toy_cut, max_new_tokens=2)
    finally:
        cuts.register(toy_cut, cuts.Cut(lambda power: cuts.RestartCut(), "always at 0, registered in a test"))
