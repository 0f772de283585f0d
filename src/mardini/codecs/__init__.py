"""Latent codecs: per-frame 8x image autoencoders behind one interface (`LatentCodec`).

- `AutoencoderKLCodec`: a diffusers `AutoencoderKL` folder (the paper's kind of 16-channel VAE).
- `TinyAutoencoderCodec`: TAE-family tiny autoencoders (TAESD, TAEF1, TAEF2, ...).
- `FrameAutoencoderCodec`: this project's own small, CPU-trainable autoencoder.

`load_codec(folder)` tells the three kinds of folder apart and loads the right one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .autoencoder_kl import AutoencoderKLCodec
from .base import LatentCodec, estimate_latent_stats
from .frame_autoencoder import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
from .tae import TinyAutoencoderCodec, find_tae_pairs

__all__ = [
    "AutoencoderKLCodec",
    "FrameAutoencoder",
    "FrameAutoencoderCodec",
    "FrameAutoencoderConfig",
    "LatentCodec",
    "TinyAutoencoderCodec",
    "estimate_latent_stats",
    "load_codec",
]


def load_codec(path_or_spec: str | os.PathLike | LatentCodec) -> LatentCodec:
    """Load the codec stored in folder `path_or_spec`, detecting its kind.

    An already built `LatentCodec` is returned as is, so callers can take either.

    - `config.json` with `"kind": "frame_autoencoder"` -> `FrameAutoencoderCodec`;
    - `config.json` with `"_class_name": "AutoencoderKL"` (diffusers) -> `AutoencoderKLCodec`;
    - one `<name>_encoder` + `<name>_decoder` pair (.pth / .safetensors) -> `TinyAutoencoderCodec`.

    Raises FileNotFoundError for a missing folder and ValueError for one of no known kind.
    """
    if isinstance(path_or_spec, LatentCodec):
        return path_or_spec
    folder = Path(path_or_spec)
    if not folder.exists():
        raise FileNotFoundError(f"codec folder {str(folder)!r} does not exist.")
    if not folder.is_dir():
        raise ValueError(f"load_codec expects a folder, got the file {str(folder)!r}; pass its parent folder.")
    config = folder / "config.json"
    if config.is_file():
        try:
            meta = json.loads(config.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{str(config)!r} is not valid JSON: {e}") from e
        meta = meta if isinstance(meta, dict) else {}
        if meta.get("kind") == "frame_autoencoder":
            return FrameAutoencoderCodec.from_pretrained(folder)
        if meta.get("_class_name") == "AutoencoderKL":
            return AutoencoderKLCodec.from_pretrained(folder)
    if find_tae_pairs(folder):
        return TinyAutoencoderCodec.from_pretrained(folder)
    hint = ""
    if (folder / "vae" / "config.json").is_file():
        hint = f" It has a vae/ subfolder (a diffusers pipeline?): pass {str(folder / 'vae')!r}."
    raise ValueError(
        f"{str(folder)!r} is not a known codec folder.{hint} Expected one of: a frame autoencoder "
        "(config.json with kind 'frame_autoencoder' + model.safetensors); a diffusers "
        "AutoencoderKL (config.json with _class_name 'AutoencoderKL' + "
        "diffusion_pytorch_model.safetensors); or a TAE pair <name>_encoder.pth/.safetensors "
        "+ <name>_decoder.pth/.safetensors."
    )
