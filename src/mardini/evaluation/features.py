"""Feature extractors for FID, FVD and VBench-style consistency, loaded from local TorchScript files.

Nothing here downloads: every extractor is built from a file the user already has. All of them
share one small interface, `FeatureExtractor`: call it on a batch, get ``(N, D)`` features;
`FeatureExtractor.extract` streams many batches into one array. `fid` and `fvd` wrap
`metrics.frechet_distance` around two such arrays.

Inputs follow the rest of `mardini.evaluation`: channel-first RGB, ``uint8`` or float in [0, 1];
images ``(N, 3, H, W)``, videos ``(B, T, 3, H, W)`` (time before channel, as in `mardini`).
Float inputs are quantised to 8 bits first, because the reference protocols score 8-bit images
and videos (StyleGAN-V converts generator output with ``(x * 127.5 + 128).clamp(0, 255)
.to(uint8)``; clean-fid's paper shows the quantisation step matters).

Which weights and preprocessing make numbers comparable with published ones:

**FID** (`InceptionFeatures`): the TorchScript Inception-v3 of NVIDIA's StyleGAN2-ADA metrics,
``inception-2015-12-05.pt`` (a port of the TF "2015-12-05" graph of the original FID code; the
same file clean-fid uses). Features are the 2,048-d pool3 activations.
``resize="torchscript"`` (default) calls ``net(x, return_features=True)`` on 0..255 values; the
network resizes to 299x299 itself (bilinear, emulating the TF graph's resize) and normalises
with ``(x - 128) / 128``: the StyleGAN2-ADA / StyleGAN-V FID. ``resize="clean"`` reproduces
clean-fid's default mode: each channel is resized to 299x299 as a float image with PIL bicubic
(antialiased), clipped to [0, 255], and passed through ``net.layers`` after the same
normalisation. pytorch-fid ships the same TF weights as a state dict
(``pt_inception-2015-12-05-6726825d.pth``) for its own InceptionV3 code, resizing bilinearly to
299 inside; its numbers match the ``"torchscript"`` mode up to small resize differences. FID
depends on the number of images (it is biased for small N): compare only at equal N
(VIDIM-Bench: every generated frame of its ~400 clips per dataset).

**FVD** (`I3DFeatures`): StyleGAN-V's ``i3d_torchscript.pt``, a TorchScript port of the
Kinetics-400 I3D on TF-Hub that the original FVD code (Unterthiner et al., 2018) uses. Called
exactly as StyleGAN-V's ``compute_fvd`` does: ``net(videos, rescale=True, resize=True,
return_features=True)`` on videos ``(B, 3, T, H, W)`` with 0..255 values; the network maps them
to [-1, 1] and resizes every frame to 224x224 itself, and returns the 400-d logits-layer
features. StyleGAN-V reports FVD on 16-frame clips (its "FVD16"), with 2,048 clips; VIDIM-Bench
clips have 9 frames (7 generated between 2 given), so VIDIM-Bench FVDs are only comparable with
others computed on the same 9-frame clips at the same resolution (256x256 in the paper's table 3).

**Consistency** (`ImageFeatures`): any TorchScript image encoder mapping normalised
``(N, 3, S, S)`` images to ``(N, D)``, e.g. DINO ViT-B/16 (VBench subject consistency,
`ImageFeatures.dino`) or a CLIP image encoder (background consistency, `ImageFeatures.clip`),
with VBench's preprocessing: DINO resizes the shorter side to 224 (bilinear, no antialiasing)
with ImageNet mean/std; CLIP resizes the shorter side to 224 (bicubic), centre-crops 224x224 and
uses CLIP's mean/std.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .metrics import frechet_distance, to_unit

#: Mean/std of the ImageNet-trained encoders (DINO) and of CLIP, as VBench normalises them.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
#: Input size of the FID Inception network.
INCEPTION_SIZE = 299


class FeatureError(RuntimeError):
    """A feature network file is missing, unreadable, or does not behave as its protocol says."""


def load_torchscript(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load a TorchScript module from a local file, in eval mode on `device`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FeatureError(f"feature network file '{path}' does not exist; pass the path of a local TorchScript file")
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript, but the reference FID/FVD networks exist only
            # in that format; loading them is the point.
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated", category=DeprecationWarning)
            return torch.jit.load(path, map_location=torch.device(device)).eval()
    except Exception as err:  # noqa: BLE001 - any load failure is reported with the file named
        raise FeatureError(f"cannot load '{path}' as a TorchScript module: {err}") from None


def quantize_255(frames: Tensor | np.ndarray) -> Tensor:
    """Frames (uint8, or float in [0, 1]) as float32 holding integers 0..255 (8-bit quantised)."""
    return (to_unit(frames).float().clamp(0.0, 1.0) * 255.0).round()


class FeatureExtractor:
    """Maps a batch of images or videos to features ``(N, D)``; subclasses implement `features`."""

    #: What one item of a batch is: "image" (N, 3, H, W) or "video" (B, T, 3, H, W).
    kind: str = "image"

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.net = net
        self.device = torch.device(device)

    def features(self, batch: Tensor) -> Tensor:
        """Features of one batch, float32 ``(N, D)`` on the CPU."""
        raise NotImplementedError

    def __call__(self, batch: Tensor | np.ndarray) -> Tensor:
        x = torch.as_tensor(batch)
        ndim = 4 if self.kind == "image" else 5
        if x.ndim != ndim or x.shape[-3] != 3:
            layout = "(N, 3, H, W)" if self.kind == "image" else "(B, T, 3, H, W)"
            raise ValueError(f"{type(self).__name__} expects {self.kind}s shaped {layout}; got {tuple(x.shape)}")
        with torch.no_grad():
            out = self.features(x)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise FeatureError(
                f"{type(self).__name__}: the network returned shape {tuple(out.shape)} for a batch of "
                f"{x.shape[0]}; expected ({x.shape[0]}, D). Is it the right file?"
            )
        return out.float().cpu()

    def extract(self, batches: Tensor | np.ndarray | Iterable[Tensor | np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Features of many items as one float64 array ``(N, D)``.

        `batches` is one tensor (split into `batch_size` chunks) or an iterable of batches (e.g.
        a generator reading videos from disk, so they never all sit in memory).
        """
        if torch.is_tensor(batches) or isinstance(batches, np.ndarray):
            x = torch.as_tensor(batches)
            batches = x.split(batch_size) if x.shape[0] else []
        chunks = [self(b).double().numpy() for b in batches]
        if not chunks:
            raise ValueError(f"{type(self).__name__}.extract got no {self.kind}s")
        return np.concatenate(chunks, axis=0)


