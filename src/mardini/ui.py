"""``mardini ui``: a web page with one tab per task of :mod:`mardini.tasks`, on the pipeline ``mardini generate`` uses.

Every request of the page goes through :func:`_validate_request`, the one place that reads the
uploads (:mod:`mardini.io`) and checks the settings, and then runs the same :mod:`mardini.tasks`
function as the CLI on one shared :class:`~mardini.pipeline.MarDiniPipeline`. All tabs share one
queue slot, so two users wait for each other instead of sharing the model at once. Each result
comes with the equivalent ``mardini generate`` command, which makes the same frames from the same
files (uploads are named by their file names, the bundled examples by their paths).

Only :func:`require_gradio`, :func:`build_app` and :func:`serve` import Gradio (the optional ``ui``
extra), so the rest of the package neither needs it nor waits for its import.
"""

from __future__ import annotations

import atexit
import ipaddress
import math
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mardini import io, limits, tasks
from mardini.data.sources import natural_key
from mardini.demo import DEMO_INPUTS
from mardini.pipeline import MarDiniPipeline, VideoOutput

#: The Gradio release the ``ui`` extra pins (pyproject.toml); the page is tested against it.
GRADIO_VERSION = "6.31.0"
#: Tab titles, in the order of ``mardini generate``'s task names.
TASK_TITLES = {"i2v": "Image to video", "interpolate": "Interpolation", "loop": "Loop", "expand": "Expansion",
               "slowmo": "Slow motion", "custom": "Any known frames"}
#: Errors whose message is shown in the page as one line, as ``mardini generate`` prints them:
#: the project's input errors (MediaError, CheckpointError and the tasks' and pipeline's checks
#: are ValueErrors) and files that cannot be written. Anything else is a bug, logged by the server.
READABLE_ERRORS = (ValueError, OSError)
#: Largest upload the server accepts (Gradio refuses bigger files before they reach the model).
MAX_UPLOAD = "100mb"


@dataclass
class Request:
    """One form of the page as submitted: upload paths, and settings (``None`` where left blank)."""

    task: str
    image: str | None = None
    first: str | None = None
    last: str | None = None
    video: list[str] = field(default_factory=list)  # one video file, or several frames (name order)
    known: list[str] = field(default_factory=list)  # custom: the known frames (name order)
    positions: str = ""  # custom: their 0-based positions, e.g. "0, 8"
    frames: int | None = None
    ref_index: int | None = None
    video_frames: int | None = None
    factor: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    fps: float = 8.0


@dataclass
class Job:
    """A checked request: the task call to run, the given frames, and the CLI arguments that repeat it."""

    run: Callable[..., VideoOutput]
    given: list[np.ndarray]
    height: int
    width: int
    cli_args: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    """What a request produced: the files, the frames it was given, a summary and the CLI command."""

    mp4: Path
    gif: Path
    sheet: Path
    given: list[np.ndarray]
    summary: str
    command: str


# --------------------------------------------------------------------------------------------
# Requests: checking, running, describing
# --------------------------------------------------------------------------------------------


