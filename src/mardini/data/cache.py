"""Latent caching: encode sampled clips once, train from the stored latents.

``build_latent_cache(dataset, codec, folder)`` runs the codec over clips of a pixel dataset at
both resolutions and writes::

    folder/index.json                 what is stored: shapes, dtype, codec, dataset, every clip's
                                      source and start, and the shard list (written last, so a
                                      folder without it is an interrupted build)
    folder/shard-00000.safetensors    "high_latents" (n, K, C, H/8, W/8), "low_latents" (n, K, C, h/8, w/8)

Only JSON and safetensors: nothing is unpickled when a cache is read. ``CachedLatentDataset``
serves ``{"high_latents", "low_latents", "source", "start"}`` items, reading one clip at a time
from memory-mapped shards.

Trade-off: the cache holds a *fixed* set of sampled clips, i.e. fixed starts and crops. Training
from it sees the same crops every epoch instead of fresh random ones, in exchange for skipping
video decoding and the codec's forward pass (the MAR authors report that caching roughly doubles
training speed). ``epochs=E`` stores the clips of dataset epochs ``0 .. E-1`` (E random clips per
video) to win back some variety, at E times the disk space. A cache is tied to its codec: the
dataset refuses a different codec's scale/shift when one is passed for checking.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .sampling import mixture_weights, rng_for

KIND = "mardini_latent_cache"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LatentCache:
    """A latent cache folder opened for reading (see the module docstring for the layout).

    Attributes:
        folder: the cache folder.
        info: the parsed ``index.json``.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        if not index.is_file():
            hint = " (shards without an index: the build was interrupted; build it again)" if \
                any(self.folder.glob("shard-*.safetensors")) else ""
            raise FileNotFoundError(f"{str(self.folder)!r} is not a latent cache: no {INDEX_NAME}{hint}")
        try:
            info = json.loads(index.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{str(index)!r} is not valid JSON: {e}") from e
        if not isinstance(info, dict) or info.get("kind") != KIND:
            raise ValueError(f"{str(index)!r} is not a mardini latent cache index (kind != {KIND!r})")
        if not isinstance(info.get("format_version"), int) or info["format_version"] > FORMAT_VERSION:
            raise ValueError(f"{str(index)!r} has format_version {info.get('format_version')!r}; this code "
                             f"reads up to {FORMAT_VERSION}")
        self.info = info
        self._ends = []
        total = 0
        for shard in info["shards"]:
            if not (self.folder / shard["file"]).is_file():
                raise FileNotFoundError(f"latent cache {str(self.folder)!r} lacks its shard {shard['file']!r}")
            total += int(shard["count"])
            self._ends.append(total)
        if total != info["num_clips"] or len(info["items"]) != total:
            raise ValueError(f"latent cache {str(self.folder)!r} is inconsistent: {total} clips in shards, "
                             f"{info['num_clips']} in the index, {len(info['items'])} item records")
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self.info["num_clips"])

    def read(self, index: int) -> dict[str, Any]:
        """Clip ``index``: ``{"high_latents": (K, C, H/8, W/8), "low_latents": ..., "source", "start"}``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"latent cache index {index} out of range for {n} clips")
        index %= n
        shard = bisect.bisect_right(self._ends, index)
        row = index - (self._ends[shard - 1] if shard else 0)
        handle = self._handle(shard)
        item: dict[str, Any] = {key: handle.get_slice(key)[row:row + 1][0] for key in ("high_latents", "low_latents")}
        item.update(self.info["items"][index])
        return item

    def check_codec(self, codec: Any) -> None:
        """Raise ``ValueError`` unless ``codec`` is the kind of codec (and latent scale) the cache used."""
        stored = self.info["codec"]
        actual = codec_description(codec)
        mismatched = [k for k in ("class", "latent_channels", "downsample") if stored.get(k) != actual[k]]
        mismatched += [k for k in ("scale", "shift") if not math.isclose(stored.get(k, math.nan), actual[k],
                                                                             rel_tol=1e-6, abs_tol=1e-9)]
        if mismatched:
            raise ValueError(f"latent cache {str(self.folder)!r} was built with codec {stored} but the given codec "
                             f"is {actual} (differs in {mismatched}); rebuild the cache with this codec")

    def _handle(self, shard: int) -> Any:
        # Opened lazily and per process (handles are dropped when pickled into DataLoader workers).
        if shard not in self._handles:
            from safetensors import safe_open

            self._handles[shard] = safe_open(str(self.folder / self.info["shards"][shard]["file"]), framework="pt")
        return self._handles[shard]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    @classmethod
    def build(cls, dataset: Any, codec: Any, folder: str | os.PathLike, *, epochs: int = 1,
              num_clips: int | None = None, batch_size: int = 8, shard_size: int = 256,
              dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
              overwrite: bool = False, origin: dict[str, Any] | None = None) -> "LatentCache":
        """Encode clips of ``dataset`` with ``codec`` into ``folder``; see :func:`build_latent_cache`."""
        folder = Path(folder)
        if (folder / INDEX_NAME).exists() and not overwrite:
            raise FileExistsError(f"{str(folder)!r} already holds a latent cache; pass overwrite=True to replace it")
        if not isinstance(epochs, int) or epochs < 1 or batch_size < 1 or shard_size < 1:
            raise ValueError("epochs, batch_size and shard_size must be positive integers")
        names = {v: k for k, v in _DTYPES.items()}
        if dtype not in names:
            raise ValueError(f"dtype must be one of {list(_DTYPES)}; got {dtype}")
        per_epoch = len(dataset) if num_clips is None else min(int(num_clips), len(dataset))
        if per_epoch < 1:
            raise ValueError("nothing to cache: the dataset is empty (or num_clips < 1)")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INDEX_NAME).unlink(missing_ok=True)
        for old in folder.glob("shard-*.safetensors"):
            old.unlink()
        device = torch.device(device) if device is not None else next(codec.parameters(), torch.empty(0)).device
        keys = [(epoch, i) for epoch in range(epochs) for i in range(per_epoch)]
        items: list[dict[str, Any]] = []
        shards: list[dict[str, Any]] = []
        shapes: dict[str, list[int]] = {}
        was_training = codec.training
        codec.eval()
        try:
            for shard_start in range(0, len(keys), shard_size):
                chunk = keys[shard_start:shard_start + shard_size]
                tensors: dict[str, list[Tensor]] = {"high_latents": [], "low_latents": []}
                for batch_start in range(0, len(chunk), batch_size):
                    batch = [dataset[key] for key in chunk[batch_start:batch_start + batch_size]]
                    with torch.no_grad():
                        for name, pixels in (("high_latents", "high"), ("low_latents", "low")):
                            clips = torch.stack([b[pixels] for b in batch]).to(device)
                            tensors[name].append(codec.encode(clips).to(dtype).cpu())
                    items += [{"source": str(b["source"]), "start": float(b["start"])} for b in batch]
                out = {k: torch.cat(v).contiguous() for k, v in tensors.items()}
                shapes = {k: list(v.shape[1:]) for k, v in out.items()}
                name = f"shard-{len(shards):05d}.safetensors"
                _save_atomic(out, folder / name)
                shards.append({"file": name, "count": len(chunk)})
        finally:
            codec.train(was_training)
        sampling = getattr(dataset, "sampling", None)
        info = {
            "kind": KIND, "format_version": FORMAT_VERSION, "num_clips": len(items), "dtype": names[dtype],
            "high_latent_shape": shapes["high_latents"], "low_latent_shape": shapes["low_latents"],
            "codec": codec_description(codec),
            "dataset": {**_dataset_dict(dataset), "length": len(dataset), "clips_per_epoch": per_epoch,
                        "epochs": epochs, "seed": getattr(dataset, "seed", None),
                        "sampling": _sampling_dict(sampling)},
            "shards": shards, "items": items,
        }
        if origin is not None:
            info["origin"] = dict(origin)
        tmp = folder / (INDEX_NAME + ".tmp")
        tmp.write_text(json.dumps(info, indent=1) + "\n")
        os.replace(tmp, folder / INDEX_NAME)
        return cls(folder)


def _dataset_dict(dataset: Any) -> dict[str, Any]:
    """Class and time range of a dataset, and of each part of a mixture (whose parts keep their
    own ranges), so the index says which part of every source the clips came from."""
    if hasattr(dataset, "parts"):
        return {"class": type(dataset).__name__, "parts": [_dataset_dict(p) for p in dataset.parts]}
    return {"class": type(dataset).__name__, "time_range": list(getattr(dataset, "time_range", (0.0, 1.0)))}


def build_latent_cache(dataset: Any, codec: Any, folder: str | os.PathLike, *, epochs: int = 1,
                       num_clips: int | None = None, batch_size: int = 8, shard_size: int = 256,
                       dtype: torch.dtype = torch.float32, device: str | torch.device | None = None,
                       overwrite: bool = False, origin: dict[str, Any] | None = None) -> LatentCache:
    """Encode clips of a pixel dataset with ``codec`` (both resolutions) and store them in ``folder``.

    Args:
        dataset: a dataset of :mod:`mardini.data` (items with "high", "low", "source", "start");
            items ``(epoch, i)`` are read for ``epoch < epochs`` and ``i < num_clips``.
        codec: a :class:`~mardini.codecs.LatentCodec`; run in eval mode without gradients.
        folder: output folder (created).
        epochs: dataset epochs to store (each a fresh draw of starts and crops).
        num_clips: clips per epoch (default ``len(dataset)``).
        batch_size: clips encoded together.
        shard_size: clips per safetensors file.
        dtype: storage dtype (float32 keeps latents bit-exact; float16 halves the size).
        device: where to encode (default: the codec's device).
        overwrite: replace an existing cache in ``folder``.
        origin: what the clips were made from, stored as the index's ``origin`` (``mardini cache``
            records the stage's name, its ``data`` spec as written, corpus path included, and the
            codec folder), so a cache says which data and codec it holds.

    Returns the opened :class:`LatentCache`.
    """
    return LatentCache.build(dataset, codec, folder, epochs=epochs, num_clips=num_clips, batch_size=batch_size,
                             shard_size=shard_size, dtype=dtype, device=device, overwrite=overwrite, origin=origin)


class CachedLatentDataset(Dataset):
    """Training items from a latent cache: ``{"high_latents", "low_latents", "source", "start"}``.

    Latents come back as float32 whatever the storage dtype. Pass ``codec`` to check the cache was
    made by it. ``set_epoch`` and ``(epoch, index)`` indices are accepted for drop-in use with the
    pixel datasets, but the items are the same every epoch (a cache is a fixed set of clips).
    """

    def __init__(self, cache: str | os.PathLike | LatentCache, codec: Any | None = None) -> None:
        self.cache = cache if isinstance(cache, LatentCache) else LatentCache(cache)
        if codec is not None:
            self.cache.check_codec(codec)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.cache)

    def set_epoch(self, epoch: int) -> None:
        """Accepted for symmetry with pixel datasets; cached items do not change with the epoch."""
        self.epoch = epoch

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, tuple):
            index = index[1]
        item = self.cache.read(index)
        item["high_latents"] = item["high_latents"].float()
        item["low_latents"] = item["low_latents"].float()
        return item


def codec_description(codec: Any) -> dict[str, Any]:
    """What identifies a codec's latent space: class, channels, downsample, scale and shift."""
    return {"class": type(codec).__name__, "latent_channels": int(codec.latent_channels),
            "downsample": int(getattr(codec, "downsample", 8)), "scale": float(codec.scale),
            "shift": float(codec.shift)}


