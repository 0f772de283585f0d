"""Training checkpoints: what a run writes every N steps and how ``--resume`` finds it.

A run folder holds ``checkpoints/step-0000100/``, each a complete inference checkpoint
(``config.json``, ``model.safetensors`` with the EMA weights, ``codec/``) that
``MarDiniPipeline.from_pretrained`` loads, plus ``training/`` with what an exact resume needs:

    training/weights.safetensors     the optimiser's (non-EMA) weights
    training/optimizer.safetensors   AdamW moments, one tensor per parameter and slot
    training/state.json              step, data position, optimiser hyper-parameters, stage config

A checkpoint is written into ``step-N.tmp`` and renamed when complete, so a folder named
``step-N`` is never half-written; a damaged one is detected on resume and the previous is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mardini.checkpoint import CODEC_DIR, CheckpointError, check_links, load_model, save_model
from mardini.models.mardini import MarDini

STEP_PATTERN = re.compile(r"^step-(\d+)$")
STALE_PATTERN = re.compile(r"^step-\d+\.(tmp|old)$")
TRAINING_DIR = "training"


def optimizer_state_to_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into safetensors-ready tensors and JSON-ready metadata.

    Parameters are keyed by name (``torch.distributed.checkpoint.state_dict`` form), so the same
    file serves a plain, a DDP and an FSDP run.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, slots in state["state"].items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}/{slot}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(name), {})[slot] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_tensors`."""
    def key_of(name: str) -> str | int:
        # torch.optim's own state_dict numbers its parameters; the distributed API names them.
        return int(name) if name.isdigit() else name

    state: dict[str | int, dict[str, Any]] = {}
    for key, value in tensors.items():
        name, slot = key.rsplit("/", 1) if "/" in key else key.split(".", 1)  # early train-vae runs wrote "index.slot"
        state.setdefault(key_of(name), {})[slot] = value
    for name, slots in meta.get("scalars", {}).items():
        state.setdefault(key_of(name), {}).update(slots)
    return {"state": state, "param_groups": meta["param_groups"]}


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # codec weights never change during training: share the bytes
    except OSError:
        shutil.copy2(src, dst)


def write_checkpoint(run_dir: Path, step: int, model: MarDini, weights: dict[str, torch.Tensor],
                     ema: dict[str, torch.Tensor], optimizer_state: dict[str, Any], codec_dir: Path,
                     state: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-N`` atomically and prune all but the newest ``keep``.

    ``weights``, ``ema`` and ``optimizer_state`` are full (unsharded) state dicts on the CPU.
    """
    root = run_dir / "checkpoints"
    final = root / f"step-{step:07d}"
    tmp = root / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    # The inference weights are the EMA ones; the raw weights go to training/ for resuming.
    save_model(model, tmp, weights=ema)
    shutil.copytree(codec_dir, tmp / CODEC_DIR, copy_function=_link_or_copy)
    training = tmp / TRAINING_DIR
    training.mkdir()
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(training / "weights.safetensors"))
    tensors, meta = optimizer_state_to_tensors(optimizer_state)
    save_file(tensors, str(training / "optimizer.safetensors"))
    (training / "state.json").write_text(json.dumps({**state, "step": step, "optimizer": meta}, indent=1))
    publish_folder(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def publish_folder(tmp: Path, final: Path) -> None:
    """Rename the complete folder ``tmp`` to ``final``, replacing an existing one safely.

    A complete checkpoint is never deleted before its replacement is in place: it is moved aside
    to ``final.old``, the new one renamed in, then the old removed (a kill in between leaves
    ``step-N.old``, which :func:`clean_stale_folders` removes, and no gap without a checkpoint).
    """
    if final.exists():
        old = final.with_name(final.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def clean_stale_folders(run_dir: Path) -> list[Path]:
    """Remove ``step-N.tmp`` / ``step-N.old`` folders a killed run left in ``checkpoints/``; returns them."""
    root = Path(run_dir) / "checkpoints"
    stale = sorted(p for p in root.iterdir() if STALE_PATTERN.match(p.name)) if root.is_dir() else []
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary folders are ignored)."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def read_training_state(checkpoint: Path) -> dict[str, Any]:
    """Load and check everything a resume needs; raises CheckpointError if anything is damaged."""
    training = checkpoint / TRAINING_DIR
    try:
        state = json.loads((training / "state.json").read_text())
        weights = load_file(str(training / "weights.safetensors"))
        optimizer = load_file(str(training / "optimizer.safetensors"))
        ema = load_file(str(checkpoint / "model.safetensors"))
    except Exception as err:  # missing file, truncated JSON or safetensors
        raise CheckpointError(f"checkpoint '{checkpoint}' is damaged or incomplete ({err})") from None
    for name, tensors in (("weights", weights), ("optimizer", optimizer), ("ema", ema)):
        bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise CheckpointError(f"checkpoint '{checkpoint}' has non-finite {name} tensors ({bad[:3]})")
    return {"state": state, "weights": weights, "optimizer": optimizer, "ema": ema}


def latest_usable_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint that loads cleanly; damaged ones are reported and skipped."""
    for checkpoint in reversed(list_checkpoints(run_dir)):
        try:
            return checkpoint, read_training_state(checkpoint)
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", stacklevel=2)
    return None


def resolve_start(init: str) -> Path | None:
    """A checkpoint folder to start from, or None when ``init`` names a preset.

    ``init`` may be a checkpoint folder or a run folder (its newest complete checkpoint is used).
    """
    path = Path(init)
    if not path.exists():
        if "/" in init or init.startswith("."):
            raise CheckpointError(f"starting checkpoint '{init}' does not exist; train the previous stage first")
        return None
    if (path / "config.json").is_file():
        return path
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise CheckpointError(f"'{init}' is neither a checkpoint folder nor a run folder with checkpoints/")
    return checkpoints[-1]


def resolve_codec_dir(path: str | Path) -> Path:
    """A codec folder, or the newest checkpoint of a ``mardini train-vae`` run folder."""
    path = Path(path)
    if (path / "config.json").is_file() or not (path / "checkpoints").is_dir():
        check_links(path)  # training checkpoints copy the codec folder, links' targets included
        return path
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise CheckpointError(f"codec run folder '{path}' has no complete checkpoint yet")
    check_links(checkpoints[-1])
    return checkpoints[-1]


def load_start_model(init: str) -> tuple[MarDini | None, Path | None]:
    """Model weights and codec folder of the starting checkpoint (None, None for a preset)."""
    start = resolve_start(init)
    if start is None:
        return None, None
    return load_model(start), start / CODEC_DIR