def _validate_request(request: Request, pipe: MarDiniPipeline) -> Job:
    """Read the uploads and check the settings of ``request``; raise a ``ValueError`` with one readable line.

    The one gate of every request. Length, size and memory go through :func:`mardini.limits.check_request`
    as ``mardini generate``'s do, before any work, so the page refuses what the CLI refuses, in its
    words. The output size is the checkpoint's trained size in the input's aspect ratio unless the
    form sets it.
    """
    task = request.task
    if task not in TASK_TITLES:
        raise ValueError(f"unknown task '{task}'; use one of {', '.join(TASK_TITLES)}")
    if not math.isfinite(request.fps) or request.fps <= 0:
        raise ValueError(f"fps must be a positive number, got {request.fps:g}")
    limits.check_frame_count(request.frames, minimum=2)
    both_sides = request.height is not None and request.width is not None
    args: list[str] = []
    notes: list[str] = []
    if task in ("i2v", "loop"):
        image = _read_image(_upload(request.image, f"{TASK_TITLES[task].lower()} needs an image: upload one"))
        given, args = [image], ["--image", _cli_path(request.image)]
        if task == "i2v":
            ref_index = request.ref_index or 0
            run = partial(tasks.image_to_video, image=image, num_frames=request.frames, ref_index=ref_index)
            args += ["--ref-index", str(ref_index)]
        else:
            run = partial(tasks.loop, image=image, num_frames=request.frames)
    elif task == "interpolate":
        paths = [_upload(p, "interpolation needs a first and a last frame: upload two images")
                 for p in (request.first, request.last)]
        given = _same_size([_read_image(p) for p in paths], paths, request, both_sides)
        run = partial(tasks.interpolate, first=given[0], last=given[1], num_frames=request.frames)
        args = ["--first", _cli_path(paths[0]), "--last", _cli_path(paths[1])]
    elif task in ("expand", "slowmo"):
        video, args, notes = _read_clip(request.video, request.video_frames)
        given = list(video)
        if task == "expand":
            if request.frames is None:
                raise ValueError(f"expansion needs the number of frames: the total length, more than the "
                                 f"{len(video)} given frames")
            run = partial(tasks.expand, frames=video, num_frames=request.frames)
        else:
            if (request.frames is None) == (request.factor is None):
                raise ValueError("slow motion needs exactly one of the factor and the number of frames "
                                 "(the total length)")
            run = partial(tasks.slow_motion, frames=video, factor=request.factor, num_frames=request.frames)
            if request.factor is not None:
                args += ["--factor", str(request.factor)]
    else:
        if not request.known:
            raise ValueError("any known frames needs at least one frame: upload images and give their positions")
        paths = sorted(request.known, key=_natural_key)
        positions = _parse_positions(request.positions, len(paths))
        given = _same_size([_read_image(p) for p in paths], paths, request, both_sides)
        run = partial(tasks.custom, known=dict(zip(positions, given)), num_frames=request.frames)
        for position, path in zip(positions, paths):
            args += ["--known", f"{position}={_cli_path(path)}"]
    frames = request.frames
    if frames is None and task in ("i2v", "interpolate", "loop", "custom"):
        frames = pipe.config.num_frames  # the tasks' default, written out so the command says it
    if frames is not None:
        args += ["--frames", str(frames)]
    total = frames
    if task == "slowmo" and request.factor is not None:
        total = (len(given) - 1) * request.factor + 1
    # Size, length and memory, refused before any work (the memory estimate is of CPU memory).
    height, width, _ = limits.check_request(pipe.config, [tuple(g.shape[:2]) for g in given], num_frames=total,
                                            height=request.height, width=request.width,
                                            memory=pipe.device.type == "cpu")
    # Only the sides the form set: the CLI's default size is the same rule (mardini.limits), and
    # giving both makes it fit differently sized inputs to them first.
    for flag, value in (("--height", request.height), ("--width", request.width)):
        if value is not None:
            args += [flag, str(value)]
    if request.steps is not None:
        args += ["--steps", str(request.steps)]
    if request.guidance is not None:
        args += ["--guidance", f"{request.guidance:g}"]
    args += ["--seed", str(request.seed), "--fps", f"{request.fps:g}"]
    options: dict[str, Any] = {"height": height, "width": width, "steps": request.steps, "seed": request.seed}
    if request.guidance is not None:
        options["guidance_scale"] = request.guidance
    return Job(partial(run, pipe, **options), given, height, width, args, notes)


def run_request(request: Request, pipe: MarDiniPipeline, out: str | os.PathLike, *, checkpoint: str | None = None,
                progress: bool = True) -> Result:
    """Check and run one request, write mp4, gif and contact sheet into ``out``.

    Args:
        checkpoint: the folder named in the equivalent command (``None``: the bundled model, which
            the CLI loads when ``--checkpoint`` is left out).
        progress: tqdm bars over the denoising steps and windows (the page turns them into its
            progress bar).
    """
    job = _validate_request(request, pipe)
    output = job.run(progress=progress)
    video = output.frames[0]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = request.task
    mp4 = io.write_mp4(video, out / f"mardini-{task}.mp4", fps=request.fps)
    gif = io.write_gif(video, out / f"mardini-{task}.gif", fps=request.fps)
    sheet = io.write_contact_sheet(video, out / f"mardini-{task}-sheet.png")
    known = int(output.known[0].sum())
    steps = "/".join(map(str, sorted(set(output.steps)))) + (" step" if set(output.steps) == {1} else " steps")
    summary = (f"{len(video)} frames of {job.width}x{job.height} ({task}: {known} known, {len(video) - known} "
               f"generated in {len(output.windows)} window(s); {steps}, guidance {output.guidance_scale:g}, "
               f"seed {request.seed}, {str(pipe.dtype).removeprefix('torch.')} on {pipe.device})")
    command = ["mardini", "generate", task]
    if checkpoint is not None:
        command += ["--checkpoint", str(checkpoint)]
    command += ["--out", mp4.name, *job.cli_args, "--device", pipe.device.type]
    if pipe.dtype != torch.float32:
        command += ["--dtype", str(pipe.dtype).removeprefix("torch.")]
    command += ["--contact-sheet", sheet.name]
    text = "\n".join([*(f"# {note}" for note in job.notes), shlex.join(command)])
    return Result(mp4, gif, sheet, job.given, summary, text)


