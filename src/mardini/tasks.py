"""The video tasks of the paper, each a thin function over :meth:`MarDiniPipeline.generate`.

MarDini does every task with one model by choosing which frames are known (section 1,
"Flexibility"; section 2.4.1, joint-task stage): the tasks below only place the given frames on the
output timeline and pick the guidance default. Videos longer than the model's window are covered
by several windows (:mod:`mardini.windows`): sliding-window extension past the last known frame,
hierarchical interpolation between known frames (appendix F.1).

Guidance defaults follow appendix B: classifier-free guidance 2.5 for image-to-video, none (1.0)
for interpolation, where it is redundant. Expansion and extension predict unseen frames as
image-to-video does and default to 2.5; every default can be overridden.

``**options`` of every task go to :meth:`MarDiniPipeline.generate`: ``height``, ``width``,
``steps``, ``seed``, ``generator``, ``num_samples``, ``window``, ``overlap``, ``progress``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from mardini.limits import check_frame_count
from mardini.pipeline import ImageLike, MarDiniPipeline, VideoOutput, frames_to_tensor

#: Appendix B: "we set the classifier-free guidance (CFG) scale as 2.5 for the image-to-video task".
I2V_GUIDANCE = 2.5
#: Appendix B: "we directly remove classifier-free guidance for video interpolation as it is redundant".
INTERPOLATION_GUIDANCE = 1.0


def image_to_video(pipe: MarDiniPipeline, image: ImageLike, num_frames: int | None = None, *, ref_index: int = 0,
                   guidance_scale: float = I2V_GUIDANCE, **options: Any) -> VideoOutput:
    """Animate one image: it is the frame at ``ref_index`` (0-based), every other frame is generated.

    Section 1: "given the first frame and masking the rest, it performs image-to-video generation";
    the reference may sit at any position (the paper's demos put it mid-clip). ``num_frames``
    defaults to the model's window; longer videos extend from the first window outwards.
    """
    num_frames = check_frame_count(pipe.config.num_frames if num_frames is None else num_frames, minimum=2)
    if not 0 <= ref_index < num_frames:
        raise ValueError(f"ref_index {ref_index} is outside a {num_frames}-frame video (0 to {num_frames - 1})")
    return pipe.generate([image], [ref_index], num_frames, guidance_scale=guidance_scale, **options)


def interpolate(pipe: MarDiniPipeline, first: ImageLike, last: ImageLike, num_frames: int | None = None, *,
                guidance_scale: float = INTERPOLATION_GUIDANCE, **options: Any) -> VideoOutput:
    """Generate the frames between ``first`` and ``last`` (``num_frames`` in all, both ends included).

    Video interpolation (section 1, table 3), with no guidance by default (appendix B). Any number
    of frames: past the model's window the gap is filled hierarchically (appendix F.1).

    Novel-view synthesis (appendix F.1, "Zero-Shot 3D View Synthesis") is this same call: pass two
    views of a fixed object as ``first`` and ``last`` and the frames between are the views between.
    """
    num_frames = pipe.config.num_frames if num_frames is None else num_frames
    if num_frames < 3:
        raise ValueError(f"interpolation needs at least 3 frames (first, last and one between), got {num_frames}")
    return pipe.generate([first, last], [0, num_frames - 1], num_frames, guidance_scale=guidance_scale, **options)


def loop(pipe: MarDiniPipeline, image: ImageLike, num_frames: int | None = None, *,
         guidance_scale: float = INTERPOLATION_GUIDANCE, **options: Any) -> VideoOutput:
    """A looping video: interpolation whose first and last frames are both ``image``.

    Project page: "when these boundary frames are identical, MarDini can create seamless looping
    videos". The last frame repeats the first; drop it when playing the video on repeat.
    """
    return interpolate(pipe, image, image, num_frames, guidance_scale=guidance_scale, **options)


def expand(pipe: MarDiniPipeline, frames: ImageLike | Sequence[ImageLike], num_frames: int, *,
           guidance_scale: float = I2V_GUIDANCE, **options: Any) -> VideoOutput:
    """Video expansion: ``frames`` are the first k frames, the next ``num_frames - k`` are generated.

    Section 1: "when given a video and masking subsequent frames, it performs video expansion".
    Past the model's window it continues window by window (see :func:`extend`).
    """
    clip = _clip(frames)
    check_frame_count(num_frames, minimum=2)
    if num_frames <= len(clip):
        raise ValueError(f"num_frames ({num_frames}) must exceed the {len(clip)} given frames: it counts the "
                         f"given frames plus the ones to generate")
    return pipe.generate(clip, list(range(len(clip))), num_frames, guidance_scale=guidance_scale, **options)


def extend(pipe: MarDiniPipeline, frames: ImageLike | Sequence[ImageLike], num_frames: int, *,
           window: int | None = None, overlap: int | None = None, guidance_scale: float = I2V_GUIDANCE,
           **options: Any) -> VideoOutput:
    """Auto-regressive extension past the training window with a sliding window.

    Appendix A: "the model's ability to autoregressively generate samples ensures that the length of
    the output video is not constrained". Each window of ``window`` frames (default and at most the
    model's) keeps the last ``overlap`` frames of what exists as references and generates the rest
    (default overlap: :func:`mardini.windows.default_overlap`). The same call as :func:`expand`,
    with the sliding window's size and overlap exposed.
    """
    return expand(pipe, frames, num_frames, window=window, overlap=overlap, guidance_scale=guidance_scale,
                  **options)


def custom(pipe: MarDiniPipeline, known: Mapping[int, ImageLike], num_frames: int | None = None, *,
           guidance_scale: float | None = None, **options: Any) -> VideoOutput:
    """Any set of known frames, ``{position: frame}`` (0-based), everything else generated.

    Section 2.4.1: the joint-task stage trains "a variable number of input frames at arbitrary
    temporal locations". Guidance by default follows appendix B: none (1.0) when every generated
    frame lies between two known ones (interpolation), else 2.5 (like image-to-video).
    """
    if not known:
        raise ValueError("custom needs at least one known frame")
    num_frames = check_frame_count(pipe.config.num_frames if num_frames is None else num_frames, minimum=2)
    positions = sorted(known)
    if guidance_scale is None:
        extrapolates = positions[0] > 0 or positions[-1] < num_frames - 1
        guidance_scale = I2V_GUIDANCE if extrapolates else INTERPOLATION_GUIDANCE
    return pipe.generate([known[p] for p in positions], positions, num_frames, guidance_scale=guidance_scale,
                         **options)


def slow_motion(pipe: MarDiniPipeline, frames: ImageLike | Sequence[ImageLike], *, factor: int | None = None,
                num_frames: int | None = None, guidance_scale: float = INTERPOLATION_GUIDANCE,
                **options: Any) -> VideoOutput:
    """Hierarchical slow motion (appendix F.1): spread ``frames`` over a longer video and fill between.

    Give ``factor`` (the k given frames become ``(k - 1) * factor + 1``, one every ``factor``) or
    ``num_frames`` (the given frames spread as evenly as whole positions allow, first and last at the
    ends). Levels of windows then put new frames evenly between neighbouring known frames, coarse to
    fine, until every frame exists (:mod:`mardini.windows`): 4 frames reach 128 with a 17-frame
    model in 11 windows (3 at the first level, 8 at the second).
    """
    clip = _clip(frames)
    count = len(clip)
    if count < 2:
        raise ValueError("slow motion needs at least 2 frames")
    if (factor is None) == (num_frames is None):
        raise ValueError("give exactly one of factor and num_frames")
    if factor is not None:
        if factor < 2:
            raise ValueError(f"the slow-motion factor must be at least 2, got {factor}")
        num_frames = (count - 1) * factor + 1
    check_frame_count(num_frames, minimum=3)  # also a factor that makes too long a video
    if num_frames <= count:
        raise ValueError(f"num_frames ({num_frames}) must exceed the {count} given frames for slow motion")
    # Round half up, so positions are symmetric and distinct (num_frames > count).
    positions = [(2 * i * (num_frames - 1) + count - 1) // (2 * (count - 1)) for i in range(count)]
    return pipe.generate(clip, positions, num_frames, guidance_scale=guidance_scale, **options)


def _clip(frames: ImageLike | Sequence[ImageLike]) -> Tensor:
    clip = frames_to_tensor(frames)
    if clip.ndim != 4:
        raise ValueError(f"expected several frames, (K, H, W, 3) uint8 or (K, 3, H, W) float; got one frame or "
                         f"shape {tuple(clip.shape)}")
    return clip
