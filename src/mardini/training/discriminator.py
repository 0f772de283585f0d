"""Adversarial and edge losses that keep the frame autoencoder sharp.

An autoencoder trained on L1/SSIM alone predicts the mean of what a latent could have been, and
the mean of plausible textures is blur: the first bundled codec kept about a quarter of the
truth's Laplacian variance. Real image autoencoders (VQGAN, Esser et al. 2021; the Stable
Diffusion VAE, Rombach et al. 2022) add a patch discriminator trained from scratch, which
penalises blur wherever a patch looks unlike real ones. There are no pretrained perceptual
networks on this machine, so the perceptual term of those recipes is replaced by an image-gradient
loss, which also rewards edges at the right place.

- :class:`PatchDiscriminator`: the PatchGAN of pix2pix (Isola et al. 2017), one logit per
  overlapping ~70-px patch.
- :func:`hinge_discriminator_loss` / :func:`generator_adversarial_loss`: the hinge GAN losses.
- :func:`adaptive_adversarial_weight`: VQGAN's balance of the adversarial gradient against the
  reconstruction gradient at the decoder's last layer (their eq. 7), so one weight works from the
  first adversarial step on.
- :func:`gradient_loss`: L1 between the horizontal and vertical finite differences of two images.
- :func:`spectrum_loss`: L1 between the local amplitude spectra of two images (a frequency-domain
  loss in the spirit of the focal frequency loss, Jiang et al. 2021, without its adaptive weights).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided 4x4 convs with LeakyReLU, one real/fake logit per patch.

    ``layers`` strided convolutions halve the size each (3 give a 70x70 receptive field, as in
    pix2pix). GroupNorm instead of BatchNorm: batches here are a few frames, and BatchNorm's
    batch statistics would also leak the real/fake split of a batch into the logits.
    """

    def __init__(self, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        if width < 8 or layers < 1:
            raise ValueError(f"PatchDiscriminator needs width >= 8 and layers >= 1; got {width}, {layers}")
        modules: list[nn.Module] = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for i in range(1, layers):
            out = width * min(2 ** i, 8)
            modules += [nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=False), nn.GroupNorm(8, out),
                        nn.LeakyReLU(0.2)]
            channels = out
        out = width * min(2 ** layers, 8)
        modules += [nn.Conv2d(channels, out, 4, stride=1, padding=1, bias=False), nn.GroupNorm(8, out),
                    nn.LeakyReLU(0.2), nn.Conv2d(out, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        """Images (N, 3, H, W) in [-1, 1] -> patch logits (N, 1, h, w)."""
        return self.net(x)


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge loss of the discriminator: real patches above +1, fake ones below -1."""
    return 0.5 * (F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean())


def generator_adversarial_loss(fake_logits: Tensor) -> Tensor:
    """The autoencoder's side of the hinge GAN: raise the discriminator's logits on its frames."""
    return -fake_logits.mean()


def adaptive_adversarial_weight(reconstruction_loss: Tensor, adversarial_loss: Tensor, last_layer: Tensor,
                                max_weight: float = 1e4) -> Tensor:
    """VQGAN's lambda (Esser et al. 2021, eq. 7): ||grad rec|| / (||grad adv|| + 1e-4) at ``last_layer``.

    The adversarial gradient's size is unrelated to the reconstruction's and changes by orders
    of magnitude as the discriminator learns; scaling it to the reconstruction's keeps either
    from drowning the other. Detached: the weight is a number, not a path for gradients.
    """
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (adv_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def gradient_loss(reconstruction: Tensor, target: Tensor) -> Tensor:
    """Mean L1 between the finite differences (x and y) of two image batches.

    L1 on pixels forgives an edge moved or softened by a pixel about as much as a flat error;
    on differences a soft edge costs its full height, which is what a sharp codec must keep.
    """
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    return 0.5 * ((dx(reconstruction) - dx(target)).abs().mean() + (dy(reconstruction) - dy(target)).abs().mean())


def detail_energy_loss(reconstruction: Tensor, target: Tensor, patch: int = 16) -> Tensor:
    """Mean L1 between the Laplacian energy of co-located ``patch`` x ``patch`` tiles (per channel),
    over the truth's mean energy (so it is scale-free: 0.6 when the reconstruction keeps 40%).

    The sharpness measure (`mardini.evaluation.artefacts.sharpness`) is the Laplacian's variance,
    and under uncertainty every pixel-aligned loss (L1, SSIM, gradients, even a per-frequency
    amplitude L1) is cheapest with less of it: the decoder stays at the mean of plausible textures.
    This term asks only for the right *amount* of finest detail in each tile, leaving where it goes
    to the other losses, so the decoder can put it where its latents make it likeliest. Energy, not
    its square root, so that textured tiles weigh most: detail added to a flat tile is mostly the
    codec's own error made louder, which costs SSIM there and buys almost no sharpness.
    """
    if reconstruction.shape != target.shape:
        raise ValueError(f"detail_energy_loss needs equal shapes, got {tuple(reconstruction.shape)} and "
                         f"{tuple(target.shape)}")
    h, w = target.shape[-2:]
    if h % patch or w % patch:
        raise ValueError(f"detail_energy_loss: image size {h}x{w} is not a multiple of the tile size {patch}")
    channels = target.shape[1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=target.device)
    kernel = kernel.view(1, 1, 3, 3).repeat(channels, 1, 1, 1)

    def tile_energy(x: Tensor) -> Tensor:
        lap = F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
        return F.avg_pool2d(lap.square(), patch)

    truth = tile_energy(target)
    return (tile_energy(reconstruction) - truth).abs().mean() / (truth.mean() + 1e-8)


SPECTRUM_WEIGHTINGS = ("flat", "laplacian")


def spectrum_loss(reconstruction: Tensor, target: Tensor, patch: int = 16, weighting: str = "flat") -> Tensor:
    """Mean L1 between the amplitude spectra of co-located ``patch`` x ``patch`` tiles.

    The amplitude of a tile's 2-D FFT says how much of each spatial frequency it holds, not where
    (the phase does). Pixel and gradient losses pay for texture only at the exact position, so under
    uncertainty they prefer none (blur); matching amplitudes asks for the right amount of detail in
    every tile whatever its phase, the quantity the Laplacian-variance sharpness measures. Tiles keep
    it local (a flat sky and a textured field in one frame are not averaged). The DC term is left
    out: the mean colour is the pixel loss's job.

    ``weighting="laplacian"`` scales each frequency by the 4-neighbour Laplacian's response
    (4 - 2 cos kx - 2 cos ky, normalised to mean 1 over the tile's frequencies), the filter the
    sharpness measure applies: the finest detail, a small share of a natural image's amplitude
    that a flat L1 over all frequencies barely weighs, is what it asks for most (the idea of the
    focal frequency loss, Jiang et al. 2021, with a fixed weight).
    """
    if reconstruction.shape != target.shape:
        raise ValueError(f"spectrum_loss needs equal shapes, got {tuple(reconstruction.shape)} and "
                         f"{tuple(target.shape)}")
    if weighting not in SPECTRUM_WEIGHTINGS:
        raise ValueError(f"spectrum weighting must be one of {SPECTRUM_WEIGHTINGS}, got '{weighting}'")
    h, w = target.shape[-2:]
    if h % patch or w % patch:
        raise ValueError(f"spectrum_loss: image size {h}x{w} is not a multiple of the tile size {patch}")

    def amplitude(x: Tensor) -> Tensor:
        tiles = x.float().unfold(-2, patch, patch).unfold(-2, patch, patch)  # (..., H/p, W/p, p, p)
        spectrum = torch.fft.rfft2(tiles, norm="ortho").abs()
        return spectrum.flatten(-2)[..., 1:]  # drop DC

    difference = (amplitude(reconstruction) - amplitude(target)).abs()
    if weighting == "laplacian":
        ky = 2 * math.pi * torch.fft.fftfreq(patch, device=target.device)
        kx = 2 * math.pi * torch.fft.rfftfreq(patch, device=target.device)
        response = (4 - 2 * torch.cos(ky)[:, None] - 2 * torch.cos(kx)[None, :]).flatten()[1:]
        difference = difference * (response / response.mean())
    return difference.mean()
