"""Tests of mardini.evaluation: PSNR/SSIM/Fréchet distance, the feature extractors (with small random
TorchScript networks of the real files' call signatures), LPIPS, baselines and frame-only scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import read_clip
from torch import Tensor, nn

from mardini.codecs import LatentCodec
from mardini.evaluation import (
    FeatureError,
    I3DFeatures,
    ImageFeatures,
    InceptionFeatures,
    LPIPSMetric,
    LPIPSNetwork,
    feature_consistency,
    fid,
    frechet_distance,
    frechet_distance_from_stats,
    fvd,
    linear_blend,
    mean_finite,
    psnr,
    reference_consistency,
    repeat_nearest,
    ssim,
    temporal_flicker,
    through_codec,
    with_codec,
)


def square_frames(frames: np.ndarray, size: int) -> Tensor:
    """uint8 (K, H, W, 3) -> float (K, 3, size, size) in [0, 1]: centre crop to a square, area resize."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(x, size=(size, size), mode="area")


# The random networks are built with torch.jit.script, deprecated in recent torch but still the
# format of the real FID/FVD files.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return read_clip("bikes.mp4", count=24)


# --------------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------------


def test_psnr_identical_is_inf_and_per_frame(clip: np.ndarray) -> None:
    x = square_frames(clip[:3], 64)
    value = psnr(x, x.clone())
    assert value.shape == (3,)
    assert torch.isinf(value).all() and (value > 0).all()
    assert math.isnan(mean_finite(value))


def test_psnr_of_a_constant_shift_is_20db() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 3, 16, 16, generator=gen) * 0.9  # room for +0.1 without clipping
    value = psnr(x, x + 0.1)
    assert value.shape == (2, 4)
    assert torch.allclose(value, torch.full_like(value, 20.0), atol=1e-4)
    # uint8 frames use a peak of 255: a difference of 51 levels is 20 log10(255 / 51) dB.
    a = torch.randint(0, 200, (3, 8, 8), dtype=torch.uint8, generator=gen)
    assert psnr(a, a + 51).item() == pytest.approx(20 * math.log10(5.0), abs=1e-9)


def test_metrics_reject_frames_in_minus_one_one() -> None:
    x = torch.rand(3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(x, x)


def test_ssim_matches_skimage(clip: np.ndarray) -> None:
    structural_similarity = pytest.importorskip("skimage.metrics").structural_similarity
    kwargs = dict(channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    rng = np.random.default_rng(0)
    a8, b8 = clip[0, :200, 100:350], clip[6, :200, 100:350]  # a real pair with motion, non-square
    noisy = np.clip(a8 / 255.0 + rng.normal(0, 0.08, a8.shape), 0, 1)
    pairs = [
        (a8, b8, 255),  # uint8 in, data range 255
        (a8 / 255.0, noisy, 1.0),  # float64 in [0, 1]
        ((a8 / 255.0).astype(np.float32), (b8 / 255.0).astype(np.float32), 1.0),
    ]
    for a, b, data_range in pairs:
        expected = structural_similarity(a, b, data_range=data_range, **kwargs)
        ours = ssim(torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1), torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1))
        assert ours.item() == pytest.approx(expected, abs=1e-4), (expected, ours.item())
    # Batched: one value per frame, equal to the frame-by-frame values.
    x, y = square_frames(clip[:4], 48), square_frames(clip[4:8], 48)
    batched = ssim(x, y)
    assert batched.shape == (4,)
    for i in range(4):
        expected = structural_similarity(x[i].permute(1, 2, 0).double().numpy(), y[i].permute(1, 2, 0).double().numpy(), data_range=1.0, **kwargs)
        assert batched[i].item() == pytest.approx(expected, abs=1e-4)
    assert torch.allclose(ssim(x, x), torch.ones(4), atol=1e-6)


def test_ssim_needs_the_window_size() -> None:
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(3, 10, 32), torch.rand(3, 10, 32))


