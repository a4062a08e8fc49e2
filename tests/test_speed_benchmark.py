"""The speed benchmark runs end to end on a tiny model (its timings are read by people, not asserted here; its token
counts and the sameness of the answers with and without early rejection are)."""

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

import ecmh
from benchmarks import speed
from benchmarks.methods import MH, Plain
from benchmarks.registry import COST_REFERENCE, METHODS
from ecmh.prompts import encode_prompts

ROOT = Path(__file__).resolve().parents[1]
TOY = ["--max-new-tokens", "8", "--block-size", "4", "--repeats", "1"]


@pytest.fixture(scope="module")
def sharp_chat_model_dir(tiny_chat_model_dir, tmp_path_factory):
    """The tiny chat model with its output head scaled by 100: peaked, varied next-token distributions (as
    `ecmh.toy.random_model`'s), so MH proposals get rejected early; the flat original's rarely do."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_model_dir)
    with torch.no_grad():
        model.lm_head.weight.mul_(100)
    directory = tmp_path_factory.mktemp("sharp-chat")
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(tiny_chat_model_dir).save_pretrained(directory)
    return directory


def test_speed_benchmark_writes_its_tables(sharp_chat_model_dir, tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(["--model", str(sharp_chat_model_dir), "--rows", "1,2", *TOY, "--mcmc-steps", "1", "--profile",
                "--particles", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["rows"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        assert r["forward_with_padding"] >= 1.0
        assert {"cost_vs_generate", "kv_reuse_speedup", "forward_share", "peak_memory_mb"} <= set(r)
    printed = capsys.readouterr().out
    assert "reuse x" in printed and f"per answer, as a ratio to {COST_REFERENCE}'s" in printed
    for latency in report["latency"]:
        per_answer = latency["per_answer"]
        assert list(per_answer) == list(METHODS) and latency["reference"] == COST_REFERENCE  # every registered method
        reference = per_answer[COST_REFERENCE]
        assert all(reference[f"{name}_vs_reference"] == 1.0 for name in ("sequential_passes", "decoded_tokens", "seconds"))
        for method, kind in METHODS.items():
            one_after_another = isinstance(kind, Plain) or isinstance(kind, MH) and kind.options.get("tries", 1) == 1
            if one_after_another:  # one token after another, plus the prompt
                assert per_answer[method]["sequential_passes"] == pytest.approx(per_answer[method]["decoded_tokens"] + 1)
        smc = per_answer["smc"]  # 4 particles in lockstep: at most the cap's passes, 4 particles' tokens
        assert smc["sequential_passes"] <= 8 + 1 and smc["decoded_tokens"] >= smc["sequential_passes"] - 1
        moved = per_answer["smc_ecmh"]  # the moves decode one after another too: more passes than the cap allows SMC
        assert moved["decoded_tokens"] >= moved["sequential_passes"] - 1 > 0
    assert [(r["rows"], r["cut"]) for r in report["early_rejection"]] == [(1, "entropy"), (2, "entropy")]
    assert_consistent(report["early_rejection"], printed)


def assert_consistent(results: list[dict], printed: str) -> None:
    """Early rejection's table: the same answers both ways, never more tokens or passes with it, and the ratios and
    the printed line are the figures'."""
    for r in results:
        assert r["identical"] and all(seed["identical"] for seed in r["per_seed"])
        with_, without = r["with"], r["without"]
        for name in ("decoded_tokens", "sequential_passes", "mh_proposal_tokens"):
            assert with_[name] <= without[name]
            assert r["with_vs_without"][name] == pytest.approx(with_[name] / without[name])
        saved = (without["decoded_tokens"] - with_["decoded_tokens"]) / without["mh_proposal_tokens"]
        assert r["proposal_tokens_saved"] == pytest.approx(saved) and 0 <= saved <= 1
        assert with_["decoded_tokens"] - with_["mh_proposal_tokens"] == pytest.approx(  # block extensions: the same
            without["decoded_tokens"] - without["mh_proposal_tokens"])
        line = f"{with_['decoded_tokens']:>7.1f}/{without['decoded_tokens']:<7.1f} {r['with_vs_without']['decoded_tokens']:>5.2f}"
        assert line in printed
    assert "with / without exact early rejection" in printed


