"""The DM generation model (section 2.3.1, figure 2 right).

A DiT whose sequence holds every frame of the clip: clean reference frames and noisy frames to
generate side by side. Per block (NOTES.md, figure 2):

1. RMSNorm modulated by the timestep (adaLN), spatial self-attention within each frame;
2. adaLN, a second self-attention that is *spatio-temporal* (all tokens of all frames) or
   *temporal* (each spatial position across frames), with identity attention (section 2.3.2);
3. adaLN, cross-attention from each frame's tokens to that frame's planning signal;
4. adaLN whose conditioning is the timestep *plus the planning signal*, then the MLP.

How the per-frame planning tokens reach the MLP's modulation is not stated in the paper. Here the
frame's projected planning tokens are averaged into one vector and added to the frame's timestep
embedding: cheap (per frame, not per token), and the spatially detailed signal still arrives
through cross-attention.

Each frame has its own timestep embedding: noisy frames carry the diffusion timestep t, reference
frames carry t = 0 (they are clean), which tells the two kinds of token apart.
"""

from __future__ import annotations

import functools
import math

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mardini.config import AttentionPattern, GeneratorConfig
from mardini.models.layers import Attention, FeedForward, patchify, rope_tables, split_head_dim, unpatchify

ATTENTION_PATTERNS = ("spatiotemporal", "temporal")


