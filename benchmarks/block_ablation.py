"""Block artefacts of image-to-video: inference-only ablations (issue 14, "Fix what makes blocks").

The bundled model's image-to-video breaks into a mosaic on the generator's token grid (16 px: the
codec's 8x downsampling times the generator's patch size 2). This script asks which inference
choice moves that seam: each *arm* changes one thing and keeps the same weights, references and
noise (seed per input), so the rows compare pairwise.

Arms (see `ARMS`): the bundled defaults (guidance 2.5, 25 DDIM steps, the checkpoint's generator
attention), no guidance (1.0) and 1.5, spatio-temporal generator attention at inference (the
same weights: the second attention is one module, applied per spatial position across frames
for ``temporal`` or to every token of every frame for ``spatiotemporal``, paper section 2.2),
1, 5, 10 and 50 steps, the planning signal dropped (the learnt unconditional token Z_uncond
only, no guidance), and the frames diffused around a copy of the reference (prior
``reference_interpolation``) at 25 and 1 steps. Reference rows, no generation: the reference repeated, its codec round trip
repeated (the seam metric's zero point, about 1.0), the real clip and the real clip's codec
round trip (corpus inputs only). Optionally (``--tasks``) looping and expansion from 3 real
frames with their task defaults, and a loop sampled from noise (prior off, 25 steps).

Inputs: one 9-frame clip at ``--fps`` (default 8) from the middle of each held-out corpus video (``--corpus``, split
``heldout``; the reference is one of its frames and the clip is the real continuation) and a
few scikit-image photos (no real clip). Each is used with the reference first (position 0) and
in the middle (position 4).

Scores per arm (means over the videos; `mardini.evaluation.artefacts`):

- ``seam``: token-boundary step over the codec's other block-boundary step, over the generated
  frames; 1.0 = no token grid;
- ``seam_planner``: the same test one grid up, the planner's token grid (32 px for the bundled
  model: 8x codec, half resolution, patch 2) against the generator's other 16-px boundaries; 1.0
  when the planner's coarse grid leaves no trace;
- ``seam_by_frame``: the same per frame position (reference first: position = distance);
- ``sharpness``: Laplacian variance of the generated frames over the reference image's;
- ``flow``: mean RIFE flow magnitude (px per frame pair) of the whole video; ``motion``: the
  arm's flow over the real clips' (corpus inputs, ratio of sums);
- ``ssim_last``: SSIM of the last frame to the reference's codec round trip;
- ``psnr_real``: PSNR of the generated frames to the real clip (corpus inputs), the
  issue's "4 dB below repeating the reference".

Usage::

    cd /work/wt/blocks && OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD/src nice python \\
        benchmarks/block_ablation.py --corpus /work/corpus --photos 2 --json /tmp/blocks.json \\
        --sheet docs/block_ablation.png
    python benchmarks/block_ablation.py --quick          # smoke run: one photo, three arms, 2 steps
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from mardini.diffusion import default_steps, diffusion_prior, guided_denoiser, sample_ddim, shifted_grid  # noqa: E402
from mardini.evaluation.artefacts import consecutive_flows, flow_magnitude, seam, sharpness  # noqa: E402
from mardini.evaluation.given_frames import codec_round_trip  # noqa: E402
from mardini.evaluation.metrics import psnr, ssim  # noqa: E402
from mardini.pipeline import MarDiniPipeline, frames_to_tensor, to_uint8  # noqa: E402

FlowFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Arm:
    """One inference setting. ``steps=None``: the pipeline's default for the mask; ``attention=None``:
    the checkpoint's generator attention; ``plan=False``: Z_uncond only (no planning signal);
    ``prior`` / ``prior_scale`` / ``grid_shift``: `DiffusionConfig` values to sample with instead of
    the checkpoint's (None: its own)."""

    name: str
    guidance: float = 2.5
    steps: int | None = 25
    attention: str | None = None
    plan: bool = True
    prior: str | None = None
    prior_scale: float | None = None
    grid_shift: str | None = None


