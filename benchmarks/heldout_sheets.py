"""Contact sheets of checkpoints side by side on clips of a corpus's held-out videos, to look at.

Numbers reward blur; the eye catches tiles, ghosts, colour shifts and stills that should move.
For each of ``--clips`` held-out clips (9 frames at each video's native rate, 128 px, taken as
``heldout_acceptance.py`` takes its generation clips: `mardini.evaluation.given_frames.real_clips`)
one block of rows: the real frames, then each checkpoint's video for ``--task`` with its own
defaults (steps, guidance, sampler), seed = clip index. Frames run left to right; one PNG.

    python benchmarks/heldout_sheets.py --data CORPUS --checkpoint OLD --checkpoint NEW \\
        --task i2v --out docs/sheet.png [--clips 4] [--ref-index 0]

Tasks: ``i2v`` (the frame ``--ref-index`` given), ``interpolate`` (first and last given),
``loop`` (frame 0 given, the last made equal to it), ``expand`` (the first 3 given).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

FRAMES = 9
TASKS = ("i2v", "interpolate", "loop", "expand")


def generate(pipe, task: str, clip: np.ndarray, seed: int, ref_index: int = 0) -> np.ndarray:  # noqa: ANN001
    """``task`` on one real clip (T, H, W, 3) uint8 with the pipeline's defaults: (T, H, W, 3) uint8."""
    from mardini import tasks

    size = clip.shape[1]
    common = {"seed": seed, "height": size, "width": size, "progress": False}
    if task == "i2v":
        out = tasks.image_to_video(pipe, clip[ref_index], FRAMES, ref_index=ref_index, **common)
    elif task == "interpolate":
        out = tasks.interpolate(pipe, clip[0], clip[-1], FRAMES, **common)
    elif task == "loop":
        out = tasks.loop(pipe, clip[0], FRAMES, **common)
    elif task == "expand":
        out = tasks.expand(pipe, list(clip[:3]), FRAMES, **common)
    else:
        raise ValueError(f"unknown task '{task}'; use one of {TASKS}")
    return out.frames[0]


def sheet(data: str, checkpoints: list[str], task: str, clips: int = 4, ref_index: int = 0,
          size: int = 128) -> tuple[np.ndarray, list[str]]:
    """The sheet (rows: per clip the real frames then each checkpoint) and one label per row."""
    from mardini import MarDiniPipeline
    from mardini.evaluation.given_frames import real_clips
    from mardini.io import contact_sheet

    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; use one of {TASKS}")
    if not 0 <= ref_index < FRAMES:
        raise ValueError(f"--ref-index must be a frame of the {FRAMES}-frame clip (0..{FRAMES - 1}), got {ref_index}")
    pipes = [MarDiniPipeline.from_pretrained(c) for c in checkpoints]
    names, real, _, _ = real_clips(data, FRAMES, size, clips, (0.0, 1.0), None, "heldout")
    if not real:
        raise ValueError(f"no clip in the held-out videos of {data}")
    rows, labels = [], []
    for index, (name, clip) in enumerate(zip(names, real)):
        frames = clip.permute(0, 2, 3, 1).numpy()
        rows.append(frames)
        labels.append(f"{name}: real")
        for checkpoint, pipe in zip(checkpoints, pipes):
            rows.append(generate(pipe, task, frames, index, ref_index))
            labels.append(f"{name}: {Path(checkpoint).name}")
    return contact_sheet(np.concatenate(rows), columns=FRAMES), labels


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="corpus folder; its heldout split is used")
    parser.add_argument("--checkpoint", action="append", required=True, help="checkpoint folder (repeatable)")
    parser.add_argument("--task", default="i2v", choices=TASKS)
    parser.add_argument("--out", required=True, type=Path, help="PNG to write (a .txt of row labels beside it)")
    parser.add_argument("--clips", type=int, default=4, help="held-out clips (default 4, spread over the videos)")
    parser.add_argument("--ref-index", type=int, default=0, help="i2v: the given frame (default 0)")
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    try:
        image, labels = sheet(args.data, args.checkpoint, args.task, args.clips, args.ref_index, args.size)
    except (ValueError, FileNotFoundError) as err:
        print(f"heldout_sheets: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(args.out)
    args.out.with_suffix(".txt").write_text("rows, top to bottom:\n" + "\n".join(labels) + "\n")
    print(f"wrote {args.out} ({len(labels)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