# --------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    s1, s2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.0, 3.0, 6)
    s2[0] = 0.0  # a singular covariance
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance_from_stats(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_full_covariances_matches_scipy_sqrtm() -> None:
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T + 0.1 * np.eye(8), b @ b.T
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    covmean = linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_feature_sets() -> None:
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32))
    assert frechet_distance(feats, feats.copy()) == pytest.approx(0.0, abs=1e-6)
    # Fewer samples than dimensions: singular covariances, still exactly 0 for identical sets.
    assert frechet_distance(feats[:10], feats[:10]) == pytest.approx(0.0, abs=1e-6)
    # A translated copy has the same covariance: the distance is the squared shift.
    delta = rng.normal(size=32)
    assert frechet_distance(feats, feats + delta) == pytest.approx(float(delta @ delta), rel=1e-6)
    assert frechet_distance(torch.from_numpy(feats), torch.from_numpy(feats * 2.0)) > 1.0
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(feats[:1], feats)


# --------------------------------------------------------------------------------------------
# Feature extractors with random TorchScript networks of the real call signatures
# --------------------------------------------------------------------------------------------


class TinyInception(nn.Module):
    """The call signature of inception-2015-12-05.pt: 0..255 images, resize inside, `layers` on [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 12, 5, stride=4), nn.ReLU(), nn.Conv2d(12, 16, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, img: Tensor, return_features: bool = False) -> Tensor:
        x = F.interpolate(img.float(), size=(299, 299), mode="bilinear", align_corners=False)
        features = self.layers((x - 128.0) / 128.0)
        if return_features:
            return features
        return features.sum(dim=1)  # "logits" of another shape: a wrong call is caught


class TinyI3D(nn.Module):
    """The call signature of StyleGAN-V's i3d_torchscript.pt on (B, 3, T, H, W) 0..255 videos."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 16, 3, stride=(1, 2, 2))

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 32, 32), mode="trilinear", align_corners=False)
        features = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        if return_features:
            return features
        return features.sum(dim=1)


class ProbeI3D(nn.Module):
    """Reports how it was called: flags, value range, channel and time sizes of its input."""

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        b = x.shape[0]
        flags = torch.tensor([float(rescale), float(resize), float(return_features)]).expand(b, 3)
        frac = (x - x.round()).abs().amax(dim=(1, 2, 3, 4))
        shape = torch.tensor([float(x.shape[1]), float(x.shape[2])]).expand(b, 2)
        return torch.cat([flags, x.amin(dim=(1, 2, 3, 4))[:, None], x.amax(dim=(1, 2, 3, 4))[:, None], frac[:, None], shape], dim=1)


class PooledMean(nn.Module):
    def forward(self, img: Tensor, return_features: bool = False) -> Tensor:
        return img.mean(dim=(1, 2, 3))


def save_script(module: nn.Module, path) -> str:  # noqa: ANN001 - a pytest tmp_path
    torch.manual_seed(0)
    scripted = torch.jit.script(module.eval())
    scripted.save(str(path))
    return str(path)


