"""How a clip is cut from a source: frames at a target fps, a crop, and the two resolutions.

Every dataset in :mod:`mardini.data` shares these rules, so a video file, a folder of frames and
a photo animated by a virtual camera all yield the same kind of item::

    {"high": (K, 3, H, W), "low": (K, 3, h, w), "source": str, "start": float}

with both tensors float32 in [-1, 1] showing the *same* frames and the same crop (the planner's
low-resolution view and the generator's high-resolution view of section 2.2).

Temporal rules (:func:`temporal_stride`, :func:`frame_window`):

* The clip takes ``K`` frames ``round(k * native_fps / fps)`` apart (a fractional stride is
  rounded per frame, so 29.97 fps -> 8 fps takes frames 0, 4, 7, 11, ... and keeps the true rate
  on average). A source slower than ``fps`` is read at its native rate: frames are never
  duplicated to fake a higher rate.
* If the source's usable window is too short for ``K`` frames at ``fps`` but holds ``K`` frames,
  the clip falls back to the native rate; with fewer than ``K`` frames the source is "too short".
* ``time_range=(lo, hi)`` keeps the frames whose index lies in ``[round(lo * N), round(hi * N))``
  of a source's ``N`` frames. Adjacent ranges such as (0, 0.8) and (0.8, 1) share the boundary
  formula, so they never share a frame: train on one, evaluate on the other.

Spatial rules (:func:`sample_crop_box`): the largest crop with the target aspect ratio is the
reference; training takes a random crop of ``scale`` (a fraction of that crop's *area*) at a
random place, evaluation takes the full centred crop. The crop is then resized, with
antialiasing, to ``(H, W)`` and, separately from the same pixels, to ``(h, w)``.

Determinism: each item's random draws come from ``rng_for(seed, epoch, index)``, so an item
depends on nothing but those three numbers (not on worker processes or call order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mardini.config import MarDiniConfig


@dataclass(frozen=True)
class ClipSampling:
    """What every clip looks like: frame count, fps, sizes, crop scale and train/eval mode.

    Attributes:
        num_frames: frames per clip (K).
        height, width: high-resolution frame size (the generator's input), in pixels.
        low_size: (h, w) of the low-resolution copy (the planner's input). ``None`` uses
            ``MarDiniConfig.low_resolution(height, width)`` of the default config (half size,
            rounded to a multiple of 16).
        fps: target frame rate; ``None`` reads every source at its native rate.
        scale: range of the random crop's area as a fraction of the largest crop with the
            target aspect ratio (training only).
        train: random start and crop when true; evenly spaced starts and a centre crop (no
            randomness at all) when false.
    """

    num_frames: int = 9
    height: int = 256
    width: int = 256
    low_size: tuple[int, int] | None = None
    fps: float | None = 8.0
    scale: tuple[float, float] = (0.5, 1.0)
    train: bool = True
    # Filled in from low_size (or the default low resolution) by __post_init__.
    low_height: int = field(init=False)
    low_width: int = field(init=False)

    def __post_init__(self) -> None:
        for name in ("num_frames", "height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ClipSampling.{name} must be a positive integer; got {value!r}")
        if self.fps is not None and (not isinstance(self.fps, (int, float)) or not self.fps > 0):
            raise ValueError(f"ClipSampling.fps must be a positive number or None (native rate); got {self.fps!r}")
        lo, hi = _pair(self.scale, "ClipSampling.scale")
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"ClipSampling.scale must satisfy 0 < low <= high <= 1 (area fractions); "
                             f"got {self.scale!r}")
        object.__setattr__(self, "scale", (float(lo), float(hi)))
        low = self.low_size
        if low is None:
            low = MarDiniConfig().low_resolution(self.height, self.width)
        lh, lw = _pair(low, "ClipSampling.low_size")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (lh, lw)):
            raise ValueError(f"ClipSampling.low_size must be two positive integers (h, w); got {low!r}")
        object.__setattr__(self, "low_size", (lh, lw))
        object.__setattr__(self, "low_height", lh)
        object.__setattr__(self, "low_width", lw)

    @classmethod
    def from_config(cls, config: MarDiniConfig, **overrides: object) -> "ClipSampling":
        """Sampling matching a model config: its frame count, size and low resolution.

        ``overrides`` replace any field (e.g. ``fps=4.0``, ``train=False``).
        """
        values: dict[str, object] = {
            "num_frames": config.num_frames, "height": config.height, "width": config.width,
            "low_size": config.low_resolution(config.height, config.width),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def shape_key(self) -> tuple[int, int, int, int, int]:
        """(K, H, W, h, w): datasets with equal keys yield stackable items."""
        return (self.num_frames, self.height, self.width, self.low_height, self.low_width)


@dataclass(frozen=True)
class ClipPlan:
    """Everything decided about one clip before any pixel is read.

    Attributes:
        source: index of the source in its dataset.
        name: the source's name (path), as reported in items.
        indices: frame indices to read, in the source's own numbering.
        start: time of the first frame in seconds from the start of the source.
        box: crop (top, left, height, width) in pixels of a ``frame_size`` frame.
        frame_size: (height, width) the box refers to (the probed frame size).
    """

    source: int
    name: str
    indices: tuple[int, ...]
    start: float
    box: tuple[int, int, int, int]
    frame_size: tuple[int, int]


def rng_for(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of item ``index`` of ``epoch``: independent streams for every triple."""
    return np.random.default_rng(np.random.SeedSequence(_nonneg(seed, "seed"),
                                                        spawn_key=(0, _nonneg(epoch, "epoch"), index)))


def mixture_weights(weights: Sequence[float] | None, parts: int, clips_per_epoch: int | None) -> list[float]:
    """A mixture's weights normalised to sum 1 (equal when None), after checking them and the
    epoch length (None or a positive integer); ``ValueError`` names what is wrong."""
    if parts < 1:
        raise ValueError("a mixture needs at least one part")
    values = [1.0] * parts if weights is None else [float(w) for w in weights]
    if len(values) != parts or any(not (w >= 0 and math.isfinite(w)) for w in values) or sum(values) <= 0:
        raise ValueError(f"mixture weights must be {parts} non-negative numbers with a positive sum; got {weights}")
    if clips_per_epoch is not None and (not isinstance(clips_per_epoch, int) or clips_per_epoch < 1):
        raise ValueError(f"clips_per_epoch must be a positive integer or None; got {clips_per_epoch!r}")
    return [w / sum(values) for w in values]


def check_time_range(time_range: Sequence[float]) -> tuple[float, float]:
    """Validate ``(lo, hi)`` with ``0 <= lo < hi <= 1`` and return it as floats."""
    lo, hi = _pair(time_range, "time_range")
    if not (isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and 0.0 <= lo < hi <= 1.0):
        raise ValueError(f"time_range must be (lo, hi) fractions with 0 <= lo < hi <= 1, e.g. (0.0, 0.8); "
                         f"got {time_range!r}")
    return float(lo), float(hi)


def frame_window(first: int, end: int, time_range: tuple[float, float]) -> tuple[int, int]:
    """The frames ``[a, b)`` of the segment ``[first, end)`` that lie in ``time_range``.

    Rounding the same formula at both ends is what keeps adjacent ranges disjoint.
    """
    length = max(0, end - first)
    lo, hi = time_range
    return first + round(lo * length), first + round(hi * length)


def temporal_stride(native_fps: float, fps: float | None, available: int, num_frames: int) -> float | None:
    """Frame step that gives ``fps`` from a ``native_fps`` source, or ``None`` if too short.

    Falls back to the native rate (step 1) when ``available`` frames cannot hold ``num_frames``
    at ``fps`` but can at the native rate. Never below 1: slow sources are not upsampled.
    """
    if available < num_frames:
        return None
    stride = 1.0 if fps is None else max(1.0, native_fps / fps)
    if round((num_frames - 1) * stride) + 1 > available:
        stride = 1.0
    return stride


def clip_indices(start: int, stride: float, num_frames: int) -> tuple[int, ...]:
    """``num_frames`` indices from ``start``, ``stride`` apart (rounded per frame)."""
    return tuple(start + round(k * stride) for k in range(num_frames))


def pick_source(index: int, length: int, count: int, train: bool,
                rng: np.random.Generator) -> tuple[int, float]:
    """Which of ``count`` sources item ``index`` of an epoch of ``length`` items shows, and where.

    Returns ``(source, position)``; ``position`` in (0, 1) places an evaluation clip in its
    window. With at least one item per source, item ``i`` shows source ``i % count`` (every
    source once per round) and the rounds of a source are spread evenly over its window. With
    fewer items than sources, training picks a random source (all get used over the epochs) and
    evaluation a fixed, evenly spread subset.
    """
    if length >= count:
        return index % count, (index // count + 0.5) / math.ceil(length / count)
    if train:
        return int(rng.integers(count)), 0.5
    return index * count // length, 0.5


def choose_start(window: tuple[int, int], stride: float, num_frames: int, train: bool,
                 rng: np.random.Generator, position: float) -> int:
    """First frame of a clip inside ``window``: uniform when training, else at ``position``.

    ``position`` in [0, 1] places evaluation clips deterministically (0.5 = the middle).
    """
    a, b = window
    last_start = b - 1 - round((num_frames - 1) * stride)
    if last_start < a:
        raise ValueError(f"window {window} cannot hold {num_frames} frames at stride {stride}")
    if train:
        return int(rng.integers(a, last_start + 1))
    return a + round((last_start - a) * min(max(position, 0.0), 1.0))


def sample_crop_box(frame_size: tuple[int, int], out_size: tuple[int, int], scale: tuple[float, float],
                    train: bool, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Crop ``(top, left, height, width)`` of a frame: random-resized when training, else centred.

    The crop always has the aspect ratio of ``out_size`` (up to rounding), so resizing it never
    distorts the picture. Its area is a ``scale`` fraction of the largest such crop.
    """
    fh, fw = frame_size
    oh, ow = out_size
    # Largest crop with the output's aspect ratio that fits in the frame.
    if fw * oh >= fh * ow:
        max_h, max_w = float(fh), fh * ow / oh
    else:
        max_h, max_w = fw * oh / ow, float(fw)
    if train:
        side = math.sqrt(rng.uniform(scale[0], scale[1]))
        fy, fx = rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)
    else:
        side, fy, fx = 1.0, 0.5, 0.5
    ch = min(fh, max(1, round(max_h * side)))
    cw = min(fw, max(1, round(max_w * side)))
    return round((fh - ch) * fy), round((fw - cw) * fx), ch, cw


def rescale_box(box: tuple[int, int, int, int], planned: tuple[int, int],
                actual: tuple[int, int]) -> tuple[int, int, int, int]:
    """Map a crop box planned for one frame size onto frames that turned out another size."""
    if planned == actual:
        return box
    sy, sx = actual[0] / planned[0], actual[1] / planned[1]
    top, left, h, w = box
    h2, w2 = max(1, min(actual[0], round(h * sy))), max(1, min(actual[1], round(w * sx)))
    return min(round(top * sy), actual[0] - h2), min(round(left * sx), actual[1] - w2), h2, w2


def resize_frames(frames: np.ndarray | Tensor, size: tuple[int, int]) -> Tensor:
    """uint8 frames (K, H0, W0, 3) -> float32 (K, 3, H, W) in [-1, 1], antialiased bilinear.

    Frame by frame, so a clip of 4K frames never holds K full-size float copies at once.
    """
    out = []
    for frame in frames:
        if isinstance(frame, np.ndarray):  # PIL / PyAV arrays may be read-only; torch wants writable
            frame = np.ascontiguousarray(frame) if frame.flags.writeable else np.array(frame)
        x = torch.as_tensor(frame)
        x = x.permute(2, 0, 1)[None].float()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out.append(x[0])
    return (torch.stack(out) / 127.5 - 1.0).clamp_(-1.0, 1.0)


def crop_and_resize(frames: np.ndarray, box: tuple[int, int, int, int], sampling: ClipSampling) -> tuple[Tensor, Tensor]:
    """Crop uint8 frames (K, H0, W0, 3) to ``box`` and return the (high, low) float clips."""
    top, left, h, w = box
    crop = frames[:, top:top + h, left:left + w]
    return (resize_frames(crop, (sampling.height, sampling.width)),
            resize_frames(crop, (sampling.low_height, sampling.low_width)))


def _pair(value: object, name: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of two values; got {value!r}")
    return tuple(value)


def _nonneg(value: int, name: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    return int(value)
