"""The adversarial and edge losses of the codec's training (mardini.training.discriminator)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mardini.training.discriminator import (PatchDiscriminator, adaptive_adversarial_weight, detail_energy_loss,
                                            generator_adversarial_loss, gradient_loss, hinge_discriminator_loss,
                                            spectrum_loss)


def _edges(size: int = 32) -> torch.Tensor:
    x = torch.zeros(2, 3, size, size)
    x[..., :, size // 2:] = 1.0
    x[..., size // 2:, :] -= 0.5
    return x


def test_patch_discriminator_gives_one_logit_per_patch():
    d = PatchDiscriminator(width=8, layers=3)
    assert d(torch.zeros(2, 3, 128, 128)).shape == (2, 1, 14, 14)  # pix2pix's 70-px patches at 128 px


def test_gradient_loss_punishes_blur_and_is_zero_for_the_truth():
    sharp = _edges()
    blurred = F.avg_pool2d(F.pad(sharp, (2, 2, 2, 2), mode="replicate"), 5, stride=1)
    assert gradient_loss(sharp, sharp) == 0
    # Blur keeps the mean (L1 of pixels is small) but loses the edges' height.
    assert gradient_loss(blurred, sharp) > 0.5 * (blurred - sharp).abs().mean()
    assert gradient_loss(blurred, sharp) > gradient_loss(sharp + 0.05, sharp)  # a flat offset has no edges


def test_hinge_losses_reward_the_right_side_of_the_margin():
    good_d = hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))
    bad_d = hinge_discriminator_loss(torch.full((4,), -1.0), torch.full((4,), 1.0))
    assert good_d == 0 and bad_d == 2.0
    assert generator_adversarial_loss(torch.full((4,), 3.0)) < generator_adversarial_loss(torch.zeros(4))


def test_adaptive_weight_balances_gradient_norms():
    layer = torch.nn.Parameter(torch.ones(3))
    rec = (layer * 4.0).sum()           # gradient norm 4 * sqrt(3)
    adv = (layer * 0.5).sum()           # gradient norm 0.5 * sqrt(3)
    weight = adaptive_adversarial_weight(rec, adv, layer)
    torch.testing.assert_close(weight, torch.tensor(8.0), rtol=1e-3, atol=1e-3)
    assert not weight.requires_grad


def test_spectrum_loss_sees_missing_detail_but_not_its_position():
    torch.manual_seed(0)
    texture = torch.rand(2, 3, 32, 32)
    blurred = torch.nn.functional.avg_pool2d(texture, 3, 1, 1)
    shifted = texture.roll(1, dims=-1)  # the same detail one pixel over (per tile, amplitudes only nearly equal)
    assert spectrum_loss(texture, texture) == 0
    assert spectrum_loss(blurred, texture) > 3 * spectrum_loss(shifted, texture)
    # Pixels disagree the other way: the shift costs more L1 than the blur.
    assert (shifted - texture).abs().mean() > (blurred - texture).abs().mean()
    # A constant offset is the DC term only: not the spectrum's business.
    assert spectrum_loss(texture + 0.1, texture) < 1e-5
    # Weighted by the Laplacian's response, the finest detail counts most: losing it (a blur) costs
    # more than losing the same share of the coarse content (a sharp but fainter copy).
    fine = texture - blurred
    faint_fine = blurred + 0.5 * fine
    faint_coarse = texture - 0.5 * (blurred - blurred.mean())
    def laplacian(a, b):
        return spectrum_loss(a, b, weighting="laplacian")

    assert laplacian(texture, texture) == 0 and laplacian(texture + 0.1, texture) < 1e-5
    assert laplacian(faint_fine, texture) / laplacian(faint_coarse, texture) > \
        1.5 * spectrum_loss(faint_fine, texture) / spectrum_loss(faint_coarse, texture)  # measured: 6.6 vs 3.8
    with pytest.raises(ValueError, match="weighting must be one of"):
        spectrum_loss(texture, texture, weighting="focal")
    with pytest.raises(ValueError, match="multiple of the tile size"):
        spectrum_loss(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="equal shapes"):
        spectrum_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 32))


def test_detail_energy_loss_asks_for_the_amount_of_detail_not_its_place():
    torch.manual_seed(0)
    texture = torch.rand(2, 3, 32, 32) * 2 - 1
    blurred = F.avg_pool2d(F.pad(texture, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    shifted = texture.roll(2, dims=-1)  # the same detail two pixels over
    assert detail_energy_loss(texture, texture) == 0 and detail_energy_loss(texture + 0.3, texture) < 1e-6
    # Blur loses most of the Laplacian's energy (the loss is the share lost); the shift loses none.
    assert detail_energy_loss(blurred, texture) > 0.8
    assert detail_energy_loss(shifted, texture) < 0.1 * detail_energy_loss(blurred, texture)
    assert (shifted - texture).abs().mean() > (blurred - texture).abs().mean()  # pixels disagree
    # Scale-free: the same loss for the same images at a tenth of the contrast.
    torch.testing.assert_close(detail_energy_loss(blurred / 10, texture / 10), detail_energy_loss(blurred, texture))
    with pytest.raises(ValueError, match="multiple of the tile size"):
        detail_energy_loss(torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20))
    with pytest.raises(ValueError, match="equal shapes"):
        detail_energy_loss(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 32))