def test_early_rejection_only_compares_both_cuts_seed_by_seed_and_saves_tokens(sharp_chat_model_dir, tmp_path, capsys):
    out = tmp_path / "early.json"
    speed.main(["--model", str(sharp_chat_model_dir), "--rows", "4", "--chains", "2", "--max-new-tokens", "8",
                "--block-size", "4", "--mcmc-steps", "2", "--repeats", "2", "--cuts", "entropy,uniform",
                "--early-rejection-only", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["results"] == [] and report["latency"] == []
    results = report["early_rejection"]
    assert [(r["rows"], r["cut"]) for r in results] == [(4, "entropy"), (4, "uniform")]
    assert all([seed["seed"] for seed in r["per_seed"]] == [0, 1] for r in results)
    printed = capsys.readouterr().out
    assert "reuse x" not in printed and "per answer, as a ratio to" not in printed
    assert_consistent(results, printed)
    for r in results:  # it stopped proposals here, and saved what it stopped
        assert r["with"]["early_rejections"] > 0 and r["with"]["decoded_tokens"] < r["without"]["decoded_tokens"]


def test_chains_fill_rows_as_num_return_sequences_does(sharp_chat_model_dir):
    model, tokenizer = ecmh.load_model(str(sharp_chat_model_dir))
    args = speed.build_parser().parse_args(["--chains", "2"])
    texts = speed.prompts(4, args)
    assert texts == [speed.FALLBACK_PROMPTS[0]] * 2 + [speed.FALLBACK_PROMPTS[1]] * 2
    options = dict(alpha=4.0, mcmc_steps=2, block_size=4, max_new_tokens=8, seed=3)
    rows, once = encode_prompts(tokenizer, texts), encode_prompts(tokenizer, texts[::2])
    assert torch.equal(ecmh.generate(model, rows.input_ids, attention_mask=rows.attention_mask, **options),
                       ecmh.generate(model, once.input_ids, attention_mask=once.attention_mask, num_return_sequences=2,
                                     **options))


def test_the_speed_benchmark_refuses_chains_that_do_not_divide_the_rows(capsys):
    for wrong in (["--rows", "1,4", "--chains", "2"], ["--chains", "0"], ["--cuts", "entropy,random"]):
        with pytest.raises(SystemExit):
            speed.main(wrong)
        assert wrong[-2] in capsys.readouterr().err


def documented_early_rejection_commands() -> list[list[str]]:
    """The words of every `python -m benchmarks.speed ... --early-rejection-only` command in README.md and
    benchmarks/README.md (a line continued by a backslash joined)."""
    text = "\n".join((ROOT / name).read_text() for name in ("README.md", "benchmarks/README.md"))
    text = re.sub(r"\\\n\s*", " ", text)
    commands = re.findall(r"python -m benchmarks\.speed [^`\n]*--early-rejection-only[^`\n]*", text)
    return [shlex.split(command)[3:] for command in commands]


def test_every_documented_early_rejection_command_runs_at_toy_size(sharp_chat_model_dir, tmp_path, capsys):
    commands = documented_early_rejection_commands()
    assert len(commands) >= 2  # benchmarks/README.md's and README.md's
    toy = {"--model": str(sharp_chat_model_dir), "--max-new-tokens": "8", "--block-size": "4", "--mcmc-steps": "2",
           "--repeats": "1", "--rows": "2", "--out": str(tmp_path / "early.json")}
    for words in commands:
        speed.build_parser().parse_args(words)  # every documented option exists
        arguments, index = [], 0
        while index < len(words):  # the documented command with the toy sizes, the rest as written
            if words[index] in toy:
                arguments += [words[index], toy[words[index]]]
                index += 2
            else:
                arguments.append(words[index])
                index += 1
        arguments += [word for option, value in toy.items() if option not in arguments for word in (option, value)]
        speed.main(arguments)
        assert_consistent(json.loads((tmp_path / "early.json").read_text())["early_rejection"], capsys.readouterr().out)


def test_the_draw_benchmark_times_both_ways_and_refuses_bad_sizes(tmp_path, capsys):
    from benchmarks import draw_speed

    out = tmp_path / "draw.json"
    results = draw_speed.main(["--vocab", "300", "--rows", "1,3", "--repeats", "2", "--out", str(out)])
    assert [(r["vocab"], r["rows"]) for r in results] == [(300, 1), (300, 3)]
    assert json.loads(out.read_text())["results"] == results
    assert all(r["blocked_ms"] > 0 and r["one_block_ms"] > 0 for r in results)
    with pytest.raises(SystemExit):
        draw_speed.main(["--rows", "0"])
    assert "--rows" in capsys.readouterr().err