def host_warning(host: str) -> str | None:
    """A warning when ``host`` is not a loopback address: the page has no login."""
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: it may resolve to any interface
    return (f"serving on {host}: anyone who can reach this machine there can use the page and its "
            f"CPU/GPU, and it has no login; use --host 127.0.0.1 to keep it to this machine")


def example_requests() -> dict[str, list[dict[str, Any]]]:
    """The page's examples per task, from the bundled held-out demo clips: form values and a label."""
    wheat, ocean, city = DEMO_INPUTS / "wheat", DEMO_INPUTS / "ocean", DEMO_INPUTS / "city"

    def frame(clip: Path, index: int) -> str:
        return str(clip / f"frame_{index:02d}.png")

    return {
        "i2v": [{"label": "city, middle frame", "image": frame(city, 4), "ref_index": 4, "frames": 9}],
        "interpolate": [{"label": "wheat, frames 0 and 8", "first": frame(wheat, 0), "last": frame(wheat, 8),
                         "frames": 9}],
        "loop": [{"label": "ocean, frame 0", "image": frame(ocean, 0), "frames": 9}],
        "expand": [{"label": "city, first 3 frames", "video": [frame(city, i) for i in range(3)], "frames": 9}],
        "slowmo": [{"label": "wheat, 5 frames, 2x", "video": [frame(wheat, i) for i in range(5)], "factor": "2"}],
        "custom": [{"label": "city, frames 2 and 6 at 2 and 6", "known": [frame(city, 2), frame(city, 6)],
                    "positions": "2, 6", "frames": 9}],
    }


# --------------------------------------------------------------------------------------------
# Reading the form
# --------------------------------------------------------------------------------------------


def request_from_form(task: str, form: dict[str, Any]) -> Request:
    """A :class:`Request` from the page's field values (text fields of numbers may be blank)."""
    values: dict[str, Any] = {"task": task}
    for name, value in form.items():
        if name in ("video", "known"):
            values[name] = [str(v) for v in value or []]
        elif name in ("image", "first", "last"):
            values[name] = str(value) if value else None
        elif name == "positions":
            values[name] = value or ""
        elif name in ("guidance", "fps"):
            values[name] = _number(value, name, float)
        else:
            values[name] = _number(value, name, int)
    values["seed"] = 0 if values.get("seed") is None else values["seed"]
    values["fps"] = 8.0 if values.get("fps") is None else values["fps"]
    return Request(**values)


def _number(value: Any, name: str, kind: type) -> int | float | None:
    """A form value (a number, or text that may be blank) as ``kind``; ``None`` when blank."""
    label = name.replace("_", " ")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a number, got '{value}'") from None
    if not math.isfinite(number):
        raise ValueError(f"{label} must be a finite number, got '{value}'")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{label} must be a whole number, got {number:g}")
        return int(number)
    return number


def _upload(path: str | None, missing: str) -> str:
    if not path:
        raise ValueError(missing)
    return path


def _read_image(path: str) -> np.ndarray:
    return _named(io.read_image, path)


def _named(read: Callable[..., np.ndarray], path: str, *args: Any) -> np.ndarray:
    """Call a :mod:`mardini.io` reader, naming the upload by its file name rather than the server's temporary path."""
    try:
        return read(path, *args)
    except io.MediaError as err:
        raise io.MediaError(str(err).replace(str(path), Path(path).name)) from None


