"""Scores of what the eye sees in a generated video: sharpness, token seams, motion, flicker, colour.

Reconstruction metrics (PSNR, SSIM, LPIPS) reward a blurred average over a sharp guess, and the
paper's later version says as much (appendix A); a recipe steered by them drifts toward blur.
These scores name the failure instead. Each compares the row with the truth (or, for
image-to-video, with the given reference) so that 1.0 (or the truth's own value) means "as real":

- `sharpness`: variance of the Laplacian of the grey frames, the row's over the truth's
  (below 1: blurrier than the truth);
- `seam`: the mean absolute grey step across the generator's token boundaries (every
  ``vae_downsample * patch_size`` = 16 px for the bundled model) over that across the codec's
  other block boundaries (every ``vae_downsample`` = 8 px, not on the token grid). The codec's
  own 8-px grid and the image's texture cancel, so 1.0 is no token grid and a 16-px block mosaic
  scores well above 1;
- `flow_magnitude` (behind ``motion``): the mean optical-flow magnitude of consecutive frames; the
  evaluations report the row's over the truth's, so a cross-fade or a still image is near 0 and
  real motion near 1;
- `still_flicker`: the mean change (8-bit levels) between consecutive frames inside the regions
  that do not move in the truth (`still_mask`): light that pulses where nothing moves;
- `colour_shift`: how far the mean colour of the truth's saturated regions moves (8-bit levels,
  opponent colour axes), so a desaturating or hue-shifting codec shows up.

Frames are ``(T, 3, H, W)``, uint8 or float in [0, 1], as everywhere in `mardini.evaluation`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .baselines import FlowFn
from .metrics import to_unit

#: Flow below this many pixels per frame pair, in every pair, counts as "does not move".
STILL_FLOW_PX = 0.5
#: A pixel is saturated when HSV saturation ((max - min) / max) and value (max) exceed these.
SATURATION_MIN, VALUE_MIN = 0.4, 0.2
#: Regions smaller than this share of the frame give no colour score (too few pixels to average).
MIN_REGION_FRACTION = 0.01
#: Added to both sides of the seam ratio (grey levels in [0, 1]) so flat frames score 1, not 0/0.
SEAM_EPS = 0.5 / 255.0


def _frames(frames: Tensor, name: str) -> Tensor:
    x = to_unit(frames).float()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be frames shaped (T, 3, H, W); got {tuple(x.shape)}")
    return x


def grey(frames: Tensor) -> Tensor:
    """Luma (Rec. 601 weights) of frames ``(T, 3, H, W)`` in [0, 1]: ``(T, H, W)``."""
    x = _frames(frames, "frames")
    return 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]


def laplacian_variance(frames: Tensor) -> Tensor:
    """Variance of the 4-neighbour Laplacian of each grey frame (borders excluded): ``(T,)``.

    The classic focus measure (Pech-Pacheco et al., 2000): blur removes the high frequencies it
    sums, so it falls with any blur, codec smoothing or cross-fade averaging.
    """
    g = grey(frames)[:, None]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=g.device).view(1, 1, 3, 3)
    return F.conv2d(g, kernel).flatten(1).var(dim=1)


def sharpness(frames: Tensor, reference: Tensor) -> float:
    """Mean Laplacian variance of `frames` over that of `reference` (1 = as sharp, below 1 = blurrier).

    `reference` is the truth's frames (interpolation) or the given image (image-to-video); any
    number of frames on either side.
    """
    ref = float(laplacian_variance(reference).mean())
    if ref <= 0.0:
        return math.nan  # a flat reference has no sharpness to keep
    return float(laplacian_variance(frames).mean()) / ref


def boundary_step(frames: Tensor, period: int, skip: int | None = None) -> float:
    """Mean absolute grey step across the lines every `period` px (both axes), leaving out multiples of `skip`.

    The step across the boundary at x is ``|g[x] - g[x - 1]|``; borders (x = 0) are not boundaries.
    """
    if period < 1:
        raise ValueError(f"period must be a positive number of pixels; got {period}")
    g = grey(frames)
    steps = []
    for axis, size in ((2, g.shape[2]), (1, g.shape[1])):
        lines = [x for x in range(period, size, period) if skip is None or x % skip]
        if not lines:
            continue
        index = torch.tensor(lines, device=g.device)
        after, before = g.index_select(axis, index), g.index_select(axis, index - 1)
        steps.append((after - before).abs().flatten())
    if not steps:
        raise ValueError(f"frames of {tuple(g.shape[1:])} px have no boundary every {period} px")
    return float(torch.cat(steps).mean())


def seam(frames: Tensor, token: int = 16, block: int = 8) -> float:
    """Token-grid visibility: the step across `token` boundaries over that across the other `block` boundaries.

    `token` is the generator's token size in pixels (``vae_downsample * generator.patch_size``),
    `block` the codec's (``vae_downsample``); `token` must be a multiple of `block`. Both sets of
    lines see the same texture and the same codec grid, so natural frames and codec round trips
    score about 1, and a mosaic of independently made 16-px tokens well above 1.
    """
    if token % block or token <= block:
        raise ValueError(f"the token size ({token} px) must be a multiple of the codec block ({block} px) above it")
    on_grid = boundary_step(frames, token)
    off_grid = boundary_step(frames, block, skip=token)
    return (on_grid + SEAM_EPS) / (off_grid + SEAM_EPS)


def consecutive_flows(frames: Tensor, flow_fn: FlowFn) -> Tensor:
    """Optical flow of the T - 1 consecutive pairs, ``(T - 1, 2, H, W)`` in pixels."""
    x = _frames(frames, "frames")
    if x.shape[0] < 2:
        raise ValueError(f"flow needs at least 2 frames; got {x.shape[0]}")
    flow = flow_fn(x[:-1], x[1:]).float().cpu()
    if flow.shape != (x.shape[0] - 1, 2, *x.shape[-2:]):
        raise ValueError(f"flow_fn returned shape {tuple(flow.shape)}; expected {(x.shape[0] - 1, 2, *x.shape[-2:])}")
    return flow


def flow_magnitude(flows: Tensor) -> float:
    """Mean end-point length (pixels per frame pair) of flows ``(N, 2, H, W)``."""
    return float(flows.norm(dim=1).mean())


def still_mask(flows: Tensor, threshold: float = STILL_FLOW_PX) -> Tensor:
    """Pixels whose flow stays under `threshold` px in every pair: ``(H, W)`` bool."""
    return (flows.norm(dim=1) < threshold).all(dim=0)


def still_flicker(frames: Tensor, still: Tensor) -> float:
    """Mean absolute change (8-bit levels) of consecutive frames inside the `still` mask ``(H, W)``.

    NaN when the mask is almost empty (the truth moves everywhere): there is nothing to judge.
    """
    x = _frames(frames, "frames")
    if still.shape != x.shape[-2:]:
        raise ValueError(f"still mask of shape {tuple(still.shape)} for frames of {tuple(x.shape[-2:])} px")
    if float(still.float().mean()) < MIN_REGION_FRACTION:
        return math.nan
    change = (x[1:] - x[:-1]).abs().mean(dim=1) * 255.0  # (T - 1, H, W)
    return float(change[:, still.to(change.device)].mean())


def saturated_mask(frames: Tensor) -> Tensor:
    """Saturated pixels (HSV saturation >= SATURATION_MIN and value >= VALUE_MIN): ``(T, H, W)`` bool."""
    x = _frames(frames, "frames")
    high, low = x.max(dim=1).values, x.min(dim=1).values
    return (high >= VALUE_MIN) & ((high - low) >= SATURATION_MIN * high)


def _opponent(x: Tensor) -> Tensor:
    """Opponent colour axes (red-green, yellow-blue) of frames ``(T, 3, H, W)``: ``(T, 2, H, W)``."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return torch.stack([r - g, (r + g) / 2.0 - b], dim=1)


