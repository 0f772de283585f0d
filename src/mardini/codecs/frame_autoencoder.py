"""The project's own per-frame autoencoder: 16 latent channels, 8x, small enough to train on a CPU.

Design (from measurements made for this project):
- a TAESD-sized conv stack (residual blocks of three 3x3 convs, `width` channels, `depth`
  blocks per resolution level);
- the first 2x downsample is a pixel rearrangement (`pixel_unshuffle`), not a strided conv,
  so no full-resolution conv runs; the decoder mirrors it with `pixel_shuffle`;
- beside the conv stack, a learned linear map of each 8x8x3 pixel patch to the 16 latent
  channels (and back in the decoder): encoder = stack(x) + Linear(patch), decoder likewise.
  This shortcut was key to reconstruction quality.
- optionally (`refine_width` > 0), a small residual refinement at full resolution on top of the
  decoded image; see `Refinement` for why. Off (0) by default, and then the architecture and the
  state dict are exactly those of the codecs trained before it existed.
- optionally (`detail_gain` > 0), `restore_detail` on the decoded frames at inference: the
  decoder's own finest detail made louder where it has some; see there for why.

`save_pretrained` writes `config.json` (with `kind` and `format_version`) and
`model.safetensors`; `from_pretrained` reads them back without unpickling anything.
The latent normalisation (`scale`, `shift`) lives in the config; measure it with
`estimate_latent_stats`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DEFAULT_CHUNK_SIZE, LatentCodec

KIND = "frame_autoencoder"
#: Newest format this code reads. 2 = with a `Refinement` (`refine_width` > 0); 3 = with
#: `detail_gain` > 0. A model without either is still written as format 1, without the keys, so
#: older code keeps reading it (and code that cannot apply the gain refuses the file by its version).
FORMAT_VERSION = 3
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PATCH = 8  # total downsample; 2 (pixel_unshuffle) x 2 x 2 (strided convs)


@dataclass
class FrameAutoencoderConfig:
    """Hyper-parameters and latent statistics of a `FrameAutoencoder`.

    Attributes:
        latent_channels: channels per latent pixel (16, as in the paper's VAE).
        width: channels of the conv stack.
        depth: residual blocks per resolution level (1/2, 1/4, 1/8), in encoder and decoder.
        scale, shift: latent normalisation `z = (z_raw - shift) * scale`.
        refine_width: channels of the decoder's full-resolution `Refinement`; 0 = none (the
            original architecture; a config.json without the key means 0). A decoder-side part
            only: the encoder, `patch_in` and the latent space do not depend on it.
        detail_gain, detail_threshold: `restore_detail` applied to every decoded frame at
            inference (not in training: the decoder learns its loss-optimal output); gain 0 = off.
    """

    latent_channels: int = 16
    width: int = 64
    depth: int = 3
    scale: float = 1.0
    shift: float = 0.0
    refine_width: int = 0
    detail_gain: float = 0.0
    detail_threshold: float = 0.01

    def __post_init__(self) -> None:
        for name in ("latent_channels", "width", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"FrameAutoencoderConfig.{name} must be a positive integer; got {value!r}")
        for name in ("scale", "shift"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"FrameAutoencoderConfig.{name} must be a number; got {value!r}")
            setattr(self, name, float(value))
        if not self.scale > 0 or self.scale == float("inf"):
            raise ValueError(f"FrameAutoencoderConfig.scale must be positive and finite; got {self.scale!r}")
        value = self.refine_width
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"FrameAutoencoderConfig.refine_width must be a non-negative integer (0 = no "
                             f"refinement); got {value!r}")
        for name, low in (("detail_gain", "0 (0 = off)"), ("detail_threshold", "0")):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < float("inf") \
                    or (name == "detail_threshold" and value == 0):
                raise ValueError(f"FrameAutoencoderConfig.{name} must be a finite number above {low}; got {value!r}")
            setattr(self, name, float(value))


def restore_detail(frames: Tensor, gain: float, threshold: float) -> Tensor:
    """Frames plus ``gain`` times their own finest detail, where they have some.

    ``detail = frames - box3(frames)``; each pixel's share of it is ``e / (e + threshold)``, with
    ``e`` the detail's local energy (5x5 mean over colour). Why: a decoder trained on pixel losses
    returns the mean of what its latents allow, which under uncertainty is the truth's detail
    attenuated (the bundled decoder keeps ~0.4 of the held-out frames' Laplacian variance). Among
    outputs with more detail, scaling up the decoder's own is the one that stays most correlated
    with the truth (it is the conditional mean, louder), so it costs the least PSNR and SSIM per
    unit of sharpness; drawing new detail cost more in every probe (docs/benchmarks.md, codec
    section: learned detail-energy loss, adversarial decoder, drawn noise). The share keeps flat
    regions as they are, where the "detail" is mostly the codec's own error. Frames (N, 3, H, W)
    in [-1, 1]; no clamping.
    """
    if gain == 0:
        return frames
    padded = F.pad(frames, (1, 1, 1, 1), mode="replicate")
    detail = frames - F.avg_pool2d(padded, 3, stride=1)
    energy = F.avg_pool2d(F.pad(detail.square().mean(1, keepdim=True), (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    return frames + gain * energy / (energy + threshold) * detail


class ResBlock(nn.Module):
    """relu(x + conv(relu(conv(relu(conv(x)))))): the TAESD residual block."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.conv(x))


class Refinement(nn.Module):
    """A residual correction of the decoded image, computed at full resolution.

    Why: on held-out real video the decoder's round trip kept only ~0.40 of the truth's Laplacian
    variance (`benchmarks/codec_quality.py` "sharpness"; TAEF2 keeps 1.15), and decoder-only
    fine-tuning with adversarial (PatchGAN), spectrum and gradient losses did not raise it. The
    decoder has no layer at full resolution: its last stage works at 1/2 resolution and one 3x3
    conv predicts each 2x2 pixel block (`pixel_shuffle`), beside the linear 8x8 patch shortcut, so
    pixel-level detail that differs within a 2x2 block is hard for it to place. This block sees
    the decoded image and the last 1/2-resolution features, both at full resolution, and adds a
    correction to the image.

    Input: `lift` (a 1x1 conv at 1/2 resolution to 4 x `width` channels, `pixel_shuffle`d to
    `width` full-resolution channels: cheaper than upsampling the decoder's features and running
    a full-resolution conv on them) plus a 3x3 conv of the image; then `blocks` `ResBlock`s of
    `width` channels and a 3x3 conv to RGB. That last conv starts at zero, so a refinement added
    to a trained codec (`FrameAutoencoder.with_refinement`) leaves its output exactly unchanged
    until fine-tuning moves it.

    Cost, measured on one (shared) CPU thread for the default codec (width 64, depth 3) with
    refine_width 32: a decoder-only training step of 8 frames of 128x128 in bf16 takes 1.3-1.5x
    as long as without (2.7 s against 2.0-2.2 s, all losses and the discriminator included), and
    decoding 1.6-1.8x (75 against 45 ms a frame in fp32); 16 channels cost 1.0-1.2x and 1.1-1.2x.
    """

    def __init__(self, features: int, width: int, blocks: int = 2) -> None:
        super().__init__()
        self.lift = nn.Conv2d(features, 4 * width, 1)
        self.image_in = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(width) for _ in range(blocks)])
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, image: Tensor, features: Tensor) -> Tensor:
        """(N, 3, H, W) decoded image and (N, features, H/2, W/2) -> (N, 3, H, W) correction."""
        x = F.relu(F.pixel_shuffle(self.lift(features), 2) + self.image_in(image))
        return self.out(self.blocks(x))


