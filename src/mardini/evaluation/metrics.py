"""Reconstruction metrics (PSNR, SSIM) and the Fréchet distance behind FID and FVD.

VIDIM-Bench (paper, appendix D) scores interpolation with FVD and FID (generation) and with SSIM
and LPIPS on the middle (5th) frame (reconstruction). This module holds the pieces that need no
network; `features` holds the Inception / I3D / image-feature extractors, `lpips` LPIPS.

Frames are channel-first, ``(..., 3, H, W)``, the layout of the rest of `mardini`, either
``uint8`` in [0, 255] or floating point in [0, 1] (see `to_unit`). Per-frame metrics return one
value per frame, shaped like the leading dims.

- `psnr`: ``10 log10(1 / MSE)`` on [0, 1] values, over all channels; identical frames give
  ``inf``.
- `ssim`: Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  population (not sample) covariances, computed per channel and averaged over RGB, borders
  excluded. This is exactly ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
  data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` (the settings
  of the SSIM paper that VIDIM-Bench tables use), batched in torch.
- `frechet_distance_from_stats` / `frechet_distance`: ``||mu1 - mu2||^2 + tr(S1 + S2 -
  2 (S1 S2)^{1/2})`` (Heusel et al., 2017). The trace of the matrix square root is taken from
  the eigenvalues of the symmetric PSD matrix ``S1^{1/2} S2 S1^{1/2}``, which has the same
  eigenvalues as ``S1 S2`` but, unlike ``scipy.linalg.sqrtm(S1 @ S2)``, never produces a complex
  or NaN result for the singular covariances of small feature sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: VIDIM-Bench clips: 9 frames, the first and last given; reconstruction metrics (MidF-SSIM,
#: MidF-LPIPS) are taken on the middle, 5th frame (paper, appendix D).
VIDIM_FRAMES, VIDIM_MIDDLE = 9, 4
#: SSIM constants (Wang et al., 2004; skimage defaults).
SSIM_K1, SSIM_K2 = 0.01, 0.03
#: SSIM Gaussian window: sigma 1.5, truncated at 3.5 sigma -> 11 taps (skimage's window for sigma=1.5).
SSIM_SIGMA, SSIM_TRUNCATE = 1.5, 3.5


def to_unit(frames: Tensor | np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
    """Frames as a floating tensor in [0, 1]: ``uint8`` is divided by 255, floats are kept.

    `dtype` is the result's dtype (default: float32 for uint8 input, the input's own for floats).

    Floating inputs are assumed to be in [0, 1] already (not checked beyond a clear error for
    the common [-1, 1] mistake: values below -1e-3 are rejected).
    """
    x = torch.as_tensor(frames)
    if x.dtype == torch.uint8:
        return x.to(dtype or torch.float32) / 255.0
    if not x.is_floating_point():
        raise TypeError(f"frames must be uint8 or floating point in [0, 1]; got {x.dtype}")
    if x.numel() and x.min() < -1e-3:
        raise ValueError(
            "floating-point frames must be in [0, 1]; got negative values. Convert frames in "
            "[-1, 1] with (x + 1) / 2."
        )
    return x if dtype is None else x.to(dtype)


def _check_pair(a: Tensor, b: Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name}: the two inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 3:
        raise ValueError(f"{name} expects frames shaped (..., C, H, W); got shape {tuple(a.shape)}")


def psnr(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
    """Peak signal-to-noise ratio in dB of each frame, with a peak of 1 (or 255 for uint8).

    Args:
        a, b: frames ``(..., C, H, W)``, uint8 or float in [0, 1], same shape.

    Returns:
        float64 tensor shaped ``a.shape[:-3]``; ``inf`` where the frames are identical.
    """
    x, y = to_unit(a, torch.float64), to_unit(b, torch.float64)
    _check_pair(x, y, "psnr")
    mse = (x - y).square().mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_taps(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> Tensor:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (radius int(truncate*sigma+0.5))."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def ssim(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
    """Structural similarity of each frame, averaged over channels (see the module docstring).

    Args:
        a, b: frames ``(..., C, H, W)``, uint8 or float in [0, 1], same shape, H and W >= 11.

    Returns:
        tensor shaped ``a.shape[:-3]`` (float64 for float64 inputs, else float32); 1 for
        identical frames.
    """
    x, y = to_unit(a), to_unit(b)
    _check_pair(x, y, "ssim")
    dtype = torch.float64 if x.dtype == torch.float64 or y.dtype == torch.float64 else torch.float32
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    taps = _gaussian_taps().to(dtype)
    k = taps.numel()
    if h < k or w < k:
        raise ValueError(f"ssim needs frames of at least {k}x{k} pixels; got {h}x{w}")
    # Every channel of every frame is one single-channel image.
    x = x.to(dtype).reshape(-1, 1, h, w)
    y = y.to(dtype).reshape(-1, 1, h, w)

    def blur(z: Tensor) -> Tensor:
        # 'valid' separable filtering: skimage filters with mode='reflect' and then crops
        # (k - 1) // 2 pixels from every border before averaging, so the cropped values never
        # touch the padding and a convolution without padding gives them exactly.
        z = F.conv2d(z, taps.view(1, 1, 1, k))
        return F.conv2d(z, taps.view(1, 1, k, 1))

    mu_x, mu_y = blur(x), blur(y)
    # Population covariances (use_sample_covariance=False).
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_channel = s_map.mean(dim=(-3, -2, -1)).reshape(*lead, c)
    return per_channel.mean(dim=-1)


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


def gaussian_stats(features: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov``, N - 1 normalisation) of features ``(N, D)``, float64.

    pytorch-fid and clean-fid normalise by N - 1; StyleGAN-ADA/-V by N. With the 2,048+ samples
    of a real evaluation the two differ negligibly.
    """
    f = _as_feature_matrix(features)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors for a covariance; got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _as_feature_matrix(features: Tensor | np.ndarray) -> np.ndarray:
    f = features.detach().cpu().double().numpy() if torch.is_tensor(features) else np.asarray(features, np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be shaped (N, D); got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    return f


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2.0)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_stats(
    mu1: np.ndarray | Sequence[float],
    sigma1: np.ndarray,
    mu2: np.ndarray | Sequence[float],
    sigma2: np.ndarray,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``, with the last
    trace computed as ``sum sqrt(eig(sigma1^{1/2} sigma2 sigma1^{1/2}))`` (see module docstring).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"inconsistent shapes: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}"
        )
    root1 = _sqrtm_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # Round-off can leave a tiny negative number for identical distributions.
    return max(value, 0.0)


def frechet_distance(features_a: Tensor | np.ndarray, features_b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(N, D)`` and ``(M, D)``.

    With Inception pool features this is FID, with I3D logits-layer features FVD (see
    `mardini.evaluation.features`). Identical sets give 0 up to round-off.
    """
    mu1, s1 = gaussian_stats(features_a)
    mu2, s2 = gaussian_stats(features_b)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


def mean_finite(values: Tensor) -> float:
    """Mean of a metric tensor, with ``inf`` (identical frames in PSNR) left out; NaN if none is finite.

    Report how many were left out alongside (e.g. ``int((~values.isfinite()).sum())``): a PSNR
    mean without the identical frames is not comparable with one that capped them.
    """
    v = values.detach().double().flatten()
    v = v[torch.isfinite(v)]
    return float(v.mean()) if v.numel() else math.nan
