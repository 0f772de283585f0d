"""Building blocks shared by the planner and the generator.

* :func:`rope_tables` / :func:`apply_rope`: rotary positions on several axes (section 2.3.1).
* :func:`identity_attention`: the paper's Identity Attention (section 2.3.2, figure 3).
* :class:`Attention`: multi-head attention with QK layer norm, rotary positions and optional
  identity attention, on top of ``torch.nn.functional.scaled_dot_product_attention``.
* :class:`FeedForward`, :func:`patchify` / :func:`unpatchify`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from mardini.config import MlpKind

# --------------------------------------------------------------------------------------------
# Rotary position embedding on several axes
# --------------------------------------------------------------------------------------------


def split_head_dim(head_dim: int, num_axes: int) -> list[int]:
    """Share ``head_dim`` between ``num_axes`` rotary axes, every share even.

    The first axis (time) takes the remainder, so e.g. 64 over three axes gives [24, 20, 20].
    """
    per_axis = (head_dim // num_axes) // 2 * 2
    if per_axis == 0:
        raise ValueError(f"head dimension {head_dim} is too small for {num_axes} rotary axes; "
                         f"use at least {2 * num_axes} channels per head")
    dims = [per_axis] * num_axes
    dims[0] += head_dim - per_axis * num_axes
    if dims[0] % 2:
        raise ValueError(f"head dimension {head_dim} must be even for rotary embeddings")
    return dims


def rope_tables(positions: Tensor, axis_dims: list[int], theta: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables for rotary embeddings (Su et al. 2024) on several axes.

    Args:
        positions: (L, A) integer positions of L tokens on A axes.
        axis_dims: channels of the head given to each axis (even numbers summing to the head dim).

    Returns:
        ``(cos, sin)``, each (L, head_dim // 2), for :func:`apply_rope`.
    """
    angles = []
    for axis, dim in enumerate(axis_dims):
        freqs = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) / dim)
        angles.append(positions[:, axis, None].double() * freqs)
    angle = torch.cat(angles, dim=-1)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs of ``x`` (..., L, D) by the angles of ``(cos, sin)`` (L, D/2).

    Because each pair is rotated by ``position * frequency``, the dot product of a rotated query
    and key depends only on the difference of their positions: attention sees relative offsets.
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    real, imag = pairs.unbind(-1)
    rotated = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1)
    return rotated.flatten(-2).type_as(x)


# --------------------------------------------------------------------------------------------
# Identity attention
# --------------------------------------------------------------------------------------------


def generated_token_index(token_is_generated: Tensor, width: int | None = None) -> tuple[Tensor, Tensor]:
    """Indices of the generated tokens of each sequence, padded to a common length.

    Args:
        token_is_generated: (B, L) bool, True for masked/noisy tokens.
        width: the padded length G. Default: on the CPU the largest count of generated tokens
            (reading it costs nothing there); on an accelerator L, a static shape, since reading
            the count would make the host wait for the device in every layer of every step (and
            rule out CUDA graphs). The outputs of the generated tokens are the same either way.

    Returns:
        ``(gather_index, scatter_index)``, each (B, G). Padding entries gather token 0 (any valid
        row) and scatter to the dummy row ``L``, which the caller drops, so a sequence with fewer
        (or no) generated tokens is handled exactly.
    """
    batch, length = token_is_generated.shape
    counts = token_is_generated.sum(dim=1)
    if width is None:
        on_cpu = token_is_generated.device.type == "cpu"
        width = (int(counts.max()) if batch else 0) if on_cpu else length
    # Stable sort puts generated tokens first, in their original order.
    order = torch.argsort((~token_is_generated).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.arange(width, device=order.device)[None, :] < counts[:, None]
    gather_index = torch.where(valid, order, torch.zeros_like(order))
    scatter_index = torch.where(valid, order, torch.full_like(order, length))
    return gather_index, scatter_index


def identity_attention(q: Tensor, k: Tensor, v: Tensor, token_is_generated: Tensor,
                       width: int | None = None) -> Tensor:
    """Identity Attention (section 2.3.2, figure 3) without a dense mask.

    Reference tokens attend only to themselves: a softmax over a single key is 1, so their output
    is exactly their own value vector and cannot depend on any other token. Generated (masked or
    noisy) tokens attend to every token of the sequence. Only the generated queries go through
    ``scaled_dot_product_attention``, so the cost is (#generated x #all) rather than (#all)^2.

    Args:
        q, k, v: (B, H, L, D) after projection, normalisation and rotary embedding.
        token_is_generated: (B, L) bool.
        width: padded count of generated queries (see :func:`generated_token_index`).

    Returns:
        (B, H, L, D) attention output.
    """
    batch, heads, length, dim = q.shape
    if token_is_generated.shape != (batch, length):
        raise ValueError(f"token mask has shape {tuple(token_is_generated.shape)}, "
                         f"expected {(batch, length)} to match the attention inputs")
    gather_index, scatter_index = generated_token_index(token_is_generated, width)
    if gather_index.shape[1] == 0:
        return v
    index = gather_index[:, None, :, None].expand(batch, heads, -1, dim)
    generated = F.scaled_dot_product_attention(torch.gather(q, 2, index), k, v)
    # Scatter into a copy of v with one spare row that absorbs the padding entries.
    out = torch.cat([v, v.new_zeros(batch, heads, 1, dim)], dim=2)
    out = out.scatter(2, scatter_index[:, None, :, None].expand(batch, heads, -1, dim), generated)
    return out[:, :, :length]


def dense_identity_mask(token_is_generated: Tensor) -> Tensor:
    """The same pattern as a dense (B, 1, L, L) boolean mask: the slow reference implementation.

    Kept for tests and ``benchmarks/attention.py``; the models never build it.
    """
    length = token_is_generated.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=token_is_generated.device)
    return (token_is_generated[:, :, None] | eye[None])[:, None]


