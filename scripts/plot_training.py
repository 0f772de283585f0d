"""Plot the loss curves of training runs (their ``metrics.jsonl``) into one PNG.

Each run gets its own panel: the logged loss (faint) and a moving average (bold) against the
optimizer step, with the run's wall time in the title. Works for ``mardini train`` and
``mardini train-vae`` runs alike; the autoencoder panel also shows its training-batch PSNR, and a
``mardini train`` run with ``sample_every`` its preview scores (``preview_seam``,
``preview_sharpness``: 1 = as real) on a second axis.

Usage::

    python scripts/plot_training.py runs/vae runs/stage1a runs/stage1b runs/stage2 runs/stage3 \\
        --out docs/training_loss.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def read_metrics(run: Path) -> list[dict]:
    """The JSON lines of ``run/metrics.jsonl`` (a clear error when it is missing)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{run} has no metrics.jsonl; pass the --out folder of a `mardini train(-vae)` run")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def split_records(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """``(loss records, preview-score records)``: a preview's scores are a record of their own
    (``step`` and ``preview_*`` keys, no loss), written when `sample_every` makes a preview."""
    losses = [r for r in records if "loss" in r]
    previews = [r for r in records if "loss" not in r and any(k.startswith("preview_") for k in r)]
    return losses, previews


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first points average what exists)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def wall_time(records: list[dict]) -> float:
    """Seconds spanned by the logged records (resumed runs: the sum of the gap-free segments)."""
    times = [r["time"] for r in records if "time" in r]
    gaps = [b - a for a, b in zip(times, times[1:]) if 0 <= b - a < 600]
    return sum(gaps)


def plot(runs: list[Path], out: Path, window: int = 25) -> None:
    """Write one panel per run into ``out`` (PNG)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plotting needs matplotlib: pip install matplotlib") from None
    cols = min(3, len(runs))
    rows = math.ceil(len(runs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs):
        records, previews = split_records(read_metrics(run))
        if not records:
            raise SystemExit(f"{run}/metrics.jsonl has no loss records")
        steps = [r["step"] for r in records]
        loss = [r["loss"] for r in records]
        ax.plot(steps, loss, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(steps, moving_average(loss, window), color="tab:blue", linewidth=1.6, label="loss")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{run.name}  ({wall_time(records) / 60:.0f} min)")
        ax.grid(alpha=0.3)
        if "psnr" in records[0]:  # the autoencoder: batch PSNR on a second axis
            twin = ax.twinx()
            twin.plot(steps, moving_average([r["psnr"] for r in records], window), color="tab:orange",
                      linewidth=1.2, label="batch PSNR (dB)")
            twin.set_ylabel("PSNR (dB)", color="tab:orange")
        elif previews:  # the generator's previews: token-grid seam and sharpness, both 1 when as real
            twin = ax.twinx()
            for key, colour in (("preview_seam", "tab:red"), ("preview_sharpness", "tab:green")):
                points = [(r["step"], r[key]) for r in previews if key in r]
                if points:
                    twin.plot(*zip(*points), color=colour, marker="o", markersize=3, linewidth=1.0,
                              label=key.removeprefix("preview_"))
            twin.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
            twin.set_ylabel("preview seam / sharpness (1 = as real)")
            twin.legend(loc="upper right", fontsize=7)
        ax.set_ylabel("loss (log)")
    for ax in list(axes.flat)[len(runs):]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with metrics.jsonl)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--window", type=int, default=25, help="moving-average window in logged points")
    args = parser.parse_args(argv)
    plot(args.runs, args.out, args.window)
    return 0


if __name__ == "__main__":
    sys.exit(main())