class FrameAutoencoder(nn.Module):
    """Per-frame 8x autoencoder on images in [-1, 1]; `forward` returns the reconstruction."""

    def __init__(self, config: FrameAutoencoderConfig | None = None) -> None:
        super().__init__()
        # A private copy: the codec updates scale/shift in place, which must not leak back.
        self.config = cfg = dataclasses.replace(config) if config else FrameAutoencoderConfig()
        w, c, d = cfg.width, cfg.latent_channels, cfg.depth
        patch_dim = 3 * PATCH * PATCH

        def blocks() -> list[nn.Module]:
            return [ResBlock(w) for _ in range(d)]

        # Encoder: pixel_unshuffle(2) happens in `encode`, so the stack starts on 12 channels.
        self.encoder = nn.Sequential(
            nn.Conv2d(3 * 4, w, 3, padding=1), *blocks(),                    # 1/2
            nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False), *blocks(),  # 1/4
            nn.Conv2d(w, w, 3, stride=2, padding=1, bias=False), *blocks(),  # 1/8
            nn.Conv2d(w, c, 3, padding=1),
        )  # fmt: skip
        # Decoder: ends on 12 channels that `decode` pixel_shuffles to full resolution.
        self.decoder = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1), nn.ReLU(), *blocks(),                                 # 1/8
            nn.Upsample(scale_factor=2), nn.Conv2d(w, w, 3, padding=1, bias=False), *blocks(),  # 1/4
            nn.Upsample(scale_factor=2), nn.Conv2d(w, w, 3, padding=1, bias=False), *blocks(),  # 1/2
            nn.Conv2d(w, 3 * 4, 3, padding=1),
        )  # fmt: skip
        # Linear 8x8x3 patch <-> latent shortcuts; a 1x1 conv on pixel_unshuffled patches is
        # exactly a Linear applied to every patch.
        self.patch_in = nn.Conv2d(patch_dim, c, 1)
        self.patch_out = nn.Conv2d(c, patch_dim, 1)
        # Optional, decoder side only; absent (no state-dict keys) when refine_width is 0.
        self.refine = Refinement(w, cfg.refine_width) if cfg.refine_width else None

    def encode(self, x: Tensor) -> Tensor:
        """(N, 3, H, W) in [-1, 1] -> raw latents (N, C, H/8, W/8)."""
        return self.encoder(F.pixel_unshuffle(x, 2)) + self.patch_in(F.pixel_unshuffle(x, PATCH))

    def decode(self, z: Tensor) -> Tensor:
        """Raw latents (N, C, h, w) -> (N, 3, 8h, 8w), unclamped (clamp for display, not loss)."""
        if self.refine is None:
            return F.pixel_shuffle(self.decoder(z), 2) + F.pixel_shuffle(self.patch_out(z), PATCH)
        features = self.decoder[:-1](z)  # the last 1/2-resolution features
        image = F.pixel_shuffle(self.decoder[-1](features), 2) + F.pixel_shuffle(self.patch_out(z), PATCH)
        if torch.is_grad_enabled():
            return image + self.refine(image, features)
        # Inference: an eighth of the frames at a time. At refine_width 32 the refinement's
        # full-resolution activations are twice the decoder's own (32 channels per pixel against
        # 64 at 1/2 resolution = 16); run on all frames at once they raised the peak memory of
        # decoding 16 frames of 512x512 from 1.04 to 2.9 GB, in eighths to 1.07 GB (9 frames:
        # 0.59 -> 0.61 GB), so the estimates of `mardini.limits` still hold. No slower.
        n = -(-len(z) // 8)
        return image + torch.cat([self.refine(i, f) for i, f in zip(image.split(n), features.split(n))])

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of `x`, for training."""
        return self.decode(self.encode(x))

    def with_refinement(self, refine_width: int) -> "FrameAutoencoder":
        """A new model with this one's weights plus a fresh `Refinement` of `refine_width` channels.

        Its output starts exactly equal to this model's (the refinement's last conv is zero), and
        its encoder, `patch_in` and scale/shift are this model's: the latent space is unchanged.
        For decoder-only fine-tuning of a codec trained without refinement (`mardini train-vae`
        with `refine_width`).
        """
        if self.refine is not None:
            raise ValueError(f"this frame autoencoder already has a refinement (refine_width="
                             f"{self.config.refine_width})")
        grown = FrameAutoencoder(dataclasses.replace(self.config, refine_width=refine_width))
        if grown.refine is None:
            raise ValueError(f"refine_width must be positive to add a refinement; got {refine_width!r}")
        missing, unexpected = grown.load_state_dict(self.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("refine.") for k in missing), (missing, unexpected)
        parameter = next(self.parameters())
        return grown.to(device=parameter.device, dtype=parameter.dtype).train(self.training)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` into `folder` (created if needed)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        version = write_config(folder, self.config)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, folder / WEIGHTS_NAME, metadata={"kind": KIND, "format_version": str(version)})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> "FrameAutoencoder":
        """Load a folder written by `save_pretrained` (safetensors only, strict)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config = read_config(folder)
        weights = folder / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"frame autoencoder folder {str(folder)!r} has no {WEIGHTS_NAME}.")
        model = cls(config)
        try:
            model.load_state_dict(load_file(weights, device="cpu"), strict=True)
        except RuntimeError as e:
            raise ValueError(f"{str(weights)!r} does not match {str(folder / CONFIG_NAME)!r}: {e}") from e
        return model.eval()


