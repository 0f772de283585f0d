"""The reference prior: an optional mean around which the frames to generate are diffused.

*Not in the paper.* MarDini (section 2.4.1) noises the latents of the frames to generate towards
pure noise around zero, and the generator must rebuild every frame, static background included,
through its attention to the references. With ``DiffusionConfig.prior = "reference_interpolation"``
the diffusion runs on the *residual* r = z - p instead, where p is a guess made from the reference
frames alone:

* a frame between two references gets their linear interpolation by position (interpolation,
  looping, hierarchical in-betweening);
* a frame with references on one side only gets the nearest one (image-to-video, expansion)
  with ``"reference_interpolation"``, or no guess at all (mean 0, scale 1: the paper's
  formulation) with ``"between_references"``. A copy of the reference is no guess at motion: the
  first bundled model, diffused around it, left image-to-video nearly still; the corpus model,
  whose frames from noise broke into tiles, keeps its scene around it (docs/benchmarks.md).

The network, its inputs and its attention stay as they are. The diffused variable is the scaled
residual r = (z - p) / prior_scale: the noise schedule assumes unit variance and residuals are
smaller (std 0.43 on the bundled model's training clips), so unscaled they would sit below the
noise for most of the schedule and a few-step sampler would leave noise behind (measured: SSIM
0.53 at 2 DDIM steps after 750 steps of training, against 0.74 at 1 step). A generated frame
enters the generator as p + prior_scale * r_t (so at the last, pure-noise step it carries p plus
noise), the velocity target is that of r (v = alpha * eps - sigma * r), and a network that predicts
nothing (v = 0 at t = T, as the zero-initialised output layer does) returns p. Sampling starts
from noise around p rather than around zero, the same construction as residual/mean-shifted
diffusion (e.g. ResShift, Yue et al. 2023; InDI, Delbracio & Milanfar 2023), here with a prior
that needs no network.

Why: a small model trained for two hours on two CPU cores spends much of its capacity redrawing
content that a reference already shows; with the prior it only has to learn what changes. "none"
keeps the paper's formulation and is every preset's default; the bundled CPU model uses
"between_references" up to its stage 3 and "reference_interpolation" from its stage 4 on, and
docs/design.md and docs/benchmarks.md record what each prior did for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mardini.config import PRIORS, DiffusionConfig


def _nearest_references(frame_is_generated: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each frame, the nearest reference at or before it and at or after it, and whether each
    exists (indices are clamped into range where it does not)."""
    batch, frames = frame_is_generated.shape
    position = torch.arange(frames, device=frame_is_generated.device).expand(batch, frames)
    is_reference = ~frame_is_generated
    left = torch.where(is_reference, position, -1).cummax(dim=1).values
    right = torch.where(is_reference, position, frames).flip(1).cummin(dim=1).values.flip(1)
    return left, right, left >= 0, right < frames


def between_references(frame_is_generated: Tensor) -> Tensor:
    """(B, K) bool: generated frames with a reference on each side (in-betweens, looping's middle
    frames), the frames for which interpolating the references is a guess worth diffusing around."""
    _, _, has_left, has_right = _nearest_references(frame_is_generated)
    return frame_is_generated & has_left & has_right


def between_equal_references(latents: Tensor, frame_is_generated: Tensor) -> Tensor:
    """(B, K) bool: generated frames whose nearest references on both sides hold the same latents
    (a loop's frames: `mardini.tasks.loop` gives one image at both ends), so that the references'
    interpolation, their prior, is a still."""
    generated = frame_is_generated.to(latents.device)
    batch, frames = generated.shape
    if latents.shape[:2] != (batch, frames):
        raise ValueError(f"latents of shape {tuple(latents.shape)} do not match the frame mask of shape "
                         f"{tuple(generated.shape)}")
    left, right, has_left, has_right = _nearest_references(generated)
    rows = torch.arange(batch, device=latents.device)[:, None]
    lo, hi = latents[rows, left.clamp(0, frames - 1)], latents[rows, right.clamp(0, frames - 1)]
    same = (lo == hi).flatten(2).all(dim=2)
    return generated & has_left & has_right & same


def reference_interpolation(latents: Tensor, frame_is_generated: Tensor) -> Tensor:
    """Each frame's guess from the references: linear between the nearest reference on each side,
    the nearest reference where there is only one side, the frame itself at a reference.

    Args:
        latents: (B, K, ...) with the references' latents; values at generated frames are ignored.
        frame_is_generated: (B, K) bool.

    Returns:
        (B, K, ...) like ``latents``; exactly equal to it at reference frames; zeros for a clip
        with no reference at all.
    """
    batch, frames = frame_is_generated.shape
    if latents.shape[:2] != (batch, frames):
        raise ValueError(f"latents of shape {tuple(latents.shape)} do not match the frame mask of shape "
                         f"{tuple(frame_is_generated.shape)}")
    device = latents.device
    left, right, has_left, has_right = _nearest_references(frame_is_generated.to(device))
    position = torch.arange(frames, device=device).expand(batch, frames)
    left, right = torch.where(has_left, left, right), torch.where(has_right, right, left)
    span = (right - left).clamp(min=1)
    weight = torch.where(right > left, (position - left).float() / span.float(), torch.zeros(()))
    rows = torch.arange(batch, device=device)[:, None]
    lo, hi = latents[rows, left.clamp(0, frames - 1)], latents[rows, right.clamp(0, frames - 1)]
    w = weight.to(latents.dtype).reshape(batch, frames, *([1] * (latents.dim() - 2)))
    prior = lo * (1 - w) + hi * w
    any_reference = (has_left | has_right).reshape(batch, frames, *([1] * (latents.dim() - 2)))
    return torch.where(any_reference, prior, torch.zeros((), dtype=latents.dtype, device=device))


@dataclass(frozen=True)
class Prior:
    """What the loss and the sampler need: the mean ``p`` (like the latents, equal to them at
    references) and the ``scale`` the residual (z - p) is divided by before noising."""

    mean: Tensor
    scale: float | Tensor = 1.0


def diffusion_prior(config: DiffusionConfig, latents: Tensor, frame_is_generated: Tensor) -> Prior | None:
    """The prior ``config.prior`` names for these latents (None for "none", the paper's formulation)."""
    if config.prior == "none":
        return None
    if config.prior == "reference_interpolation":
        return Prior(reference_interpolation(latents, frame_is_generated), config.prior_scale)
    if config.prior == "between_references":
        # In-betweens only: beyond the references (image-to-video, expansion) a copy of the nearest
        # one is no guess at the motion, and diffusing around it was measured to freeze
        # image-to-video (docs/benchmarks.md); those frames keep the paper's formulation (mean 0, scale 1).
        generated = frame_is_generated.to(latents.device)
        shape = (*generated.shape, *([1] * (latents.dim() - 2)))
        inside = between_references(generated).reshape(shape)
        beyond = generated.reshape(shape) & ~inside
        mean = reference_interpolation(latents, generated).masked_fill(beyond, 0.0)
        scale = torch.full(shape, config.prior_scale, dtype=latents.dtype, device=latents.device)
        return Prior(mean, scale.masked_fill(~inside, 1.0))
    raise ValueError(f"unknown diffusion prior '{config.prior}'; use one of {PRIORS}")
