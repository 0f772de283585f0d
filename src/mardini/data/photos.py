"""Realistic clips from still photos: a virtual camera pans, zooms and rotates over a photo.

Each photo gives ``videos_per_photo`` *virtual videos*. A virtual video is ``duration`` seconds
at ``native_fps`` and is fixed by ``(seed, video number)`` alone: a camera path and, sometimes,
a foreground layer. Clips are then cut from it exactly as from a real video (same fps stride,
``time_range`` window and random start; see :mod:`mardini.data.sampling`), so ``time_range``
holds out the end of every virtual video just as it does for real footage.

Camera path: a few keyframes (view size, tilt, position) joined by eased segments (smoothstep:
the camera accelerates and decelerates like a person or a dolly would). A path is a pan, a zoom,
a rotation or a combination. The view always stays inside the photo: its position is stored
relative to the room the current size and tilt leave, so no frame ever shows a border.

Foreground layer (parallax): a soft-edged elliptical cut-out of the photo moves faster than the
background (``parallax`` times the camera's translation and zoom, as a nearer object would),
plus a slow drift of its own; the hole it leaves in the background is filled with a blurred
copy of the photo. Both layers are drawn with ``F.affine_grid`` / ``F.grid_sample`` (bilinear)
from a copy of the photo pre-shrunk with antialiasing, so frames are sharp and alias-free.
The low-resolution clip is the high-resolution clip resized with antialiasing.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .datasets import EpochDataset, Item, NoUsableVideoError, VideoSkippedWarning
from .sampling import (ClipPlan, ClipSampling, check_time_range, choose_start, clip_indices, frame_window,
                       pick_source, resize_frames, rng_for, temporal_stride)

#: scikit-image's bundled photographs used by ``{"kind": "photos", "source": "skimage"}``.
SKIMAGE_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "camera")

_STYLES = ("pan", "zoom", "rotate", "pan+zoom", "pan+rotate", "pan+zoom+rotate")
_STYLE_WEIGHTS = (0.3, 0.2, 0.1, 0.2, 0.1, 0.1)

PhotoInput = str | os.PathLike | np.ndarray | tuple[str, np.ndarray]


def skimage_photos(names: Sequence[str] = SKIMAGE_PHOTOS) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 RGB array)`` for photos bundled with scikit-image (no download).

    ``motorcycle`` is the left view of ``skimage.data.stereo_motorcycle``; grey photos such as
    ``camera`` are repeated to three channels.
    """
    import skimage.data

    photos = []
    for name in names:
        if name == "motorcycle":
            image = skimage.data.stereo_motorcycle()[0]
        elif hasattr(skimage.data, name):
            image = getattr(skimage.data, name)()
        else:
            raise ValueError(f"scikit-image has no bundled photo {name!r}; try one of {', '.join(SKIMAGE_PHOTOS)}")
        photos.append((name, to_rgb_uint8(image, name)))
    return photos


