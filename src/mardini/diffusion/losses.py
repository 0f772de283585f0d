"""Training objectives: the masked diffusion loss (Eq. 1 and Eq. 3) and the MAR masked
reconstruction loss (Eq. 2). Both count only the frames to generate (the mask M)."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from mardini.config import CLIP_WEIGHTINGS, TIMESTEP_SAMPLINGS
from mardini.diffusion.prior import Prior, between_equal_references, between_references
from mardini.models.generator import Generator
from mardini.models.planner import Planner


def masked_mse(prediction: Tensor, target: Tensor, frame_is_generated: Tensor, per_clip: bool = False) -> Tensor:
    """||M * target - M * prediction||^2, averaged over the elements of generated frames.

    Reference frames contribute neither to the value nor to any gradient. With ``per_clip`` the
    average is taken within each clip (shape ``(batch,)``); a clip without generated frames is refused.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    weight = frame_is_generated.to(prediction.dtype).reshape(*frame_is_generated.shape, *([1] * (prediction.dim() - 2)))
    squared = (prediction.float() - target.float()) ** 2 * weight
    if per_clip:
        elements = weight.flatten(1).sum(1) * prediction[0, 0].numel()
        if bool((elements == 0).any()):
            raise ValueError("a clip has no frame marked to generate: its masked loss is undefined; mask at least one "
                             "frame in every clip")
        return squared.flatten(1).sum(1) / elements
    elements = weight.sum() * prediction[0, 0].numel()
    if elements == 0:
        raise ValueError("no frame is marked to generate: the masked loss is undefined; mask at least one frame")
    return squared.sum() / elements


def log_clip_loss(clip_losses: Tensor, floor: float = 1e-4, logged: Tensor | None = None) -> Tensor:
    """The mean over clips of ``log(loss + floor)``: every clip's *relative* error counts alike.

    This is what a mean PSNR over clips measures; the gradient weighs each clip by
    ``1 / (loss + floor)``. Why: trained on the mean over elements, the generator learnt
    corrections sized for fast clips and added them to near-still ones, where the cross-fade's mean
    squared error in latent units is under 1e-3 (docs/benchmarks.md, "Weighing every clip alike").

    ``logged`` (bool, one per clip) limits that to some clips; the others enter as one group,
    ``log(mean of their losses + floor)`` counted once per clip, so among themselves every element
    counts alike (as with no weighting) while the group keeps its share of the batch.
    """
    if not floor > 0:
        raise ValueError(f"the log clip loss needs a positive floor, got {floor}")
    if logged is None:
        return torch.log(clip_losses + floor).mean()
    logged = logged.to(clip_losses.device)
    total = torch.log(clip_losses[logged] + floor).sum()
    rest = clip_losses[~logged]
    if rest.numel():
        total = total + rest.numel() * torch.log(rest.mean() + floor)
    return total / clip_losses.numel()


def sample_timesteps(batch: int, num_train_timesteps: int, sampling: str = "uniform", mean: float = 0.0,
                     std: float = 1.0, device: torch.device | str | None = None,
                     rng: torch.Generator | None = None, terminal_share: float = 0.0) -> Tensor:
    """One integer timestep in ``[0, num_train_timesteps)`` per clip.

    ``sampling`` (`mardini.config.TIMESTEP_SAMPLINGS`): ``uniform`` over 0..T-1 (the paper's, as
    DDPM), or ``logit_normal``: t = T * sigmoid(mean + std * N(0, 1)), which concentrates on middle
    noise levels (Esser et al. 2024, SD3, section 3.1, "logit-normal sampling"); a negative ``mean``
    moves the weight toward less noise, where the generator draws its 16-px token grid
    (docs/benchmarks.md, "Seam by noise level").

    ``terminal_share`` of the clips (drawn after the others, so 0 leaves the draws unchanged) get
    the last timestep T-1 instead: the pure-noise step (zero terminal SNR) where every trailing
    DDIM sampler makes its first call and a one-step sampler its only one. Uniform sampling gives
    it 1/T of the training, and a generator that cannot tell T-1 from its neighbours carries
    part of the input noise into that prediction (docs/benchmarks.md, "Stages 5 to 7: native frame
    rate and the last timestep").
    """
    if not 0.0 <= terminal_share <= 1.0:
        raise ValueError(f"the terminal timestep share must be in [0, 1], got {terminal_share}")
    if sampling == "uniform":
        timesteps = torch.randint(0, num_train_timesteps, (batch,), device=device, generator=rng)
    elif sampling == "logit_normal":
        if not std > 0:
            raise ValueError(f"the logit-normal timestep sampling needs a positive std, got {std}")
        u = torch.sigmoid(mean + std * torch.randn(batch, device=device, generator=rng))
        timesteps = (u * num_train_timesteps).long().clamp_(0, num_train_timesteps - 1)
    else:
        raise ValueError(f"unknown timestep sampling '{sampling}'; use one of {TIMESTEP_SAMPLINGS}")
    if terminal_share > 0:
        terminal = torch.rand(batch, device=device, generator=rng) < terminal_share
        timesteps = torch.where(terminal, torch.full_like(timesteps, num_train_timesteps - 1), timesteps)
    return timesteps


