"""Sampling: a guided denoiser and the DDIM loop over the frames to generate.

Samplers take one shared signature, ``sampler(denoise, latents, frame_is_generated, scheduler,
steps, rng=None, progress=False, prior=None)``, where ``denoise(x, t)`` returns the velocity of
every frame.
The planner is *not* part of ``denoise``: it runs once, before the loop, and its signal is closed
over by :func:`guided_denoiser`.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler
from torch import Tensor
from tqdm.auto import tqdm

from mardini.config import GRID_SHIFTS, DiffusionConfig
from mardini.diffusion.prior import Prior, between_equal_references, between_references
from mardini.models.generator import Generator

Denoiser = Callable[[Tensor, Tensor], Tensor]


def guided_denoiser(generator: Generator, frame_is_generated: Tensor, plan: Tensor | None,
                    guidance_scale: float = 1.0, skip_scale: float = 0.0, skip_block: int = -1) -> Denoiser:
    """Velocity with classifier-free guidance on the planning signal (Ho & Salimans 2022), and
    optionally skip-layer guidance.

    v = v_uncond + s * (v_cond - v_uncond), where "uncond" replaces the planning signal by Z_uncond.
    With s = 1 (or no planning signal) only one forward pass is made: the conditional prediction.
    The paper uses s = 2.5 for image-to-video and no guidance for interpolation (appendix B).

    With ``skip_scale`` w > 0 (not in the paper; ``DiffusionConfig.skip_guidance``), the result is
    further pushed away from a weakened copy of the network, the same generator with block
    ``skip_block`` left out: v + w * (v_cond - v_skip), one more forward pass. This is the
    "weaker self" of autoguidance (Karras et al. 2024) made by skipping a layer, as in
    spatiotemporal skip guidance (Hyung et al. 2024) and SD3.5's skip-layer guidance.
    """
    if skip_scale < 0:
        raise ValueError(f"the skip-layer guidance scale must be >= 0 (0 turns it off), got {skip_scale}")

    guided = plan is not None and guidance_scale != 1.0
    if guided:  # the doubled batch (conditional, then Z_uncond), built once rather than at every step
        batch = frame_is_generated.shape[0]
        drop = torch.cat([torch.zeros(batch, dtype=torch.bool), torch.ones(batch, dtype=torch.bool)]).to(plan.device)
        plan2, mask2 = torch.cat([plan, plan]), torch.cat([frame_is_generated, frame_is_generated])

    def cfg(x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(guided velocity, conditional velocity)."""
        if not guided:
            v = generator(x, t, frame_is_generated, plan)
            return v, v
        v_cond, v_uncond = generator(torch.cat([x, x]), torch.cat([t, t]), mask2, plan2, drop_plan=drop).chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond), v_cond

    if skip_scale == 0:
        return lambda x, t: cfg(x, t)[0]

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        v, v_cond = cfg(x, t)
        v_skip = generator(x, t, frame_is_generated, plan, skip_block=skip_block)
        return v + skip_scale * (v_cond - v_skip)

    return denoise


