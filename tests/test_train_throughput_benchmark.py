"""Smoke test of benchmarks/train_throughput.py: a --quick run, checked through its JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "train_throughput.py"


def test_train_throughput_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("mardini_benchmark_train_throughput", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "throughput.json"
    module.main(["--quick", "--out", str(out)])
    data = json.loads(out.read_text())
    arms = {(r["precision"], r["latent_cache"], r["compile"]) for r in data["results"]}
    assert arms == {(p, c, False) for p in ("fp32", "bf16") for c in (False, True)}
    for row in data["results"]:
        assert row["clips_per_s"] > 0 and row["generator_tokens_per_s"] > row["clips_per_s"]
        assert len(row["step_times"]) == 2
        assert (row["cache_build_s"] is not None) == row["latent_cache"]
    assert data["machine"]["preset"] == "mardini-tiny"
