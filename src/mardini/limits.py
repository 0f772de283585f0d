"""What a generation request may ask for: frame counts, output size, memory.

Every front end (the ``mardini`` command, the web UI, the Python tasks) checks requests here, so
they refuse the same requests with the same one-line messages, before any model is loaded. The
module imports neither torch nor the models: it works from a :class:`~mardini.config.MarDiniConfig`
(``mardini.checkpoint.read_config`` reads one from a checkpoint folder without loading weights).

* :func:`check_frame_count`: a video length between a task's minimum and :data:`MAX_FRAMES`.
* :func:`output_size`: the output (height, width); by default the checkpoint's trained size with
  the input's aspect ratio (a model makes its best frames at the size it was trained at, and the
  cost grows with the pixel count), rounded to what the networks take.
* :func:`estimate_memory` / :func:`check_memory`: peak memory of a CPU generation and a refusal
  when it exceeds what the machine has available (:func:`available_memory`).
* :func:`check_request`: all of the above for one request, the call a front end makes.
* :func:`is_out_of_memory` / :func:`out_of_memory_message`: what a front end says when a request
  that passed the estimate still runs out of memory (another process took it, or a GPU filled).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mardini.config import MarDiniConfig

#: Longest video a request may ask for. Window planning and the decoded output grow with the
#: length; 4096 frames plan in about 0.1 s and are 9 minutes at 8 frames a second.
MAX_FRAMES = 4096

# Peak resident memory of a CPU generation, fitted (least squares, within 6%) to the `/usr/bin/time`
# peaks of `mardini generate i2v --steps 1` with the first bundled model on the development machine
# (torch 2.13, float32, 2 cores): 128x128 x 9 frames 558 MB, 256x256 x 9 670 MB, 384x384 x 9
# 945 MB, 512x512 x 9 1148 MB, 128x128 x 33 657 MB (docs/usage.md, "Size, length and memory").
# A fixed part (Python, torch, the networks, the codec), a part per output pixel of each frame of
# a window (activations of the networks, guidance included, and of the codec's chunks), and a part
# per output pixel of every frame of the video (latent timeline, decoded float and uint8 video).
# Rechecked on the corpus model bundled since (spatio-temporal generator attention, refined
# decoder), the same command: 560, 735 and 1142 MB at 128, 256 and 512 px x 9 frames, within 6%.
# The bundle (since its stage 4) moves the token grid on every other step (`diffusion.grid_shift`), which the
# `--steps 1` command never does: with `--steps 2` its peaks are 5.6-7.5% above `--steps 1`'s
# (555 -> 586, 722 -> 776 and 1239 -> 1313 MiB at 128, 256 and 512 px; 2026-12-02, Intel Xeon VM),
# so the estimate runs up to ~8% low for it; MEMORY_MARGIN's 10% covers that.
_BASE_BYTES = 530 * 2**20
_WINDOW_BYTES_PER_PIXEL = 50
_VIDEO_BYTES_PER_PIXEL = 240
#: Per pixel of every given input frame at its own size (decoded RGB, float copy, resize).
_INPUT_BYTES_PER_PIXEL = 40
#: Share of the available memory a request may take (the estimate is not exact).
MEMORY_MARGIN = 0.9


class RequestError(ValueError):
    """A request the model or this machine cannot serve; the message says what to ask for instead."""


def check_frame_count(num_frames: int | None, minimum: int = 1) -> int | None:
    """Return ``num_frames`` if it is None or an integer from ``minimum`` to :data:`MAX_FRAMES`.

    ``num_frames`` counts every frame of the output video, the given ones included.
    """
    if num_frames is None:
        return None
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        try:  # numpy integers and the like
            if int(num_frames) != num_frames:
                raise ValueError
            num_frames = int(num_frames)
        except (TypeError, ValueError):
            raise RequestError(f"the number of frames must be a whole number, got {num_frames!r}") from None
    if not minimum <= num_frames <= MAX_FRAMES:
        raise RequestError(f"a video needs at least {minimum} frames and at most {MAX_FRAMES} (every frame counts, "
                           f"the given ones included), got {num_frames}")
    return num_frames


def size_unit(config: MarDiniConfig) -> int:
    """Output sides must be multiples of this: the codec's downsampling times the patch size."""
    return config.vae_downsample * config.generator.patch_size


def output_size(config: MarDiniConfig, height: int | None = None, width: int | None = None,
                like: tuple[int, int] | None = None) -> tuple[int, int]:
    """The output (height, width) of a request.

    Both given: used as they are (checked). One given: the other follows ``like``'s aspect ratio
    (the input's (height, width)). Neither: the checkpoint's trained size (``config.height`` x
    ``config.width``, its pixel count) with ``like``'s aspect ratio, or the trained size itself
    without ``like``. Computed sides are rounded to :func:`size_unit`.
    """
    unit = size_unit(config)

    def rounded(x: float) -> int:
        return max(unit, round(x / unit) * unit)

    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise RequestError(f"{name} must be a whole number of pixels, got {value!r}")
    if like is not None and min(like) < 1:
        raise RequestError(f"the input has no pixels ({like[1]}x{like[0]})")
    if height is None and width is None:
        if like is None:
            height, width = config.height, config.width
        else:
            area, aspect = config.height * config.width, like[1] / like[0]
            height, width = rounded(math.sqrt(area / aspect)), rounded(math.sqrt(area * aspect))
    elif height is None:
        height = rounded(width * like[0] / like[1]) if like else config.height
    elif width is None:
        width = rounded(height * like[1] / like[0]) if like else config.width
    for name, value in (("height", height), ("width", width)):
        if value < unit or value % unit:
            raise RequestError(f"{name} {value} is not a positive multiple of {unit} (the codec's "
                               f"{config.vae_downsample}x downsampling times the generator's patch size "
                               f"{config.generator.patch_size}); use e.g. {rounded(max(value, unit))}")
    return height, width


