"""A diffusers `AutoencoderKL` (SD3/FLUX-style 16-channel 8x VAE) as a `LatentCodec`.

The MarDini paper uses a 16-channel VAE with 8x spatial compression. Any diffusers
`AutoencoderKL` folder (`config.json` + `diffusion_pytorch_model.safetensors`) works; the
latent normalisation comes from the VAE config (`scaling_factor`, `shift_factor`).
Loading is strictly local: nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .base import DEFAULT_CHUNK_SIZE, LatentCodec

if TYPE_CHECKING:  # diffusers is slow to import; only load it when a VAE is actually used
    from diffusers import AutoencoderKL

# Only safetensors weights: a pickled .bin could run code on load.
_WEIGHT_FILE = "diffusion_pytorch_model.safetensors"


class AutoencoderKLCodec(LatentCodec):
    """Wraps a diffusers `AutoencoderKL`; encodes with the posterior mode (deterministic)."""

    def __init__(
        self,
        vae: AutoencoderKL,
        scale: float | None = None,
        shift: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(chunk_size)
        self.vae = vae
        cfg = vae.config
        self.latent_channels = int(cfg.latent_channels)
        # One 2x downsample per down block except the last (diffusers' Encoder layout).
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.scale = float(cfg.scaling_factor if scale is None else scale)
        config_shift = getattr(cfg, "shift_factor", None)  # absent or None for SD1/SDXL VAEs
        self.shift = float((config_shift or 0.0) if shift is None else shift)

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        dtype: torch.dtype = torch.float32,
        scale: float | None = None,
        shift: float | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> "AutoencoderKLCodec":
        """Load a diffusers `AutoencoderKL` saved with `save_pretrained` in a local `folder`."""
        from diffusers import AutoencoderKL

        folder = Path(folder)
        _check_vae_folder(folder)
        vae = AutoencoderKL.from_pretrained(folder, torch_dtype=dtype, local_files_only=True, use_safetensors=True)
        return cls(vae.eval(), scale=scale, shift=shift, chunk_size=chunk_size)

    def _encode_raw(self, x: Tensor) -> Tensor:
        return self.vae.encode(x).latent_dist.mode()

    def _decode_raw(self, z: Tensor) -> Tensor:
        return self.vae.decode(z).sample


def _check_vae_folder(folder: Path) -> None:
    """Fail early, naming what is missing, instead of diffusers' generic errors."""
    if not folder.is_dir():
        raise FileNotFoundError(f"AutoencoderKL folder {str(folder)!r} does not exist or is not a folder.")
    config = folder / "config.json"
    if not config.is_file():
        hint = ""
        if (folder / "vae" / "config.json").is_file():
            hint = f" It has a vae/ subfolder: pass {str(folder / 'vae')!r} instead."
        raise FileNotFoundError(
            f"{str(folder)!r} has no config.json, so it is not a diffusers AutoencoderKL folder.{hint}"
        )
    try:
        class_name = json.loads(config.read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{str(config)!r} is not a valid JSON object: {e}") from e
    if class_name != "AutoencoderKL":
        raise ValueError(f"{str(config)!r} describes a {class_name!r}, not an 'AutoencoderKL'.")
    if not (folder / _WEIGHT_FILE).is_file():
        raise FileNotFoundError(
            f"AutoencoderKL folder {str(folder)!r} has a config.json but no {_WEIGHT_FILE} "
            "(pickled .bin weights are not loaded). Copy the VAE's safetensors weights there."
        )
