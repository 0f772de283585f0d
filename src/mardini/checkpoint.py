"""Checkpoint folders: ``config.json`` + ``model.safetensors`` + ``codec/``. Loading never unpickles.

A complete folder, as written by :func:`save_checkpoint` (and ``mardini init``), holds::

    config.json          {"format": "mardini", "format_version": 1, "config": {...MarDiniConfig...}}
    model.safetensors    planner.* and generator.* tensors
    codec/               the latent codec (section 2.2, "VAE Compressor"), a folder that
                         :func:`mardini.codecs.load_codec` reads

:func:`save_model` / :func:`load_model` handle the networks alone (what training needs);
:func:`save_checkpoint` / :func:`load_checkpoint` add the codec (what inference needs). The codec's
latent channels and downsampling factor must match the model config.

Every file is written to a temporary name and renamed into place, and ``codec/`` is built in a
temporary folder and renamed likewise, so an interrupted save never leaves a half-written file under
the final name. ``config.json`` is written last: a folder without it is visibly incomplete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig, LatentCodec, load_codec
from mardini.codecs.frame_autoencoder import read_config as read_frame_config, write_config as write_frame_config
from mardini.config import FORMAT_VERSION, MarDiniConfig, validate_config
from mardini.models.mardini import MarDini

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CODEC_DIR = "codec"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or from another format version."""


def _default_mode(directory: bool) -> int:
    """Permissions a plain ``open``/``mkdir`` would give (mkstemp/mkdtemp make private 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (same filesystem)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _default_mode(directory=False))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_folder(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_folder)`` then rename the finished folder onto ``path``.

    An existing folder at ``path`` is replaced only once the new one is complete; a failure leaves
    it untouched and removes the temporary folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        write(tmp)
        for item in [tmp, *tmp.rglob("*")]:
            if not item.is_symlink():
                os.chmod(item, _default_mode(directory=item.is_dir()))
        if path.exists() or path.is_symlink():
            if not path.is_dir() or path.is_symlink():
                raise FileExistsError(f"'{path}' exists and is not a folder; remove it or choose another path")
            # Renaming a folder onto an empty one is atomic; the old contents go once the new are in.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_model(model: MarDini, folder: str | os.PathLike, extra: dict[str, Any] | None = None,
               weights: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model`` (weights in their current dtype) and its config to ``folder``.

    ``weights`` replaces the model's own state dict (training saves its EMA weights, or the full
    tensors gathered from a sharded model).
    """
    folder = Path(folder)
    meta = {"format": "mardini", "format_version": FORMAT_VERSION, "config": model.config.to_dict()}
    if extra:
        meta.update(extra)
    state = model.state_dict() if weights is None else weights
    tensors = {name: t.detach().contiguous().cpu() for name, t in state.items()}
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return folder


def check_links(folder: str | os.PathLike) -> None:
    """Raise CheckpointError if a symbolic link under ``folder`` points outside it.

    Copies of a checkpoint (training checkpoints, exports) copy what links point to, so a link in a
    stranger's checkpoint would carry any file of this machine into the copy.
    """
    root = Path(folder).resolve()
    for parent, dirs, files in os.walk(folder):  # does not descend into linked folders
        for name in [*dirs, *files]:
            item = Path(parent) / name
            if item.is_symlink():
                target = item.resolve()
                if target != root and root not in target.parents:
                    raise CheckpointError(f"'{item}' is a link to '{target}', outside the checkpoint '{folder}'; "
                                          f"a checkpoint must hold its own files: replace the link by a copy")


