"""Checkpoint folders: ``config.json`` + ``model.safetensors``. Loading never unpickles.

A folder written by :func:`save_model` holds::

    config.json          {"format": "mardini", "format_version": 1, "config": {...MarDiniConfig...}}
    model.safetensors    planner.* and generator.* tensors

Both files are written to temporary names and renamed into place, so an interrupted save never
leaves a half-written file under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mardini.config import FORMAT_VERSION, MarDiniConfig
from mardini.models.mardini import MarDini

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete, corrupt or from another format version."""


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path`` (same filesystem)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(model: MarDini, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (weights in their current dtype) and its config to ``folder``."""
    folder = Path(folder)
    meta = {"format": "mardini", "format_version": FORMAT_VERSION, "config": model.config.to_dict()}
    if extra:
        meta.update(extra)
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return folder


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
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err}); the checkpoint is corrupt") from None
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
    """Load a model saved by :func:`save_model` (safetensors only, never pickle)."""
    folder = Path(folder)
    config, _ = read_config(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"checkpoint folder '{folder}' has no {WEIGHTS_FILE}: it is incomplete")
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{weights} cannot be read ({err}); the file is corrupt or truncated") from None
    with torch.device("meta"):
        model = MarDini(config)
    # A checkpoint saved without the stage-one head loads into a model without one.
    if model.planner.head is not None and not any(k.startswith("planner.head.") for k in state):
        model.planner.head = None
    missing, unexpected = _compare_keys(model.state_dict().keys(), state.keys())
    if missing or unexpected:
        raise CheckpointError(f"{weights} does not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    model.load_state_dict(state, assign=True)
    if dtype is not None:
        model.to(dtype)
    return model.to(device).eval()


def _compare_keys(expected: Any, found: Any) -> tuple[list[str], list[str]]:
    expected, found = set(expected), set(found)
    return sorted(expected - found), sorted(found - expected)
