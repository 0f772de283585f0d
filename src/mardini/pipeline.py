"""The inference pipeline: codec, planner, generator and DDIM sampler behind one call.

:meth:`MarDiniPipeline.generate` is the general "generate these frames given those" call that every
task of :mod:`mardini.tasks` is a thin function over. For each request it

1. resizes the known frames to the output (high) resolution and to the planner's low resolution
   (``config.low_resolution``) and encodes both with the codec (section 2.2: Z_high and Z_low);
2. splits the timeline into windows of at most ``config.num_frames`` frames
   (:func:`mardini.windows.plan_windows`; one window whenever the video fits in one);
3. per window, runs the planner **once** on the masked low-resolution latents (section 2.2,
   Z_cond = P(Z_low^mask); the planner is the expensive model and is never inside the denoising
   loop), then denoises only the frames to generate with DDIM and classifier-free guidance on the
   planning signal (section 2.4.1), keeping the known frames' latents exactly as given;
4. decodes every frame and returns them as ``uint8`` (:class:`VideoOutput`).

Known frames come back as the codec's round trip of the (resized) inputs: their latents are never
changed, only decoded. Frames a window generates serve as references of later windows as latents,
so they are not re-encoded at the high resolution; their low-resolution latents (for the planner)
are made by decoding and re-encoding once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from PIL import Image
from torch import Tensor
from tqdm.auto import tqdm

from mardini.checkpoint import check_codec, load_checkpoint, save_checkpoint
from mardini.codecs import LatentCodec
from mardini.config import MarDiniConfig
from mardini.diffusion import (default_steps, diffusion_prior, guided_denoiser, make_scheduler, sample_ddim,
                               shifted_grid)
from mardini.limits import check_frame_count, output_size
from mardini.models import MarDini
from mardini.windows import Window, plan_windows

#: One frame: a PIL image, a ``uint8`` array/tensor (H, W, 3), or a float tensor (3, H, W) in [-1, 1].
ImageLike = Union[Image.Image, np.ndarray, Tensor, str, os.PathLike]
#: Which frames are known: their positions (ints), or a (B, N) / (N,) bool mask.
Known = Union[Sequence[int], Sequence[bool], np.ndarray, Tensor]

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "default"


def default_checkpoint() -> Path:
    """The bundled model's checkpoint folder (used whenever no checkpoint is given)."""
    if not (DEFAULT_CHECKPOINT / "config.json").is_file():
        raise FileNotFoundError(f"this install has no bundled model (expected {DEFAULT_CHECKPOINT}); "
                                f"pass --checkpoint DIR with a trained or `mardini init` checkpoint")
    return DEFAULT_CHECKPOINT


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device) -> torch.dtype | None:
    """Check that ``device`` computes in ``dtype`` (a dtype or a name such as ``"bf16"``) and return it.

    float16 is refused on the CPU (many CPU kernels lack it); bfloat16 on a CUDA GPU that lacks it.
    """
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype.lower() not in _DTYPES:
            raise ValueError(f"unknown dtype '{dtype}'; use one of: float32, bfloat16 (bf16), float16 (fp16)")
        dtype = _DTYPES[dtype.lower()]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {dtype} is not supported; use float32, bfloat16 or float16")
    kind = torch.device(device).type
    if kind == "cpu" and dtype == torch.float16:
        raise ValueError("float16 is not supported on the CPU; use bfloat16 or float32 there "
                         "(float16 is for GPUs)")
    if kind == "cuda" and dtype == torch.bfloat16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bfloat16; use float16 or float32")
    return dtype