ARMS: tuple[Arm, ...] = (
    Arm("baseline"),
    Arm("guidance 1.0", guidance=1.0),
    Arm("guidance 1.5", guidance=1.5),
    Arm("spatio-temporal attn", attention="spatiotemporal"),
    Arm("spatio-temporal, guidance 1.0", guidance=1.0, attention="spatiotemporal"),
    Arm("steps 1", steps=1),  # the network's one-shot estimate from pure noise: no sampler accumulation
    Arm("steps 5", steps=5),
    Arm("steps 10", steps=10),
    Arm("steps 50", steps=50),
    Arm("no planning signal", guidance=1.0, plan=False),
    # The frames diffused around a copy of the reference (scale prior_scale) instead of around 0:
    # the structure the in-betweens get from their prior, never trained for frames beyond references.
    Arm("reference prior, 25 steps", prior="reference_interpolation"),
    Arm("reference prior, 1 step", steps=1, prior="reference_interpolation"),
    # Scale 1: the residual around the copy is noised as much as a latent, room for more motion.
    Arm("reference prior x1.0, 25 steps", prior="reference_interpolation", prior_scale=1.0),
    # The token grid moved by half a token on every other step (mardini.diffusion.shifted_grid).
    Arm("grid moved (alternate)", grid_shift="alternate"),
    Arm("grid not moved", grid_shift="none"),
)
QUICK_ARMS: tuple[Arm, ...] = (Arm("baseline", steps=2), Arm("guidance 1.0", guidance=1.0, steps=2),
                               Arm("spatio-temporal attn", steps=2, attention="spatiotemporal"))


# --- generation --------------------------------------------------------------------------------


@torch.no_grad()
def generate(pipe: MarDiniPipeline, known: Tensor, positions: Sequence[int], num_frames: int, arm: Arm,
             seed: int) -> Tensor:
    """One window of `pipe` with the arm's overrides: uint8 ``(num_frames, 3, H, W)``.

    `known` is uint8 ``(P, 3, H, W)`` at `positions`. With the arm's defaults this is exactly
    `MarDiniPipeline.generate` (the smoke test checks it); it is spelt out here because the
    pipeline exposes neither the generator's attention override nor dropping the planning signal.
    """
    height, width = known.shape[-2:]
    mask = torch.ones(1, num_frames, dtype=torch.bool)
    mask[0, list(positions)] = False
    high_known, low_known = pipe.encode(frames_to_tensor(known.permute(0, 2, 3, 1).contiguous())[None], height, width)
    high = high_known.new_zeros(1, num_frames, *high_known.shape[2:])
    low = low_known.new_zeros(1, num_frames, *low_known.shape[2:])
    high[:, list(positions)], low[:, list(positions)] = high_known, low_known
    diffusion = pipe.config.diffusion
    if arm.prior is not None:
        diffusion = dataclasses.replace(diffusion, prior=arm.prior)
    if arm.prior_scale is not None:
        diffusion = dataclasses.replace(diffusion, prior_scale=arm.prior_scale)
    if arm.grid_shift is not None:
        diffusion = dataclasses.replace(diffusion, grid_shift=arm.grid_shift)
    steps = arm.steps if arm.steps is not None else default_steps(diffusion, mask, high)
    plan = pipe.model.planner(low.to(pipe.dtype), mask) if arm.plan else None
    # Same weights; only the second attention's pattern changes (None: the configured one).
    network = functools.partial(pipe.model.generator, attention=arm.attention)
    # The checkpoint's skip-layer guidance rides with classifier-free guidance, as in the pipeline.
    skip = diffusion.skip_guidance if arm.guidance != 1.0 else 0.0
    guided = shifted_grid(guided_denoiser(network, mask, plan, arm.guidance, skip,  # type: ignore[arg-type]
                                          diffusion.skip_guidance_block),
                          diffusion.grid_shift, pipe.config.generator.patch_size)
    rng = torch.Generator(device=pipe.device).manual_seed(seed)
    latents = sample_ddim(lambda x, t: guided(x.to(pipe.dtype), t).float(), high.float(), mask, pipe.scheduler,
                          steps, rng=rng, prior=diffusion_prior(diffusion, high, mask))
    return torch.from_numpy(to_uint8(pipe.decode(latents)[0])).permute(0, 3, 1, 2).contiguous()


# --- scores ------------------------------------------------------------------------------------


def seam_by_frame(video: Tensor, token: int, block: int) -> list[float]:
    """`seam` of each frame on its own."""
    return [seam(frame[None], token, block) for frame in video]