def to_rgb_uint8(image: np.ndarray, name: str = "photo") -> np.ndarray:
    """An image array (H, W), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1], as uint8 RGB."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{name}: expected an image array (H, W), (H, W, 3) or (H, W, 4); got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"{name}: unsupported image dtype {image.dtype}; use uint8 or float in [0, 1]")


@dataclass(frozen=True)
class Foreground:
    """The parallax layer of a virtual video (photo pixel units, origin at the photo's centre)."""

    centre: tuple[float, float]
    radii: tuple[float, float]
    power: float  # superellipse exponent: 2 = ellipse, larger = squarer
    parallax: float  # how much faster than the background it moves (1 = not at all)
    drift: tuple[float, float]  # its own displacement over the whole virtual video


@dataclass(frozen=True)
class CameraPath:
    """Keyframes of a virtual camera, joined by smoothstep-eased segments."""

    times: np.ndarray  # (m + 1,) seconds, from 0 to the duration
    log_side: np.ndarray  # (m + 1,) log of the view's side as a fraction of the largest view
    angle: np.ndarray  # (m + 1,) tilt in radians
    rho: np.ndarray  # (m + 1, 2) position relative to the room left inside the photo, in [-1, 1]
    style: str
    foreground: Foreground | None

    def at(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(log side, angle, rho) at times ``t`` (n,): eased interpolation between keyframes."""
        i = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2)
        p = np.clip((t - self.times[i]) / (self.times[i + 1] - self.times[i]), 0.0, 1.0)
        e = p * p * (3.0 - 2.0 * p)  # zero velocity at keyframes: no jerky starts or stops

        def lerp(v: np.ndarray) -> np.ndarray:
            ee = e.reshape(-1, *([1] * (v.ndim - 1)))
            return v[i] + (v[i + 1] - v[i]) * ee

        return lerp(self.log_side), lerp(self.angle), lerp(self.rho)


class PhotoMotionDataset(EpochDataset):
    """Clips of virtual camera moves over still photos (see the module docstring).

    Args:
        photos: image paths, uint8/float arrays, or ``(name, array)`` pairs.
        sampling: clip length, fps, sizes and mode; ``sampling.scale`` bounds the view's area as
            a fraction of the largest view of the photo (the zoom range).
        time_range: fraction of every virtual video that clips may use.
        seed: fixes the virtual videos and, with the epoch, every clip.
        clips_per_epoch: epoch length; default ``len(photos) * videos_per_photo``.
        videos_per_photo: virtual videos per photo (different camera paths).
        duration: length of a virtual video in seconds.
        native_fps: frame rate of the virtual videos.
        max_rotation: largest camera tilt in degrees.
        parallax_prob: share of virtual videos with a moving foreground layer.
    """

    def __init__(self, photos: Sequence[PhotoInput], sampling: ClipSampling | None = None, *,
                 time_range: Sequence[float] = (0.0, 1.0), seed: int = 0, clips_per_epoch: int | None = None,
                 videos_per_photo: int = 64, duration: float = 6.0, native_fps: float = 24.0,
                 max_rotation: float = 8.0, parallax_prob: float = 0.6) -> None:
        super().__init__(seed)
        self.sampling = sampling if sampling is not None else ClipSampling()
        self.time_range = check_time_range(time_range)
        if not isinstance(videos_per_photo, int) or videos_per_photo < 1:
            raise ValueError(f"videos_per_photo must be a positive integer; got {videos_per_photo!r}")
        if not (duration > 0 and native_fps > 0 and max_rotation >= 0 and 0 <= parallax_prob <= 1):
            raise ValueError("PhotoMotionDataset needs duration > 0, native_fps > 0, max_rotation >= 0 and "
                             f"0 <= parallax_prob <= 1; got {duration}, {native_fps}, {max_rotation}, {parallax_prob}")
        if clips_per_epoch is not None and (not isinstance(clips_per_epoch, int) or clips_per_epoch < 1):
            raise ValueError(f"clips_per_epoch must be a positive integer or None; got {clips_per_epoch!r}")
        self.videos_per_photo, self.duration, self.native_fps = videos_per_photo, float(duration), float(native_fps)
        self.max_rotation, self.parallax_prob = math.radians(max_rotation), float(parallax_prob)
        self.clips_per_epoch = clips_per_epoch
        self.skipped: list[tuple[str, str]] = []
        self.names: list[str] = []
        self._images: list[Tensor] = []  # (3, Hp, Wp) in [-1, 1], pre-shrunk for this sampling
        for i, photo in enumerate(photos):
            try:
                name, array = _load_photo(photo, i)
            except Exception as e:  # unreadable image: skip it like an unreadable video
                name = str(photo) if isinstance(photo, (str, os.PathLike)) else f"photo {i}"
                self.skipped.append((name, f"{type(e).__name__}: {e}"))
                warnings.warn(f"skipping {name}: {type(e).__name__}: {e}", VideoSkippedWarning, stacklevel=2)
                continue
            self.names.append(name)
            self._images.append(self._prepare(array))
        if not self._images:
            raise NoUsableVideoError("no usable photo: " + ("; ".join(f"{n}: {r}" for n, r in self.skipped)
                                                            or "the photo list is empty"))
        frames = round(self.duration * self.native_fps)
        self._window = frame_window(0, frames, self.time_range)
        stride = temporal_stride(self.native_fps, self.sampling.fps, self._window[1] - self._window[0],
                                 self.sampling.num_frames)
        if stride is None:
            raise ValueError(f"virtual videos of {self.duration}s at {self.native_fps} fps leave "
                             f"{self._window[1] - self._window[0]} frames in time_range {self.time_range}, "
                             f"fewer than num_frames={self.sampling.num_frames}; raise duration")
        self._stride = stride

    @property
    def num_videos(self) -> int:
        """Number of distinct virtual videos (photos x videos_per_photo)."""
        return len(self._images) * self.videos_per_photo

    def __len__(self) -> int:
        return self.clips_per_epoch if self.clips_per_epoch is not None else self.num_videos

    def camera_path(self, video: int) -> CameraPath:
        """The camera path (and foreground layer) of virtual video ``video``; fixed by the seed."""
        photo = self._images[video % len(self._images)]
        rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(1, video)))
        return _random_path(rng, tuple(photo.shape[-2:]), (self.sampling.height, self.sampling.width),
                            self.duration, self.sampling.scale, self.max_rotation, self.parallax_prob)

    def plan(self, index: int | tuple[int, int]) -> ClipPlan:
        """Which virtual video and frames item ``index`` shows (``box`` is the whole photo)."""
        epoch, i = self._resolve(index)
        return self._plan(i, rng_for(self.seed, epoch, i))

    def _plan(self, index: int, rng: np.random.Generator) -> ClipPlan:
        video, position = pick_source(index, len(self), self.num_videos, self.sampling.train, rng)
        start = choose_start(self._window, self._stride, self.sampling.num_frames, self.sampling.train, rng, position)
        size = tuple(self._images[video % len(self._images)].shape[-2:])
        return ClipPlan(source=video, name=self._video_name(video),
                        indices=clip_indices(start, self._stride, self.sampling.num_frames),
                        start=start / self.native_fps, box=(0, 0, *size), frame_size=size)  # type: ignore[arg-type]

    def clip(self, index: int, rng: np.random.Generator) -> Item:
        plan = self._plan(index, rng)
        photo = self._images[plan.source % len(self._images)]
        path = self.camera_path(plan.source)
        times = np.asarray(plan.indices, dtype=np.float64) / self.native_fps
        high = render(photo, path, times, (self.sampling.height, self.sampling.width))
        low = F.interpolate(high, size=(self.sampling.low_height, self.sampling.low_width), mode="bilinear",
                            antialias=True, align_corners=False).clamp_(-1.0, 1.0)
        return {"high": high, "low": low, "source": plan.name, "start": plan.start}

    def _video_name(self, video: int) -> str:
        return f"photo:{self.names[video % len(self._images)]}#{video // len(self._images)}"

    def _prepare(self, array: np.ndarray) -> Tensor:
        """Shrink a photo (antialiased) to the detail the smallest view at (H, W) can show."""
        h, w = array.shape[:2]
        out_h, out_w = self.sampling.height, self.sampling.width
        max_view_h = h if w * out_h >= h * out_w else w * out_h / out_w
        # The smallest view is sqrt(scale_lo) of the largest; 1.5x headroom for the foreground's
        # extra zoom and for rotation.
        factor = min(1.0, 1.5 * out_h / (max_view_h * math.sqrt(self.sampling.scale[0])))
        size = (max(2, round(h * factor)), max(2, round(w * factor)))
        return resize_frames(array[None], size)[0]


def render(photo: Tensor, path: CameraPath, times: np.ndarray, size: tuple[int, int]) -> Tensor:
    """Frames (len(times), 3, H, W) of ``path`` over ``photo`` (3, Hp, Wp) in [-1, 1]."""
    hp, wp = photo.shape[-2:]
    n = len(times)
    half = np.array([wp / 2.0, hp / 2.0])
    linear, centre = _camera(path, times, (hp, wp), size)
    theta = _theta(linear, centre, half)
    grid = F.affine_grid(theta, [n, 3, *size], align_corners=False)
    image = photo[None]
    fg = path.foreground
    if fg is None:
        return F.grid_sample(image.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False).clamp_(-1.0, 1.0)
    mask = _layer_mask(fg, (hp, wp))[None, None]
    # Fill the layer's hole in the background with a blurred photo, so when the layer moves it
    # uncovers smooth colour instead of a duplicate of itself.
    small = F.interpolate(image, size=(max(1, hp // 16), max(1, wp // 16)), mode="area")
    blurred = F.interpolate(small, size=(hp, wp), mode="bilinear", align_corners=False)
    background = image * (1 - mask) + blurred * mask
    bg = F.grid_sample(background.expand(n, -1, -1, -1), grid, mode="bilinear", padding_mode="reflection",
                       align_corners=False)
    # The layer maps through X' = f + k (X - f) + (parallax - 1)(c - c0) + drift(t): it zooms
    # k = (side / side0)^(parallax - 1) and translates (parallax - 1) x more than the background.
    c0 = _camera(path, np.zeros(1), (hp, wp), size)[1][0]
    log_side, _, _ = path.at(times)
    k = np.exp((log_side - path.log_side[0]) * (fg.parallax - 1.0))
    progress = np.clip(times / path.times[-1], 0.0, 1.0)
    ease = progress * progress * (3.0 - 2.0 * progress)
    f = np.array(fg.centre)
    fg_centre = (k[:, None] * centre + (1 - k[:, None]) * f + (fg.parallax - 1.0) * (centre - c0)
                 + ease[:, None] * np.array(fg.drift))
    grid_fg = F.affine_grid(_theta(linear * k[:, None, None], fg_centre, half), [n, 3, *size], align_corners=False)
    layer = F.grid_sample(image.expand(n, -1, -1, -1), grid_fg, mode="bilinear", padding_mode="border",
                          align_corners=False)
    alpha = F.grid_sample(mask.expand(n, -1, -1, -1), grid_fg, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    return (alpha * layer + (1 - alpha) * bg).clamp_(-1.0, 1.0)


def _camera(path: CameraPath, times: np.ndarray, photo_size: tuple[int, int],
            out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the 2x2 map from output coords in [-1, 1] to photo pixels, and the view centre."""
    hp, wp = photo_size
    hh_max, hw_max = _largest_view(photo_size, out_size)
    log_side, angle, rho = path.at(times)
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    side = np.minimum(np.exp(log_side), _side_max(angle, photo_size, out_size))
    hw, hh = side * hw_max, side * hh_max
    room_x = np.maximum(0.0, wp / 2.0 - (hw * cos + hh * sin))
    room_y = np.maximum(0.0, hp / 2.0 - (hw * sin + hh * cos))
    centre = rho * np.stack([room_x, room_y], axis=1)
    c, s = np.cos(angle), np.sin(angle)
    linear = np.stack([np.stack([c * hw, -s * hh], axis=1), np.stack([s * hw, c * hh], axis=1)], axis=1)
    return linear, centre


def _largest_view(photo_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[float, float]:
    """Half (height, width) in photo pixels of the largest untilted view with the output's aspect."""
    hp, wp = photo_size
    oh, ow = out_size
    if wp * oh >= hp * ow:
        return hp / 2.0, hp / 2.0 * ow / oh
    return wp / 2.0 * oh / ow, wp / 2.0


def _side_max(angle: np.ndarray | float, photo_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """Largest view side (fraction of the largest view) at tilt ``angle`` that stays inside the photo."""
    hp, wp = photo_size
    hh_max, hw_max = _largest_view(photo_size, out_size)
    cos, sin = np.abs(np.cos(angle)), np.abs(np.sin(angle))
    return np.minimum(wp / 2.0 / (hw_max * cos + hh_max * sin), hp / 2.0 / (hw_max * sin + hh_max * cos))


def _theta(linear: np.ndarray, centre: np.ndarray, half: np.ndarray) -> Tensor:
    """affine_grid matrices (n, 2, 3) from pixel-unit maps: divide rows by the photo half-size."""
    theta = np.concatenate([linear, centre[:, :, None]], axis=2) / half[None, :, None]
    return torch.as_tensor(theta, dtype=torch.float32)


def _layer_mask(fg: Foreground, photo_size: tuple[int, int]) -> Tensor:
    """Soft superellipse mask (Hp, Wp) of the foreground layer, feathered over ~15% of its radius."""
    hp, wp = photo_size
    y = torch.arange(hp, dtype=torch.float32) + 0.5 - hp / 2.0
    x = torch.arange(wp, dtype=torch.float32) + 0.5 - wp / 2.0
    dx = (x[None, :] - fg.centre[0]).abs() / fg.radii[0]
    dy = (y[:, None] - fg.centre[1]).abs() / fg.radii[1]
    r = (dx ** fg.power + dy ** fg.power) ** (1.0 / fg.power)
    return ((1.0 - r) / 0.15).clamp(0.0, 1.0)


def _random_path(rng: np.random.Generator, photo_size: tuple[int, int], out_size: tuple[int, int],
                 duration: float, scale: tuple[float, float], max_rotation: float,
                 parallax_prob: float) -> CameraPath:
    """Draw a camera path: a style, 1-3 eased segments, keyframe sizes/tilts/positions, a layer."""
    style = str(rng.choice(_STYLES, p=_STYLE_WEIGHTS))
    side_lo, side_hi = math.sqrt(scale[0]), math.sqrt(scale[1])
    if "zoom" in style and side_hi / side_lo < 1.1:
        style = style.replace("zoom", "pan") if "pan" not in style else style.replace("+zoom", "")
    if "rotate" in style and max_rotation <= 0:
        style = style.replace("rotate", "pan") if "pan" not in style else style.replace("+rotate", "")
    segments = int(rng.integers(1, 4))
    times = np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(segments, 4.0)))]) * duration
    times[-1] = duration
    n = segments + 1
    if "rotate" in style:
        angle = [rng.uniform(-max_rotation, max_rotation)]
        for _ in range(segments):
            angle.append(_far_value(rng, angle[-1], -max_rotation, max_rotation, 0.5 * max_rotation))
        angle_arr = np.array(angle)
    else:
        angle_arr = np.full(n, rng.uniform(-0.25, 0.25) * max_rotation)  # a slight fixed tilt
    # Tilted views must be smaller to fit; cap every keyframe by the largest tilt of the path (the
    # tilt never exceeds it between keyframes), or a zoom would be clamped flat and stand still.
    tilt_cap = float(_side_max(np.abs(angle_arr).max(), photo_size, out_size))
    # A pan needs room to move: keep its view at most 85% of the largest one when allowed.
    cap = min(side_hi, tilt_cap, 0.85 if "pan" in style else 1.0)
    lo = min(side_lo, 0.9 * cap)
    if "zoom" in style:
        log_lo, log_hi = math.log(lo), math.log(cap)
        log_side = [rng.uniform(log_lo, log_hi)]
        for _ in range(segments):
            log_side.append(_far_value(rng, log_side[-1], log_lo, log_hi, 0.4 * (log_hi - log_lo)))
        log_side_arr = np.array(log_side)
    else:
        log_side_arr = np.full(n, math.log(rng.uniform(lo, cap)))
    if "pan" in style:
        rho = [rng.uniform(-1.0, 1.0, 2)]
        for _ in range(segments):
            rho.append(np.array([_far_value(rng, v, -1.0, 1.0, 0.5) for v in rho[-1]]))
        rho_arr = np.stack(rho)
    else:
        rho_arr = np.repeat(rng.uniform(-0.5, 0.5, (1, 2)), n, axis=0)
    foreground = None
    if rng.uniform() < parallax_prob:
        hp, wp = photo_size
        short = min(hp, wp)
        foreground = Foreground(
            centre=(float(rng.uniform(-0.25, 0.25) * wp), float(rng.uniform(-0.25, 0.25) * hp)),
            radii=(float(rng.uniform(0.12, 0.28) * short), float(rng.uniform(0.12, 0.28) * short)),
            power=float(rng.uniform(2.0, 4.0)),
            parallax=float(rng.uniform(1.3, 2.2)),
            drift=(float(rng.uniform(-0.08, 0.08) * short), float(rng.uniform(-0.08, 0.08) * short)),
        )
    return CameraPath(times=times, log_side=log_side_arr, angle=angle_arr, rho=rho_arr, style=style,
                      foreground=foreground)


def _far_value(rng: np.random.Generator, previous: float, lo: float, hi: float, min_step: float) -> float:
    """A uniform value in [lo, hi] at least ``min_step`` from ``previous`` when there is room."""
    for _ in range(16):
        value = rng.uniform(lo, hi)
        if abs(value - previous) >= min_step:
            return float(value)
    # No room on a random draw: go to the farther end.
    return float(lo if previous - lo > hi - previous else hi)


def _load_photo(photo: PhotoInput, i: int) -> tuple[str, np.ndarray]:
    if isinstance(photo, tuple):
        name, array = photo
        return str(name), to_rgb_uint8(array, str(name))
    if isinstance(photo, np.ndarray):
        return f"array{i}", to_rgb_uint8(photo, f"array{i}")
    from PIL import Image

    with Image.open(photo) as image:
        return Path(photo).stem, np.asarray(image.convert("RGB"))
