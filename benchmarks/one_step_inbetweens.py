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
- ``relative_error``: ``|c - r|^2 / |r|^2`` (1: no better than ``c = 0``).

    python benchmarks/one_step_inbetweens.py --data CORPUS --checkpoint CK [--checkpoint CK2] --out report.json

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
METRICS = ("psnr_linear_latent", "psnr_one_step", "psnr_mean_of_draws", "cos_truth", "cos_noise", "correction",
           "residual", "relative_error")


def _psnr(frames: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean PSNR (dB) over frames of [0, 1] images, 8-bit quantised as a video file stores them."""
    q = lambda x: (x.clamp(0, 1) * 255).round() / 255  # noqa: E731
    mse = ((q(frames) - q(truth)) ** 2).mean(dim=(1, 2, 3)).clamp(min=1e-10)
    return float((10 * torch.log10(1 / mse)).mean())


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def clip_scores(pipe: Any, frames: torch.Tensor, draws: int, seed: int) -> dict[str, float]:
    """The module's figures for one clip (T, 3, H, W) uint8 at the pipeline's size."""
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
    return {
        "psnr_linear_latent": _psnr(decode(p), truth),
        "psnr_one_step": _psnr(decode(p + c), truth),
        "psnr_mean_of_draws": _psnr(decode(p + mean_c), truth),
        "cos_truth": _cos(c, r),
        "cos_noise": _cos(c, noises[0]),
        "correction": float(c.abs().mean()),
        "residual": float(r.abs().mean()),
        "relative_error": float(((c - r) ** 2).sum() / (r ** 2).sum().clamp(min=1e-12)),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in METRICS} if rows else {}


def one_step_inbetweens(checkpoint: str | Path, data: str, clips_per_video: int = 4, draws: int = 4,
                        size: int = 128, seed: int = 0) -> dict[str, Any]:
    """Figures of the module docstring for one checkpoint: ``overall``, ``per_video``, ``clips``."""
    from mardini import MarDiniPipeline
    from mardini.evaluation.footage import data_sources, held_out_clips
    from mardini.evaluation.interpolation import scene_cut

    if draws < 1:
        raise ValueError(f"--draws must be at least 1, got {draws}")
    pipe = MarDiniPipeline.from_pretrained(checkpoint)
    if pipe.config.diffusion.prior == "none":
        raise ValueError(f"{checkpoint} has no reference prior (diffusion.prior: none): its in-betweens start "
                         "from noise, not from the cross-fade this script compares with")
    sources, _ = data_sources(data, "heldout")
    dataset = held_out_clips(data, size, FRAMES, clips_per_video * max(len(sources), 1), None, (0.0, 1.0), "heldout")
    rows: list[dict[str, Any]] = []
    for index in range(len(dataset)):
        item = dataset[index]
        if item is None:
            continue
        frames = torch.as_tensor(item["frames"])
        if scene_cut(frames) is not None:
            continue
        rows.append({"video": item["source"], "start_s": round(item["start"], 3),
                     **clip_scores(pipe, frames, draws, seed + index)})
    if not rows:
        raise ValueError(f"no interpolation clip in the held-out videos of {data}")
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
            cells = [f"{m[k]:.2f}" if k.startswith("psnr") else f"{m[k]:.3f}" for k in METRICS]
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
    parser.add_argument("--quick", action="store_true", help="one clip per video, two draws")
    args = parser.parse_args(argv)
    if args.quick:
        args.clips, args.draws = 1, 2
    started = time.perf_counter()
    results = []
    for checkpoint in args.checkpoint:
        try:
            results.append(one_step_inbetweens(checkpoint, args.data, args.clips, args.draws, args.size,
                                               args.seed))
        except (ValueError, FileNotFoundError) as err:
            print(f"one_step_inbetweens: {err}", file=sys.stderr)
            return 2
        overall = results[-1]["overall"]
        print(f"{checkpoint}: " + ", ".join(f"{k} {v:.3f}" for k, v in overall.items() if math.isfinite(v)),
              flush=True)
    report = {"command": "python benchmarks/one_step_inbetweens.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine_info(), "wall_s": round(time.perf_counter() - started, 1),
              "settings": {"clips_per_video": args.clips, "draws": args.draws, "seed": args.seed, "size": args.size},
              "results": results}
    write_json(report, args.out)
    write_text(markdown(results) + "\n", args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
