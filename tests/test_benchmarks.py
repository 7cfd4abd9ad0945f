"""Smoke test: the benchmark script runs and prints its tables (its numbers are not checked here)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_sweep.py"


def test_bench_sweep_prints_its_tables(capsys):
    spec = importlib.util.spec_from_file_location("bench_sweep", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--steps", "4", "--loop-steps", "2", "--reps", "1", "--m", "64", "--d", "8"])
    out = capsys.readouterr().out
    for row in ("ℓ4 panel", "ℓ2 panel", "Fig 3, both panels", "l4, 30 configs", "factor gradients"):
        assert row in out
    assert "engine/loop" in out and "floor/engine" in out