def frames_to_tensor(frames: ImageLike | Sequence[ImageLike]) -> Tensor:
    """Frames in any accepted form -> float32 (..., 3, H, W) in [-1, 1].

    An image may also be a file path (read by :func:`mardini.io.read_image`), or an integer array
    that is greyscale (H, W) or (H, W, 1), RGBA (H, W, 4) or 16-bit (:func:`mardini.io.as_rgb_array`).
    ``uint8`` arrays and tensors are channels-last, (..., H, W, 3) in 0..255; float arrays and
    tensors are channels-first, (..., 3, H, W) in [-1, 1] (the codec's convention); a sequence of
    frames is stacked along a new first dimension and its frames must share one size.
    """
    from mardini import io  # image-file reading and mode handling, shared with the CLI

    if isinstance(frames, (str, os.PathLike)):
        frames = io.read_image(frames)
    if isinstance(frames, Image.Image):
        frames = io.image_to_rgb(frames)
    if (isinstance(frames, np.ndarray) and (np.issubdtype(frames.dtype, np.integer) or frames.dtype == np.bool_)
            and (frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] in (1, 3, 4)))):
        frames = io.as_rgb_array(frames)  # one greyscale, RGBA or 16-bit image (float arrays are channels-first)
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("no frames given")
        items = [frames_to_tensor(f) for f in frames]
        for i, item in enumerate(items[1:], start=1):
            if item.shape != items[0].shape:
                raise ValueError(f"the given frames differ in size: frame 0 is {_hw(items[0])}, frame {i} is "
                                 f"{_hw(item)}; give frames of one size")
        return torch.stack(items)
    if isinstance(frames, np.ndarray):
        # A copy when read-only (e.g. np.asarray of a PIL image): torch tensors assume writable memory.
        frames = torch.from_numpy(np.array(frames) if not frames.flags.writeable else np.ascontiguousarray(frames))
    if not torch.is_tensor(frames):
        raise TypeError(f"cannot use {type(frames).__name__} as a frame; pass a PIL image, a uint8 array "
                        f"(H, W, 3) or a float tensor (3, H, W) in [-1, 1]")
    if frames.dtype == torch.uint8:
        if frames.ndim < 3 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be RGB and channels-last, (..., H, W, 3); got shape "
                             f"{tuple(frames.shape)}")
        # Contiguous channels-first: convolutions pick their kernels by memory layout, and results
        # must not depend on how the frames were passed in.
        return (frames.movedim(-1, -3).float() / 127.5 - 1.0).contiguous()
    if frames.is_floating_point():
        if frames.ndim < 3 or frames.shape[-3] != 3:
            raise ValueError(f"float frames must be RGB and channels-first, (..., 3, H, W) in [-1, 1]; got shape "
                             f"{tuple(frames.shape)}")
        frames = frames.float()
        if frames.numel() and (frames.min() < -1.001 or frames.max() > 1.001):
            raise ValueError(f"float frames must lie in [-1, 1], got values in [{frames.min():.3g}, "
                             f"{frames.max():.3g}]; pass uint8 frames or scale them")
        return frames.clamp(-1.0, 1.0).contiguous()
    raise TypeError(f"frames of dtype {frames.dtype} are not supported; use uint8 or a float dtype")


def resize_frames(frames: Tensor, height: int, width: int) -> Tensor:
    """Resize (..., 3, H, W) frames to cover ``height`` x ``width`` keeping their aspect, then centre-crop.

    Bilinear with antialiasing, so downscaling does not alias.
    """
    h0, w0 = frames.shape[-2:]
    if (h0, w0) == (height, width):
        return frames
    scale = max(height / h0, width / w0)
    size = (max(height, round(h0 * scale)), max(width, round(w0 * scale)))
    flat = frames.reshape(-1, *frames.shape[-3:])
    out = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    out = out[..., top:top + height, left:left + width]
    return out.clamp(-1.0, 1.0).reshape(*frames.shape[:-2], height, width)


