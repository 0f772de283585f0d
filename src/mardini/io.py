"""Reading frames (images, video files, folders of frames) and writing videos (mp4, gif, PNGs).

Frames are ``uint8`` arrays shaped (H, W, 3), videos (K, H, W, 3). Readers raise
:class:`MediaError` (a ``ValueError``) with the file named, never a decoder's own exception.

Every writer produces its output under a temporary name beside the target and renames it into
place only when complete (:func:`mardini.checkpoint.atomic_write` and ``atomic_write_folder``), so
a failure never leaves a partial file under the requested name.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File name extensions read as images, in a folder of frames too.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Output formats by extension; a path without an extension is a folder of PNG frames.
VIDEO_FORMATS = (".mp4", ".gif", "")
#: Name pattern of the frames in a PNG folder written by :func:`write_png_folder`.
FRAME_NAME = "frame_{:05d}.png"
#: Encoders tried for mp4, best first (libx264 is in PyAV's wheels; mpeg4 is in every FFmpeg).
MP4_ENCODERS = ("libx264", "mpeg4")


class MediaError(ValueError):
    """An input file that is missing or cannot be decoded, or an output that cannot be written."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


#: Limits on PNG text/ICC metadata when a read is retried: real photos from phones and editors
#: carry more than Pillow's defaults (1 MB a chunk, 64 MB in all), which only guard against
#: decompression bombs; these still bound them.
PNG_TEXT_CHUNK_LIMIT = 64 * 2**20
PNG_TEXT_MEMORY_LIMIT = 256 * 2**20
_PNG_LIMITS_LOCK = threading.Lock()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (H, W, 3), applying its EXIF orientation.

    Greyscale, 16-bit (scaled to 8 bits, not clipped) and palette images become RGB; alpha is
    dropped. PNGs whose metadata exceeds Pillow's default limits are read with larger ones.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"image '{path}' does not exist" if not path.exists() else f"'{path}' is not a file")
    try:
        try:
            return _read_image(path)
        except ValueError as err:
            if "MAX_TEXT" not in str(err):
                raise
        from PIL import PngImagePlugin

        with _PNG_LIMITS_LOCK:  # module globals of Pillow: raised for this read only
            saved = PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY
            PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = (PNG_TEXT_CHUNK_LIMIT,
                                                                              PNG_TEXT_MEMORY_LIMIT)
            try:
                return _read_image(path)
            finally:
                PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY = saved
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise MediaError(f"cannot read image '{path}': {_reason(err)}") from None


def _read_image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return image_to_rgb(ImageOps.exif_transpose(image))