def test_fid_runs_end_to_end_with_a_random_inception(tmp_path, clip: np.ndarray) -> None:
    torch.manual_seed(0)
    path = save_script(TinyInception(), tmp_path / "inception.pt")
    real = square_frames(clip, 48)  # 24 real frames
    noisy = (real + 0.3 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for resize in ("torchscript", "clean"):
        extractor = InceptionFeatures.from_file(path, resize=resize)
        features = extractor.extract(real, batch_size=10)
        assert features.shape == (24, 16)
        # (The random network's features are small: about 1e-3 FID for heavy noise.)
        assert fid(extractor, real, real.clone()) == pytest.approx(0.0, abs=1e-9)
        # uint8 frames and their [0, 1] floats are the same images.
        assert fid(extractor, (real * 255).round().to(torch.uint8), real) == pytest.approx(0.0, abs=1e-9)
        assert fid(extractor, real, noisy) > 1e-4
    # Iterables of batches stream into the same features.
    extractor = InceptionFeatures.from_file(path)
    assert np.allclose(extractor.extract(iter(real.split(7))), extractor.extract(real), atol=1e-5)


def test_feature_files_are_checked(tmp_path) -> None:
    with pytest.raises(FeatureError, match="does not exist"):
        InceptionFeatures.from_file(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(FeatureError, match="TorchScript"):
        I3DFeatures.from_file(tmp_path / "junk.pt")
    # A network that returns logits-like (N,) output instead of features is reported.
    extractor = InceptionFeatures.from_file(save_script(PooledMean(), tmp_path / "pooled.pt"))
    with pytest.raises(FeatureError, match=r"expected \(2, D\)"):
        extractor(torch.rand(2, 3, 16, 16))
    # Images given to a video extractor are refused with the expected layout.
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        I3DFeatures.from_file(save_script(TinyI3D(), tmp_path / "i3d.pt"))(torch.rand(2, 3, 16, 16))


def test_i3d_is_called_as_stylegan_v_does(tmp_path) -> None:
    extractor = I3DFeatures.from_file(save_script(ProbeI3D(), tmp_path / "probe.pt"))
    videos = torch.rand(2, 9, 3, 20, 24)
    videos[:, 0, :, 0, 0] = 0.0
    videos[:, 0, :, 0, 1] = 1.0
    out = extractor(videos)
    # rescale=True, resize=True, return_features=True; 0..255 integer values; (B, 3, T, H, W).
    assert out[0].tolist() == [1.0, 1.0, 1.0, 0.0, 255.0, 0.0, 3.0, 9.0]


def test_fvd_runs_end_to_end_with_a_random_i3d(tmp_path, clip: np.ndarray) -> None:
    extractor = I3DFeatures.from_file(save_script(TinyI3D(), tmp_path / "i3d.pt"))
    frames = square_frames(clip, 40)
    real = torch.stack([frames[i : i + 9] for i in range(0, 15, 2)])  # 8 clips of 9 frames
    blended = real.clone()
    blended[:, 1:8] = linear_blend(real[:, 0], real[:, 8], 7)
    assert fvd(extractor, real, real.clone(), batch_size=3) == pytest.approx(0.0, abs=1e-6)
    assert fvd(extractor, real, blended) > 1e-4
    assert fvd(extractor, real, real.flip(1)) > 0.0  # time reversed: different motion


def alexnet_slices_reference(net: LPIPSNetwork, a: Tensor, b: Tensor) -> Tensor:
    """LPIPS written the way the lpips package writes it (slices of torchvision's features)."""
    bounds = [(0, 2), (2, 5), (5, 8), (8, 10), (10, 12)]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    ha, hb = (a - shift) / scale, (b - shift) / scale
    total = torch.zeros(a.shape[0], 1, 1, 1)
    for k, (lo, hi) in enumerate(bounds):
        for i in range(lo, hi):
            ha, hb = net.features[i](ha), net.features[i](hb)
        na = ha / (torch.sqrt(torch.sum(ha**2, dim=1, keepdim=True)) + 1e-10)
        nb = hb / (torch.sqrt(torch.sum(hb**2, dim=1, keepdim=True)) + 1e-10)
        total = total + net.lins[k]((na - nb) ** 2).mean([2, 3], keepdim=True)
    return total.flatten()


def test_lpips_from_local_weight_files(tmp_path, clip: np.ndarray) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    source = LPIPSNetwork("alex")
    for lin in source.lins:  # LPIPS's trained linear weights are non-negative
        lin.weight.data.abs_()
    # torchvision's key layout for the backbone, the lpips package's for the head.
    backbone = {f"features.{k}": v.clone() for k, v in source.features.state_dict().items()}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # the rest of torchvision's AlexNet is ignored
    save_file(backbone, str(tmp_path / "alexnet.safetensors"))
    torch.save({f"lin{k}.model.1.weight": lin.weight.data.clone() for k, lin in enumerate(source.lins)}, tmp_path / "alex.pth")

    metric = LPIPSMetric.from_weights(tmp_path / "alexnet.safetensors", tmp_path / "alex.pth", net="alex")
    x = square_frames(clip[:4], 64)
    y = square_frames(clip[4:8], 64)
    d = metric(x, y)
    assert d.shape == (4,)
    assert torch.allclose(metric(x, x), torch.zeros(4), atol=1e-7)
    assert (d > 0).all()
    # Same numbers as the lpips package's formulation, inputs mapped to [-1, 1].
    expected = alexnet_slices_reference(source, x * 2 - 1, y * 2 - 1)
    assert torch.allclose(d, expected, rtol=1e-4, atol=1e-7)
    # More noise, larger distance (non-negative head).
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=gen)
    small = metric(x, (x + 0.02 * noise).clamp(0, 1))
    large = metric(x, (x + 0.2 * noise).clamp(0, 1))
    assert (small < large).all()

    with pytest.raises(ValueError, match="lin0"):
        torch.save({"lin0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        LPIPSMetric.from_weights(tmp_path / "alexnet.safetensors", tmp_path / "bad.pth")


def test_lpips_vgg_layout_loads() -> None:
    torch.manual_seed(0)
    net = LPIPSNetwork("vgg")
    net.load_weights(
        {f"features.{k}": v for k, v in net.features.state_dict().items()},
        {f"lin{k}.model.1.weight": lin.weight.data.abs() for k, lin in enumerate(net.lins)},
    )
    x = torch.rand(2, 3, 32, 32)
    d = LPIPSMetric(net.eval())(x, x.flip(-1))
    assert d.shape == (2,) and (d > 0).all()


class MSEDistance(nn.Module):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return (a - b).square().mean(dim=(1, 2, 3))


def test_lpips_from_torchscript_gets_inputs_in_minus_one_one(tmp_path) -> None:
    metric = LPIPSMetric.from_torchscript(save_script(MSEDistance(), tmp_path / "lpips.pt"))
    x = torch.rand(2, 5, 3, 16, 16) * 0.9
    # A shift of 0.1 in [0, 1] is 0.2 in [-1, 1]: squared, 0.04.
    assert torch.allclose(metric(x, x + 0.1), torch.full((2, 5), 0.04), atol=1e-6)


class TinyEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, stride=4)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def test_feature_consistency_with_a_random_encoder(tmp_path, clip: np.ndarray) -> None:
    encoder = ImageFeatures.dino(save_script(TinyEncoder(), tmp_path / "dino.pt"))
    frames = square_frames(clip[:8], 64)
    static = feature_consistency(frames[:1].expand(6, -1, -1, -1), encoder)
    assert static.score == pytest.approx(1.0, abs=1e-5)
    assert static.i2v_score == pytest.approx(1.0, abs=1e-5)
    moving = feature_consistency(frames, encoder)
    assert moving.to_reference.shape == (8,) and moving.to_previous.shape == (7,)
    assert moving.to_reference[0].item() == pytest.approx(1.0, abs=1e-5)
    assert moving.score < static.score
    # A separate conditioning image that is not in the video lowers the I2V score.
    other = feature_consistency(frames, encoder, reference=square_frames(clip[20:21], 64)[0])
    assert other.i2v_score < moving.i2v_score
    # CLIP preprocessing: shorter side to 224, centre crop, so any aspect ratio gives 224x224.
    clip_encoder = ImageFeatures.clip(save_script(TinyEncoder(), tmp_path / "clip.pt"))
    assert clip_encoder(torch.rand(2, 3, 60, 90)).shape == (2, 32)


# --------------------------------------------------------------------------------------------
# Baselines and frame-only scores
# --------------------------------------------------------------------------------------------


def test_repeat_and_blend_baselines() -> None:
    first, last = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    blend = linear_blend(first, last, 7)
    assert blend.shape == (2, 7, 3, 8, 8)
    assert torch.allclose(blend[:, :, 0, 0, 0], (torch.arange(1, 8) / 8.0).expand(2, 7))
    rep = repeat_nearest(first, last, 7)
    assert rep.shape == (2, 7, 3, 8, 8)
    assert rep[:, :4].eq(0).all() and rep[:, 4:].eq(1).all()  # t = 1/8..4/8 copy first, 5/8..7/8 last
    assert linear_blend(first[0], last[0], 0).shape == (0, 3, 8, 8)


class BlockCodec(LatentCodec):
    """An 8x8 average-pool "autoencoder": exact on block-constant frames, lossy elsewhere."""

    latent_channels = 3
    scale = 1.0
    shift = 0.0

    def _encode_raw(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 8)

    def _decode_raw(self, z: Tensor) -> Tensor:
        return F.interpolate(z, scale_factor=8, mode="nearest")


def test_through_codec_round_trips_in_unit_range() -> None:
    codec = BlockCodec()
    blocks = F.interpolate(torch.rand(2, 3, 3, 4, 4), scale_factor=(1, 8, 8), mode="nearest")  # (2, 3, 3, 32, 32)
    assert torch.allclose(through_codec(blocks, codec), blocks, atol=1e-6)
    fine = torch.rand(2, 3, 32, 32)
    out = through_codec(fine, codec)
    assert out.shape == fine.shape and 0 <= out.min() and out.max() <= 1
    assert psnr(fine, out).max() < 20
    # NAME@codec: the baseline's frames go through the codec.
    blend_at_codec = with_codec(linear_blend, codec)
    first, last = blocks[:, 0], blocks[:, 2]
    assert torch.allclose(blend_at_codec(first, last, 3), linear_blend(first, last, 3), atol=1e-6)
    assert torch.allclose(blend_at_codec(fine[0], fine[1], 1)[0], through_codec((fine[0] + fine[1]) / 2, codec), atol=1e-6)


class FadingCodec(BlockCodec):
    """Decodes at half contrast: a codec whose round trip is not idempotent, like one with a
    detail gain, so one pass and two differ."""

    def _decode_raw(self, z: Tensor) -> Tensor:
        return super()._decode_raw(z) * 0.5


def test_codec_rows_pass_through_the_codec_once() -> None:
    codec = FadingCodec()
    first, last = F.interpolate(torch.rand(2, 3, 4, 4), scale_factor=8, mode="nearest")  # one value per 8-px block
    once = through_codec(linear_blend(first, last, 3), codec)
    assert torch.allclose(with_codec(linear_blend, codec)(first, last, 3), once, atol=1e-6)
    # Not the baseline run on the codec's reconstructions and passed again (the rows before 2026-12-03).
    twice = through_codec(linear_blend(through_codec(first, codec), through_codec(last, codec), 3), codec)
    assert (once - twice).abs().mean() > 0.02


def test_temporal_flicker_and_reference_consistency(clip: np.ndarray) -> None:
    frames = square_frames(clip[:9], 64)
    static = frames[:1].expand(9, -1, -1, -1)
    assert temporal_flicker(static) == 1.0
    moving = temporal_flicker(frames)
    assert 0.5 < moving < 1.0
    # An alternating (flickering) video scores lower than the same frames in order.
    flicker = torch.stack([frames[0] if i % 2 == 0 else frames[8] for i in range(9)])
    assert temporal_flicker(flicker) < moving

    s = reference_consistency(frames, ref_index=0)
    assert s.shape == (9,) and s[0].item() == pytest.approx(1.0, abs=1e-6)
    assert s[1] > s[8]  # the clip drifts away from its first frame
    assert torch.allclose(reference_consistency(static), torch.ones(9), atol=1e-6)
    p = reference_consistency(frames, ref_index=-1, metric="psnr")
    assert math.isinf(p[-1].item()) and p[7] > p[0]
