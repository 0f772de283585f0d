"""How much of an in-between can be learnt from a latent cache, beyond the latent cross-fade.

MarDini's one-step in-betweens (`mardini.diffusion.prior`, ``inbetween_steps: 1``) are the latent
cross-fade p plus a correction the generator predicts; they beat the cross-fade only where the
correction points at the true residual r = z - p. This script asks whether *any* network could
learn that from the training data, by fitting a small convolutional specialist to it directly:
for each cached 9-frame clip, its inputs are the end latents z0 and z8, the cross-fade p at
t = k / 8 and t itself, its target r for the 7 frames between; a stack of ``--depth`` 3x3
convolutions ``--width`` wide (receptive field 2 * depth + 1 latent cells), last layer zero so it
starts as the cross-fade, trained with the mean squared error on the caches' clips (``--cache``,
repeatable) by AdamW and a cosine schedule. Not a model to ship: a probe with none of the
generator's constraints (it sees only the two ends, as interpolation does, at full resolution).

Then, on clips it did not train on, encoded with ``--checkpoint``'s codec (clips taken as
``heldout_acceptance.py`` takes them: 9 frames at each video's native rate, 128 px, scene cuts
left out), against the truth through the codec: ``psnr_crossfade`` (``linear@latent``),
``psnr_specialist`` (p plus the specialist's r), ``cos`` (cosine of predicted and true r) and
``relative_error`` (|r_hat - r|^2 / |r|^2; 1 is no better than the cross-fade). ``--split train
--time-range 0.8,1.0`` reads the last fifth of the training videos (what the caches of
`scripts/train_corpus_model.sh` leave out), the default the held-out videos. The fit on the
training clips is reported too (``fit``: loss against the cross-fade's on a fixed sample).

    python benchmarks/inbetween_headroom.py --cache RUNS/cache-9x128-native --checkpoint CK --data CORPUS \\
        --split train --time-range 0.8,1.0 --out headroom.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

FRAMES = 9  # VIDIM: 7 in-betweens between two given frames
METRICS = ("psnr_crossfade", "psnr_specialist", "cos", "relative_error")


def inbetween_examples(latents: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, 9, C, h, w) clips -> inputs (7N, 3C + 1, h, w) = [z0, z8, p_t, t], residuals r and
    cross-fades p (7N, C, h, w), frame k of clip n at row 7n + k - 1."""
    if latents.ndim != 5 or latents.shape[1] != FRAMES:
        raise ValueError(f"expected (clips, {FRAMES}, C, h, w) latents, got {tuple(latents.shape)}")
    n, _, _, h, w = latents.shape
    t = torch.arange(1, FRAMES - 1, dtype=latents.dtype).view(1, -1, 1, 1, 1) / (FRAMES - 1)
    first, last = latents[:, :1], latents[:, -1:]
    crossfade = (1 - t) * first + t * last
    residual = latents[:, 1:-1] - crossfade
    between = FRAMES - 2
    inputs = torch.cat([first.expand(-1, between, -1, -1, -1), last.expand(-1, between, -1, -1, -1), crossfade,
                        t.expand(n, between, 1, h, w)], dim=2)
    return inputs.flatten(0, 1), residual.flatten(0, 1), crossfade.flatten(0, 1)


def specialist(channels: int, width: int = 96, depth: int = 5) -> nn.Sequential:
    """3x3 convolutions with SiLU between; the last layer is zero, so it starts at r = 0."""
    if width < 1 or depth < 2:
        raise ValueError(f"the specialist needs width >= 1 and depth >= 2, got {width} and {depth}")
    layers: list[nn.Module] = [nn.Conv2d(3 * channels + 1, width, 3, padding=1)]
    for _ in range(depth - 2):
        layers += [nn.SiLU(), nn.Conv2d(width, width, 3, padding=1)]
    layers += [nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)]
    net = nn.Sequential(*layers)
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def cached_latents(folders: list[str | Path]) -> Tensor:
    """Every clip's high-resolution latents from the cache folders, (N, 9, C, h, w) float32."""
    from mardini.data.cache import LatentCache

    clips = []
    for folder in folders:
        cache = LatentCache(folder)
        clips += [cache.read(i)["high_latents"].float() for i in range(len(cache))]
    if not clips:
        raise ValueError(f"the caches {[str(f) for f in folders]} hold no clip")
    return torch.stack(clips)


