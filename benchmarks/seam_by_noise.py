"""Where the 16-px block mosaic comes from: the denoiser's own prediction, noise level by noise level.

Issue 14 asks why generated tokens decorrelate from their neighbours. Sampling with more DDIM
steps makes the mosaic worse (docs/benchmarks.md, block ablation), which could be the sampler
accumulating errors or the denoiser drawing the grid itself. This script separates the two:
*teacher-forced*, it noises the true clip at timestep t exactly as training does (Eq. 3; around
the checkpoint's prior), asks the generator once for v, forms its x0 prediction
``x0 = alpha_t x_t - sigma_t v`` and scores the generated frames' ``seam`` (the token grid's
visibility, 1 = none; `mardini.evaluation.artefacts.seam`). A seam well above the truth's at
some t is the network's, whatever the sampler does. It also samples the same clips with DDIM at
a few step counts, for comparison. Two controls for the other suspects: the teacher-forced x0 with
the planning signal replaced by Z_uncond (``no_plan``: the planner's coarser grid), and the codec
alone, decoding the true latents plus a random offset per token (``codec_token_offsets``, std 0.2 of
the latents': does the decoder turn per-token errors into a grid?). ``latent_seam`` is the same
question asked of the latents themselves (mean step across token boundaries over the step inside a
token, along rows), before the decoder. Last, image-to-video (first frame given, the rest from
noise) sampled with DDIM at ``I2V_STEPS`` steps without and with classifier-free guidance
(``i2v_guidance``): does guidance make the mosaic? (``i2v_ssim_last``: SSIM of its frame 8 to the
reference's codec round trip, the issue's "recognisably the reference's scene"; these use the
checkpoint's own sampler, its ``diffusion.grid_shift`` included.) The same image-to-video sample
(guidance 2.5) with the token grid moved (``i2v_grid_shift``, the sampler
option ``diffusion.grid_shift``, `mardini.diffusion.shifted_grid`): every other DDIM step
(``alternate``) or every step averaged with the unmoved call (``average``) the generator sees the
latents shifted by half a token, so its 16-px token boundaries fall 8 px from the other call's;
``seam`` and ``sharpness`` (Laplacian variance over the reference's) of each. If the
mosaic were only the grid's edges, moving the grid would leave a clean picture; if the content
of the tokens is wrong, only the edges soften and the wrong content stays (look at the frames).

The image-to-video probe (``i2v_from_noise``) asks whether the generator has learnt its
from-noise path at all: with only the first frame given, the teacher-forced x0 at t = 999 (pure
noise) and 700, scored by SSIM against the true frames 1-8 through the codec (a model that uses
the reference predicts a blurred copy of it; one that does not predicts grey), and
``plan_effect``, the relative change of the velocity when the planning signal is replaced by
Z_uncond (how much the generator listens to the planner).

    python benchmarks/seam_by_noise.py --checkpoint CK [--checkpoint CK2] --out seam.json

Clips: the bundled demo clips (held-out corpus videos; first ``num_frames`` frames at the model's
size), interpolation mask (first and last given). ``--quick`` is the smoke test's setting.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import torch

TIMESTEPS = (20, 100, 300, 500, 700, 900, 999)
I2V_PROBE_TIMESTEPS = (999, 700)  # high noise: where only the reference (and the plan) can tell the content
GUIDANCE = (1.0, 2.5)  # none, and the paper's image-to-video scale
I2V_STEPS = 25
OFFSET_STD = 0.2  # per-token offsets of the codec control, as a share of the latents' std
SAMPLING_STEPS = (1, 5, 25)
CLIPS = ("wheat", "city")

def seam_by_noise(checkpoint: str | Path, clips: tuple[str, ...] = CLIPS, timesteps: tuple[int, ...] = TIMESTEPS,
                  sampling_steps: tuple[int, ...] = SAMPLING_STEPS, seed: int = 0,
                  i2v_steps: int = I2V_STEPS) -> dict[str, Any]:
    """Seam of the teacher-forced x0 prediction per timestep and of DDIM samples per step count."""
    from mardini import MarDiniPipeline
    from mardini.demo import demo_clip
    from mardini.config import GRID_SHIFTS
    from mardini.diffusion import diffusion_prior, guided_denoiser, sample_ddim, shifted_grid
    from mardini.diffusion.schedule import alpha_sigma
    from mardini.evaluation.artefacts import seam, sharpness
    from mardini.evaluation.interpolation import model_grid
    from mardini.evaluation.metrics import ssim

    pipe = MarDiniPipeline.from_pretrained(checkpoint)
    cfg = pipe.config
    frames, size = cfg.num_frames, cfg.height
    grid = model_grid(cfg)
    last = pipe.scheduler.config.num_train_timesteps - 1
    bad = [t for t in timesteps if not 0 <= t <= last]
    if bad:
        raise ValueError(f"timesteps {bad} are outside 0..{last}")
    mask = torch.ones(1, frames, dtype=torch.bool)
    mask[:, 0] = mask[:, -1] = False  # interpolation: first and last given

    def to_uint8(latents: torch.Tensor) -> torch.Tensor:
        return ((pipe.decode(latents) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)

    patch = cfg.generator.patch_size

    def latent_seam(latents: torch.Tensor) -> float:
        if patch < 2:
            return float("nan")  # one latent pixel per token: no inside to compare with
        step = (latents[..., 1:] - latents[..., :-1]).abs()  # between latent columns j and j + 1
        across = step[..., patch - 1::patch].mean()             # j + 1 starts a new token
        inside = torch.cat([step[..., k::patch] for k in range(patch - 1)], dim=-1).mean()
        return float(across / inside)

    def teacher_forced(z: torch.Tensor, generate: torch.Tensor, t: int, noise: torch.Tensor,
                       signals: tuple[torch.Tensor | None, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The true latents ``z`` noised at ``t`` as training does (Eq. 3, around the checkpoint's
        prior for this mask), one generator call per planning signal: ``(x0, v)`` for each, x0
        with the reference frames as given."""
        prior = diffusion_prior(cfg.diffusion, z, generate)
        clean = z if prior is None else (z - prior.mean) / prior.scale
        tt = torch.tensor([t])
        noisy = pipe.scheduler.add_noise(clean, noise, tt)
        keep = generate[:, :, None, None, None]
        x = torch.where(keep, noisy if prior is None else prior.mean + prior.scale * noisy, z)
        alpha, sigma = alpha_sigma(pipe.scheduler, tt)
        out = []
        for signal in signals:
            v = pipe.model.generator(x, tt, generate, signal)
            x0 = alpha * noisy - sigma * v
            out.append((torch.where(keep, x0 if prior is None else prior.mean + prior.scale * x0, z), v))
        return out

    rows: dict[str, Any] = {}
    generator = torch.Generator().manual_seed(seed)
    for name in clips:
        clip = torch.from_numpy(demo_clip(name)[:frames]).permute(0, 3, 1, 2).float() / 127.5 - 1
        z, z_low = pipe.encode(clip[None], size, size)
        with torch.no_grad():
            plan = pipe.model.planner(z_low, mask)
            truth = to_uint8(z[0])
            offsets = torch.randn(*z.shape[:-2], z.shape[-2] // patch, z.shape[-1] // patch, generator=generator)
            offsets = (OFFSET_STD * z.std() * offsets).repeat_interleave(patch, -2).repeat_interleave(patch, -1)
            row: dict[str, Any] = {"truth_through_codec": seam(truth[1:-1], *grid),
                                   "codec_token_offsets": seam(to_uint8((z + offsets)[0])[1:-1], *grid),
                                   "latent_seam_truth": latent_seam(z[0, 1:-1]),
                                   "teacher_forced": {}, "no_plan": {}, "latent_seam": {}, "sampled": {},
                                   "i2v_guidance": {}, "i2v_ssim_last": {}, "i2v_from_noise": {},
                                   "i2v_grid_shift": {}}
            for t in timesteps:
                (made, _), (unplanned, _) = teacher_forced(z, mask, t, torch.randn(z.shape, generator=generator),
                                                           (plan, None))
                row["teacher_forced"][str(t)] = seam(to_uint8(made[0])[1:-1], *grid)
                row["no_plan"][str(t)] = seam(to_uint8(unplanned[0])[1:-1], *grid)
                row["latent_seam"][str(t)] = latent_seam(made[0, 1:-1])
            for steps in sampling_steps:
                out = pipe.sample(z, z_low, mask, steps=steps, generator=torch.Generator().manual_seed(seed),
                                  progress=False)
                row["sampled"][str(steps)] = seam(to_uint8(out[0])[1:-1], *grid)
            first_only = torch.ones_like(mask)
            first_only[:, 0] = False
            reference = to_uint8(z[0, :1]).float() / 255
            # With the checkpoint's own sampler (its grid_shift included) at each guidance scale.
            for scale in GUIDANCE:
                out = pipe.sample(z, z_low, first_only, steps=i2v_steps, guidance_scale=scale,
                                  generator=torch.Generator().manual_seed(seed), progress=False)
                made = to_uint8(out[0])
                row["i2v_guidance"][f"{scale:g}"] = seam(made[1:], *grid)
                row["i2v_ssim_last"][f"{scale:g}"] = float(ssim(made[-1:].float() / 255, reference).mean())
            own = made  # the last scale, GUIDANCE[-1]: the grid probe's own-setting sample, already made
            i2v_plan = pipe.model.planner(z_low, first_only)
            for mode in GRID_SHIFTS:
                if mode != cfg.diffusion.grid_shift:
                    # As the pipeline samples it (its skip-layer guidance rides with the guidance).
                    denoise = shifted_grid(guided_denoiser(pipe.model.generator, first_only, i2v_plan, GUIDANCE[-1],
                                                           cfg.diffusion.skip_guidance if GUIDANCE[-1] != 1 else 0.0,
                                                           cfg.diffusion.skip_guidance_block), mode, patch)
                    out = sample_ddim(denoise, z, first_only, pipe.scheduler, i2v_steps,
                                      rng=torch.Generator().manual_seed(seed),
                                      prior=diffusion_prior(cfg.diffusion, z, first_only))
                made = own if mode == cfg.diffusion.grid_shift else to_uint8(out[0])
                row["i2v_grid_shift"][mode] = {"seam": seam(made[1:], *grid),
                                               "sharpness": sharpness(made[1:], made[:1])}
            for t in I2V_PROBE_TIMESTEPS:
                (x0, v), (_, v_uncond) = teacher_forced(z, first_only, min(t, last),
                                                        torch.randn(z.shape, generator=generator), (i2v_plan, None))
                score = ssim(to_uint8(x0[0, 1:]).float() / 255, truth[1:].float() / 255).mean()
                row["i2v_from_noise"][str(t)] = {
                    "ssim": float(score),
                    "plan_effect": float((v - v_uncond)[:, 1:].norm() / v[:, 1:].norm().clamp_min(1e-12))}
        rows[name] = row
    return {"checkpoint": str(checkpoint), "clips": rows, "frames": frames, "size": size, "grid": list(grid)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, help="checkpoint folder (repeatable)")
    parser.add_argument("--out", required=True, help="JSON results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one clip, two timesteps, one step count")
    args = parser.parse_args(argv)
    settings = dict(clips=("wheat",), timesteps=(100, 999), sampling_steps=(1,), i2v_steps=1) if args.quick else {}
    started = time.time()
    results = [seam_by_noise(c, seed=args.seed, **settings) for c in args.checkpoint]
    report = {"results": results, "seconds": round(time.time() - started, 1), "seed": args.seed,
              "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads"}
    Path(args.out).write_text(json.dumps(report, indent=1))
    for r in results:
        for name, row in r["clips"].items():
            def line(key: str) -> str:
                return " ".join(f"t={t}:{v:.2f}" for t, v in row[key].items())

            sampled = " ".join(f"{s} steps:{v:.2f}" for s, v in row["sampled"].items())
            print(f"{r['checkpoint']} {name}: truth {row['truth_through_codec']:.2f} | teacher-forced {line('teacher_forced')} "
                  f"| no plan {line('no_plan')} | latent seam (truth {row['latent_seam_truth']:.2f}) "
                  f"{line('latent_seam')} | codec, token offsets {row['codec_token_offsets']:.2f} | sampled {sampled} | "
                  f"i2v by guidance " + " ".join(f"{g}:{v:.2f}" for g, v in row["i2v_guidance"].items())
                  + " (SSIM last " + " ".join(f"{g}:{v:.2f}" for g, v in row["i2v_ssim_last"].items()) + ") | "
                  "i2v from noise " + " ".join(f"t={t}: SSIM {v['ssim']:.2f}, plan effect {v['plan_effect']:.3f}"
                                               for t, v in row["i2v_from_noise"].items())
                  + " | i2v grid shift " + " ".join(f"{m}: seam {v['seam']:.2f}, sharpness {v['sharpness']:.2f}"
                                                    for m, v in row["i2v_grid_shift"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
