"""LPIPS (Zhang et al., 2018) from local weight files: AlexNet/VGG16 features + the v0.1 linear head.

VIDIM-Bench reports LPIPS on the middle frame (paper, table 3 "MidF-LPIPS"). Numbers comparable
with published ones need LPIPS **v0.1 with the AlexNet backbone** (the `lpips` package's
default, ``lpips.LPIPS(net="alex")``), which takes two files:

- the backbone: torchvision's ImageNet AlexNet, ``alexnet-owt-7be5be79.pth`` (a state dict;
  the ``features.*`` tensors are used), or VGG16 ``vgg16-397923af.pth`` for ``net="vgg"``;
- the linear head: the `lpips` package's ``lpips/weights/v0.1/alex.pth`` (or ``vgg.pth``),
  five 1x1 convolutions ``lin{k}.model.1.weight``.

Either may be ``.safetensors`` or a ``.pth``/``.pt`` state dict (loaded with
``torch.load(weights_only=True)``: nothing is unpickled). The network reproduces the `lpips`
package's forward pass: inputs in [-1, 1] are shifted/scaled by its `ScalingLayer`, the five
ReLU outputs of the backbone are unit-normalised over channels, squared differences are weighted
by the linear head, averaged over space and summed over layers.

Alternatively `LPIPSMetric.from_torchscript` takes any TorchScript module ``net(a, b)`` on images
in [-1, 1] returning one distance per image (e.g. a scripted ``lpips.LPIPS``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from mardini.weights import load_state_dict_file

from .metrics import to_unit

#: Backbone layouts, as in torchvision's `features` Sequential: (layers, indices of the tapped ReLUs).
_A = "A"  # marks a ReLU
_ALEX = [(3, 64, 11, 4, 2), _A, "M", (64, 192, 5, 1, 2), _A, "M", (192, 384, 3, 1, 1), _A, (384, 256, 3, 1, 1), _A, (256, 256, 3, 1, 1), _A]
_ALEX_TAPS = (1, 4, 7, 9, 11)
_VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
_VGG16_TAPS = (3, 8, 15, 22, 29)
#: LPIPS v0.1 input scaling (lpips.ScalingLayer).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _alexnet_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    for item in _ALEX:
        if item == _A:
            layers.append(nn.ReLU(inplace=False))
        elif item == "M":
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
        else:
            cin, cout, k, s, p = item  # type: ignore[misc]
            layers.append(nn.Conv2d(cin, cout, k, stride=s, padding=p))
    return nn.Sequential(*layers)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            cin = int(item)
    return nn.Sequential(*layers)


BACKBONES: dict[str, tuple[Callable[[], nn.Sequential], tuple[int, ...], tuple[int, ...]]] = {
    "alex": (_alexnet_features, _ALEX_TAPS, (64, 192, 384, 256, 256)),
    "vgg": (_vgg16_features, _VGG16_TAPS, (64, 128, 256, 512, 512)),
}


class LPIPSNetwork(nn.Module):
    """The LPIPS v0.1 network: scaling layer, backbone ReLU taps, unit-normalised diffs, linear head."""

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONES)}; got {net!r}")
        build, self.taps, self.channels = BACKBONES[net]
        self.net_name = net
        self.features = build()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))

    def load_weights(self, backbone: dict[str, Tensor], linear: dict[str, Tensor]) -> None:
        """Load a torchvision backbone state dict and an `lpips` v0.1 linear-head state dict."""
        feats = {}
        for key, value in backbone.items():
            key = key[len("module.") :] if key.startswith("module.") else key
            m = re.fullmatch(r"(?:features\.)?(\d+)\.(weight|bias)", key)
            if m:
                feats[f"{m.group(1)}.{m.group(2)}"] = value
        try:
            self.features.load_state_dict(feats, strict=True)
        except RuntimeError as err:
            raise ValueError(
                f"the backbone weights do not fit torchvision's {self.net_name} `features` layout: {err}"
            ) from None
        for k, lin in enumerate(self.lins):
            keys = [key for key in linear if re.fullmatch(rf"(?:module\.)?lin{k}\.model\.\d+\.weight", key)]
            if len(keys) != 1:
                raise ValueError(
                    f"the linear-head weights need exactly one 'lin{k}.model.N.weight' tensor; found {keys}"
                )
            weight = linear[keys[0]]
            if weight.shape != lin.weight.shape:
                raise ValueError(f"{keys[0]} has shape {tuple(weight.shape)}; expected {tuple(lin.weight.shape)}")
            lin.weight.data.copy_(weight)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Distances ``(N,)`` between images ``(N, 3, H, W)`` in [-1, 1]."""
        n = a.shape[0]
        x = (torch.cat((a, b)) - self.shift) / self.scale
        total = x.new_zeros(n)
        tap = 0
        for index, layer in enumerate(self.features):
            x = layer(x)
            if tap < len(self.taps) and index == self.taps[tap]:
                fa, fb = x[:n], x[n:]
                # lpips.normalize_tensor: unit length over channels, eps 1e-10.
                fa = fa / (fa.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                fb = fb / (fb.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
                total = total + self.lins[tap]((fa - fb).square()).mean(dim=(1, 2, 3))
                tap += 1
                if tap == len(self.taps):
                    break
        return total


class LPIPSMetric:
    """LPIPS distance per frame; frames ``(..., 3, H, W)`` uint8 or float in [0, 1].

    Build with `from_weights` (backbone + linear head files) or `from_torchscript`.
    """

    def __init__(self, net: Callable[[Tensor, Tensor], Tensor], device: str | torch.device = "cpu", batch_size: int = 16) -> None:
        self.net = net
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def from_weights(
        cls,
        backbone: str | os.PathLike,
        linear: str | os.PathLike,
        net: str = "alex",
        device: str | torch.device = "cpu",
    ) -> LPIPSMetric:
        """LPIPS v0.1 from a torchvision backbone state dict and the `lpips` linear-head file."""
        model = LPIPSNetwork(net)
        model.load_weights(load_state_dict_file(backbone), load_state_dict_file(linear))
        return cls(model.to(device).eval().requires_grad_(False), device)

    @classmethod
    def from_torchscript(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> LPIPSMetric:
        """A TorchScript module ``net(a, b)`` on images in [-1, 1] returning one distance per image."""
        from .features import load_torchscript

        return cls(load_torchscript(path, device), device)

    def __call__(self, a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor:
        """LPIPS of each frame pair, shaped like the leading dims of `a` (float32, CPU)."""
        x, y = to_unit(a).float(), to_unit(b).float()
        if x.shape != y.shape or x.ndim < 3 or x.shape[-3] != 3:
            raise ValueError(f"LPIPS expects two RGB frame tensors (..., 3, H, W) of one shape; got {tuple(x.shape)} and {tuple(y.shape)}")
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:]) * 2.0 - 1.0
        y = y.reshape(-1, *y.shape[-3:]) * 2.0 - 1.0
        out = []
        with torch.no_grad():
            for xa, yb in zip(x.split(self.batch_size), y.split(self.batch_size)):
                out.append(self.net(xa.to(self.device), yb.to(self.device)).reshape(-1).float().cpu())
        return torch.cat(out).reshape(lead) if out else torch.zeros(lead)