def video_scores(video: Tensor, generated: Sequence[int], image: Tensor, image_codec: Tensor, real: Tensor | None,
                 flow_fn: FlowFn | None, grid: tuple[int, int], planner_px: int) -> dict[str, Any]:
    """Scores of one uint8 video ``(T, 3, H, W)`` whose frames at `generated` were made (see the module docstring).

    `grid` is (generator token, codec block) in pixels, `planner_px` the planner's token in pixels.
    """
    made = video[list(generated)]
    out: dict[str, Any] = {"seam": seam(made, *grid), "seam_by_frame": seam_by_frame(video, *grid),
                           "seam_planner": seam(made, planner_px, grid[0]),
                           "sharpness": sharpness(made, image),
                           "ssim_last": float(ssim(video[-1], image_codec))}
    out["flow"] = flow_magnitude(consecutive_flows(video, flow_fn)) if flow_fn is not None else math.nan
    out["psnr_real"] = float(psnr(made, real[list(generated)]).mean()) if real is not None else math.nan
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the videos (NaNs left out); ``motion`` = sum of flows over the real clips' sum."""
    out: dict[str, Any] = {"videos": len(rows)}
    for key in ("seam", "seam_planner", "sharpness", "flow", "ssim_last", "psnr_real"):
        values = [r[key] for r in rows if math.isfinite(r[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    with_real = [r for r in rows if math.isfinite(r.get("real_flow", math.nan)) and math.isfinite(r["flow"])]
    truth = sum(r["real_flow"] for r in with_real)
    out["motion"] = sum(r["flow"] for r in with_real) / truth if with_real and truth > 0 else math.nan
    # Per frame position, over the reference-first videos only (position = distance to the reference).
    first = [r["seam_by_frame"] for r in rows if r.get("ref_index") == 0]
    out["seam_by_frame_ref_first"] = [float(v) for v in np.mean(first, axis=0)] if first else []
    return out


# --- inputs ------------------------------------------------------------------------------------


def load_inputs(corpus: str | None, photos: int, size: int, frames: int, clips: int | None,
                fps: float | None = 8.0) -> list[dict[str, Any]]:
    """``{"name", "clip": uint8 (frames, 3, size, size) or None, "image"}`` per input: a clip from
    the middle of each held-out corpus video (the middle 40% of its span, decoded once, sampled at
    `fps`; None: every distinct frame), then the first `photos` scikit-image photos."""
    from mardini.data import skimage_photos
    from mardini.evaluation.footage import held_out_clips
    from mardini.evaluation.image_to_video import square

    inputs: list[dict[str, Any]] = []
    if corpus:
        held = held_out_clips(corpus, size, frames, clips=clips, fps=fps, time_range=(0.3, 0.7))
        for i in range(len(held)):
            item = held[i]
            if item is not None:
                inputs.append({"name": Path(item["source"]).stem, "clip": item["frames"]})
        for name, reason in held.skipped:
            print(f"skipped {name}: {reason}")
    for name, array in skimage_photos()[:photos]:
        inputs.append({"name": name, "clip": None, "image": square(array, size)})
    return inputs


# --- tables and the contact sheet -------------------------------------------------------------


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The main table and the seam-by-frame table."""
    lines = ["| arm | guidance | steps | attention | plan | prior | seam | planner seam | sharpness | flow (px) | "
             "motion | "
             "SSIM last | PSNR real (dB) | s / video |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["rows"].items():
        arm = row.get("arm")
        setting = ("-", "-", "-", "-", "-") if arm is None else (
            f"{arm['guidance']:g}", "default" if arm["steps"] is None else str(arm["steps"]),
            arm["attention"] or report["config_attention"], "yes" if arm["plan"] else "Z_uncond",
            arm.get("prior") or report["config_prior"])
        lines.append(f"| {name} | {' | '.join(setting)} | {fmt(row['seam'])} | {fmt(row['seam_planner'])} | "
                     f"{fmt(row['sharpness'])} | "
                     f"{fmt(row['flow'])} | {fmt(row['motion'])} | {fmt(row['ssim_last'])} | "
                     f"{fmt(row['psnr_real'], 2)} | {fmt(row.get('seconds_per_video', math.nan), 1)} |")
    frames = max(len(r["seam_by_frame_ref_first"]) for r in report["rows"].values())
    lines += ["", "Seam per frame position, reference at position 0 (position = distance to it):", "",
              "| arm | " + " | ".join(str(i) for i in range(frames)) + " |", "|---" * (frames + 1) + "|"]
    for name, row in report["rows"].items():
        values = row["seam_by_frame_ref_first"]
        if values:
            lines.append(f"| {name} | " + " | ".join(fmt(v, 2) for v in values) + " |")
    return "\n".join(lines)


def contact_sheet(rows: dict[str, Tensor], path: str | os.PathLike, columns: Sequence[int]) -> Path:
    """A 256-colour PNG with one labelled row of frames `columns` per video of `rows` (uint8 ``(T, 3, H, W)``)."""
    from PIL import Image, ImageDraw

    label_w = 150
    first = next(iter(rows.values()))
    h, w = first.shape[-2:]
    sheet = Image.new("RGB", (label_w + w * len(columns), (h + 2) * len(rows) + 14), "white")
    draw = ImageDraw.Draw(sheet)
    for j, c in enumerate(columns):
        draw.text((label_w + j * w + 4, 1), f"frame {c}", fill="black")
    for i, (name, video) in enumerate(rows.items()):
        y = 14 + i * (h + 2)
        draw.text((4, y + h // 2 - 6), name[:24], fill="black")
        for j, c in enumerate(columns):
            sheet.paste(Image.fromarray(video[c].permute(1, 2, 0).numpy()), (label_w + j * w, y))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # 256 colours keep a docs image small (< 300 KB); token-sized blocks stay plainly visible.
    sheet.quantize(colors=256, dither=Image.Dither.NONE).save(out, optimize=True)
    return out


# --- the run -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="checkpoint folder (default: the bundled model)")
    p.add_argument("--corpus", help="corpus folder; one clip from each held-out video")
    p.add_argument("--clips", type=int, help="corpus clips in all (default: one per held-out video)")
    p.add_argument("--fps", type=float, default=8.0,
                   help="rate of the corpus clips (default 8, the bundled model's training rate; 0: native)")
    p.add_argument("--photos", type=int, default=2, help="scikit-image photos as extra references (default 2)")
    p.add_argument("--ref-positions", default="0,4", help="reference positions, comma-separated (default 0,4)")
    p.add_argument("--arms", help="only these arms (names of ARMS, separated by ';')")
    p.add_argument("--only-tasks", action="store_true", help="no image-to-video arm, only --tasks")
    p.add_argument("--tasks", action="store_true", help="also looping and expansion from 3 real frames, defaults")
    p.add_argument("--seed", type=int, default=0, help="seed of input k is seed + k, the same in every arm")
    p.add_argument("--no-flow", action="store_true", help="skip RIFE flow (motion columns n/a)")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--videos", help="save every video (uint8) to this .npz, keyed 'arm|input|ref'")
    p.add_argument("--sheet", help="write a contact sheet PNG: baseline vs the arm with the seam nearest 1")
    p.add_argument("--sheet-input", type=int, default=0, help="which input the sheet shows (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 photo, 3 arms at 2 steps, no corpus, no flow")
    args = p.parse_args(argv)

    start = time.perf_counter()
    torch.manual_seed(0)
    pipe = MarDiniPipeline.from_pretrained(args.checkpoint)
    cfg = pipe.config
    size, frames = cfg.height, cfg.num_frames
    grid = (cfg.vae_downsample * cfg.generator.patch_size, cfg.vae_downsample)
    # A planner token covers patch_size low-resolution latents, i.e. this many output pixels.
    planner_px = round(cfg.vae_downsample * cfg.planner.patch_size / cfg.low_res_factor)
    arms = QUICK_ARMS if args.quick else ARMS
    if args.arms:
        wanted = [a.strip() for a in args.arms.split(";")]
        arms = tuple(a for a in arms if a.name in wanted)
    if args.only_tasks:
        arms = ()
    positions = [int(x) for x in args.ref_positions.split(",")]
    inputs = load_inputs(None if args.quick else args.corpus, 1 if args.quick else args.photos, size, frames,
                         args.clips, args.fps or None)
    flow_fn: FlowFn | None = None
    if not (args.quick or args.no_flow):
        from mardini.evaluation.rife import RIFE

        rife = RIFE.load()
        flow_fn = lambda a, b: rife.flow(a, b).cpu()  # noqa: E731

    # Reference rows and each input's reference images, per reference position.
    cases: list[dict[str, Any]] = []
    for k, item in enumerate(inputs):
        for ref in positions:
            image = item["clip"][ref] if item["clip"] is not None else item["image"]
            cases.append({"input": k, "name": item["name"], "ref_index": ref, "image": image,
                          "real": item["clip"], "seed": args.seed + k})
    codec_images = {id(c): codec_round_trip(pipe, c["image"][None])[0] for c in cases}
    rows: dict[str, list[dict[str, Any]]] = {}
    kept: dict[str, dict[int, Tensor]] = {}
    seconds: dict[str, float] = {}

    def add(name: str, case: dict[str, Any], video: Tensor, generated: Sequence[int]) -> None:
        scores = video_scores(video, generated, case["image"], codec_images[id(case)], case["real"], flow_fn, grid,
                              planner_px)
        scores.update(ref_index=case["ref_index"], input=case["name"])
        if case["real"] is not None:
            scores["real_flow"] = real_flow[id(case)]
        rows.setdefault(name, []).append(scores)
        kept.setdefault(name, {})[cases.index(case)] = video

    real_flow: dict[int, float] = {}
    real_codec: dict[int, Tensor] = {}
    for case in cases:
        real = case["real"]
        if real is not None:
            if case["input"] not in real_codec:
                real_codec[case["input"]] = codec_round_trip(pipe, real)
            real_flow[id(case)] = (flow_magnitude(consecutive_flows(real, flow_fn)) if flow_fn is not None
                                   else math.nan)
        others = [i for i in range(frames) if i != case["ref_index"]]
        add("reference repeated", case, case["image"][None].repeat(frames, 1, 1, 1), others)
        add("codec round trip, repeated", case, codec_images[id(case)][None].repeat(frames, 1, 1, 1), others)
        if real is not None:
            add("real clip", case, real, others)
            add("real clip, codec round trip", case, real_codec[case["input"]], others)

    for arm in arms:
        t0 = time.perf_counter()
        for case in cases:
            video = generate(pipe, case["image"][None], [case["ref_index"]], frames, arm, case["seed"])
            add(arm.name, case, video, [i for i in range(frames) if i != case["ref_index"]])
        seconds[arm.name] = (time.perf_counter() - t0) / len(cases)
        print(f"{arm.name}: {seconds[arm.name]:.1f} s per video", flush=True)

    i2v_names = [a.name for a in arms]
    if args.tasks:
        # The tasks' own defaults: guidance 1 and the in-between steps for a loop, 2.5 and 25 for expansion.
        tasks = ((Arm("loop (defaults)", guidance=1.0, steps=None), "loop"),
                 # The in-betweens from pure noise, as stage 2 trained them: is the mosaic i2v's alone?
                 (Arm("loop, no prior, 25 steps", guidance=1.0, steps=25, prior="none"), "loop"),
                 (Arm("expand from 3 (defaults)", guidance=2.5, steps=None), "expand"))
        arms = (*arms, *(arm for arm, _ in tasks))
        for arm, kind in tasks:
            name = arm.name
            t0, done = time.perf_counter(), 0
            for case in cases:
                if kind == "loop" and case["ref_index"] == 0:
                    video = generate(pipe, case["image"][None].repeat(2, 1, 1, 1), [0, frames - 1], frames, arm,
                                     case["seed"])
                    add(name, case, video, list(range(1, frames - 1)))
                elif kind == "expand" and case["ref_index"] == 0 and case["real"] is not None:
                    video = generate(pipe, case["real"][:3], [0, 1, 2], frames, arm, case["seed"])
                    add(name, case, video, list(range(3, frames)))
                else:
                    continue
                done += 1
            seconds[name] = (time.perf_counter() - t0) / max(done, 1)

    by_name = {a.name: a for a in arms}
    report: dict[str, Any] = {
        "checkpoint": args.checkpoint or "bundled", "config_attention": cfg.generator.attention,
        "config_prior": cfg.diffusion.prior,
        "grid": {"token_px": grid[0], "block_px": grid[1], "planner_px": planner_px}, "size": size, "frames": frames,
        "ref_positions": positions, "fps": args.fps or "native", "inputs": [i["name"] for i in inputs],
        "seed": args.seed,
        "rife": flow_fn is not None, "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}", "rows": {},
    }
    for name, scores in rows.items():
        row = summarise(scores)
        if name in by_name:
            row["arm"] = asdict(by_name[name])
        if name in seconds:
            row["seconds_per_video"] = seconds[name]
        row["per_video"] = scores
        report["rows"][name] = row
    report["wall_s"] = time.perf_counter() - start
    table = markdown(report)
    report["table"] = table
    print(table)
    print(f"\nwall time {report['wall_s']:.0f} s")

    if args.sheet:
        # Best: the image-to-video arm whose seam is nearest 1 (the sheet shows what that costs).
        generated = [n for n in i2v_names if n != "baseline" and n in report["rows"]]
        best = min(generated, key=lambda n: abs(report["rows"][n]["seam"] - 1.0)) if generated else None
        index = min(args.sheet_input, len(cases) - 1)
        names = ["codec round trip, repeated", "baseline"] + ([best] if best else [])
        if cases[index]["real"] is not None:
            names.insert(1, "real clip")
        shown = {f"{n} ({report['rows'][n]['seam']:.2f})" if n in by_name else n: kept[n][index]
                 for n in names if n in kept}
        report["sheet"] = {"path": str(contact_sheet(shown, args.sheet, [0, 1, 2, 4, frames - 1])),
                           "input": cases[index]["name"], "ref_index": cases[index]["ref_index"], "best": best}
    if args.videos:
        np.savez_compressed(args.videos, **{f"{n}|{cases[i]['name']}|{cases[i]['ref_index']}": v.numpy()
                                            for n, videos in kept.items() for i, v in videos.items()})
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return report


if __name__ == "__main__":
    main()
