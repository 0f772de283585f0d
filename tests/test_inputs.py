"""Inputs as users have them (issue 15): 16-bit and greyscale images, PNG metadata, paths in the
Python API, and inputs of different sizes with an explicit output size."""

from __future__ import annotations

import numpy as np
from PIL import Image, PngImagePlugin

from mardini.cli import main
from mardini.io import as_rgb_array, read_image, read_video
from mardini.pipeline import frames_to_tensor
from pipeline_support import pipe, tiny_checkpoint  # noqa: F401 - fixtures


def test_a_16_bit_greyscale_png_keeps_its_tones(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    expected = np.round(ramp / 257).astype(np.uint8)
    assert np.abs(image[..., 0].astype(int) - expected).max() <= 1 and 120 < image.mean() < 135
    assert (image[..., 0] == image[..., 2]).all()


def test_a_png_with_large_metadata_is_read(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", "<x>" + "a" * 3_000_000 + "</x>", zip=True)  # 3 MB, as phones write
    Image.new("RGB", (32, 16), (10, 200, 30)).save(tmp_path / "meta.png", pnginfo=info)
    image = read_image(tmp_path / "meta.png")
    assert image.shape == (16, 32, 3) and tuple(image[0, 0]) == (10, 200, 30)
    assert PngImagePlugin.MAX_TEXT_CHUNK == 1024 * 1024  # Pillow's own limit is back


def test_arrays_of_every_image_kind_become_rgb():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (as_rgb_array(grey)[..., 1] == grey).all() and as_rgb_array(grey).shape == (3, 4, 3)
    assert (as_rgb_array(grey[..., None]) == as_rgb_array(grey)).all()
    rgba = np.dstack([np.full((3, 4, 3), 7, np.uint8), np.zeros((3, 4), np.uint8)])
    assert (as_rgb_array(rgba) == 7).all()
    assert (as_rgb_array(np.full((3, 4, 3), 65535, np.uint16)) == 255).all()


def test_the_python_api_takes_paths_and_greyscale_arrays(pipe, tmp_path):  # noqa: F811
    from mardini import tasks

    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert frames_to_tensor(str(tmp_path / "a.png")).shape == (3, 64, 64)
    assert frames_to_tensor(tmp_path / "a.png").equal(frames_to_tensor(rgb))
    grey = rgb[..., 0]
    assert frames_to_tensor(grey).shape == (3, 64, 64)
    out = tasks.interpolate(pipe, tmp_path / "a.png", grey, 3, steps=1, progress=False)
    assert out.frames.shape == (1, 3, 64, 64, 3)


def test_inputs_of_different_sizes_are_fitted_to_an_asked_size(tiny_checkpoint, tmp_path, capsys):  # noqa: F811
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(tmp_path / "b.png")
    common = ["--checkpoint", str(tiny_checkpoint), "--steps", "1", "--quiet", "--device", "cpu", "--frames", "3"]
    assert main(["generate", "interpolate", "--first", str(tmp_path / "a.png"), "--last", str(tmp_path / "b.png"),
                 "--out", str(tmp_path / "x"), *common]) == 2
    assert "pass --height and --width" in capsys.readouterr().err
    assert main(["generate", "custom", "--known", f"0={tmp_path / 'a.png'}", "--known", f"2={tmp_path / 'b.png'}",
                 "--height", "32", "--width", "48", "--out", str(tmp_path / "y"), *common]) == 0
    assert read_video(tmp_path / "y").shape == (3, 32, 48, 3)


def test_16_bit_frames_of_a_training_frame_folder_keep_their_tones(tmp_path):
    from mardini.data.sources import probe_frame_folder

    for i in range(3):
        Image.fromarray(np.full((16, 16), 32768 + i, np.uint16)).save(tmp_path / f"frame_{i}.png")
    frames = probe_frame_folder(tmp_path, fps=8).read([0, 1, 2])
    assert frames.shape == (3, 16, 16, 3) and (frames == 128).all()
