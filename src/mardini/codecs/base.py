"""The latent codec interface: frames in [-1, 1] <-> normalised latents at 1/8 resolution.

MarDini works on per-frame latents of an 8x image autoencoder (paper, "VAE Compressor").
Every codec in this package hides its own pixel range and latent scale behind `LatentCodec`:

    z = codec.encode(frames)   # (..., 3, H, W) in [-1, 1]  ->  (..., C, H/8, W/8), ~unit variance
    x = codec.decode(z)        # (..., C, h, w)             ->  (..., 3, 8h, 8w), clamped to [-1, 1]

Subclasses only implement `_encode_raw` / `_decode_raw` on one 4-D batch in their own pixel
range (`pixel_range`); input checks, frame chunking and the latent normalisation
`z = (z_raw - shift) * scale` live here, once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

DEFAULT_CHUNK_SIZE = 16


class LatentCodec(nn.Module):
    """Base class of all latent codecs (per-frame 8x image autoencoders).

    Attributes:
        latent_channels: channels of the latent (16 for the paper's VAE).
        downsample: spatial reduction factor (8).
        scale, shift: latent normalisation, `z = (z_raw - shift) * scale`.
        chunk_size: frames encoded/decoded per call when none is given, bounding memory.
        pixel_range: the (low, high) pixel range the subclass's raw networks expect.
    """

    latent_channels: int
    downsample: int = 8
    scale: float
    shift: float
    pixel_range: tuple[float, float] = (-1.0, 1.0)

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__()
        self.chunk_size = _check_chunk_size(chunk_size)

    # --- what a subclass implements ------------------------------------------------------------

    def _encode_raw(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in `pixel_range` -> un-normalised latents (N, C, H/8, W/8)."""
        raise NotImplementedError

    def _decode_raw(self, z: Tensor) -> Tensor:
        """Un-normalised latents (N, C, h, w) -> (N, 3, 8h, 8w) in (roughly) `pixel_range`."""
        raise NotImplementedError

    # --- public API ----------------------------------------------------------------------------

    def encode(self, frames: Tensor, chunk_size: int | None = None) -> Tensor:
        """Encode frames in [-1, 1] of shape (..., 3, H, W) to latents (..., C, H/8, W/8).

        Frames are processed `chunk_size` at a time (default `self.chunk_size`), so a long
        video never passes through the network in one batch. Deterministic: KL codecs use the
        posterior mode. Gradients are not disabled here; wrap in `torch.no_grad()` if unwanted.
        """
        z = self._encode_unnormalised(frames, chunk_size)
        return (z - self.shift) * self.scale

    def decode(self, latents: Tensor, chunk_size: int | None = None) -> Tensor:
        """Decode normalised latents (..., C, h, w) to frames (..., 3, 8h, 8w) clamped to [-1, 1]."""
        self._check_latents(latents)
        lead, x = _flatten_frames(latents)
        z = x / self.scale + self.shift
        dtype = self._param_dtype()
        out = _chunked(
            lambda c: self._decode_raw(c.to(dtype)),
            z,
            self.chunk_size if chunk_size is None else chunk_size,
            empty_shape=(3, z.shape[-2] * self.downsample, z.shape[-1] * self.downsample),
        )
        low, high = self.pixel_range
        out = (out.to(latents.dtype) - low) * (2.0 / (high - low)) - 1.0
        return out.clamp(-1.0, 1.0).reshape(*lead, *out.shape[1:])

    def round_trip(self, frames: Tensor, chunk_size: int | None = None) -> Tensor:
        """`decode(encode(frames))`: the codec's reconstruction of frames in [-1, 1]."""
        return self.decode(self.encode(frames, chunk_size), chunk_size)

    # --- helpers -------------------------------------------------------------------------------

    def _encode_unnormalised(self, frames: Tensor, chunk_size: int | None) -> Tensor:
        """Encode to raw latents (before `shift`/`scale`); shared by `encode` and the stats."""
        self._check_frames(frames)
        lead, x = _flatten_frames(frames)
        low, high = self.pixel_range
        x = (x + 1.0) * ((high - low) / 2.0) + low
        dtype = self._param_dtype()
        h, w = x.shape[-2] // self.downsample, x.shape[-1] // self.downsample
        z = _chunked(
            lambda c: self._encode_raw(c.to(dtype)),
            x,
            self.chunk_size if chunk_size is None else chunk_size,
            empty_shape=(self.latent_channels, h, w),
        )
        return z.to(frames.dtype).reshape(*lead, *z.shape[1:])

    def _param_dtype(self) -> torch.dtype:
        """Run the networks in their own dtype (e.g. a bf16 codec fed float32 frames)."""
        p = next(self.parameters(), None)
        return p.dtype if p is not None else torch.get_default_dtype()

    def _check_frames(self, frames: Tensor) -> None:
        if not torch.is_tensor(frames) or not frames.is_floating_point():
            raise TypeError(
                f"{type(self).__name__}.encode expects a floating-point tensor of frames in "
                f"[-1, 1]; got {type(frames).__name__}"
                + (f" of dtype {frames.dtype}" if torch.is_tensor(frames) else "")
                + ". Convert uint8 frames with x.float() / 127.5 - 1."
            )
        if frames.ndim < 3 or frames.shape[-3] != 3:
            raise ValueError(
                f"{type(self).__name__}.encode expects frames shaped (..., 3, H, W) with 3 RGB "
                f"channels; got shape {tuple(frames.shape)}. Put the channel dim third from last "
                f"(e.g. permute a (..., H, W, 3) array with x.movedim(-1, -3))."
            )
        h, w = frames.shape[-2:]
        if h % self.downsample or w % self.downsample:
            raise ValueError(
                f"{type(self).__name__}.encode needs frame height and width divisible by "
                f"{self.downsample}; got {h}x{w}. Resize or crop the frames, e.g. to "
                f"{h - h % self.downsample or self.downsample}x{w - w % self.downsample or self.downsample}."
            )

    def _check_latents(self, latents: Tensor) -> None:
        if not torch.is_tensor(latents) or not latents.is_floating_point():
            raise TypeError(
                f"{type(self).__name__}.decode expects a floating-point latent tensor; "
                f"got {type(latents).__name__}"
            )
        if latents.ndim < 3 or latents.shape[-3] != self.latent_channels:
            raise ValueError(
                f"{type(self).__name__}.decode expects latents shaped (..., {self.latent_channels}, h, w); "
                f"got shape {tuple(latents.shape)}. Were they made by a different codec?"
            )

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, downsample={self.downsample}, "
            f"scale={self.scale:.6g}, shift={self.shift:.6g}, chunk_size={self.chunk_size}"
        )