def read_config(folder: str | os.PathLike) -> tuple[MarDiniConfig, dict[str, Any]]:
    """Parse and validate ``config.json`` of a checkpoint folder; returns (config, whole file)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder '{folder}' does not exist; "
                              f"create one with `mardini init --preset NAME --out {folder}` or train one")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint folder '{folder}' has no {CONFIG_FILE}: it is incomplete "
                              f"(or not a mardini checkpoint)")
    check_links(folder)
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is corrupt") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a mardini config; the checkpoint is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != "mardini":
        raise CheckpointError(f"{path} is not a mardini checkpoint config (no \"format\": \"mardini\")")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version}, but this mardini reads version "
                              f"{FORMAT_VERSION}; use the mardini release that wrote it")
    try:
        config = MarDiniConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds an invalid model config: {err}") from None
    return config, meta


def load_model(folder: str | os.PathLike, device: torch.device | str = "cpu",
               dtype: torch.dtype | None = None) -> MarDini:
    """Load a model saved by :func:`save_model` (safetensors only, never pickle).

    ``dtype=None`` gives float32 weights, also from a checkpoint stored in half precision.
    """
    folder = Path(folder)
    config, _ = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint folder '{folder}' has no {WEIGHTS_FILE}: it is incomplete")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{weights} cannot be read ({err}); the file is corrupt or truncated") from None
    if dtype is None:  # half-precision storage (an exported checkpoint) computes in float32 by default
        state = {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v for k, v in state.items()}
    with torch.device("meta"):
        model = MarDini(config)
    # A checkpoint saved without the stage-one head loads into a model without one.
    if model.planner.head is not None and not any(k.startswith("planner.head.") for k in state):
        model.planner.head = None
    missing, unexpected = _compare_keys(model.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(state[k].shape)}" for k, v in model.state_dict().items()
              if tuple(v.shape) != tuple(state[k].shape)]
    if shapes:
        raise CheckpointError(f"{weights} does not match its config: tensor shapes differ (config vs file): "
                              f"{', '.join(shapes[:3])}")
    model.load_state_dict(state, assign=True)
    if dtype is not None:
        model.to(dtype)
    return model.to(device).eval()


def _compare_keys(expected: Any, found: Any) -> tuple[list[str], list[str]]:
    expected, found = set(expected), set(found)
    return sorted(expected - found), sorted(found - expected)


# --------------------------------------------------------------------------------------------
# The latent codec of a checkpoint (what inference needs besides the networks)
# --------------------------------------------------------------------------------------------


def check_codec(codec: LatentCodec, config: MarDiniConfig) -> None:
    """Raise ValueError unless ``codec`` makes the latents ``config``'s networks were built for."""
    if codec.latent_channels != config.latent_channels or codec.downsample != config.vae_downsample:
        raise ValueError(f"the codec makes {codec.latent_channels}-channel latents at 1/{codec.downsample} "
                         f"resolution, but model '{config.name}' takes {config.latent_channels}-channel latents "
                         f"at 1/{config.vae_downsample} resolution; use a codec that matches the model")


def untrained_codec(config: MarDiniConfig) -> FrameAutoencoderCodec:
    """A randomly initialised :class:`FrameAutoencoderCodec` matching ``config`` (for ``mardini init``).

    Seed ``torch`` first for a reproducible one. Like the untrained networks, it is a starting point
    for training; trained codecs replace it.
    """
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(latent_channels=config.latent_channels)))
    check_codec(codec, config)
    return codec.eval()


def save_codec(codec: LatentCodec, folder: str | os.PathLike) -> Path:
    """Write ``codec`` to ``folder/codec/`` (replacing an existing one only once the new one is complete)."""
    target = Path(folder) / CODEC_DIR
    save = getattr(codec, "save_pretrained", None)
    if save is None:
        raise TypeError(f"{type(codec).__name__} has no save_pretrained; copy the folder it was loaded from "
                        f"to '{target}' instead")
    atomic_write_folder(target, save)
    return target


