"""The MAR planning model (section 2.3.1, figure 2 left).

Input: low-resolution latents of K frames, with the frames to generate replaced by a learnable
[MASK] token. Output: a planning signal per frame (one token per patch plus one [NEXT] token per
row), which the generator reads through cross-attention. It runs once per video.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mardini.config import PlannerConfig
from mardini.models.layers import Attention, FeedForward, patchify, rope_tables, split_head_dim, unpatchify


def planner_positions(frames: int, rows: int, row_tokens: int, device: torch.device | None = None) -> Tensor:
    """2D rotary positions (frame index, index in the frame's flattened sequence), shape (K*N, 2).

    Each row holds ``row_tokens`` tokens (patches plus the trailing [NEXT]); flattening a frame
    into one sequence is what lets one model take any height and width (section 2.3.1).
    """
    per_frame = rows * row_tokens
    frame = torch.arange(frames, device=device).repeat_interleave(per_frame)
    within = torch.arange(per_frame, device=device).repeat(frames)
    return torch.stack([frame, within], dim=1)


class PlannerBlock(nn.Module):
    """Llama-style block: RMSNorm -> spatial attention, RMSNorm -> spatio-temporal attention
    (with identity attention), RMSNorm -> MLP; all pre-norm residual (figure 2, NOTES.md)."""

    def __init__(self, cfg: PlannerConfig):
        super().__init__()
        self.norm_spatial = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.spatial_attn = Attention(cfg.dim, cfg.heads)
        self.norm_st = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.st_attn = Attention(cfg.dim, cfg.heads)
        self.norm_mlp = nn.RMSNorm(cfg.dim, eps=1e-6)
        self.mlp = FeedForward(cfg.dim, cfg.mlp_dim, cfg.mlp)

    def forward(self, x: Tensor, rope_frame: tuple[Tensor, Tensor], rope_video: tuple[Tensor, Tensor],
                token_is_generated: Tensor) -> Tensor:
        batch, frames, tokens, _ = x.shape
        h = self.spatial_attn(self.norm_spatial(x).flatten(0, 1), rope=rope_frame)
        x = x + h.view_as(x)
        h = self.st_attn(self.norm_st(x).flatten(1, 2), rope=rope_video, token_is_generated=token_is_generated)
        x = x + h.view_as(x)
        return x + self.mlp(self.norm_mlp(x))


class Planner(nn.Module):
    """MAR planning model P (section 2.2): masked low-resolution latents -> planning signal."""

    def __init__(self, cfg: PlannerConfig, latent_channels: int):
        super().__init__()
        self.cfg = cfg
        self.latent_channels = latent_channels
        patch_dim = latent_channels * cfg.patch_size ** 2
        self.axis_dims = split_head_dim(cfg.dim // cfg.heads, 2)
        self.patch_embed = nn.Linear(patch_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.next_token = nn.Parameter(torch.randn(cfg.dim) * 0.02)
        self.blocks = nn.ModuleList(PlannerBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.RMSNorm(cfg.dim, eps=1e-6)
        # Projection head f of Eq. 2 (stage one only); absent when the config drops it.
        self.head = nn.Linear(cfg.dim, patch_dim) if cfg.reconstruction_head else None
        self.gradient_checkpointing = False

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def forward(self, latents: Tensor, frame_is_generated: Tensor) -> Tensor:
        """Planning signal Z_cond = P(Z_low^mask).

        Args:
            latents: (B, K, C, h, w) low-resolution latents; values of generated frames are ignored.
            frame_is_generated: (B, K) bool, True for frames to generate (masked).

        Returns:
            (B, K, N, dim) with N = rows * (cols + 1): each row of patch tokens followed by [NEXT].
        """
        batch, frames, channels, height, width = latents.shape
        if channels != self.latent_channels:
            raise ValueError(f"planner expects {self.latent_channels} latent channels, got {channels}")
        if frame_is_generated.shape != (batch, frames):
            raise ValueError(f"frame mask has shape {tuple(frame_is_generated.shape)}, expected {(batch, frames)}")
        p = self.cfg.patch_size
        rows, cols = height // p, width // p
        x = self.patch_embed(patchify(latents, p))
        # [MASK] replaces every token of a frame to generate (section 2.2).
        x = torch.where(frame_is_generated[:, :, None, None], self.mask_token.to(x.dtype), x)
        # A learnable [NEXT] token after each row marks where a row ends (section 2.3.1).
        x = rearrange(x, "b k (r c) d -> b k r c d", r=rows)
        next_tokens = self.next_token.to(x.dtype).expand(batch, frames, rows, 1, -1)
        x = torch.cat([x, next_tokens], dim=3).flatten(2, 3)
        tokens = rows * (cols + 1)

        positions = planner_positions(frames, rows, cols + 1, device=x.device)
        rope_video = rope_tables(positions, self.axis_dims)
        rope_frame = (rope_video[0][:tokens], rope_video[1][:tokens])
        # Tokens that attend to every token: the masked ones, or all of them when identity
        # attention is switched off for an ablation.
        attends_all = frame_is_generated if self.cfg.identity_attention else torch.ones_like(frame_is_generated)
        token_is_generated = attends_all.repeat_interleave(tokens, dim=1)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, rope_frame, rope_video, token_is_generated, use_reentrant=False)
            else:
                x = block(x, rope_frame, rope_video, token_is_generated)
        return self.norm_out(x)

    def reconstruct(self, plan: Tensor, height: int, width: int) -> Tensor:
        """Projection head f (Eq. 2): planning signal -> low-resolution latents (B, K, C, h, w)."""
        if self.head is None:
            raise RuntimeError("this planner has no reconstruction head (planner.reconstruction_head is false); "
                               "it is only needed for the stage-one warm-up")
        p = self.cfg.patch_size
        rows, cols = height // p, width // p
        patches = rearrange(plan, "b k (r c) d -> b k r c d", r=rows)[:, :, :, :cols].flatten(2, 3)
        return unpatchify(self.head(patches), p, height, width)
