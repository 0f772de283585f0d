"""Frame sources: a video file (decoded with PyAV) or a folder of frame images.

A source knows its frame rate, frame count and frame size (probed once, when a dataset is
built) and reads any set of frame indices as uint8 RGB arrays. Frame ``i`` of a video is the
frame shown at ``i / fps`` seconds after the stream's start.

Probing raises :class:`SourceError` with a short reason (cannot open, no video stream, cannot
decode, ...); datasets turn that into a skip with a warning instead of a crash.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: File name endings read as videos by :class:`~mardini.data.VideoFolderDataset`.
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".gif")
#: File name endings read as frames by :class:`~mardini.data.FrameFolderDataset`.
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm")

# Clips starting within this many seconds of the stream start are decoded from the start:
# a seek would land on the first keyframe anyway.
_SEEK_AFTER_S = 1.0


class SourceError(Exception):
    """A source cannot be used; the message is the reason shown in the skip warning."""


@dataclass
class VideoFileSource:
    """A video file read with PyAV.

    Attributes:
        path: the file.
        fps: native frame rate (the stream's average rate).
        num_frames: frames in the stream (the container's count, else duration x fps).
        frame_size: (height, width) of decoded frames.
        segment: usable frames ``[first, end)`` (a manifest's start/end; the whole video by default).
        start_time: the stream's first timestamp in seconds (frame 0 is shown then).
    """

    path: str
    fps: float
    num_frames: int
    frame_size: tuple[int, int]
    segment: tuple[int, int]
    start_time: float = 0.0

    @property
    def name(self) -> str:
        return self.path

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Decode the frames at ``indices`` (ascending) as uint8 (n, H, W, 3).

        Seeks to the keyframe before the first wanted frame, then decodes forward and keeps, for
        each wanted index, the first frame shown at or after its time (half a frame's tolerance).
        """
        import av

        if not indices:
            raise ValueError("read() needs at least one frame index")
        half = 0.5 / self.fps
        targets = [i / self.fps for i in indices]
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = self._collect(container, stream, targets, half, seek=targets[0] > _SEEK_AFTER_S)
            if frames is None:  # the seek landed after the first wanted frame: decode from the start
                container.seek(0)
                frames = self._collect(container, stream, targets, half, seek=False)
        assert frames is not None
        return np.stack(frames)

    def _collect(self, container, stream, targets: list[float], half: float, seek: bool) -> list[np.ndarray] | None:
        tb = float(stream.time_base) if stream.time_base else 0.0
        if seek and tb:
            container.seek(int((targets[0] + self.start_time - half) / tb), stream=stream, backward=True)
        out: list[np.ndarray] = []
        t = -math.inf
        counter = 0
        for frame in container.decode(stream):
            # Frames without a timestamp are assumed to follow their predecessor at the native rate.
            t = frame.pts * tb - self.start_time if frame.pts is not None and tb else (
                t + 1.0 / self.fps if t > -math.inf else counter / self.fps)
            counter += 1
            if not out and seek and t > targets[0] + half:
                return None
            array = None
            while len(out) < len(targets) and t >= targets[len(out)] - half:
                array = frame.to_ndarray(format="rgb24") if array is None else array
                out.append(array)
            if len(out) == len(targets):
                return out
        raise SourceError(f"the video ended at {t:.3f}s, before frame {len(out)} of the clip "
                          f"(wanted {targets[len(out)]:.3f}s); it is shorter than its header says")


@dataclass
class FrameFolderSource:
    """A folder of frame images, one per frame, in natural name order, at ``fps``."""

    path: str
    files: list[str]
    fps: float
    frame_size: tuple[int, int]
    segment: tuple[int, int]
    start_time: float = 0.0

    @property
    def name(self) -> str:
        return self.path

    @property
    def num_frames(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Load the frames at ``indices`` as uint8 (n, H, W, 3) RGB."""
        from PIL import Image

        frames = []
        for i in indices:
            with Image.open(self.files[i]) as image:
                frames.append(np.asarray(image.convert("RGB")))
        if any(f.shape != frames[0].shape for f in frames):
            raise SourceError(f"frames of {self.path!r} differ in size: {sorted({f.shape for f in frames})}")
        return np.stack(frames)


Source = VideoFileSource | FrameFolderSource


def probe_video(path: str | os.PathLike) -> VideoFileSource:
    """Open ``path`` with PyAV and read its rate, frame count and frame size (decodes one frame).

    Raises :class:`SourceError` with the reason when the file cannot be used.
    """
    import av

    path = str(path)
    try:
        container = av.open(path)
    except Exception as e:  # PyAV raises many error types (InvalidDataError, OSError, ...)
        raise SourceError(f"cannot open ({type(e).__name__}: {e})") from e
    with container:
        if not container.streams.video:
            raise SourceError("no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if not fps > 0 or not math.isfinite(fps):
            raise SourceError("unknown frame rate")
        tb = float(stream.time_base) if stream.time_base else 0.0
        start_time = stream.start_time * tb if stream.start_time is not None and tb else 0.0
        count = int(stream.frames or 0)
        if count <= 0:
            # Containers such as WebM/MKV store no frame count: use the duration, else count packets.
            if stream.duration and tb:
                count = int(round(stream.duration * tb * fps))
            elif container.duration:
                count = int(round(container.duration / av.time_base * fps))
        try:
            first = next(container.decode(stream))
        except StopIteration:
            raise SourceError("no decodable frame") from None
        except Exception as e:
            raise SourceError(f"cannot decode ({type(e).__name__}: {e})") from e
        size = (int(first.height), int(first.width))
    if count <= 0:
        count = _count_packets(path)
    if count <= 0:
        raise SourceError("no frames")
    return VideoFileSource(path=path, fps=fps, num_frames=count, frame_size=size, segment=(0, count),
                           start_time=start_time)


def probe_frame_folder(path: str | os.PathLike, fps: float) -> FrameFolderSource:
    """List the frame images directly inside ``path`` (natural order) and read the first's size."""
    from PIL import Image

    if not fps > 0:
        raise ValueError(f"frame folders need a positive fps; got {fps!r}")
    path = str(path)
    files = frame_files(path)
    if not files:
        raise SourceError(f"no frame images ({', '.join(IMAGE_EXTENSIONS)})")
    try:
        with Image.open(files[0]) as image:
            size = (int(image.height), int(image.width))
    except Exception as e:
        raise SourceError(f"cannot read frame {os.path.basename(files[0])!r} ({type(e).__name__}: {e})") from e
    return FrameFolderSource(path=path, files=files, fps=float(fps), frame_size=size, segment=(0, len(files)))


def frame_files(folder: str | os.PathLike) -> list[str]:
    """Image files directly inside ``folder``, in natural order (frame_2 before frame_10)."""
    names = [e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return [os.path.join(folder, n) for n in sorted(names, key=natural_key)]


def natural_key(name: str) -> list[object]:
    """Sort key that orders embedded numbers by value: ``["frame_", 2, ".png"]``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def find_files(root: str | os.PathLike, extensions: Sequence[str]) -> list[str]:
    """Files under ``root`` (recursively) whose lower-case names end with one of ``extensions``."""
    ends = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    found = [str(p) for p in Path(root).rglob("*") if p.is_file() and p.name.lower().endswith(ends)]
    return sorted(found, key=natural_key)


def set_segment(source: Source, start: float | None, end: float | None) -> None:
    """Restrict ``source`` to the seconds ``[start, end)``; raises :class:`SourceError` if empty."""
    first = 0 if start is None else max(0, round(start * source.fps))
    last = source.num_frames if end is None else min(source.num_frames, round(end * source.fps))
    if last <= first:
        raise SourceError(f"empty segment start={start} end={end} (the source has "
                          f"{source.num_frames} frames at {source.fps:g} fps)")
    source.segment = (first, last)


def _count_packets(path: str) -> int:
    """Count the video packets of a file without decoding them (one packet per frame)."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            return sum(1 for packet in container.demux(stream) if packet.size)
    except Exception as e:
        raise SourceError(f"cannot read packets ({type(e).__name__}: {e})") from e
