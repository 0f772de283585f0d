"""Noise schedule, training losses and samplers (all the diffusion math lives here)."""

from mardini.diffusion.losses import (log_clip_loss, masked_diffusion_loss, masked_mse, masked_reconstruction_loss,
                                      sample_timesteps)
from mardini.diffusion.prior import (PRIORS, Prior, between_equal_references, between_references, diffusion_prior,
                                     reference_interpolation)
from mardini.diffusion.sampling import default_steps, guided_denoiser, sample_ddim, shifted_grid
from mardini.diffusion.schedule import alpha_sigma, make_scheduler

__all__ = ["PRIORS", "Prior", "alpha_sigma", "between_equal_references", "between_references", "default_steps", "diffusion_prior",
           "guided_denoiser", "log_clip_loss", "make_scheduler", "masked_diffusion_loss", "masked_mse", "masked_reconstruction_loss",
           "reference_interpolation", "sample_ddim", "sample_timesteps", "shifted_grid"]