def to_uint8(frames: Tensor) -> np.ndarray:
    """Frames (..., 3, H, W) in [-1, 1] -> ``uint8`` (..., H, W, 3)."""
    return ((frames.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).cpu().numpy()


@dataclass
class VideoOutput:
    """What :meth:`MarDiniPipeline.generate` returns.

    Attributes:
        frames: (B, N, H, W, 3) ``uint8``.
        known: (B, N) bool, the frames given as input (returned as the codec's round trip of them).
        windows: the model calls that generated the rest (one planner call each).
        steps: DDIM steps each window ran, in order (see :meth:`MarDiniPipeline.default_steps`).
        guidance_scale: the classifier-free guidance scale used.
    """

    frames: np.ndarray
    known: np.ndarray
    windows: list[Window]
    steps: list[int]
    guidance_scale: float

    def pil(self, index: int = 0) -> list[Image.Image]:
        """Video ``index`` of the batch as a list of PIL images."""
        return [Image.fromarray(f) for f in self.frames[index]]

    def save(self, path: str | os.PathLike, index: int = 0, fps: float = 8.0) -> Path:
        """Write video ``index`` as .mp4, .gif or a PNG folder, by extension (:func:`mardini.io.write_video`)."""
        from mardini.io import write_video

        return write_video(self.frames[index], path, fps)

    def save_contact_sheet(self, path: str | os.PathLike, index: int = 0, columns: int | None = None) -> Path:
        """Write video ``index`` as one PNG of tiled frames (:func:`mardini.io.write_contact_sheet`)."""
        from mardini.io import write_contact_sheet

        return write_contact_sheet(self.frames[index], path, columns)


class MarDiniPipeline:
    """Codec + planner + generator + DDIM scheduler: MarDini inference (see the module docstring).

    Build one with :meth:`from_pretrained` from a checkpoint folder, or from a model and codec.
    """

    def __init__(self, model: MarDini, codec: LatentCodec, scheduler: DDIMScheduler | None = None):
        check_codec(codec, model.config)
        self.model = model.eval()
        self.codec = codec.eval()
        self.scheduler = scheduler if scheduler is not None else make_scheduler(model.config.diffusion)
        self._offload_device: torch.device | None = None

    # --- construction, saving, placement ---------------------------------------------------------

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                        dtype: str | torch.dtype | None = None, cpu_offload: bool = False) -> "MarDiniPipeline":
        """Load a checkpoint folder (config.json, model.safetensors, codec/) onto ``device`` in ``dtype``.

        ``folder=None`` loads the model bundled with the package (:func:`default_checkpoint`).

        With ``cpu_offload`` the weights load into CPU memory and run on ``device`` one model at a
        time (:meth:`enable_model_cpu_offload`).
        """
        dtype = resolve_dtype(dtype, device)
        folder = default_checkpoint() if folder is None else folder
        model, codec = load_checkpoint(folder, device="cpu" if cpu_offload else device, dtype=dtype)
        pipe = cls(model, codec)
        return pipe.enable_model_cpu_offload(device) if cpu_offload else pipe

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write a complete checkpoint folder that :meth:`from_pretrained` reads back."""
        return save_checkpoint(self.model, self.codec, folder)

    @property
    def config(self) -> MarDiniConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        """Where the computation runs (the accelerator when model CPU offload is on)."""
        if self._offload_device is not None:
            return self._offload_device
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The networks' dtype; sampler arithmetic stays in float32 whatever it is."""
        return next(self.model.parameters()).dtype

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "MarDiniPipeline":
        """Move the networks and the codec (and turn model CPU offload off)."""
        device = torch.device(device) if device is not None else self.device
        dtype = resolve_dtype(dtype, device)
        for module in (self.model, self.codec):
            if dtype is None:
                module.to(device)
            else:
                module.to(device=device, dtype=dtype)
        self._offload_device = None
        return self

    def enable_model_cpu_offload(self, device: str | torch.device = "cuda") -> "MarDiniPipeline":
        """Keep the networks and the codec on the CPU and move each to ``device`` only while it runs.

        The planner is on ``device`` while planning, the generator while denoising, the codec while
        encoding or decoding, so at most one of them occupies accelerator memory at a time. Meant
        for accelerators; with ``device="cpu"`` it changes nothing but is allowed (tests use it).
        """
        device = torch.device(device)
        resolve_dtype(self.dtype, device)
        self.model.to("cpu")
        self.codec.to("cpu")
        self._offload_device = device
        return self

    @contextlib.contextmanager
    def _placed(self, module: torch.nn.Module) -> Iterator[None]:
        if self._offload_device is None:
            yield
            return
        module.to(self._offload_device)
        try:
            yield
        finally:
            module.to("cpu")

    # --- the steps of one request ----------------------------------------------------------------

    def output_size(self, height: int | None = None, width: int | None = None,
                    like: tuple[int, int] | None = None) -> tuple[int, int]:
        """Output (height, width): as given; by default the checkpoint's trained size with the aspect
        ratio of the known frames' size ``like``; one given side keeps ``like``'s aspect ratio
        (:func:`mardini.limits.output_size`)."""
        return output_size(self.config, height, width, like)

    @torch.no_grad()
    def encode(self, frames: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Frames (..., 3, H, W) in [-1, 1] -> (high-resolution latents, low-resolution latents).

        The frames are resized to ``height`` x ``width`` (:func:`resize_frames`), and from there to
        ``config.low_resolution(height, width)`` for the planner (section 2.2: X_high and X_low).
        """
        high = resize_frames(frames.to(self.device), height, width)
        low = resize_frames(high, *self.config.low_resolution(height, width))
        with self._placed(self.codec):
            return self.codec.encode(high), self.codec.encode(low)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """High-resolution latents (..., C, h, w) -> frames (..., 3, H, W) in [-1, 1]."""
        with self._placed(self.codec):
            return self.codec.decode(latents.to(self.device))

    @torch.no_grad()
    def sample(self, latents: Tensor, latents_low: Tensor, frame_is_generated: Tensor, steps: int | None = None,
               guidance_scale: float = 1.0, generator: torch.Generator | None = None,
               progress: bool = True) -> Tensor:
        """One window: plan once, then denoise the generated frames; the latent-level general call.

        Args:
            latents: (B, K, C, H, W) high-resolution latents; values of generated frames are ignored.
            latents_low: (B, K, C, h, w) low-resolution latents; likewise.
            frame_is_generated: (B, K) bool.
            steps: DDIM steps (default :meth:`default_steps` of the mask).
            guidance_scale: classifier-free guidance on the planning signal; 1 disables it, and
                with it the checkpoint's skip-layer guidance (``diffusion.skip_guidance``).

        Returns:
            (B, K, C, H, W) float32 latents, the known frames' exactly as given.
        """
        steps = self._steps(steps, frame_is_generated, latents)
        dtype, device = self.dtype, self.device
        mask = frame_is_generated.to(device)
        with self._placed(self.model.planner):
            # Section 2.2: Z_cond = P(Z_low^mask), once per window, outside the denoising loop.
            plan = self.model.planner(latents_low.to(device, dtype), mask)
        with self._placed(self.model.generator):
            # Skip-layer guidance rides with classifier-free guidance: on the frames beyond the
            # references that appendix B guides, not on in-betweens and loops (guidance 1), where
            # it lowered validation in-betweens by 0.1 dB and loops' motion (docs/benchmarks.md).
            diffusion = self.config.diffusion
            skip = diffusion.skip_guidance if guidance_scale != 1.0 else 0.0
            guided = guided_denoiser(self.model.generator, mask, plan, guidance_scale, skip,
                                     diffusion.skip_guidance_block)
            guided = shifted_grid(guided, self.config.diffusion.grid_shift, self.config.generator.patch_size)

            def denoise(x: Tensor, t: Tensor) -> Tensor:
                # Networks in their dtype, DDIM arithmetic in float32 (bf16 steps would drift).
                return guided(x.to(dtype), t).float()

            latents = latents.to(device, torch.float32)
            return sample_ddim(denoise, latents, mask, self.scheduler, steps, rng=generator, progress=progress,
                               prior=diffusion_prior(self.config.diffusion, latents, mask))

    # --- the general call ------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, frames: ImageLike | Sequence[ImageLike], known: Known, num_frames: int | None = None, *,
                 height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance_scale: float = 1.0, seed: int | None = None, generator: torch.Generator | None = None,
                 num_samples: int = 1, window: int | None = None, overlap: int | None = None,
                 progress: bool = True) -> VideoOutput:
        """Generate the unknown frames of a video given some known ones.

        Two ways to say what is known:

        * ``frames`` = the known frames (a sequence of images, or an array/tensor with them along
          the first dimension) and ``known`` = their 0-based positions (ints), with ``num_frames``
          the length of the output video; or
        * ``frames`` = a (B, N, ...) batch of videos (or one (N, ...) video) and ``known`` = a
          (B, N) (or (N,)) bool mask; values of unknown frames are ignored.

        Args:
            num_frames: frames of the output video, known ones included (the mask's N if omitted).
            height, width: output size (see :meth:`output_size`).
            steps: DDIM steps per window (default :meth:`default_steps` of each window's mask).
            guidance_scale: classifier-free guidance on the planning signal (section 2.4.1);
                1 turns it off. The tasks choose per-task defaults (appendix B).
            seed, generator: seed of the noise (one or the other); the same seed repeats exactly.
            num_samples: videos per input, drawn with different noise (the batch grows by this factor).
            window: most frames per model call, at most and by default ``config.num_frames``.
            overlap: reference frames each sliding-window extension keeps (see :mod:`mardini.windows`).
            progress: show tqdm bars over the denoising steps (and the windows, if several).
        """
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if steps is not None:
            self._steps(steps)  # refused before any work is done
        window = self._check_window(window)
        pixels, positions, known_mask = self._known_frames(frames, known, num_frames)
        num_frames = known_mask.shape[1]
        if num_samples > 1:
            pixels = pixels.repeat_interleave(num_samples, dim=0)
            known_mask = known_mask.repeat_interleave(num_samples, dim=0)
        windows = self._schedule(known_mask, window, overlap)
        height, width = self.output_size(height, width, like=tuple(pixels.shape[-2:]))
        device = self.device
        if generator is None and seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)

        # Timeline of latents; known frames encoded once at both resolutions (section 2.2).
        high_known, low_known = self.encode(pixels, height, width)
        batch = known_mask.shape[0]
        high = high_known.new_zeros(batch, num_frames, *high_known.shape[2:])
        low = low_known.new_zeros(batch, num_frames, *low_known.shape[2:])
        high[:, positions], low[:, positions] = high_known, low_known
        filled = known_mask.to(device, copy=True)
        has_low = filled.clone()

        ran: list[int] = []
        bar = tqdm(windows, desc="windows", disable=not progress or len(windows) < 2, leave=False)
        for win in bar:
            pos = list(win.positions)
            # References made by an earlier window still need their low-resolution latents.
            need_low = [p for p in pos if bool((filled[:, p] & ~has_low[:, p]).any())]
            if need_low:
                low[:, need_low] = self._low_latents(high[:, need_low])
                has_low[:, need_low] = True
            generated = ~filled[:, pos]
            ran.append(self._steps(steps, generated, high[:, pos]))
            high[:, pos] = self.sample(high[:, pos], low[:, pos], generated, ran[-1], guidance_scale, generator,
                                       progress)
            filled[:, pos] = True
        return VideoOutput(frames=to_uint8(self.decode(high)), known=known_mask.cpu().numpy(), windows=windows,
                           steps=ran, guidance_scale=guidance_scale)

    # --- helpers ---------------------------------------------------------------------------------

    def default_steps(self, frame_is_generated: Tensor, latents: Tensor | None = None) -> int:
        """DDIM steps for a window with this (B, K) mask when none are asked for:
        ``diffusion.inbetween_steps`` when it is set, a prior is on and every generated frame lies
        between two references (two different ones, when the window's ``latents`` are given: a
        loop's frames lie between two copies of one image); ``diffusion.sampling_steps`` otherwise
        (:func:`mardini.diffusion.default_steps`)."""
        return default_steps(self.config.diffusion, frame_is_generated, latents)

    def _steps(self, steps: int | None, frame_is_generated: Tensor | None = None,
               latents: Tensor | None = None) -> int:
        if steps is None:
            assert frame_is_generated is not None
            return self.default_steps(frame_is_generated, latents)
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"the number of sampling steps must be an integer of at least 1, got {steps!r}")
        return int(steps)

    def _check_window(self, window: int | None) -> int:
        limit = self.config.num_frames
        if window is None:
            return limit
        if not 2 <= window <= limit:
            raise ValueError(f"window must be between 2 and {limit} frames (the window model "
                             f"'{self.config.name}' was trained on), got {window}")
        return window

    def _known_frames(self, frames: ImageLike | Sequence[ImageLike], known: Known,
                      num_frames: int | None) -> tuple[Tensor, list[int], Tensor]:
        """-> (known pixels (B, P, 3, H, W), their positions (P), known mask (B, N))."""
        known_arr = np.asarray(known.cpu() if torch.is_tensor(known) else known)
        if known_arr.dtype == np.bool_:
            if known_arr.ndim not in (1, 2):
                raise ValueError(f"a known-frame mask must be (N,) or (B, N), got shape {known_arr.shape}")
            mask = torch.from_numpy(np.atleast_2d(known_arr).copy())
            check_frame_count(mask.shape[1])
            if num_frames is not None and num_frames != mask.shape[1]:
                raise ValueError(f"num_frames={num_frames} disagrees with the mask's {mask.shape[1]} frames")
            positions = [p for p in range(mask.shape[1]) if bool(mask[:, p].any())]
            if not positions:
                raise ValueError("at least one known frame is needed: MarDini generates frames from reference "
                                 "frames")
            # Only the known frames are converted: the values at unknown positions are ignored.
            if isinstance(frames, (list, tuple)) and known_arr.ndim == 1:
                if len(frames) != mask.shape[1]:
                    raise ValueError(f"{len(frames)} frames do not match the known mask of {mask.shape[1]} frames")
                return frames_to_tensor([frames[p] for p in positions])[None], positions, mask
            video = frames if torch.is_tensor(frames) else np.asarray(frames)
            if tuple(video.shape[:known_arr.ndim]) != known_arr.shape:
                raise ValueError(f"frames of shape {tuple(video.shape)} do not match the known mask of shape "
                                 f"{known_arr.shape}: the mask needs one entry per frame")
            pixels = frames_to_tensor(video[positions] if known_arr.ndim == 1 else video[:, positions])
            return (pixels[None] if known_arr.ndim == 1 else pixels), positions, mask
        if known_arr.size and not np.issubdtype(known_arr.dtype, np.integer):
            raise TypeError(f"known must be frame positions (ints) or a bool mask, got {known_arr.dtype} values")
        positions = [int(p) for p in known_arr.reshape(-1)]
        if not positions:
            raise ValueError("at least one known frame is needed: MarDini generates frames from reference frames")
        if num_frames is None:
            raise ValueError("num_frames is needed when known frames are given by position")
        check_frame_count(num_frames)  # before window planning, which grows with the length
        if len(set(positions)) != len(positions):
            raise ValueError(f"known frame positions repeat: {positions}")
        pixels = frames_to_tensor(frames)
        if pixels.ndim == 3:
            pixels = pixels[None]
        if pixels.ndim != 4 or pixels.shape[0] != len(positions):
            raise ValueError(f"{len(positions)} known position(s) but frames of shape {tuple(pixels.shape)}; "
                             f"give one frame per position")
        mask = torch.zeros(1, num_frames, dtype=torch.bool)
        bad = [p for p in positions if not 0 <= p < num_frames]
        if bad:
            raise ValueError(f"known frame position(s) {bad} lie outside a {num_frames}-frame video "
                             f"(positions are 0-based, 0 to {num_frames - 1})")
        mask[0, positions] = True
        order = sorted(range(len(positions)), key=positions.__getitem__)
        return pixels[order][None], sorted(positions), mask

    def _schedule(self, known_mask: Tensor, window: int, overlap: int | None) -> list[Window]:
        rows = [tuple(np.flatnonzero(row.cpu().numpy()).tolist()) for row in known_mask]
        schedules = [plan_windows(row, known_mask.shape[1], window, overlap) for row in rows]
        if len(set(rows)) == 1:
            return schedules[0]
        if known_mask.shape[1] > window:
            raise ValueError(f"the videos of a batch know different positions; that needs one window, but "
                             f"{known_mask.shape[1]} frames exceed the {window}-frame window: generate them "
                             f"one at a time")
        # One window over the whole video; each video generates its own unknown frames.
        return [Window(tuple(range(known_mask.shape[1])), tuple(bool(x) for x in (~known_mask).any(0)))]

    def _low_latents(self, latents: Tensor) -> Tensor:
        """Low-resolution latents of frames known only as high-resolution latents (made by a window)."""
        frames = self.decode(latents)
        low = resize_frames(frames, *self.config.low_resolution(*frames.shape[-2:]))
        with self._placed(self.codec):
            return self.codec.encode(low)


def _hw(frame: Tensor) -> str:
    return f"{frame.shape[-1]}x{frame.shape[-2]}"