def write_config(folder: str | os.PathLike, config: FrameAutoencoderConfig) -> int:
    """Write ``folder/config.json`` for ``config`` in the oldest format that holds it; returns that
    format's version (`FORMAT_VERSION` explains the numbers)."""
    fields = dataclasses.asdict(config)
    version = 3 if fields["detail_gain"] else 2 if fields["refine_width"] else 1
    if not fields["detail_gain"]:  # no post-filter: the format code from before it reads
        del fields["detail_gain"], fields["detail_threshold"]
    if not fields["refine_width"]:
        del fields["refine_width"]  # the original format, readable by code from before refinement
    meta = {"kind": KIND, "format_version": version, **fields}
    (Path(folder) / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    return version


def read_config(folder: str | os.PathLike) -> FrameAutoencoderConfig:
    """Read and validate `folder/config.json` of a saved frame autoencoder."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} has no {CONFIG_NAME}; not a saved frame autoencoder.")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{str(path)!r} must hold a JSON object.")
    meta = dict(meta)
    kind = meta.pop("kind", None)
    if kind != KIND:
        raise ValueError(f"{str(path)!r} has kind {kind!r}, expected {KIND!r}.")
    version = meta.pop("format_version", None)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{str(path)!r} has an invalid format_version {version!r}.")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has format_version {version}, newer than this code reads "
            f"({FORMAT_VERSION}). Update mardini to load it."
        )
    fields = {f.name for f in dataclasses.fields(FrameAutoencoderConfig)}
    unknown = sorted(set(meta) - fields)
    if unknown:
        raise ValueError(f"{str(path)!r} has unknown keys {unknown}; it was edited or written by other code.")
    return FrameAutoencoderConfig(**meta)


class FrameAutoencoderCodec(LatentCodec):
    """`FrameAutoencoder` as a `LatentCodec`; `scale`/`shift` read and write the model's config."""

    def __init__(self, model: FrameAutoencoder, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        super().__init__(chunk_size)
        self.model = model
        self.latent_channels = model.config.latent_channels

    # Properties, so the statistics saved with the model are the ones the codec uses.
    @property
    def scale(self) -> float:  # type: ignore[override]
        return self.model.config.scale

    @scale.setter
    def scale(self, value: float) -> None:
        if not float(value) > 0:
            raise ValueError(f"scale must be positive; got {value!r}")
        self.model.config.scale = float(value)

    @property
    def shift(self) -> float:  # type: ignore[override]
        return self.model.config.shift

    @shift.setter
    def shift(self, value: float) -> None:
        self.model.config.shift = float(value)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> "FrameAutoencoderCodec":
        """Load a folder written by `save_pretrained`."""
        return cls(FrameAutoencoder.from_pretrained(folder), chunk_size)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Save the model with the codec's current `scale`/`shift`."""
        self.model.save_pretrained(folder)

    def _encode_raw(self, x: Tensor) -> Tensor:
        return self.model.encode(x)

    def _decode_raw(self, z: Tensor) -> Tensor:
        cfg = self.model.config
        return restore_detail(self.model.decode(z), cfg.detail_gain, cfg.detail_threshold)
