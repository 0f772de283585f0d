"""Map-style clip datasets over real footage: video folders, frame folders, manifests, mixtures.

All datasets here are ``torch.utils.data.Dataset`` s with ``__len__`` and a ``__getitem__``
that depends only on ``(seed, epoch, index)``: call ``set_epoch(e)`` (or index with a tuple
``dataset[(e, i)]``, which survives persistent DataLoader workers) and the item is the same in
every process and on every run, so a training loop resumes exactly from ``(epoch, position)``.
(Pixels are bit-identical at the same torch thread count; DataLoader workers run one thread and
may differ in the last bit, about 1e-7, from the main process.)

One epoch of a video dataset visits every usable video once (``index % num_videos``) with a
fresh random start and crop; ``clips_per_epoch`` changes the epoch length: several clips per
video, or, when shorter than the number of videos, random videos (see
:func:`~mardini.data.sampling.pick_source`). In evaluation mode (``ClipSampling(train=False)``)
nothing is random: clip ``r`` of a video starts at the ``(r + 0.5) / R`` point of its window and
is centre-cropped.

Bad sources never stop an epoch: files that cannot be opened, decoded or that are too short are
skipped at construction with one :class:`VideoSkippedWarning` each naming the file and the reason
(and listed in ``dataset.skipped``), and files under a video folder whose extension is not a video
one are named the same way. A file that fails later, while reading a clip, keeps the part before
the failed clip when that still holds a clip (one warning; its clips come from that part), else it
is skipped like the others and the clip is taken from the next video instead (a deterministic
choice).
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .sampling import (ClipPlan, ClipSampling, check_time_range, choose_start, clip_indices, crop_and_resize,
                       frame_window, mixture_weights, pick_source, rescale_box, rng_for, sample_crop_box,
                       temporal_stride)
from .sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Source, SourceError, find_files, frame_files,
                      natural_key, probe_frame_folder, probe_video, set_segment)

Item = dict[str, Any]


class VideoSkippedWarning(UserWarning):
    """A video (or frame folder, or photo) was skipped; the message names it and says why."""


class NoUsableVideoError(ValueError):
    """A dataset found no usable source; the message names the folder and every reason."""


class EpochDataset(Dataset):
    """Base of all clip datasets: seed, epoch, ``(epoch, index)`` indexing and the item RNG.

    Subclasses implement ``__len__`` and ``clip(index, rng)``; ``__getitem__`` supplies the
    generator of ``(seed, epoch, index)``.
    """

    sampling: ClipSampling

    def __init__(self, seed: int = 0) -> None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the clips of ``epoch`` from now on (new starts and crops, same videos)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer; got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        raise NotImplementedError

    def clip(self, index: int, rng: np.random.Generator) -> Item:
        """The item for ``index`` with every random draw taken from ``rng``."""
        raise NotImplementedError

    def __getitem__(self, index: int | tuple[int, int]) -> Item:
        """Item ``index`` of the current epoch, or of epoch ``e`` for ``index = (e, i)``."""
        epoch, i = self._resolve(index)
        return self.clip(i, rng_for(self.seed, epoch, i))

    def _resolve(self, index: int | tuple[int, int]) -> tuple[int, int]:
        epoch = self.epoch
        if isinstance(index, tuple):
            epoch, index = index
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"{type(self).__name__} indices are integers (or (epoch, index) pairs); got {index!r}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return int(epoch), int(index) % n


class ClipDataset(EpochDataset):
    """Clips from a list of probed sources (video files or frame folders).

    Args:
        sources: probed sources (see :mod:`mardini.data.sources`).
        sampling: clip length, fps, sizes, crop and mode (see :class:`ClipSampling`).
        time_range: fraction ``(lo, hi)`` of every source's duration (or manifest segment) that
            clips may use; clips never cross it.
        seed: base seed of all random draws.
        clips_per_epoch: epoch length; default one clip per usable source.
        skipped: ``(name, reason)`` of sources already rejected by the caller (warned here).
        origin: what the sources came from (a folder, a manifest), for error messages.
    """

    def __init__(self, sources: Sequence[Source], sampling: ClipSampling | None = None, *,
                 time_range: Sequence[float] = (0.0, 1.0), seed: int = 0, clips_per_epoch: int | None = None,
                 skipped: Sequence[tuple[str, str]] = (), origin: str = "the given sources") -> None:
        super().__init__(seed)
        self.sampling = sampling if sampling is not None else ClipSampling()
        self.time_range = check_time_range(time_range)
        self.origin = origin
        self.skipped: list[tuple[str, str]] = []
        for name, reason in skipped:
            self._skip(name, reason)
        self.sources: list[Source] = []
        # Per source: the frame window inside time_range and the temporal stride for K frames.
        self._windows: list[tuple[int, int]] = []
        self._strides: list[float] = []
        k = self.sampling.num_frames
        for source in sources:
            window = frame_window(*source.segment, self.time_range)
            stride = temporal_stride(source.fps, self.sampling.fps, window[1] - window[0], k)
            if stride is None:
                self._skip(source.name, f"too short: {window[1] - window[0]} frame(s) in time range "
                                        f"{self.time_range} but a clip needs {k}")
                continue
            self.sources.append(source)
            self._windows.append(window)
            self._strides.append(stride)
        if not self.sources:
            reasons = "; ".join(f"{name}: {reason}" for name, reason in self.skipped[:20])
            more = f" (and {len(self.skipped) - 20} more)" if len(self.skipped) > 20 else ""
            raise NoUsableVideoError(f"no usable video in {origin}" + (f": {reasons}{more}" if reasons else
                                                                         ": it holds no videos"))
        if clips_per_epoch is not None and (not isinstance(clips_per_epoch, int) or clips_per_epoch < 1):
            raise ValueError(f"clips_per_epoch must be a positive integer or None; got {clips_per_epoch!r}")
        self.clips_per_epoch = clips_per_epoch
        self._bad: set[int] = set()
        self._cut: set[int] = set()  # sources cut short after a failed read

    @property
    def num_skipped(self) -> int:
        """How many sources were skipped (at construction or while reading)."""
        return len(self.skipped)

    def __len__(self) -> int:
        return self.clips_per_epoch if self.clips_per_epoch is not None else len(self.sources)

    def plan(self, index: int | tuple[int, int]) -> ClipPlan:
        """The :class:`ClipPlan` of item ``index`` (which frames, which crop), reading nothing.

        This is the plan ``__getitem__`` follows unless the source fails to read.
        """
        epoch, i = self._resolve(index)
        rng = rng_for(self.seed, epoch, i)
        source, position = pick_source(i, len(self), len(self.sources), self.sampling.train, rng)
        base = int(rng.integers(2**63))
        return self._plan(source, position, np.random.default_rng([base, source]))

    def clip(self, index: int, rng: np.random.Generator) -> Item:
        """Clip of the source :func:`pick_source` gives; on a read failure, of the next readable one."""
        first, position = pick_source(index, len(self), len(self.sources), self.sampling.train, rng)
        # One draw from rng seeds each candidate source's own generator, so the clip taken from a
        # source does not depend on how many sources failed before it.
        base = int(rng.integers(2**63))
        n = len(self.sources)
        for attempt in range(n):
            s = (first + attempt) % n
            while s not in self._bad:
                plan = self._plan(s, position, np.random.default_rng([base, s]))
                try:
                    frames = self.sources[s].read(plan.indices)
                except Exception as e:  # any decoder / file error: keep what reads, else skip the video
                    self._read_failed(s, plan, e)
                    continue  # plan again within what is left of this video
                return self._item(plan, frames)
        raise NoUsableVideoError(f"every video of {self.origin} failed to read: "
                                 + "; ".join(f"{name}: {reason}" for name, reason in self.skipped[-20:]))

    def _plan(self, s: int, position: float, rng: np.random.Generator) -> ClipPlan:
        source, window, stride = self.sources[s], self._windows[s], self._strides[s]
        k = self.sampling.num_frames
        start = choose_start(window, stride, k, self.sampling.train, rng, position)
        box = sample_crop_box(source.frame_size, (self.sampling.height, self.sampling.width),
                              self.sampling.scale, self.sampling.train, rng)
        return ClipPlan(source=s, name=source.name, indices=clip_indices(start, stride, k),
                        start=start / source.fps, box=box, frame_size=source.frame_size)

    def _item(self, plan: ClipPlan, frames: np.ndarray) -> Item:
        box = rescale_box(plan.box, plan.frame_size, (frames.shape[1], frames.shape[2]))
        high, low = crop_and_resize(frames, box, self.sampling)
        return {"high": high, "low": low, "source": plan.name, "start": plan.start}

    def _read_failed(self, s: int, plan: ClipPlan, error: Exception) -> None:
        """A read of source ``s`` failed: keep its frames before the failed clip when they still
        hold a clip (a video that breaks halfway keeps its readable half, and its share of the
        epoch), else skip the source. Each source is named once, with the outcome."""
        source, (lo, _) = self.sources[s], self._windows[s]
        reason = f"read failed ({type(error).__name__}: {error})"
        end = plan.indices[0]
        stride = None if s in self._cut else temporal_stride(source.fps, self.sampling.fps, end - lo,
                                                               self.sampling.num_frames)
        if stride is None:
            self._bad.add(s)
            self._skip(source.name, reason)
            return
        self._cut.add(s)
        self._windows[s], self._strides[s] = (lo, end), stride
        warnings.warn(f"{source.name}: {reason} at {end / source.fps:.2f}s; training on its {end - lo} frames "
                      f"before that", VideoSkippedWarning, stacklevel=3)

    def _skip(self, name: str, reason: str) -> None:
        self.skipped.append((name, reason))
        warnings.warn(f"skipping {name}: {reason}", VideoSkippedWarning, stacklevel=3)


class VideoFolderDataset(ClipDataset):
    """Clips from every video file under ``root`` (recursively), decoded with PyAV.

    Each file is probed once at construction (opened, first frame decoded); files that fail or
    are too short for a clip in ``time_range`` are skipped with a :class:`VideoSkippedWarning`.
    Raises ``FileNotFoundError`` for a missing folder and :class:`NoUsableVideoError` when no
    video is usable.
    """

    def __init__(self, root: str | os.PathLike, sampling: ClipSampling | None = None, *,
                 extensions: Sequence[str] = VIDEO_EXTENSIONS, time_range: Sequence[float] = (0.0, 1.0),
                 seed: int = 0, clips_per_epoch: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"video folder {str(root)!r} does not exist or is not a folder")
        sources, skipped = [], []
        files = find_files(root, extensions)
        if not files:
            raise NoUsableVideoError(f"no video files ({', '.join(extensions)}) under {str(root)!r}")
        # Files of other kinds are named, not silently ignored (a format missing from the list).
        wanted = set(files)
        for other in sorted((str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")),
                            key=natural_key):
            if other not in wanted:
                skipped.append((other, f"not read: its extension is not a video one ({', '.join(extensions)}); "
                                       f"rename it if PyAV can decode it"))
        for path in files:
            try:
                sources.append(probe_video(path))
            except SourceError as e:
                skipped.append((path, str(e)))
        super().__init__(sources, sampling, time_range=time_range, seed=seed, clips_per_epoch=clips_per_epoch,
                         skipped=skipped, origin=f"video folder {str(root)!r}")


class FrameFolderDataset(ClipDataset):
    """Clips from folders of frame images: every folder under ``root`` holding images is a video.

    Frames are ordered by name, numbers by value (``frame_2`` before ``frame_10``), and played
    at ``source_fps`` (image folders carry no frame rate). A ``root`` that itself holds images
    is one video.
    """

    def __init__(self, root: str | os.PathLike, sampling: ClipSampling | None = None, *,
                 source_fps: float = 8.0, time_range: Sequence[float] = (0.0, 1.0), seed: int = 0,
                 clips_per_epoch: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"frame folder {str(root)!r} does not exist or is not a folder")
        folders = [str(root)] + [str(p) for p in sorted(root.rglob("*"), key=lambda p: natural_key(str(p)))
                                 if p.is_dir()]
        sources, skipped = [], []
        for folder in folders:
            if not frame_files(folder):
                continue
            try:
                sources.append(probe_frame_folder(folder, source_fps))
            except SourceError as e:
                skipped.append((folder, str(e)))
        if not sources and not skipped:
            raise NoUsableVideoError(f"no folder of frame images ({', '.join(IMAGE_EXTENSIONS)}) under {str(root)!r}")
        super().__init__(sources, sampling, time_range=time_range, seed=seed, clips_per_epoch=clips_per_epoch,
                         skipped=skipped, origin=f"frame folder {str(root)!r}")


class ManifestDataset(ClipDataset):
    """Clips listed in a CSV or JSONL manifest.

    Columns (CSV header / JSON keys): ``path`` (required; a video file or a folder of frames,
    relative paths resolved against the manifest's folder), optional ``start`` and ``end`` in
    seconds (the segment to use; empty = whole video) and optional ``fps`` (the frame rate of a
    frames folder; default ``source_fps``). ``time_range`` then applies within each segment.
    Rows whose file is missing or unusable are skipped with a warning.
    """

    def __init__(self, manifest: str | os.PathLike, sampling: ClipSampling | None = None, *,
                 source_fps: float = 8.0, time_range: Sequence[float] = (0.0, 1.0), seed: int = 0,
                 clips_per_epoch: int | None = None) -> None:
        manifest = Path(manifest)
        rows = read_manifest(manifest)
        sources, skipped = [], []
        for line, row in rows:
            where = f"{manifest.name}:{line}"
            raw = row.get("path")
            if raw is None or str(raw).strip() == "":
                skipped.append((where, "row has no path"))
                continue
            path = Path(str(raw).strip())
            path = path if path.is_absolute() else manifest.parent / path
            try:
                start, end = _seconds(row.get("start"), "start"), _seconds(row.get("end"), "end")
                if path.is_dir():
                    fps = _seconds(row.get("fps"), "fps") or source_fps
                    source: Source = probe_frame_folder(path, fps)
                elif path.is_file():
                    source = probe_video(path)
                else:
                    raise SourceError("not found")
                if start is not None or end is not None:
                    set_segment(source, start, end)
            except SourceError as e:
                skipped.append((f"{path} ({where})", str(e)))
                continue
            sources.append(source)
        super().__init__(sources, sampling, time_range=time_range, seed=seed, clips_per_epoch=clips_per_epoch,
                         skipped=skipped, origin=f"manifest {str(manifest)!r}")


def read_manifest(path: str | os.PathLike) -> list[tuple[int, dict[str, Any]]]:
    """Rows ``(line number, fields)`` of a ``.csv`` (with header) or ``.jsonl`` manifest."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "path" not in [n.strip() for n in reader.fieldnames]:
                raise ValueError(f"manifest {str(path)!r} needs a header row with a 'path' column; "
                                 f"got {reader.fieldnames}")
            return [(reader.line_num, {k.strip(): v for k, v in row.items() if k is not None})
                    for row in reader]
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"{str(path)}:{number} is not valid JSON: {e}") from e
            if not isinstance(row, dict):
                raise ValueError(f"{str(path)}:{number} must be a JSON object with a 'path' key")
            rows.append((number, row))
        return rows
    raise ValueError(f"manifest {str(path)!r} must end in .csv or .jsonl")