def _same_size(frames: list[np.ndarray], paths: Sequence[str], request: Request,
               both_sides: bool) -> list[np.ndarray]:
    """Frames of one size: each fitted to the asked height and width when both are set (as the CLI
    does), else refused when their sizes differ (which size and crop to share would be a guess)."""
    if both_sides:
        return [io.fit_image(frame, request.height, request.width) for frame in frames]
    try:
        io.check_same_size(frames, [Path(p).name for p in paths])
    except ValueError as err:
        raise io.MediaError(f"{err}, or set height and width to fit each to that size") from None
    return frames


def _read_clip(paths: Sequence[str], max_frames: int | None) -> tuple[np.ndarray, list[str], list[str]]:
    """One video file or several frames -> (uint8 (K, H, W, 3), CLI arguments, notes for the command)."""
    if not paths:
        raise ValueError("upload a video file, or several frames of a video")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"the number of frames to use must be at least 1, got {max_frames}")
    images = [p for p in paths if Path(p).suffix.lower() in io.IMAGE_EXTENSIONS]
    if len(images) != len(paths):
        if len(paths) > 1:
            raise ValueError("upload one video file, or several image frames, not both or several videos")
        video = _named(io.read_video, paths[0], max_frames)
        return video, ["--video", _cli_path(paths[0])] + _video_frames_arg(max_frames), []
    ordered = sorted(paths, key=_natural_key)[:max_frames]
    frames = [_read_image(p) for p in ordered]
    io.check_same_size(frames, [Path(p).name for p in ordered])
    # The CLI reads frames from a folder: the bundled clip's when they are its first frames, else
    # one the user makes of the uploads.
    named = [Path(_cli_path(p)) for p in ordered]
    folder = named[0].parent
    if folder.is_absolute() and all(n.parent == folder for n in named):
        files = sorted((f.name for f in folder.iterdir() if f.suffix.lower() in io.IMAGE_EXTENSIONS), key=_natural_key)
        if files[:len(named)] == [n.name for n in named]:
            return np.stack(frames), ["--video", str(folder), "--video-frames", str(len(named))], []
    names = ", ".join(Path(p).name for p in ordered)
    return np.stack(frames), ["--video", "FRAMES"], [f"FRAMES: a folder holding only {names}"]


def _video_frames_arg(max_frames: int | None) -> list[str]:
    return [] if max_frames is None else ["--video-frames", str(max_frames)]


def _parse_positions(text: str, count: int) -> list[int]:
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    if not all(item.isdigit() for item in items):
        raise ValueError(f"positions are 0-based whole numbers separated by commas, e.g. 0, 8; got '{text}'")
    positions = [int(item) for item in items]
    if len(positions) != count:
        raise ValueError(f"{count} frame(s) but {len(positions)} position(s): give one position per frame, "
                         f"in the frames' name order")
    repeated = sorted({p for p in positions if positions.count(p) > 1})
    if repeated:
        raise ValueError(f"position {repeated[0]} is given twice")
    return positions


def _cli_path(upload: str) -> str:
    """How the command names an upload: a bundled demo frame by its path, anything else by its file name."""
    path = Path(upload)
    for clip in sorted(c for c in DEMO_INPUTS.iterdir() if c.is_dir()) if DEMO_INPUTS.is_dir() else []:
        candidate = clip / path.name
        if (candidate.is_file() and path.is_file() and candidate.stat().st_size == path.stat().st_size
                and candidate.read_bytes() == path.read_bytes()):
            return str(candidate)
    return path.name


def _natural_key(path: str) -> list[object]:
    """Uploads and frame files ordered by file name, numbers by value (frame_2 before frame_10)."""
    return natural_key(Path(path).name)


def one_line(err: BaseException) -> str:
    """An error's message on one line, as ``mardini generate`` prints it."""
    return " ".join(str(err).split()) or type(err).__name__


def page_error(err: BaseException) -> str:
    """The one line the page shows for a failed request: the message of an input error
    (`READABLE_ERRORS`), what to lower when memory ran out (`mardini.limits.is_out_of_memory`),
    and for anything else (a bug) its type and message with a pointer to the traceback, which is
    printed to the server's log here (Gradio's own box would say only "Error")."""
    if isinstance(err, READABLE_ERRORS):
        return one_line(err)
    if limits.is_out_of_memory(err):
        return limits.out_of_memory_message(cli=False)
    traceback.print_exception(err, file=sys.stderr)
    return (f"unexpected error ({type(err).__name__}: {one_line(err)[:300]}); the server's log has the "
            f"traceback: please report it with the settings you used")