# --------------------------------------------------------------------------------------------
# Attention, MLP, patches
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention with layer norm on projected queries and keys (section 2.3.1).

    ``forward`` serves self-attention (optionally with rotary positions and identity attention)
    and cross-attention (``context`` given).
    """

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, bias: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        context_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Linear(dim, dim, bias=bias)
        self.to_k = nn.Linear(context_dim, dim, bias=bias)
        self.to_v = nn.Linear(context_dim, dim, bias=bias)
        self.to_out = nn.Linear(dim, dim, bias=bias)
        self.q_norm = nn.LayerNorm(self.head_dim)
        self.k_norm = nn.LayerNorm(self.head_dim)

    def forward(self, x: Tensor, context: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None,
                token_is_generated: Tensor | None = None) -> Tensor:
        """Attend from ``x`` (B, L, dim) to ``context`` (B, S, context_dim), or to ``x`` itself.

        ``rope`` rotates queries and keys (self-attention only); ``token_is_generated`` (B, L)
        switches on identity attention.
        """
        source = x if context is None else context
        q = rearrange(self.to_q(x), "b l (h d) -> b h l d", h=self.heads)
        k = rearrange(self.to_k(source), "b l (h d) -> b h l d", h=self.heads)
        v = rearrange(self.to_v(source), "b l (h d) -> b h l d", h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if token_is_generated is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = identity_attention(q, k, v, token_is_generated)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)"))


class FeedForward(nn.Module):
    """Two-matrix GELU MLP (the paper's parameter counts) or a Llama-style SwiGLU."""

    def __init__(self, dim: int, hidden: int, kind: MlpKind = "gelu", bias: bool = False):
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"unknown MLP kind '{kind}'; use 'gelu' or 'swiglu'")
        self.kind = kind
        self.fc_in = nn.Linear(dim, hidden * (2 if kind == "swiglu" else 1), bias=bias)
        self.fc_out = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc_in(x)
        if self.kind == "swiglu":
            gate, h = h.chunk(2, dim=-1)
            h = F.silu(gate) * h
        else:
            h = F.gelu(h, approximate="tanh")
        return self.fc_out(h)


def patchify(latents: Tensor, patch: int) -> Tensor:
    """(B, K, C, H, W) latents -> (B, K, H/p * W/p, C*p*p) patch vectors, row-major."""
    _, _, _, height, width = latents.shape
    if height % patch or width % patch:
        raise ValueError(f"latent size {height}x{width} is not divisible by the patch size {patch}; "
                         f"use frames whose size is a multiple of {patch} x the VAE factor")
    return rearrange(latents, "b k c (h p) (w q) -> b k (h w) (c p q)", p=patch, q=patch)


def unpatchify(tokens: Tensor, patch: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`patchify`: (B, K, N, C*p*p) -> (B, K, C, H, W) with H, W in latent pixels."""
    return rearrange(tokens, "b k (h w) (c p q) -> b k c (h p) (w q)", h=height // patch, w=width // patch,
                     p=patch, q=patch)