def _seconds(value: Any, name: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{name} {value!r} is not a number of seconds") from None
    if not math.isfinite(number) or number < 0:
        raise SourceError(f"{name} {value!r} must be a finite non-negative number")
    return number


class MixtureDataset(EpochDataset):
    """Clips drawn from several datasets with given weights (each item picks a part at random).

    Every part must yield clips of the same shape (same :meth:`ClipSampling.shape_key`). The
    part and the clip inside it come from the item's ``(seed, epoch, index)`` generator, which
    the part then also uses for its own draws; the parts' own seeds and epochs are not used.
    """

    def __init__(self, parts: Sequence[EpochDataset], weights: Sequence[float] | None = None, *,
                 seed: int = 0, clips_per_epoch: int | None = None) -> None:
        super().__init__(seed)
        self.weights = np.asarray(mixture_weights(weights, len(parts), clips_per_epoch))
        keys = {p.sampling.shape_key() for p in parts}
        if len(keys) > 1:
            raise ValueError(f"mixture parts yield different clip shapes (K, H, W, h, w): {sorted(keys)}; "
                             "give them the same num_frames, height, width and low size")
        self.parts = list(parts)
        self.sampling = parts[0].sampling
        self.clips_per_epoch = clips_per_epoch

    def __len__(self) -> int:
        return self.clips_per_epoch if self.clips_per_epoch is not None else sum(len(p) for p in self.parts)

    def clip(self, index: int, rng: np.random.Generator) -> Item:
        part = self.parts[int(rng.choice(len(self.parts), p=self.weights))]
        return part.clip(int(rng.integers(len(part))), rng)