# --------------------------------------------------------------------------------------------
# The page (Gradio)
# --------------------------------------------------------------------------------------------


def require_gradio():  # noqa: ANN201 - the gradio module
    """Import Gradio with its telemetry off, or raise ImportError saying how to install it."""
    # Before the import: the page must not report usage or look for updates (closed networks too).
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError:
        raise ImportError(f'mardini ui needs gradio, which is not installed: pip install -e ".[ui]" in a '
                          f'checkout, or pip install gradio=={GRADIO_VERSION}') from None
    return gradio


def build_app(pipe: MarDiniPipeline, checkpoint: str | None = None,  # noqa: ANN201 - gr.Blocks
              workdir: str | os.PathLike | None = None):
    """The page: one tab per task, each with its inputs, examples, settings and result.

    Args:
        checkpoint: the checkpoint folder named in the commands shown (``None``: the bundled model).
        workdir: where results are written, one folder per request (default: a new temporary folder).
    """
    gr = require_gradio()
    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="mardini-ui-"))
        # Gradio serves copies of the results from its own cache; ours go when the server stops.
        atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    workdir = Path(workdir)
    counter = _Counter()
    config = pipe.config
    examples = example_requests()
    with gr.Blocks(title="MarDini", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
        gr.Markdown(f"# MarDini\nMasked auto-regressive diffusion for video ([arXiv 2410.20280]"
                    f"(https://arxiv.org/abs/2410.20280)). Model `{config.name}`: {config.height}x{config.width}, "
                    f"{config.num_frames} frames per window (longer videos are made window by window), on "
                    f"{pipe.device.type}. Requests run one at a time; yours waits in a queue if another is running.")
        for task, title in TASK_TITLES.items():
            with gr.Tab(title, id=task):
                fields = _task_fields(gr, task, config.num_frames)
                _examples(gr, fields, examples[task])
                with gr.Accordion("Settings", open=False):
                    with gr.Row():
                        fields["height"] = _optional(gr, "height", "blank: the model's size in the input's "
                                                     "aspect ratio", f"{task}-height")
                        fields["width"] = _optional(gr, "width", "blank: likewise", f"{task}-width")
                        fields["steps"] = _optional(gr, "steps", "DDIM steps per window; blank: the checkpoint's",
                                                    f"{task}-steps")
                    with gr.Row():
                        default = tasks.I2V_GUIDANCE if task in ("i2v", "expand") else tasks.INTERPOLATION_GUIDANCE
                        info = (f"blank: {default:g}" if task != "custom" else
                                f"blank: {tasks.INTERPOLATION_GUIDANCE:g} if every new frame is between known "
                                f"ones, else {tasks.I2V_GUIDANCE:g}")
                        fields["guidance"] = _optional(gr, "guidance", info, f"{task}-guidance")
                        fields["seed"] = gr.Number(label="seed", value=0, precision=0,
                                                   info="the same seed repeats exactly")
                        fields["fps"] = gr.Number(label="fps", value=8, info="frames per second of the videos")
                button = gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")
                with gr.Row():
                    video = gr.Video(label="result", autoplay=True, loop=True, height=320, elem_id=f"{task}-video")
                    sheet = gr.Image(label="contact sheet", type="filepath", height=320, elem_id=f"{task}-sheet")
                with gr.Row():
                    given = gr.Gallery(label="given frames, as read", columns=6, height=220, object_fit="contain")
                    files = gr.File(label="downloads", file_count="multiple", elem_id=f"{task}-files")
                summary = gr.Markdown(elem_id=f"{task}-summary")
                command = gr.Textbox(label="the same from the command line", lines=2, max_lines=8,
                                     interactive=False, buttons=["copy"], elem_id=f"{task}-command")
                run = _handler(gr, task, fields, pipe, checkpoint, workdir, counter)
                # One queue slot for every tab: two users wait for each other rather than share the model.
                button.click(run, inputs=set(fields.values()), outputs=[video, sheet, given, files, summary, command],
                             concurrency_limit=1, concurrency_id="generate", api_name=task)
    return app


def _task_fields(gr: Any, task: str, window: int) -> dict[str, Any]:
    """The input components of one task's tab, by :class:`Request` field name."""
    images = list(io.IMAGE_EXTENSIONS)
    fields: dict[str, Any] = {}
    with gr.Row():
        if task in ("i2v", "loop"):
            fields["image"] = gr.File(label="image", file_types=images, elem_id=f"{task}-image")
        elif task == "interpolate":
            fields["first"] = gr.File(label="first frame", file_types=images, elem_id=f"{task}-first")
            fields["last"] = gr.File(label="last frame", file_types=images, elem_id=f"{task}-last")
        elif task in ("expand", "slowmo"):
            fields["video"] = gr.File(label="video: one video file, or its frames (taken in name order)",
                                      file_count="multiple", elem_id=f"{task}-video-input")
        else:
            fields["known"] = gr.File(label="known frames (taken in name order)", file_count="multiple",
                                      file_types=images, elem_id=f"{task}-known")
    with gr.Row():
        if task == "custom":
            fields["positions"] = gr.Textbox(label="their positions", placeholder="e.g. 0, 8",
                                             info="0-based, one per frame, in the frames' name order")
        if task == "slowmo":
            fields["factor"] = _optional(gr, "factor", "k frames become (k-1)*factor+1; or leave it blank and "
                                         "give frames", f"{task}-factor", value="2")
            fields["frames"] = _optional(gr, "frames", "the total length, instead of a factor", f"{task}-frames")
        else:
            info = ("the total length, more than the given frames" if task == "expand" else
                    "frames of the output, the given ones included (the model's window)")
            fields["frames"] = gr.Number(label="frames", value=window, precision=0, info=info)
        if task == "i2v":
            fields["ref_index"] = gr.Number(label="position of the image", value=0, precision=0,
                                            info="0-based; the paper's demos put it mid-clip")
        if task in ("expand", "slowmo"):
            fields["video_frames"] = _optional(gr, "use the first N frames", "blank: all", f"{task}-video-frames")
    return fields


def _optional(gr: Any, label: str, info: str, elem_id: str, value: str = "") -> Any:
    """A number that may be left blank: a text field (Gradio's number field has no empty state)."""
    return gr.Textbox(label=label, value=value, placeholder="blank", info=info, max_lines=1, elem_id=elem_id)


def _examples(gr: Any, fields: dict[str, Any], examples: list[dict[str, Any]]) -> None:
    names = [name for name in fields if any(name in example for example in examples)]
    gr.Examples(examples=[[example.get(name) for name in names] for example in examples],
                inputs=[fields[name] for name in names], example_labels=[e["label"] for e in examples],
                label="Example: a held-out clip the bundled model never trained on (one click fills the form)")


def _handler(gr: Any, task: str, fields: dict[str, Any], pipe: MarDiniPipeline, checkpoint: str | None,
             workdir: Path, counter: "_Counter") -> Callable:
    def run(values: dict, progress=gr.Progress(track_tqdm=True)):  # noqa: ANN001, ANN202, B008 - Gradio's API
        form = {name: values[component] for name, component in fields.items()}
        progress(0, desc="reading the inputs")
        try:
            request = request_from_form(task, form)
            result = run_request(request, pipe, workdir / f"{counter.next():05d}", checkpoint=checkpoint)
        except Exception as err:  # noqa: BLE001 - every failure becomes one line on the page
            raise gr.Error(page_error(err), print_exception=False) from None
        gallery = [(frame, None) for frame in result.given]
        return (str(result.mp4), str(result.sheet), gallery, [str(result.mp4), str(result.gif), str(result.sheet)],
                result.summary, result.command)

    return run


class _Counter:
    """Numbers the requests' output folders (thread-safe: Gradio runs handlers in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


def serve(checkpoint: str | os.PathLike | None = None, host: str = "127.0.0.1", port: int = 7860,
          device: str | torch.device = "cpu", dtype: str | None = None) -> None:
    """Load the checkpoint once and serve the page on ``host:port`` until interrupted.

    ``checkpoint=None`` serves the bundled model.
    """
    require_gradio()
    pipe = MarDiniPipeline.from_pretrained(checkpoint, device=device, dtype=dtype)
    app = build_app(pipe, None if checkpoint is None else str(checkpoint))
    app.queue(default_concurrency_limit=1)
    # The bundled examples are served from the package; nothing else outside the temporary folders.
    app.launch(server_name=host, server_port=port, share=False, allowed_paths=[str(DEMO_INPUTS)],
               max_file_size=MAX_UPLOAD, show_error=False, ssr_mode=False, mcp_server=False, pwa=False)