def timestep_features(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, as in DiT / DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def generator_rope(frames: int, rows: int, cols: int, axis_dims: tuple[int, ...],
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """Rotary tables of a (frames, rows, cols) token grid, cached: the denoising loop asks for the
    same grid at every step.

    Tables made under ``torch.inference_mode()`` are inference tensors, which autograd refuses to
    save for backward; they are cached apart, so a training step after sampling gets normal ones.
    """
    return _generator_rope(frames, rows, cols, axis_dims, device, torch.is_inference_mode_enabled())


@functools.lru_cache(maxsize=16)
def _generator_rope(frames: int, rows: int, cols: int, axis_dims: tuple[int, ...], device: torch.device,
                    inference: bool) -> tuple[Tensor, Tensor]:
    return rope_tables(generator_positions(frames, rows, cols, device), list(axis_dims))


def generator_positions(frames: int, rows: int, cols: int, device: torch.device | None = None) -> Tensor:
    """3-axis rotary positions (frame, row, column) of every token, shape (K*rows*cols, 3)."""
    k, r, c = torch.meshgrid(torch.arange(frames, device=device), torch.arange(rows, device=device),
                             torch.arange(cols, device=device), indexing="ij")
    return torch.stack([k.flatten(), r.flatten(), c.flatten()], dim=1)


class GeneratorBlock(nn.Module):
    """DiT-style block with adaLN-Zero conditioning (see module docstring)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        dim = cfg.dim
        self.norm_spatial = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.spatial_attn = Attention(dim, cfg.heads, bias=True)
        self.norm_temporal = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.temporal_attn = Attention(dim, cfg.heads, bias=True)
        self.norm_cross = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.cross_attn = Attention(dim, cfg.heads, bias=True)
        self.norm_mlp = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.mlp = FeedForward(dim, cfg.mlp_dim, cfg.mlp, bias=True)
        # shift/scale/gate for the three attentions from the timestep ...
        self.attn_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        # ... and for the MLP from timestep + planning signal.
        self.mlp_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def forward(self, x: Tensor, time_cond: Tensor, mlp_cond: Tensor, plan: Tensor, pattern: AttentionPattern,
                rope_frame: tuple[Tensor, Tensor], rope_video: tuple[Tensor, Tensor],
                rope_time: tuple[Tensor, Tensor], attends_all: Tensor) -> Tensor:
        batch, frames, tokens, dim = x.shape
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.attn_modulation(time_cond)[:, :, None].chunk(9, dim=-1)
        s4, c4, g4 = self.mlp_modulation(mlp_cond)[:, :, None].chunk(3, dim=-1)

        h = modulate(self.norm_spatial(x), s1, c1).flatten(0, 1)
        x = x + g1 * self.spatial_attn(h, rope=rope_frame).view_as(x)

        h = modulate(self.norm_temporal(x), s2, c2)
        if pattern == "spatiotemporal":
            mask = attends_all.repeat_interleave(tokens, dim=1)
            h = self.temporal_attn(h.flatten(1, 2), rope=rope_video, token_is_generated=mask).view_as(x)
        else:
            mask = attends_all.repeat_interleave(tokens, dim=0)  # (B*N, K), matching "(b n) k"
            h = rearrange(h, "b k n d -> (b n) k d")
            h = self.temporal_attn(h, rope=rope_time, token_is_generated=mask)
            h = rearrange(h, "(b n) k d -> b k n d", b=batch)
        x = x + g2 * h

        h = modulate(self.norm_cross(x), s3, c3).flatten(0, 1)
        x = x + g3 * self.cross_attn(h, context=plan.flatten(0, 1)).view_as(x)

        return x + g4 * self.mlp(modulate(self.norm_mlp(x), s4, c4))


class Generator(nn.Module):
    """Generation model G (section 2.2): noisy + reference latents, planning signal, t -> velocity."""

    def __init__(self, cfg: GeneratorConfig, latent_channels: int, plan_dim: int):
        super().__init__()
        if cfg.attention not in ATTENTION_PATTERNS:
            raise ValueError(f"unknown generator attention '{cfg.attention}'; use one of {ATTENTION_PATTERNS}")
        self.cfg = cfg
        self.latent_channels = latent_channels
        self.attention = cfg.attention
        dim = cfg.dim
        patch_dim = latent_channels * cfg.patch_size ** 2
        self.axis_dims = split_head_dim(dim // cfg.heads, 3)
        self.patch_embed = nn.Linear(patch_dim, dim)
        self.time_embed = nn.Sequential(nn.Linear(cfg.time_freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        # Planning signal -> generator width, shared by every block's cross-attention.
        self.plan_proj = nn.Sequential(nn.RMSNorm(plan_dim, eps=1e-6), nn.Linear(plan_dim, dim))
        # Z_uncond (Eq. 1): a learnable planning token used when the planner is absent or dropped.
        self.uncond_token = nn.Parameter(torch.randn(dim) * 0.02)
        self.plan_pool_proj = nn.Linear(dim, dim)
        self.blocks = nn.ModuleList(GeneratorBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.RMSNorm(dim, eps=1e-6, elementwise_affine=False)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out_proj = nn.Linear(dim, patch_dim)
        self.output_conv: nn.Sequential | None = None
        if cfg.output_conv:
            self.add_output_conv(cfg.output_conv)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        # adaLN-Zero (DiT): every residual branch and the output start at zero, so the untrained
        # network is the identity on its residual stream and predicts v = 0.
        for block in self.blocks:
            for modulation in (block.attn_modulation, block.mlp_modulation):
                nn.init.zeros_(modulation[-1].weight)
                nn.init.zeros_(modulation[-1].bias)
        self.zero_output_layer()

    def zero_output_layer(self) -> None:
        """Zero the final modulation and projection (and the output convolution's last layer, if
        any): the network then predicts v = 0 everywhere."""
        layers = [self.out_modulation[-1], self.out_proj]
        if self.output_conv is not None:
            layers.append(self.output_conv[-1])
        with torch.no_grad():
            for layer in layers:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def add_output_conv(self, width: int) -> None:
        """Add the residual 3x3 convolution on the predicted latents (``GeneratorConfig.output_conv``).

        Its last layer starts at zero, so the prediction is unchanged until it trains: a trained
        generator can grow one and go on from its checkpoint.
        """
        if width < 1:
            raise ValueError(f"output_conv must be a positive width (or 0 for none), got {width}")
        if self.output_conv is not None:
            raise ValueError("this generator already has an output convolution")
        channels = self.latent_channels
        conv = nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.SiLU(),
                             nn.Conv2d(width, channels, 3, padding=1))
        nn.init.zeros_(conv[-1].weight)
        nn.init.zeros_(conv[-1].bias)
        self.output_conv = conv.to(self.out_proj.weight.device, self.out_proj.weight.dtype)
        self.cfg.output_conv = width

    def project_plan(self, plan: Tensor | None, batch: int, frames: int, drop: Tensor | None = None) -> Tensor:
        """Planning signal (B, K, N, plan_dim) -> generator width, with Z_uncond where dropped.

        ``plan=None`` means unconditional (stage-one warm-up, or the unconditional branch of
        classifier-free guidance); ``drop`` (B,) bool replaces the signal of chosen samples.
        """
        uncond = self.uncond_token.to(self.patch_embed.weight.dtype)
        if plan is None:
            return uncond.expand(batch, frames, 1, -1)
        if plan.shape[:2] != (batch, frames):
            raise ValueError(f"planning signal covers {tuple(plan.shape[:2])} (batch, frames), "
                             f"but the latents have {(batch, frames)}")
        projected = self.plan_proj(plan)
        if drop is not None:
            projected = torch.where(drop[:, None, None, None], uncond, projected)
        return projected

    def forward(self, latents: Tensor, timesteps: Tensor, frame_is_generated: Tensor, plan: Tensor | None = None,
                drop_plan: Tensor | None = None, attention: AttentionPattern | None = None,
                skip_block: int | None = None) -> Tensor:
        """Predict the velocity v of every frame (Eq. 1 / Eq. 3; only generated frames are used).

        Args:
            latents: (B, K, C, H, W): noisy latents at generated frames, clean ones at references.
            timesteps: (B,) diffusion step of the generated frames (references get step 0).
            frame_is_generated: (B, K) bool.
            plan: (B, K, N, plan_dim) planning signal, or None for Z_uncond everywhere.
            drop_plan: optional (B,) bool, samples whose planning signal is replaced by Z_uncond.
            attention: override the configured second-attention pattern for this call.
            skip_block: leave out this block (Python indexing: -1 is the last) for this call, the
                weakened network of skip-layer guidance (`mardini.diffusion.guided_denoiser`).
        """
        batch, frames, channels, height, width = latents.shape
        if channels != self.latent_channels:
            raise ValueError(f"generator expects {self.latent_channels} latent channels, got {channels}")
        if frame_is_generated.shape != (batch, frames):
            raise ValueError(f"frame mask has shape {tuple(frame_is_generated.shape)}, expected {(batch, frames)}")
        pattern = attention or self.attention
        if pattern not in ATTENTION_PATTERNS:
            raise ValueError(f"unknown attention pattern '{pattern}'; use one of {ATTENTION_PATTERNS}")
        depth = len(self.blocks)
        if skip_block is not None and not -depth <= skip_block < depth:
            raise ValueError(f"skip_block {skip_block} is not a block of this {depth}-block generator "
                             f"(use {-depth} to {depth - 1})")
        skipped = None if skip_block is None else skip_block % depth
        p = self.cfg.patch_size
        rows, cols = height // p, width // p
        x = self.patch_embed(patchify(latents, p))

        t = torch.where(frame_is_generated, timesteps.reshape(batch, 1).to(latents.device), 0)
        time_cond = self.time_embed(timestep_features(t, self.cfg.time_freq_dim).to(x.dtype))
        plan_tokens = self.project_plan(plan, batch, frames, drop_plan)
        mlp_cond = time_cond + self.plan_pool_proj(plan_tokens.mean(dim=2))

        # Frames whose tokens attend to every token: the generated ones (identity attention), or
        # all frames when identity attention is switched off for an ablation.
        attends_all = frame_is_generated if self.cfg.identity_attention else torch.ones_like(frame_is_generated)
        rope_video = generator_rope(frames, rows, cols, tuple(self.axis_dims), x.device)
        per_frame = rows * cols
        rope_frame = (rope_video[0][:per_frame], rope_video[1][:per_frame])
        rope_time = (rope_video[0][::per_frame], rope_video[1][::per_frame])
        for index, block in enumerate(self.blocks):
            if index == skipped:
                continue
            args = (x, time_cond, mlp_cond, plan_tokens, pattern, rope_frame, rope_video, rope_time,
                    attends_all)
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, *args, use_reentrant=False)
            else:
                x = block(*args)
        shift, scale = self.out_modulation(time_cond)[:, :, None].chunk(2, dim=-1)
        out = unpatchify(self.out_proj(modulate(self.norm_out(x), shift, scale)), p, height, width)
        if self.output_conv is not None:
            # U-ViT's conv after the last linear layer: a latent pixel now sees its neighbours in
            # the adjacent tokens, so patches can agree at their edges. Residual and zero-initialised.
            out = out + self.output_conv(out.flatten(0, 1)).unflatten(0, (batch, frames))
        return out