def colour_shift(frames: Tensor, reference: Tensor) -> float:
    """Mean colour drift (8-bit levels) on the reference's saturated regions.

    Per frame, the mean opponent colour (red-green, yellow-blue) of `frames` and of `reference`
    over the reference's saturated pixels; the score is the mean Euclidean distance of the two.
    Averaging over the region first makes it blind to motion inside it and sensitive to a shift
    of the whole region's hue or saturation. `reference` is the truth's frames (same count) or one
    image (image-to-video). NaN when the reference has almost no saturated pixels.
    """
    x, ref = _frames(frames, "frames"), _frames(reference, "reference")
    if ref.shape[0] == 1:
        ref = ref.expand_as(x)
    if ref.shape != x.shape:
        raise ValueError(f"reference of shape {tuple(ref.shape)} for frames of {tuple(x.shape)}")
    mask = saturated_mask(ref).unsqueeze(1).float()  # (T, 1, H, W)
    area = mask.sum(dim=(1, 2, 3))
    if float(area.min()) < MIN_REGION_FRACTION * x.shape[-1] * x.shape[-2]:
        return math.nan
    mean_x = (_opponent(x) * mask).sum(dim=(2, 3)) / area[:, None]
    mean_ref = (_opponent(ref) * mask).sum(dim=(2, 3)) / area[:, None]
    return float((mean_x - mean_ref).norm(dim=1).mean() * 255.0)