def masked_diffusion_loss(generator: Generator, scheduler: DDIMScheduler, latents: Tensor, frame_is_generated: Tensor,
                          plan: Tensor | None = None, plan_dropout: float = 0.0,
                          rng: torch.Generator | None = None, prior: Prior | None = None,
                          timestep_sampling: str = "uniform", timestep_mean: float = 0.0,
                          timestep_std: float = 1.0, terminal_share: float = 0.0,
                          clip_weighting: str = "elements", clip_loss_floor: float = 1e-4) -> Tensor:
    """Masked v-prediction loss: Eq. 1 when ``plan`` is None (Z_uncond), Eq. 3 otherwise.

    One timestep per clip is drawn (:func:`sample_timesteps`: uniformly by default, with
    ``terminal_share`` of the clips at the last one); only
    generated frames are noised, references stay clean. With ``plan_dropout`` > 0 the planning
    signal of that share of clips is replaced by Z_uncond, which is what makes classifier-free
    guidance possible (section 2.4.1, p = 0.1).
    With a ``prior`` (:func:`mardini.diffusion.prior.diffusion_prior`) the residual
    ``(latents - prior.mean) / prior.scale`` is what is noised and whose velocity is the target;
    the generator sees ``prior.mean + prior.scale * noisy residual`` at generated frames.
    ``clip_weighting`` (`mardini.config.CLIP_WEIGHTINGS`) says how the clips' errors make one
    loss: ``elements``, the mean over all generated elements of the batch (the paper's); ``log``,
    :func:`log_clip_loss` with ``clip_loss_floor`` over every clip; ``log_inbetweens``, the same
    for clips that generate only in-betweens (a reference on each side) between unequal references,
    the others (loops among them) as one group.
    Why the split: the log weighs near-still clips up, which is right where the answer is nearly
    determined (in-betweens) but taught image-to-video to stand still (docs/benchmarks.md).
    """
    if clip_weighting not in CLIP_WEIGHTINGS:
        raise ValueError(f"unknown clip weighting '{clip_weighting}'; use one of {CLIP_WEIGHTINGS}")
    batch = latents.shape[0]
    device = latents.device
    timesteps = sample_timesteps(batch, scheduler.config.num_train_timesteps, timestep_sampling, timestep_mean,
                                 timestep_std, device, rng, terminal_share)
    noise = torch.randn(latents.shape, device=device, generator=rng, dtype=latents.dtype)
    clean = latents if prior is None else (latents - prior.mean) / prior.scale
    noisy = scheduler.add_noise(clean, noise, timesteps)
    if prior is not None:
        noisy = prior.mean + prior.scale * noisy
    inputs = torch.where(frame_is_generated[:, :, None, None, None], noisy, latents)
    target = scheduler.get_velocity(clean, noise, timesteps)
    drop = None
    if plan is not None and plan_dropout > 0:
        drop = torch.rand(batch, device=device, generator=rng) < plan_dropout
    prediction = generator(inputs, timesteps, frame_is_generated, plan, drop_plan=drop)
    if clip_weighting == "elements":  # the paper's: every generated element alike, across the batch
        return masked_mse(prediction, target, frame_is_generated)
    clip_losses = masked_mse(prediction, target, frame_is_generated, per_clip=True)
    logged = None
    if clip_weighting == "log_inbetweens":
        generated = frame_is_generated.to(clip_losses.device)
        # A loop's frames (equal references) have no single answer: like image-to-video, not logged.
        loop = between_equal_references(latents, generated).any(dim=1)
        logged = (between_references(generated) == generated).all(dim=1) & ~loop
    return log_clip_loss(clip_losses, clip_loss_floor, logged)


def masked_reconstruction_loss(planner: Planner, latents_low: Tensor, frame_is_generated: Tensor) -> Tensor:
    """Eq. 2: ||M * Z_low - M * f(P(Z_low^mask))||^2, the planner's stage-one warm-up."""
    height, width = latents_low.shape[-2:]
    plan = planner(latents_low, frame_is_generated)
    return masked_mse(planner.reconstruct(plan, height, width), latents_low, frame_is_generated)
