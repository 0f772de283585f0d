"""Noise schedule, training losses and samplers (all the diffusion math lives here)."""

from mardini.diffusion.losses import masked_diffusion_loss, masked_mse, masked_reconstruction_loss
from mardini.diffusion.sampling import guided_denoiser, sample_ddim
from mardini.diffusion.schedule import alpha_sigma, make_scheduler

__all__ = ["alpha_sigma", "guided_denoiser", "make_scheduler", "masked_diffusion_loss", "masked_mse",
           "masked_reconstruction_loss", "sample_ddim"]