class InceptionFeatures(FeatureExtractor):
    """FID features: 2,048-d Inception-v3 pool3 activations (see the module docstring).

    Args:
        net: the TorchScript ``inception-2015-12-05.pt``, or any module with its call
            signature ``net(x, return_features=True) -> (N, 2048)`` on 0..255 images (and, for
            ``resize="clean"``, a ``layers`` submodule taking 299x299 images in [-1, 1]).
        resize: "torchscript" (StyleGAN2-ADA/-V FID) or "clean" (clean-fid).
    """

    kind = "image"

    def __init__(self, net: torch.nn.Module, device: str | torch.device = "cpu", resize: str = "torchscript") -> None:
        super().__init__(net, device)
        if resize not in ("torchscript", "clean"):
            raise ValueError(f"resize must be 'torchscript' or 'clean'; got {resize!r}")
        if resize == "clean" and not hasattr(net, "layers"):
            raise FeatureError("resize='clean' needs the network's `layers` submodule (inception-2015-12-05.pt has one)")
        self.resize = resize

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", resize: str = "torchscript") -> InceptionFeatures:
        """Load ``inception-2015-12-05.pt`` (or a module with the same call signature) from `path`."""
        return cls(load_torchscript(path, device), device, resize)

    def features(self, batch: Tensor) -> Tensor:
        x = quantize_255(batch)
        if self.resize == "clean":
            x = clean_resize(x, INCEPTION_SIZE)
            # `layers` ends in the pool3 map (N, 2048, 1, 1); clean-fid flattens it the same way.
            return self.net.layers((x.to(self.device) - 128.0) / 128.0).reshape(x.shape[0], -1)
        return self.net(x.to(self.device), return_features=True)


