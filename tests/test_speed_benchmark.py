"""The speed benchmark runs end to end (its numbers are read by people, not asserted here)."""

import json

from benchmarks import speed


def test_speed_benchmark_writes_its_table(tmp_path, capsys):
    out = tmp_path / "speed.json"
    speed.main(["--rows", "1,2", "--max-new-tokens", "8", "--block-size", "4", "--mcmc-steps", "1",
                "--repeats", "1", "--profile", "--out", str(out)])
    report = json.loads(out.read_text())
    assert [r["rows"] for r in report["results"]] == [1, 2]
    for r in report["results"]:
        assert r["forward_with_padding"] >= 1.0
        assert {"cost_vs_generate", "kv_reuse_speedup", "forward_share", "peak_memory_mb"} <= set(r)
    assert "reuse x" in capsys.readouterr().out
