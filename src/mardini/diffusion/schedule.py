"""The noise schedule (see :class:`mardini.config.DiffusionConfig` for the choice and why).

The schedule itself is diffusers' :class:`~diffusers.DDIMScheduler`; this module only builds it
from our config and names the quantities the paper's equations use.

Notation (section 2.4.1): z_t = alpha_t * z + sigma_t * eps, with alpha_t = sqrt(abar_t) and
sigma_t = sqrt(1 - abar_t); the velocity target is v_t = alpha_t * eps - sigma_t * z.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from mardini.config import DiffusionConfig


def make_scheduler(cfg: DiffusionConfig) -> DDIMScheduler:
    """A DDIM scheduler for training (noising, velocity) and sampling."""
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        rescale_betas_zero_snr=cfg.zero_terminal_snr,
        prediction_type=cfg.prediction_type,
        timestep_spacing=cfg.timestep_spacing,
        # Latents are unit-variance, not images in [-1, 1]: never clip the x0 estimate.
        clip_sample=False,
        # The last DDIM step lands on the clean sample (abar = 1), not on step 0's small noise.
        set_alpha_to_one=True,
        steps_offset=0,
    )


def alpha_sigma(scheduler: DDIMScheduler, timesteps: Tensor) -> tuple[Tensor, Tensor]:
    """(alpha_t, sigma_t) for integer timesteps, as float32 tensors shaped like ``timesteps``."""
    abar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps.long()].float()
    return abar.sqrt(), (1 - abar).sqrt()