def clean_resize(images: Tensor, size: int) -> Tensor:
    """clean-fid's "clean" resize: every channel as a float32 PIL image, bicubic to size x size, clipped to 0..255.

    Args:
        images: (N, C, H, W) float values 0..255.
    """
    arr = images.detach().cpu().float().numpy()
    out = np.empty((*arr.shape[:2], size, size), dtype=np.float32)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            # A float32 array becomes a mode "F" image, which PIL resizes without 8-bit rounding.
            out[n, c] = np.asarray(Image.fromarray(arr[n, c]).resize((size, size), resample=Image.BICUBIC))
    return torch.from_numpy(out.clip(0.0, 255.0))


class I3DFeatures(FeatureExtractor):
    """FVD features: StyleGAN-V's I3D TorchScript, 400-d (see the module docstring).

    Videos ``(B, T, 3, H, W)`` (uint8 or [0, 1]) are quantised to 0..255, put in the network's
    ``(B, 3, T, H, W)`` layout and passed as ``net(x, rescale=True, resize=True,
    return_features=True)``, StyleGAN-V's exact call.
    """

    kind = "video"

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> I3DFeatures:
        """Load ``i3d_torchscript.pt`` (or a module with the same call signature) from `path`."""
        return cls(load_torchscript(path, device), device)

    def features(self, batch: Tensor) -> Tensor:
        x = quantize_255(batch).permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, T, H, W)
        return self.net(x.to(self.device), rescale=True, resize=True, return_features=True)


class ImageFeatures(FeatureExtractor):
    """A TorchScript image encoder (DINO, CLIP, ...) for feature-consistency scores.

    Images are resized so the shorter side is `size` (torch interpolation without antialiasing,
    as torchvision's ``Resize(antialias=False)`` in VBench), optionally centre-cropped to
    ``size x size``, normalised with `mean`/`std`, and passed as ``net(x)`` -> ``(N, D)``.
    """

    kind = "image"

    def __init__(
        self,
        net: torch.nn.Module,
        device: str | torch.device = "cpu",
        size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        interpolation: str = "bilinear",
        center_crop: bool = False,
    ) -> None:
        super().__init__(net, device)
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.interpolation = interpolation
        self.center_crop = center_crop

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str | torch.device = "cpu", **kwargs: object) -> ImageFeatures:
        """Load a TorchScript encoder from `path`; `kwargs` as in the constructor."""
        return cls(load_torchscript(path, device), device, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def dino(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> ImageFeatures:
        """VBench subject consistency: DINO, shorter side 224 bilinear, ImageNet normalisation."""
        return cls.from_file(path, device)

    @classmethod
    def clip(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> ImageFeatures:
        """VBench background consistency: CLIP image encoder, bicubic 224 + centre crop, CLIP normalisation."""
        return cls.from_file(path, device, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic", center_crop=True)

    def features(self, batch: Tensor) -> Tensor:
        x = quantize_255(batch) / 255.0
        h, w = x.shape[-2:]
        short = min(h, w)
        # torchvision's Resize(int): the shorter side becomes `size`, the longer keeps the ratio.
        new_h, new_w = (self.size, int(self.size * w / h)) if h == short else (int(self.size * h / w), self.size)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode=self.interpolation, align_corners=False)
        if self.center_crop:
            top, left = int(round((new_h - self.size) / 2.0)), int(round((new_w - self.size) / 2.0))
            x = x[..., top : top + self.size, left : left + self.size]
        x = (x - self.mean) / self.std
        return self.net(x.to(self.device))


def fid(
    extractor: InceptionFeatures,
    real: Tensor | Iterable[Tensor],
    generated: Tensor | Iterable[Tensor],
    batch_size: int = 32,
) -> float:
    """Fréchet Inception Distance between two sets of images ``(N, 3, H, W)`` (or iterables of batches)."""
    return frechet_distance(extractor.extract(real, batch_size), extractor.extract(generated, batch_size))


def fvd(
    extractor: I3DFeatures,
    real: Tensor | Iterable[Tensor],
    generated: Tensor | Iterable[Tensor],
    batch_size: int = 8,
) -> float:
    """Fréchet Video Distance between two sets of videos ``(B, T, 3, H, W)`` (or iterables of batches)."""
    return frechet_distance(extractor.extract(real, batch_size), extractor.extract(generated, batch_size))