def _sampling_dict(sampling: Any) -> dict[str, Any] | None:
    if sampling is None:
        return None
    fields: Sequence[str] = ("num_frames", "height", "width", "low_height", "low_width", "fps", "scale", "train")
    return {k: (list(v) if isinstance(v, tuple) else v) for k in fields if (v := getattr(sampling, k, None)) is not None
            or k == "fps"}


def _save_atomic(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"kind": KIND, "format_version": str(FORMAT_VERSION)})
    os.replace(tmp, path)


class CachedLatentMixture(Dataset):
    """Clips drawn from several latent caches with given weights, the cached counterpart of
    :class:`~mardini.data.MixtureDataset` (``kind: mixture`` whose parts are all ``kind: latents``).

    Item ``(epoch, i)`` picks a cache and a clip in it from the generator of ``(seed, epoch, i)``,
    so every epoch draws afresh and every process agrees on what item ``(epoch, i)`` is.
    """

    def __init__(self, parts: Sequence[CachedLatentDataset], weights: Sequence[float] | None = None, *,
                 seed: int = 0, clips_per_epoch: int | None = None) -> None:
        self.weights = mixture_weights(weights, len(parts), clips_per_epoch)
        first = parts[0].cache
        for part in parts[1:]:
            info = part.cache.info
            for key in ("high_latent_shape", "low_latent_shape", "codec"):
                if info.get(key) != first.info.get(key):
                    raise ValueError(f"latent caches {str(first.folder)!r} and {str(part.cache.folder)!r} differ in "
                                     f"{key} ({first.info.get(key)} vs {info.get(key)}); mix caches built with the "
                                     "same codec and clip shape")
        self.parts = list(parts)
        self.seed = seed
        self.clips_per_epoch = clips_per_epoch
        self.cache = first  # shapes and codec, which every part shares
        self.epoch = 0

    def __len__(self) -> int:
        return self.clips_per_epoch if self.clips_per_epoch is not None else sum(len(p) for p in self.parts)

    def set_epoch(self, epoch: int) -> None:
        """Draws of later items depend on the epoch (the caches themselves do not change)."""
        self.epoch = epoch

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        rng = rng_for(self.seed, epoch, i)
        part = self.parts[int(rng.choice(len(self.parts), p=self.weights))]
        return part[int(rng.integers(len(part)))]
