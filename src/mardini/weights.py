"""Reading third-party weight files without executing pickled code.

One loader for every network whose weights a user brings (TAE codecs, LPIPS, RIFE):
``.safetensors`` through safetensors, anything else through ``torch.load(weights_only=True)``,
which refuses pickles that hold more than tensors and plain containers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A plain state dict of tensors from ``path`` (a ``{"state_dict": ...}`` wrapper is unwrapped).

    Raises FileNotFoundError for a missing file and ValueError for one that needs full unpickling
    or does not hold a state dict; the message says what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle and torch raise many kinds
        raise ValueError(f"cannot load '{path}' with torch.load(weights_only=True): {err}. Files that need full "
                         f"unpickling are refused; save a plain state dict (or safetensors) instead") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"'{path}' does not hold a plain state dict of tensors")
    return state
