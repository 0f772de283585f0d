"""Smoke test of benchmarks/block_ablation.py: its generation matches the pipeline, its report holds together."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "block_ablation.py"


@pytest.fixture(scope="module")
def bench():  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location("mardini_benchmark_block_ablation", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generate_with_default_arm_is_the_pipelines_image_to_video(bench) -> None:
    from mardini import tasks
    from mardini.pipeline import MarDiniPipeline

    pipe = MarDiniPipeline.from_pretrained()
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 256, (3, 128, 128), dtype=np.uint8))
    # The arm re-implements one window; with no override it must be the pipeline's call exactly.
    mine = bench.generate(pipe, image[None], [4], 9, bench.Arm("x", guidance=2.5, steps=2), seed=3)
    theirs = tasks.image_to_video(pipe, image.permute(1, 2, 0).numpy(), 9, ref_index=4, steps=2, seed=3,
                                  progress=False)
    assert torch.equal(mine, torch.from_numpy(theirs.frames[0]).permute(0, 3, 1, 2))
    # The overrides change the result (same seed): they reach the generator.
    flip = "temporal" if pipe.config.generator.attention == "spatiotemporal" else "spatiotemporal"
    other = bench.generate(pipe, image[None], [4], 9, bench.Arm("y", steps=2, attention=flip), seed=3)
    assert not torch.equal(mine, other)


def test_quick_run_report(bench, tmp_path: Path) -> None:
    out, sheet = tmp_path / "blocks.json", tmp_path / "sheet.png"
    report = bench.main(["--quick", "--arms", "baseline", "--json", str(out), "--sheet", str(sheet)])
    saved = json.loads(out.read_text())
    assert saved["grid"] == {"token_px": 16, "block_px": 8, "planner_px": 32}
    assert set(saved["rows"]) == {"reference repeated", "codec round trip, repeated", "baseline"}
    # The metric's zero point: a repeated codec round trip has no token grid.
    assert abs(saved["rows"]["codec round trip, repeated"]["seam"] - 1.0) < 0.1
    # Reference first: its own position is the codec's round trip, seam about 1 as well.
    assert len(saved["rows"]["baseline"]["seam_by_frame_ref_first"]) == 9
    from mardini.checkpoint import read_config
    from mardini.pipeline import DEFAULT_CHECKPOINT

    attention = read_config(DEFAULT_CHECKPOINT)[0].generator.attention  # the bundled model's, as the arm ran
    assert f"| baseline | 2.5 | 2 | {attention} | yes |" in report["table"]
    assert sheet.is_file() and sheet.stat().st_size > 0
