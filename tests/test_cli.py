"""`ecmh generate` end to end on the embedded SmolLM2-135M-Instruct (offline)."""

import json
import subprocess
import sys


def _ecmh(*args):
    return subprocess.run([sys.executable, "-m", "ecmh.cli", *args], capture_output=True, text=True, timeout=600)


def test_generate_json_on_the_embedded_model():
    result = _ecmh("generate", "What is 2 + 2?", "--max-new-tokens", "8", "--mcmc-steps", "1", "--seed", "0", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["model"] == "smollm2-135m-instruct"
    assert record["tokens_decoded"] >= 1 and record["proposals"] >= 1
    assert set(record) >= {"answer", "acceptance_rate", "tokens_forwarded", "log_p", "seconds"}
    assert record["settings"] == {"algorithm": "mh", "alpha": 4.0, "max_new_tokens": 8, "seed": 0, "stop_strings": [],
                                  "chat": True, "mcmc_steps": 1, "block_size": 8, "cut": "entropy", "cut_power": 4.0,
                                  "early_rejection": True, "tries": 1}
    again = _ecmh("generate", "What is 2 + 2?", "--max-new-tokens", "8", "--mcmc-steps", "1", "--seed", "0", "--json")
    assert json.loads(again.stdout)["answer"] == record["answer"]


def test_a_stop_string_ends_the_answer():
    result = _ecmh("generate", "Count from 1 to 20, separated by commas.", "--max-new-tokens", "48", "--mcmc-steps", "1",
                   "--seed", "0", "--stop-string", "5", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    answer = record["answer"]
    assert 0 <= answer.find("5") >= len(answer) - 3, answer  # the first "5" is in the last token, which ends it


def test_text_output_has_a_summary_line_and_bad_input_exits_2():
    result = _ecmh("generate", "Hi", "--max-new-tokens", "4", "--mcmc-steps", "1", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("[ecmh] mh: acceptance")
    # a quick run prints nothing on stderr but its progress bar (no warnings, no library noise)
    assert all(line.strip().startswith("ECMH proposals") for line in result.stderr.replace("\r", "\n").splitlines()
               if line.strip()), result.stderr
    bad = _ecmh("generate", "Hi", "--alpha", "0.5", "--max-new-tokens", "4")
    assert bad.returncode == 2 and "alpha" in bad.stderr
    bad = _ecmh("generate", "Hi", "--max-new-tokens", "-1")
    assert bad.returncode == 2 and "`max_new_tokens` must be an integer >= 1" in bad.stderr


def test_smc_from_the_command_line():
    result = _ecmh("generate", "Hi", "--max-new-tokens", "6", "--algorithm", "smc", "--particles", "4", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("[ecmh] smc: 4 particles")
    record = json.loads(_ecmh("generate", "Hi", "--max-new-tokens", "6", "--algorithm", "smc", "--particles", "4",
                              "--seed", "1", "--json").stdout)
    assert "proposals" not in record and 1 <= record["sequential_passes"] <= 6 + 1  # SMC has no MH counters
    bad = _ecmh("generate", "Hi", "--particles", "4")  # an SMC option without --algorithm smc
    assert bad.returncode == 2 and "algorithm" in bad.stderr


def test_a_long_call_says_what_it_may_cost_and_a_quick_one_says_nothing(capsys):
    from ecmh import cli

    cli._warn_if_long(max_new_tokens=128, block_size=16, mcmc_steps=10)  # the CLI's defaults
    assert capsys.readouterr().err == ""
    cli._warn_if_long(max_new_tokens=3072, block_size=192, mcmc_steps=10)  # the papers'
    err = capsys.readouterr().err
    assert err.startswith("ecmh: up to about 133,632 decoded tokens (16 blocks of 192 tokens, 10 MH steps each)")
    assert "--block-size" in err and "--mcmc-steps" in err


def takers_in_the_tables() -> dict[str, list[str]]:
    """Each sampler flag with the algorithms whose options dataclass declares it, in registry order."""
    from ecmh import algorithms
    from ecmh.options import specs

    takers: dict[str, list[str]] = {}
    for name, entry in algorithms.REGISTRY.items():
        for spec in specs(entry.options):
            takers.setdefault(spec.flag, []).append(name)
    return takers


def help_disagreements(parser) -> list[str]:
    """What `ecmh generate --help` says wrong: a sampler flag whose help does not begin with exactly the algorithms
    that take it, an option taking a value whose help does not say its default, Python-only values offered."""
    takers, found = takers_in_the_tables(), []
    for action in parser._actions:
        flag = next(iter(action.option_strings), None)
        if flag in takers and action.help.split(": ")[0].split("/") != takers[flag]:
            found.append(f"{flag} names {action.help.split(': ')[0]!r}, not {'/'.join(takers[flag])}")
        if flag not in (None, "-h") and action.nargs != 0 and "default" not in action.help:
            found.append(f"{flag} says no default")
        if "log_weights" in (action.help or ""):
            found.append(f"{flag} offers an object")
    return found


def test_generate_help_names_each_flags_algorithms_and_default():
    from ecmh import cli
    from synopsis import subcommand

    generate = subcommand(cli._parser(), "generate")
    assert set(takers_in_the_tables()) <= {flag for action in generate._actions for flag in action.option_strings}
    assert help_disagreements(generate) == []
    for flag, wrong in (("--alpha", "the power of p^alpha (default: 4.0)"),  # the negative controls: main's helps
                        ("--cut", "mh: where MH steps cut, or an object with log_weights(entropy, length) (default: x)"),
                        ("--seed", "makes the answer reproducible")):
        generate._option_string_actions[flag].help = wrong
    assert help_disagreements(generate) == ["--alpha names 'the power of p^alpha (default', not mh/smc",
                                            "--cut names 'mh', not mh/smc", "--cut offers an object",
                                            "--seed says no default"]


def test_python_dash_m_ecmh_is_the_ecmh_command():
    import subprocess
    import sys

    from ecmh import __version__

    done = subprocess.run([sys.executable, "-m", "ecmh", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and __version__ in done.stdout, done.stderr
    refused = subprocess.run([sys.executable, "-m", "ecmh", "generate", "hi", "--seed", "-1"], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "`--seed` must be an integer" in refused.stderr  # before any model loads