def _check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    return chunk_size


def _flatten_frames(x: Tensor) -> tuple[torch.Size, Tensor]:
    """(..., C, H, W) -> (leading dims, (N, C, H, W))."""
    return x.shape[:-3], x.reshape(-1, *x.shape[-3:])


def _chunked(
    fn: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int, empty_shape: tuple[int, ...]
) -> Tensor:
    """Apply `fn` to `x` in slices of `chunk_size` along dim 0 and concatenate."""
    chunk_size = _check_chunk_size(chunk_size)
    if x.shape[0] == 0:
        return x.new_zeros(0, *empty_shape)
    return torch.cat([fn(c) for c in x.split(chunk_size)], dim=0)


@torch.no_grad()
def estimate_latent_stats(
    codec: LatentCodec, frames: Tensor | Iterable[Tensor], chunk_size: int | None = None
) -> tuple[float, float]:
    """Measure the `(scale, shift)` that give `codec`'s latents of `frames` zero mean, unit variance.

    `frames` is one tensor (..., 3, H, W) in [-1, 1] or an iterable of such batches (so a data
    loader can stream them). One scalar pair over all channels, like the SD/FLUX VAEs'
    `scaling_factor`/`shift_factor`. Set the result with `codec.scale, codec.shift = ...`.
    """
    batches = [frames] if torch.is_tensor(frames) else frames
    count, total, total_sq = 0, 0.0, 0.0
    for batch in batches:
        z = codec._encode_unnormalised(batch, chunk_size).double()
        count += z.numel()
        total += z.sum().item()
        total_sq += z.square().sum().item()
    if count == 0:
        raise ValueError("estimate_latent_stats got no frames; pass at least one frame.")
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    if not math.isfinite(var) or var <= 0.0:
        raise ValueError(
            f"latents have variance {var!r} over {count} values; cannot normalise. "
            "Use more (and more varied) frames."
        )
    return 1.0 / math.sqrt(var), mean
