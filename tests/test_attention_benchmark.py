"""Smoke test of benchmarks/attention.py: a --quick run on tiny sizes, checked through its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "attention.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("mardini_benchmark_attention", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_attention_benchmark_quick(tmp_path):
    bench = load_benchmark()
    out = tmp_path / "attention.json"
    frames = [5, 9]
    dtypes = ["fp32", "bf16"]
    bench.main(["--quick", "--frames", *map(str, frames), "--tokens-per-frame", "4", "--heads", "2",
                "--head-dim", "8", "--dtypes", *dtypes, "--warmup", "0", "--repeats", "1",
                "--threads", "1", "--out", str(out)])
    results = json.loads(out.read_text())

    # One row per (frames, generated frames, dtype) case, and nothing else.
    expected = {(f, g, d) for d in dtypes for f in frames for g in bench.generated_counts(f, [0.25, 0.5, 0.75])}
    got = [(r["frames"], r["generated_frames"], r["dtype"]) for r in results["rows"]]
    assert len(got) == len(set(got)) == len(expected)
    assert set(got) == expected
    # 1 frame generated and all-but-one are always among the cases.
    for f in frames:
        assert {1, f - 1} <= {g for (ff, g, _) in got if ff == f}

    # Both implementations agree on every case; reference rows are exact copies of v.
    assert results["all_outputs_match"] is True
    for row in results["rows"]:
        assert row["outputs_match"] and row["reference_rows_exact"]
        assert row["max_abs_diff"] <= row["tolerance"]
        assert row["dense_ms"] > 0 and row["identity_ms"] > 0
        assert row["flop_ratio"] == row["generated_frames"] / row["frames"]

    machine = results["machine"]
    assert machine["torch"] and machine["torch_threads"] == 1 and machine["cpu"]["model_name"]