def estimate_memory(config: MarDiniConfig, height: int, width: int, num_frames: int, *, window: int | None = None,
                    batch: int = 1, input_pixels: int = 0) -> int:
    """Estimated peak memory in bytes of generating ``num_frames`` frames of ``height`` x ``width`` on the CPU.

    ``window`` defaults to the model's; ``batch`` counts the videos made at once (samples);
    ``input_pixels`` is the pixel count of all given frames at their own size. A simple linear
    model calibrated on one machine (see the constants above): good to tens of percent, enough to
    refuse a request that cannot fit, not to plan a tight one.
    """
    window = min(num_frames, window or config.num_frames)
    pixels = height * width
    return int(_BASE_BYTES + batch * pixels * (_WINDOW_BYTES_PER_PIXEL * window + _VIDEO_BYTES_PER_PIXEL * num_frames)
               + _INPUT_BYTES_PER_PIXEL * input_pixels)


def available_memory() -> int | None:
    """Bytes of memory this process can still use: MemAvailable of /proc/meminfo, capped by a
    cgroup (container) limit; ``os.sysconf`` where there is no /proc; None when unknown."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 2**60:
                available = min(available, int(limit) - int(Path(usage_file).read_text().strip()))
            break
        except (OSError, ValueError):
            continue
    return max(0, available)


def check_memory(config: MarDiniConfig, height: int, width: int, num_frames: int, *, window: int | None = None,
                 batch: int = 1, input_pixels: int = 0, available: int | None = None) -> int:
    """Raise :class:`RequestError` when the request's :func:`estimate_memory` exceeds
    :data:`MEMORY_MARGIN` of ``available`` (default :func:`available_memory`); returns the estimate.

    Nothing is refused when the available memory is unknown.
    """
    needed = estimate_memory(config, height, width, num_frames, window=window, batch=batch, input_pixels=input_pixels)
    available = available_memory() if available is None else available
    if available is not None and needed > MEMORY_MARGIN * available:
        trained = f"{config.height}x{config.width}"
        raise RequestError(f"{width}x{height} x {num_frames} frames needs about {_gb(needed)} of memory but "
                           f"{_gb(available)} is available; ask for a smaller size (the model was trained at "
                           f"{trained}) or fewer frames")
    return needed


def check_request(config: MarDiniConfig, inputs: list[tuple[int, int]], *, num_frames: int | None = None,
                  height: int | None = None, width: int | None = None, window: int | None = None,
                  minimum_frames: int = 2, memory: bool = True) -> tuple[int, int, int]:
    """Check a whole request before any model is loaded; returns its (height, width, num_frames).

    Args:
        config: the checkpoint's config (``mardini.checkpoint.read_config``).
        inputs: (height, width) of every given frame, in order; the first sets the aspect ratio.
        num_frames: the output length, given frames included (default: the model's window).
        height, width: the asked output size (see :func:`output_size`).
        window: most frames per model call (default: the model's).
        minimum_frames: the task's shortest video (2; 3 for interpolation).
        memory: refuse what exceeds the available memory (set False for a GPU request: the
            estimate is of CPU memory).

    Raises:
        RequestError: with the one-line message every front end shows.
    """
    if not inputs:
        raise RequestError("at least one known frame is needed: MarDini generates frames from reference frames")
    num_frames = check_frame_count(config.num_frames if num_frames is None else num_frames, minimum_frames)
    assert num_frames is not None
    height, width = output_size(config, height, width, inputs[0])
    if memory:
        check_memory(config, height, width, num_frames, window=window, input_pixels=sum(h * w for h, w in inputs))
    return height, width, num_frames


#: Substrings of torch's errors when an allocation fails: the CPU allocator's RuntimeError and
#: CUDA's OutOfMemoryError (a RuntimeError too), matched by text so that this module stays torch-free.
_OUT_OF_MEMORY_TEXTS = ("can't allocate memory", "out of memory", "outofmemoryerror")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure: Python's MemoryError, torch's CPU allocator
    ("DefaultCPUAllocator: can't allocate memory") or CUDA's ``torch.OutOfMemoryError``."""
    if isinstance(err, MemoryError):
        return True
    text = f"{type(err).__name__} {err}".lower()
    return isinstance(err, RuntimeError) and any(t in text for t in _OUT_OF_MEMORY_TEXTS)


def out_of_memory_message(height: int | None = None, width: int | None = None, num_frames: int | None = None,
                          *, cli: bool = True) -> str:
    """The one line a front end shows for an :func:`is_out_of_memory` error: what was asked (when
    known), what to lower, named as that front end names it (``cli``: the command's options)."""
    asked = (f" for {width}x{height} x {num_frames} frames" if None not in (height, width, num_frames) else "")
    lower = ("--window (frames per model call), --height/--width or --frames, or add --cpu-offload on a GPU"
             if cli else "the size (height, width) or the number of frames")
    return (f"out of memory while generating{asked}: the machine had less free memory than the request "
            f"needed (another program may be using it); lower {lower}, then try again (no partial file was written)")


def _gb(size: int) -> str:
    return f"{size / 2**30:.1f} GB"