def save_checkpoint(model: MarDini, codec: LatentCodec, folder: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a complete checkpoint folder: the codec first, then weights, then ``config.json``."""
    check_codec(codec, model.config)
    save_codec(codec, folder)
    return save_model(model, folder, extra)


def load_checkpoint_codec(folder: str | os.PathLike, config: MarDiniConfig | None = None) -> LatentCodec:
    """Load ``folder/codec/`` and check it against the model config (read from ``folder`` if not given)."""
    folder = Path(folder)
    if config is None:
        config, _ = read_config(folder)
    codec_dir = folder / CODEC_DIR
    if not codec_dir.is_dir():
        raise CheckpointError(
            f"checkpoint folder '{folder}' has no {CODEC_DIR}/ folder: it is incomplete (a model without its "
            f"latent codec); copy a codec folder with {config.latent_channels} latent channels to '{codec_dir}', "
            f"or write a complete checkpoint with `mardini init --preset NAME --out DIR`")
    try:
        codec = load_codec(codec_dir)
    except Exception as err:  # codec loaders raise ValueError, OSError or the safetensors error types
        raise CheckpointError(f"the codec in '{codec_dir}' cannot be loaded: {err}") from None
    try:
        check_codec(codec, config)
    except ValueError as err:
        raise CheckpointError(f"'{codec_dir}' does not fit '{folder}': {err}") from None
    return codec.eval()


def load_checkpoint(folder: str | os.PathLike, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None) -> tuple[MarDini, LatentCodec]:
    """Load the networks and the codec of a complete checkpoint folder, both on ``device`` in ``dtype``."""
    config, _ = read_config(folder)
    codec = load_checkpoint_codec(folder, config)  # before the (larger) weights: fail fast when absent
    model = load_model(folder, device=device, dtype=dtype)
    codec = codec.to(device=device, dtype=dtype) if dtype is not None else codec.to(device)
    return model, codec


# --------------------------------------------------------------------------------------------
# Exporting a trained checkpoint for inference (how the bundled model is made)
# --------------------------------------------------------------------------------------------


#: Config values an export may set (``mardini export --set``): sampling defaults, on which no
#: weight depends. Everything else was fixed by training.
EXPORT_SETTINGS = ("diffusion.sampling_steps", "diffusion.inbetween_steps", "diffusion.grid_shift",
                   "diffusion.skip_guidance", "diffusion.skip_guidance_block")


def export_checkpoint(source: str | os.PathLike, out: str | os.PathLike, dtype: torch.dtype = torch.float16,
                      codec: str | os.PathLike | None = None, settings: dict[str, Any] | None = None,
                      detail: tuple[float, float] | None = None) -> Path:
    """Write an inference-only copy of a checkpoint: weights in ``dtype``, no training state.

    ``dtype`` is a storage format (float16 halves the size); loading computes in float32 unless
    asked otherwise. ``codec`` replaces the checkpoint's codec with another folder that has the
    *same latent space* (class, channels, scale and shift), e.g. the same autoencoder after a
    decoder-only fine-tune; anything else is refused, since the networks were trained on the
    old latents. ``settings`` sets sampling defaults by dotted name (:data:`EXPORT_SETTINGS`).
    ``detail`` = ``(gain, threshold)`` sets the project's frame autoencoder's decode-time
    `~mardini.codecs.frame_autoencoder.restore_detail` (gain 0 turns it off); the latent space
    does not change. The folder at ``out`` is replaced only once the new one is complete.
    """
    from mardini.data.cache import codec_description

    source = Path(source)
    config, meta = read_config(source)
    model = load_model(source)  # checks the weights against the config
    for key, value in (settings or {}).items():
        if key not in EXPORT_SETTINGS:
            raise CheckpointError(f"an export can set only {', '.join(EXPORT_SETTINGS)}, not '{key}': the rest of "
                                  "the config was fixed by training")
        try:  # a fresh DiffusionConfig checks the value; validate_config, against the rest
            model.config.diffusion = dataclasses.replace(model.config.diffusion, **{key.split(".", 1)[1]: value})
            validate_config(model.config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"cannot set {key}={value!r}: {e}") from None
    old_codec = load_checkpoint_codec(source, config)
    codec_src = source / CODEC_DIR
    new_codec = None
    if codec is not None:
        check_links(codec)
        new_codec = load_codec(codec)
        old_id, new_id = codec_description(old_codec), codec_description(new_codec)
        if old_id != new_id:
            raise CheckpointError(f"codec '{codec}' has a different latent space ({new_id}) from the one "
                                  f"'{source}' was trained on ({old_id}); only a codec with the same encoder "
                                  f"(e.g. a decoder-only fine-tune) can replace it")
        check_codec(new_codec, config)
        codec_src = Path(codec)
    own_codec = isinstance(new_codec if codec is not None else old_codec, FrameAutoencoderCodec)
    codec_config = None
    if detail is not None:
        if not own_codec:
            raise CheckpointError("a detail gain is a setting of the project's frame autoencoder; this checkpoint's "
                                  "codec is another kind: export without --detail-gain")
        try:  # a fresh config checks the values
            codec_config = dataclasses.replace(read_frame_config(codec_src), detail_gain=detail[0],
                                               detail_threshold=detail[1])
        except ValueError as e:
            raise CheckpointError(f"cannot set the codec's detail gain: {e}") from None
    floating = (torch.float32, torch.float16, torch.bfloat16)
    tensors = {k: v.to(dtype) if v.dtype in floating else v for k, v in model.state_dict().items()}
    extras = {k: v for k, v in meta.items() if k not in ("format", "format_version", "config")}
    extras["weights_dtype"] = str(dtype).removeprefix("torch.")

    def write(tmp: Path) -> None:
        codec_tmp = tmp / CODEC_DIR
        shutil.copytree(codec_src, codec_tmp, ignore=shutil.ignore_patterns("training"))
        # The project's autoencoder is stored in the same dtype (it loads back into float32
        # parameters); other codec kinds are copied as they are.
        version = write_frame_config(codec_tmp, codec_config) if codec_config is not None else None
        for weights_file in codec_tmp.glob("*.safetensors") if own_codec else ():
            codec_tensors = load_file(str(weights_file))
            metadata = _safetensors_metadata(weights_file)
            if version is not None and metadata is not None:
                metadata = {**metadata, "format_version": str(version)}
            save_file({k: v.to(dtype) if v.dtype in floating else v for k, v in codec_tensors.items()},
                      str(weights_file), metadata=metadata)
        save_model(model, tmp, extras, weights=tensors)

    atomic_write_folder(Path(out), write)
    return Path(out)


def _safetensors_metadata(path: Path) -> dict[str, str] | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()