def fit_specialist(latents: Tensor, steps: int, width: int = 96, depth: int = 5, batch: int = 128,
                   lr: float = 1e-3, seed: int = 0) -> tuple[nn.Sequential, dict[str, float]]:
    """Train the specialist on the clips' in-betweens; ``fit`` compares its loss with the
    cross-fade's (r = 0) on a fixed sample of at most 1024 training frames."""
    if steps < 0:
        raise ValueError(f"--steps must be at least 0, got {steps}")
    inputs, residuals, _ = inbetween_examples(latents)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = specialist(latents.shape[2], width, depth)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    for _ in range(steps):
        rows = torch.randint(0, inputs.shape[0], (batch,), generator=generator)
        loss = ((net(inputs[rows]) - residuals[rows]) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    sample = torch.randperm(inputs.shape[0], generator=generator)[:1024]
    with torch.no_grad():
        loss = float(((net(inputs[sample]) - residuals[sample]) ** 2).mean())
    zero = float((residuals[sample] ** 2).mean())
    return net.eval(), {"clips": latents.shape[0], "loss": loss, "loss_crossfade": zero, "ratio": loss / zero}


def _psnr(frames: Tensor, truth: Tensor) -> float:
    from mardini.evaluation import psnr
    from mardini.evaluation.interpolation import quantize

    return float(psnr(quantize(frames).float() / 255, quantize(truth).float() / 255).mean())


def score_clips(net: nn.Module, pipe: Any, data: str, split: str = "heldout",
                time_range: tuple[float, float] = (0.0, 1.0), clips_per_video: int = 4,
                size: int = 128) -> dict[str, Any]:
    """The module's figures on ``split``'s clips, encoded and decoded by ``pipe`` (a
    `MarDiniPipeline`, for its codec): ``overall``, ``per_video``, ``clips``."""
    from mardini.evaluation.footage import interpolation_clips

    decode = lambda z: (pipe.decode(z) + 1.0) / 2.0  # noqa: E731
    rows: list[dict[str, Any]] = []
    for _, item, frames in interpolation_clips(data, size, FRAMES, clips_per_video, split, time_range):
        with torch.no_grad():
            high, _ = pipe.encode(frames.float()[None] / 127.5 - 1.0, size, size)
            inputs, residual, crossfade = inbetween_examples(high.float())
            predicted = net(inputs)
            truth = decode(crossfade + residual)
            rows.append({
                "video": item["source"], "start_s": round(item["start"], 3),
                "psnr_crossfade": _psnr(decode(crossfade), truth),
                "psnr_specialist": _psnr(decode(crossfade + predicted), truth),
                "cos": float(nn.functional.cosine_similarity(predicted.flatten(), residual.flatten(), dim=0)),
                "relative_error": float(((predicted - residual) ** 2).sum() / (residual ** 2).sum().clamp(min=1e-12)),
            })
    if not rows:
        raise ValueError(f"no interpolation clip in the {split} videos of {data}")
    mean = lambda group: {k: sum(r[k] for r in group) / len(group) for k in METRICS}  # noqa: E731
    videos = dict.fromkeys(r["video"] for r in rows)
    return {"split": split, "time_range": list(time_range), "clips": rows, "overall": mean(rows),
            "per_video": {v: mean([r for r in rows if r["video"] == v]) for v in videos}}


def markdown(report: dict[str, Any]) -> str:
    fit = report["fit"]
    lines = [f"Fit on {fit['clips']} cached clips: loss {fit['loss']:.5f} against the cross-fade's "
             f"{fit['loss_crossfade']:.5f} (ratio {fit['ratio']:.3f}).", "",
             "| split / video | clips | " + " | ".join(METRICS) + " |", "|:---|" + "---:|" * (len(METRICS) + 1)]
    for result in report["results"]:
        groups = [("all", result["overall"], len(result["clips"]))]
        groups += [(Path(v).name, m, sum(r["video"] == v for r in result["clips"]))
                   for v, m in result["per_video"].items()]
        for label, m, n in groups:
            cells = [f"{m[k]:.2f}" if k.startswith("psnr") else f"{m[k]:.3f}" for k in METRICS]
            lines.append(f"| {result['split']} / {label} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from mardini.evaluation.interpolation import parse_time_range
    from mardini.evaluation.reporting import machine_info, write_json, write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", action="append", required=True, help="latent cache folder to fit on (repeatable)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint whose codec encodes and decodes the clips "
                        "(the one the caches were built with)")
    parser.add_argument("--data", required=True, help="corpus folder")
    parser.add_argument("--out", required=True, type=Path, help="JSON results (a Markdown twin beside it)")
    parser.add_argument("--split", action="append", choices=("heldout", "train"),
                        help="split to score (repeatable; default heldout)")
    parser.add_argument("--time-range", default="0,1", help="part of each video for the train split, START,END "
                        "(default 0,1; 0.8,1.0 is the part training leaves out); the held-out split takes all")
    parser.add_argument("--clips", type=int, default=4, help="clips per video (default 4)")
    parser.add_argument("--size", type=int, default=128, help="frame size (default 128, issue 14's)")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (default 3000)")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="in-between frames per step (default 128)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        time_range = parse_time_range(args.time_range)
        from mardini import MarDiniPipeline
        from mardini.data.cache import LatentCache

        pipe = MarDiniPipeline.from_pretrained(args.checkpoint)
        for folder in args.cache:
            LatentCache(folder).check_codec(pipe.codec)
        net, fit = fit_specialist(cached_latents(args.cache), args.steps, args.width, args.depth, args.batch,
                                  args.lr, args.seed)
        print(f"fit: loss ratio {fit['ratio']:.3f} over {fit['clips']} clips ({time.perf_counter() - started:.0f} s)",
              flush=True)
        results = []
        for split in args.split or ["heldout"]:
            results.append(score_clips(net, pipe, args.data, split,
                                       time_range if split == "train" else (0.0, 1.0), args.clips, args.size))
            overall = results[-1]["overall"]
            print(f"{split}: " + ", ".join(f"{k} {v:.3f}" for k, v in overall.items()), flush=True)
    except (ValueError, FileNotFoundError) as err:
        print(f"inbetween_headroom: {err}", file=sys.stderr)
        return 2
    report = {"command": "python benchmarks/inbetween_headroom.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine_info(), "wall_s": round(time.perf_counter() - started, 1),
              "settings": {k: getattr(args, k) for k in ("cache", "checkpoint", "clips", "size", "steps", "width",
                                                          "depth", "batch", "lr", "seed")},
              "fit": fit, "results": results}
    write_json(report, args.out)
    write_text(markdown(report), args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
