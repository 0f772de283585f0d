"""Smoke tests of benchmarks/efficiency.py and benchmarks/ablation.py: --quick runs, checked through their JSON."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location(f"mardini_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_efficiency_quick(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bench = load_benchmark("efficiency")
    out, md = tmp_path / "efficiency.json", tmp_path / "efficiency.md"
    bench.main(["--quick", "--out", str(out), "--markdown", str(md)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert "estimated duration" in printed and report["estimated_duration_s"] > 0

    arms = report["arms"]
    grid = [a for a in arms if (a["size"], a["frames"]) == (64, 5)]
    # The four designs of table 2, each measured once on the grid point, none failed.
    assert {(a["planner_low_res_factor"], a["generator_attention"]) for a in grid} == {
        (0.5, "temporal"), (0.5, "spatiotemporal"), (1.0, "temporal"), (1.0, "spatiotemporal")}
    assert len(grid) == 4 and not any("error" in a for a in arms)
    for a in arms:
        assert a["latency_s"] > 0 and a["peak_rss_mb"] >= a["rss_with_model_mb"] > 0
        assert 0.0 < a["planner_share"] < 1.0
        phases = a["phases_s"]
        assert phases["planner"] > 0 and phases["generator"] > 0 and phases["decode"] > 0
        # The phases are disjoint: together they never exceed the whole generation.
        assert phases["other"] > -1e-3 and max(phases.values()) < a["latency_s"]
        # 2 DDIM steps, guidance 2.5 in one batched call per step.
        assert a["generator_calls"] == 2
        assert a["denoise_gflops_per_s"] > 0 and 0 < a["denoise_fraction_of_matmul_peak"]
    symmetric = next(a for a in grid if a["planner_low_res_factor"] == 1.0 and a["generator_attention"] ==
                     "spatiotemporal")
    assert symmetric["latency_vs_symmetric"] == 1.0
    # The planner at full resolution sees ~4x the tokens; the spatio-temporal generator attends
    # across frames: both cost FLOPs (counted, CPU attention included).
    low = next(a for a in grid if a["planner_low_res_factor"] == 0.5 and a["generator_attention"] == "temporal")
    assert symmetric["tokens"]["planner"] > 3 * low["tokens"]["planner"]
    assert symmetric["planner_gflops"] > 2 * low["planner_gflops"]
    assert symmetric["generator_gflops_per_call"] > low["generator_gflops_per_call"]
    # The scaling series: the asymmetric arm at 9 frames and at 96 px as well.
    assert {(a["size"], a["frames"]) for a in arms} == {(64, 5), (64, 9), (96, 5)}
    assert report["matmul_peak"]["gflops"] > 0
    for name in ("table2", "frame_scaling", "size_scaling"):
        assert report["tables"][name] in md.read_text()
    assert "| temporal | low (x0.5) | 64 | 5 |" in report["tables"]["table2"]


def test_ablation_quick(tmp_path: Path) -> None:
    bench = load_benchmark("ablation")
    report = bench.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["runs"].keys() == report["runs"].keys() == {
        "joint", "generator_only", "planner_only", "identity_attention", "no_identity_attention"}
    assert saved["random_codec"] is True and "meaningless" in saved["codec"]
    assert "meaningless" in (tmp_path / "results.md").read_text()
    assert saved["estimated_duration_s"]["total"] > 0

    # Equal training compute: every arm ran the same number of steps; its loss was logged each step.
    for name, run in saved["runs"].items():
        assert [step for step, _ in run["loss_curve"]] == [1, 2, 3], name
        assert all(math.isfinite(loss) for _, loss in run["loss_curve"])
    assert saved["runs"]["planner_only"]["stage"] == "planner"
    assert saved["runs"]["planner_only"]["planner_low_res_factor"] == 1.0
    # The identity-attention switch reached the trained checkpoint.
    for name, expected in (("identity_attention", True), ("no_identity_attention", False)):
        config = json.loads(next((tmp_path / "runs" / name / "checkpoints").glob("step-*/config.json")).read_text())
        assert config["config"]["generator"]["identity_attention"] is expected

    rows = saved["table1"]["rows"]
    for name in ("joint", "generator_only", "planner_only"):
        assert rows[name]["clips"] == 2 and rows[name]["latent_mse"] > 0
        assert {"psnr", "ssim", "psnr_mid", "ssim_mid"} <= set(rows[name])
    assert rows["codec"]["available"] and rows["linear"]["available"]
    fig = saved["figure5c"]
    assert set(fig["curves"]) == {"identity_attention", "no_identity_attention"}
    # Either a plot was written or the reason why not is recorded.
    assert (fig["plot"] is not None and Path(fig["plot"]).is_file()) or "matplotlib" in fig["plot_note"]


def test_plot_training_writes_a_png_per_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the loss-curve plot needs matplotlib (in the dev extra)")
    spec = importlib.util.spec_from_file_location("mardini_plot_training",
                                                  Path(__file__).resolve().parents[1] / "scripts" / "plot_training.py")
    plot_training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot_training)
    for name, extra in (("vae", {"psnr": 20.0}), ("stage2", {})):
        run = tmp_path / name
        run.mkdir()
        lines = [json.dumps({"step": s, "loss": 1.0 / s, "time": 100.0 + 2 * s, **extra}) for s in range(1, 40)]
        if name == "stage2":  # a preview-score record every 10 steps, between the loss records
            lines += [json.dumps({"step": s, "preview_seam": 1.9 - s / 40, "preview_sharpness": 0.5,
                                  "preview_generated_frames": 3}) for s in range(10, 40, 10)]
        (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    losses, previews = plot_training.split_records(plot_training.read_metrics(tmp_path / "stage2"))
    assert len(losses) == 39 and [r["step"] for r in previews] == [10, 20, 30]
    out = tmp_path / "curves.png"
    assert plot_training.main([str(tmp_path / "vae"), str(tmp_path / "stage2"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert plot_training.moving_average([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]
    assert plot_training.wall_time([{"time": 0.0}, {"time": 5.0}, {"time": 5000.0}, {"time": 5010.0}]) == 15.0
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        plot_training.main([str(tmp_path / "missing"), "--out", str(out)])