def image_to_rgb(image: Image.Image) -> np.ndarray:
    """A PIL image as RGB ``uint8`` (H, W, 3); high-bit-depth modes are scaled to 8 bits, not clipped."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow's convert("RGB") clips these at 255: a 16-bit greyscale photo comes out white.
        return as_rgb_array(np.asarray(image))
    return np.asarray(image.convert("RGB")).copy()


def as_rgb_array(array: np.ndarray) -> np.ndarray:
    """One image as an RGB ``uint8`` (H, W, 3) array: greyscale (H, W) or (H, W, 1) is repeated,
    (H, W, 4) loses its alpha, 16-bit and wider integers are scaled to 8 bits, and floats are taken
    as 0..1 (0..255 when larger values occur). (H, W, 3) ``uint8`` passes unchanged."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] in (1, 4):
        array = array[..., :1] if array.shape[-1] == 1 else array[..., :3]
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise MediaError(f"an image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        top = int(array.max()) if array.size else 0
        if array.min() < 0:
            raise MediaError("an integer image cannot have negative values")
        # 16-bit data (PNG, TIFF) fills 0..65535; wider integers are scaled by their largest value.
        scale = 255 / (255 if top <= 255 else 65535 if top <= 65535 else top)
        return np.round(array.astype(np.float64) * scale).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        top = float(np.nanmax(array)) if array.size else 0.0
        scale = 255.0 if top <= 1.0 else 1.0
        return np.round(np.clip(np.nan_to_num(array.astype(np.float64)) * scale, 0, 255)).astype(np.uint8)
    raise MediaError(f"images of dtype {array.dtype} are not supported; use uint8, uint16 or float")


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Read a video file (PyAV) or a folder of frames as ``uint8`` (K, H, W, 3).

    Args:
        path: a video file, or a folder of image files read in natural name order
            (``frame_2.png`` before ``frame_10.png``).
        max_frames: read only the first ``max_frames`` frames.
    """
    path = Path(path)
    if max_frames is not None and max_frames < 1:
        raise MediaError(f"the number of frames to read must be at least 1, got {max_frames}")
    if path.is_dir():
        return read_frame_folder(path, max_frames)
    if not path.is_file():
        raise MediaError(f"video '{path}' does not exist")
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(f"'{path}' has no video stream")
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) == max_frames:
                    break
    except av.FFmpegError as err:
        raise MediaError(f"cannot read video '{path}': {_reason(err)}") from None
    if not frames:
        raise MediaError(f"video '{path}' holds no frames")
    return np.stack(frames)


def read_frame_folder(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """Read the image files of a folder, in natural name order, as ``uint8`` (K, H, W, 3)."""
    path = Path(path)
    if not path.is_dir():
        raise MediaError(f"frame folder '{path}' does not exist")
    files = sorted((f for f in path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file()),
                   key=_natural_key)
    if not files:
        raise MediaError(f"folder '{path}' holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    frames = [read_image(f) for f in files[:max_frames]]
    check_same_size(frames, [str(f) for f in files])
    return np.stack(frames)


def fit_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale a (H, W, 3) ``uint8`` image to cover ``height`` x ``width`` keeping its aspect ratio,
    then centre-crop to exactly that size (how the pipeline fits frames to the output size)."""
    h0, w0 = image.shape[:2]
    if (h0, w0) == (height, width):
        return image
    scale = max(height / h0, width / w0)
    size = (max(width, round(w0 * scale)), max(height, round(h0 * scale)))
    scaled = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(scaled[top:top + height, left:left + width])


def check_same_size(frames: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """Raise :class:`MediaError` naming the first two inputs whose sizes differ."""
    for frame, name in zip(frames[1:], names[1:]):
        if frame.shape[:2] != frames[0].shape[:2]:
            raise MediaError(f"input sizes disagree: '{names[0]}' is {_size(frames[0])} but '{name}' is "
                             f"{_size(frame)}; give frames of one size")


def check_input(path: str | os.PathLike, what: str = "input") -> Path:
    """Raise :class:`MediaError` unless ``path`` exists and is readable (cheap: nothing is decoded).

    For checking every input of a request before any model is loaded.
    """
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{what} '{path}' does not exist")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{what} '{path}' is not readable (permissions)")
    return path


def check_output(path: str | os.PathLike, video: bool = True) -> Path:
    """Raise :class:`MediaError` unless an output can be written at ``path``: a known video format
    (when ``video``) and a writable folder (the nearest existing one: writers create the rest).

    For checking before a generation, not after it.
    """
    path = Path(path)
    if video:
        output_format(path)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise MediaError(f"cannot write '{path}': '{folder}' is not a folder")
    try:  # a real file, not os.access: read-only mounts and root's view of permissions differ
        fd, probe = tempfile.mkstemp(prefix=".mardini-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise MediaError(f"cannot write '{path}': the folder '{folder}' is not writable ({_reason(err)}); "
                         f"choose another output path") from None
    return path


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def output_format(path: str | os.PathLike) -> str:
    """The format a path asks for: ``".mp4"``, ``".gif"`` or ``""`` (a folder of PNGs)."""
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise MediaError(f"cannot write '{path}': the output format follows the extension; use .mp4, .gif, "
                         f"or a path without an extension for a folder of PNG frames")
    return suffix


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write (K, H, W, 3) ``uint8`` frames in the format of ``path``'s extension (see :func:`output_format`).

    The default of 8 frames per second is the rate the paper trains at (appendix B, figure 4).
    """
    fmt = output_format(path)
    if fmt == ".mp4":
        return write_mp4(frames, path, fps)
    if fmt == ".gif":
        return write_gif(frames, path, fps)
    return write_png_folder(frames, path)


def write_mp4(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write an H.264 mp4 (MPEG-4 part 2 where FFmpeg lacks libx264), yuv420p, ``fps`` frames a second."""
    frames = _check_video(frames)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise MediaError(f"mp4 (yuv420p) needs an even frame size, got {width}x{height}; write a .gif or PNGs")
    encoder = mp4_encoder()
    rate = _fraction(fps)

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream(encoder, rate=rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if encoder == "libx264":
                stream.options = {"crf": "17", "preset": "medium"}
            else:
                stream.bit_rate = max(2_000_000, width * height * 8)
            for array in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
            container.mux(stream.encode())

    return _write_file(path, write)


def write_gif(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Write a looping animated gif (PIL) at ``fps`` frames a second (gif delays are whole 10 ms)."""
    frames = _check_video(frames)
    images = [Image.fromarray(f) for f in frames]
    duration = max(20, round(1000 / fps / 10) * 10)

    def write(tmp: Path) -> None:
        # disposal=1 keeps each frame whole; optimize=False stops PIL from merging identical frames.
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration,
                       loop=0, disposal=1, optimize=False)

    return _write_file(path, write)


def write_png_folder(frames: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one PNG per frame (``frame_00000.png``, ...) into a new folder ``path``.

    An existing folder is replaced only if it holds nothing but such frames (a previous output), so
    a mistyped path never deletes unrelated files.
    """
    frames = _check_video(frames)
    path = Path(path)
    if path.exists() and not is_png_folder_output(path):
        raise MediaError(f"'{path}' exists and holds other files; choose a new folder for the PNG frames")

    def write(tmp: Path) -> None:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / FRAME_NAME.format(i), format="PNG")

    from mardini.checkpoint import atomic_write_folder  # imports torch: only when writing

    atomic_write_folder(path, write)
    return path


def is_png_folder_output(path: str | os.PathLike) -> bool:
    """True for a folder holding only frames written by :func:`write_png_folder` (or an empty one)."""
    path = Path(path)
    pattern = re.compile(r"frame_\d{5,}\.png")
    return path.is_dir() and not path.is_symlink() and all(pattern.fullmatch(f.name) for f in path.iterdir())


def contact_sheet(frames: np.ndarray, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tile (K, H, W, 3) frames row by row into one image, ``gap`` white pixels apart.

    ``columns`` defaults to about the square root of K, at most K.
    """
    frames = _check_video(frames)
    count, height, width = frames.shape[:3]
    columns = min(count, columns or math.ceil(math.sqrt(count)))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    rows = math.ceil(count / columns)
    sheet = np.full((rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        r, c = divmod(i, columns)
        sheet[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = frame
    return sheet


def write_contact_sheet(frames: np.ndarray, path: str | os.PathLike, columns: int | None = None) -> Path:
    """Write :func:`contact_sheet` of the frames as one PNG image."""
    sheet = contact_sheet(frames, columns)
    return _write_file(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))


def mp4_encoder() -> str:
    """The first of :data:`MP4_ENCODERS` this FFmpeg build has."""
    for name in MP4_ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise MediaError(f"this FFmpeg build has none of the mp4 encoders {MP4_ENCODERS}; write a .gif or PNGs")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _write_file(path: str | os.PathLike, write) -> Path:  # noqa: ANN001 - a callable(Path) -> None
    from mardini.checkpoint import atomic_write  # imports torch: only when writing

    path = Path(path)
    if path.is_dir():
        raise MediaError(f"'{path}' is a folder; give a file name")
    atomic_write(path, write)
    return path


def _check_video(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
        raise ValueError(f"expected uint8 frames shaped (K, H, W, 3) with K >= 1, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    return np.ascontiguousarray(frames)


def _fraction(fps: float):  # noqa: ANN202 - fractions.Fraction
    from fractions import Fraction

    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return Fraction(fps).limit_denominator(1001)


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _size(frame: np.ndarray) -> str:
    return f"{frame.shape[1]}x{frame.shape[0]}"


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
