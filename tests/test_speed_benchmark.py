"""The speed benchmark runs end to end (its numbers are read by people, not asserted here)."""

import json

import pytest

from benchmarks import speed


def test_speed_benchmark_writes_its_table(tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(["--rows", "1,2", "--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1",
                "--repeats", "1", "--profile", "--particles", "4", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["rows"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        assert r["forward_with_padding"] >= 1.0
        assert {"cost_vs_generate", "kv_reuse_speedup", "forward_share", "peak_memory_mb"} <= set(r)
    printed = capsys.readouterr().out
    assert "reuse x" in printed and "per answer, as a ratio to plain decoding" in printed
    for latency in report["latency"]:
        per_answer = latency["per_answer"]
        assert list(per_answer) == ["plain", "ecmh", "uniform_mh", "smc"]
        assert all(per_answer["plain"][f"{name}_vs_plain"] == 1.0 for name in ("sequential_passes", "decoded_tokens", "seconds"))
        for method in ("plain", "ecmh", "uniform_mh"):  # one token after another, plus the prompt
            assert per_answer[method]["sequential_passes"] == pytest.approx(per_answer[method]["decoded_tokens"] + 1)
        smc = per_answer["smc"]  # 4 particles in lockstep: at most the cap's passes, 4 particles' tokens
        assert smc["sequential_passes"] <= 8 + 1 and smc["decoded_tokens"] >= smc["sequential_passes"] - 1


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