def shifted_grid(denoise: Denoiser, mode: str, patch_size: int) -> Denoiser:
    """``denoise`` with the generator's token grid moved by half a token between calls.

    The moved call sees the latents shifted down and right by ``patch_size // 2`` latent pixels
    (at least 1; edges replicated) and its prediction is cropped back, so its token boundaries lie
    midway between the unmoved call's. ``mode`` (`mardini.config.GRID_SHIFTS`): ``"none"`` returns
    ``denoise``; ``"alternate"`` moves every other call (the first is unmoved: a one-step sampler
    is unchanged); ``"average"`` averages each call with a moved one (twice the cost).

    Why: a small generator's frames made from noise show its token grid (16 px here, docs/benchmarks.md);
    a grid that moves from step to step cannot leave the same edges in the result. This is the
    shifted-window idea (Swin, Liu et al. 2021) applied across sampling steps instead of layers.
    """
    if mode not in GRID_SHIFTS:
        raise ValueError(f"unknown grid shift '{mode}'; use one of {GRID_SHIFTS}")
    if mode == "none":
        return denoise
    if patch_size < 1:
        raise ValueError(f"the generator's patch size must be at least 1, got {patch_size}")
    shift = max(patch_size // 2, 1)

    def moved(x: Tensor, t: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        padded = torch.nn.functional.pad(x.flatten(0, 1), (shift, shift, shift, shift), mode="replicate")
        return denoise(padded.unflatten(0, x.shape[:2]), t)[..., shift:shift + height, shift:shift + width]

    if mode == "average":
        return lambda x, t: (denoise(x, t) + moved(x, t)) / 2
    calls = 0

    def alternate(x: Tensor, t: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return moved(x, t) if calls % 2 == 0 else denoise(x, t)

    return alternate


def default_steps(config: DiffusionConfig, frame_is_generated: Tensor, latents: Tensor | None = None) -> int:
    """DDIM steps for a window with this (B, K) mask when none are asked for:
    ``config.inbetween_steps`` when it is set, a prior is on and every generated frame lies
    between two references (they start at the references' interpolation, which already carries
    the motion); ``config.sampling_steps`` otherwise.

    With the window's ``latents`` (B, K, ...), frames between two *identical* references (a loop's)
    also get ``sampling_steps``: their interpolation is a still, and one step around it moves only
    as much as the generator's correction (docs/benchmarks.md, "Stages 5 to 7").
    """
    if config.inbetween_steps is not None and config.prior != "none":
        generated = frame_is_generated.bool().cpu()
        if torch.equal(between_references(generated), generated):
            if latents is None or not between_equal_references(latents, frame_is_generated).any():
                return config.inbetween_steps
    return config.sampling_steps


def sample_ddim(denoise: Denoiser, latents: Tensor, frame_is_generated: Tensor, scheduler: DDIMScheduler,
                steps: int = 25, rng: torch.Generator | None = None, progress: bool = False,
                prior: Prior | None = None) -> Tensor:
    """Deterministic DDIM (eta = 0, Song et al. 2021) over the generated frames.

    Args:
        latents: (B, K, C, H, W) with the reference frames' clean latents; values at generated
            frames are ignored (they start as pure noise, matching zero terminal SNR).
        frame_is_generated: (B, K) bool.
        prior: optional mean of the generated frames (:func:`mardini.diffusion.prior.diffusion_prior`):
            DDIM then runs on the residual ``(latents - prior.mean) / prior.scale``, and
            ``denoise`` sees ``prior.mean + prior.scale * residual``.

    Returns:
        Latents with generated frames denoised and reference frames exactly as given.
    """
    if steps < 1:
        raise ValueError(f"the number of sampling steps must be at least 1, got {steps}")
    scheduler = DDIMScheduler.from_config(scheduler.config)  # own copy: set_timesteps mutates it
    scheduler.set_timesteps(steps, device=latents.device)
    keep = ~frame_is_generated[:, :, None, None, None]
    # x is the diffused variable: the latents themselves, or their scaled residual around the prior.
    if prior is None:
        base, scale = torch.zeros((), dtype=latents.dtype, device=latents.device), 1.0
    else:
        base = prior.mean.to(latents)
        scale = prior.scale.to(latents) if isinstance(prior.scale, Tensor) else prior.scale
    given = (latents - base) / scale
    noise = torch.randn(latents.shape, generator=rng, device=latents.device, dtype=latents.dtype)
    x = torch.where(keep, given, noise * scheduler.init_noise_sigma)
    for t in tqdm(scheduler.timesteps, desc="denoising", disable=not progress, leave=False):
        t_batch = t.expand(latents.shape[0]).to(latents.device)
        velocity = denoise(x if prior is None else base + scale * x, t_batch)
        x = scheduler.step(velocity, t, x, eta=0.0).prev_sample.to(latents.dtype)
        # Reference frames are conditions, not unknowns: they stay exactly as given.
        x = torch.where(keep, given, x)
    return torch.where(keep, latents, base + scale * x)
