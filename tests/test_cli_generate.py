"""``mardini generate``: every task end to end on real frames, and every kind of bad input rejected
with one line on stderr, a non-zero exit and no file under the requested output name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from mardini.checkpoint import CODEC_DIR
from mardini.cli import main
from mardini.codecs import load_codec
from mardini.io import read_video, write_png_folder
from pipeline_support import (bikes, bikes_path, decoded_frames, photos, pipe, round_trip,  # noqa: F401 - fixtures
                              tiny_checkpoint)

FAST = ["--steps", "2", "--quiet", "--device", "cpu"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, bikes, photos) -> dict[str, Path]:  # noqa: F811
    """Image files, a folder of frames and a short mp4 on disk."""
    folder = tmp_path_factory.mktemp("inputs")
    paths = {}
    for name, image in photos.items():
        paths[name] = folder / f"{name}.png"
        Image.fromarray(image).save(paths[name])
    paths["small"] = folder / "small.png"
    Image.fromarray(photos["coffee"][:48]).save(paths["small"])
    paths["frames"] = write_png_folder(bikes[:3], folder / "frames")
    paths["not_an_image"] = folder / "notes.png"
    paths["not_an_image"].write_text("not an image")
    paths["not_a_video"] = folder / "clip.mp4"
    paths["not_a_video"].write_text("not a video")
    return paths


def generate(tiny_checkpoint: Path, out: Path, task: str, *args: str) -> int:  # noqa: F811
    return main(["generate", task, "--checkpoint", str(tiny_checkpoint), "--out", str(out), *FAST, *args])




# --- every task ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("task", "args", "name", "frames"), [
    ("i2v", ["--image", "{astronaut}", "--frames", "5", "--ref-index", "2"], "i2v.mp4", 5),
    ("interpolate", ["--first", "{astronaut}", "--last", "{chelsea}", "--frames", "7"], "interp.gif", 7),
    ("loop", ["--image", "{coffee}"], "loop", 5),
    ("expand", ["--video", "{bikes}", "--video-frames", "2", "--frames", "6", "--height", "64", "--width", "64"],
     "expand.mp4", 6),
    ("slowmo", ["--video", "{frames}", "--factor", "4"], "slowmo.gif", 9),
    ("custom", ["--known", "0={astronaut}", "--known", "3={coffee}"], "custom", 5),
])
def test_every_task_writes_a_video_that_decodes_back(tiny_checkpoint, inputs, tmp_path, capsys,  # noqa: F811
                                                     task, args, name, frames):
    files = {**{k: str(v) for k, v in inputs.items()}, "bikes": bikes_path()}
    out = tmp_path / name
    assert generate(tiny_checkpoint, out, task, *[a.format(**files) for a in args]) == 0
    assert decoded_frames(out) == frames
    assert read_video(out)[0].shape == (64, 64, 3)
    printed = capsys.readouterr().out
    assert f"wrote {frames} frames of 64x64 to {out} ({task}:" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary files left


def test_png_output_keeps_known_frames_as_their_codec_round_trip(tiny_checkpoint, inputs, pipe, photos,  # noqa: F811
                                                                tmp_path, capsys):
    out = tmp_path / "loop"
    assert generate(tiny_checkpoint, out, "loop", "--image", str(inputs["chelsea"]), "--frames", "5",
                    "--contact-sheet", str(tmp_path / "sheet.png")) == 0
    frames = read_video(out)
    expected = round_trip(pipe, photos["chelsea"][None])[0]
    np.testing.assert_array_equal(frames[0], expected)
    np.testing.assert_array_equal(frames[-1], expected)
    assert Image.open(tmp_path / "sheet.png").size == (3 * 64 + 2 * 2, 2 * 64 + 2)
    assert "guidance 1," in capsys.readouterr().out  # appendix B: no guidance for interpolation


def test_skip_guidance_changes_guided_frames_only(tiny_checkpoint, inputs, tmp_path, capsys):  # noqa: F811
    videos = {}
    for name, extra in (("plain", []), ("skip", ["--skip-guidance", "0.5"])):
        assert generate(tiny_checkpoint, tmp_path / f"{name}.mp4", "i2v", "--image", str(inputs["coffee"]),
                        *extra) == 0
        videos[name] = read_video(tmp_path / f"{name}.mp4")
        printed = capsys.readouterr().out
        assert ("(skip-layer 0.5)" in printed) == (name == "skip"), printed
    assert not np.array_equal(videos["plain"], videos["skip"])
    # A loop is unguided (appendix B), so the skip-layer guidance, riding with the guidance, leaves it alone.
    for name, extra in (("loop-plain", []), ("loop-skip", ["--skip-guidance", "0.5"])):
        assert generate(tiny_checkpoint, tmp_path / name, "loop", "--image", str(inputs["coffee"]), *extra) == 0
        videos[name] = read_video(tmp_path / name)
    np.testing.assert_array_equal(videos["loop-plain"], videos["loop-skip"])


def test_seeded_cli_runs_repeat_and_slow_motion_goes_past_the_window(tiny_checkpoint, inputs, tmp_path):  # noqa: F811
    runs = []
    for name in ("a", "b"):
        assert generate(tiny_checkpoint, tmp_path / name, "slowmo", "--video", str(inputs["frames"]),
                        "--frames", "17", "--seed", "3") == 0
        runs.append(read_video(tmp_path / name))
    assert runs[0].shape == (17, 64, 64, 3)  # 3 frames -> 17, past the 5-frame window
    np.testing.assert_array_equal(runs[0], runs[1])


def test_init_writes_a_complete_checkpoint(tmp_path, capsys):
    assert main(["init", "--preset", "mardini-tiny", "--out", str(tmp_path / "ck")]) == 0
    assert "model + codec" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [CODEC_DIR, "config.json", "model.safetensors"]
    codec = load_codec(tmp_path / "ck" / CODEC_DIR)
    assert codec.latent_channels == 16 and codec.downsample == 8


# --- bad input -----------------------------------------------------------------------------------


def broken_checkpoint(source: Path, target: Path, how: str) -> Path:
    shutil.copytree(source, target)
    if how == "no codec":
        shutil.rmtree(target / CODEC_DIR)
    elif how == "no weights":
        (target / "model.safetensors").unlink()
    elif how == "no config":
        (target / "config.json").unlink()
    elif how == "other version":
        meta = json.loads((target / "config.json").read_text())
        meta["format_version"] = 99
        (target / "config.json").write_text(json.dumps(meta))
    elif how == "codec of other channels":
        meta = json.loads((target / "config.json").read_text())
        meta["config"]["latent_channels"] = 4  # the networks and the codec no longer agree
        (target / "config.json").write_text(json.dumps(meta))
    return target


BAD = [
    # (why, task, arguments, output name, expected message fragment)
    ("missing image", "i2v", ["--image", "{missing}"], "o.mp4", "does not exist"),
    ("unreadable image", "i2v", ["--image", "{not_an_image}"], "o.mp4", "cannot read image"),
    ("unreadable video", "expand", ["--video", "{not_a_video}", "--frames", "9"], "o.mp4", "cannot read video"),
    ("missing video", "slowmo", ["--video", "{missing}", "--factor", "2"], "o.gif", "does not exist"),
    ("sizes disagree", "interpolate", ["--first", "{coffee}", "--last", "{small}"], "o.gif", "sizes disagree"),
    ("sizes disagree (custom)", "custom", ["--known", "0={coffee}", "--known", "4={small}"], "o", "sizes disagree"),
    ("too few frames", "interpolate", ["--first", "{coffee}", "--last", "{chelsea}", "--frames", "2"], "o.gif",
     "at least 3 frames"),
    ("one frame", "i2v", ["--image", "{coffee}", "--frames", "1"], "o.gif", "at least 2 frames"),
    ("reference past the end", "i2v", ["--image", "{coffee}", "--frames", "5", "--ref-index", "5"], "o.mp4",
     "outside a 5-frame video"),
    ("known position past the end", "custom", ["--known", "7={coffee}", "--frames", "5"], "o.mp4",
     "outside a 5-frame video"),
    ("expand shorter than its input", "expand", ["--video", "{frames}", "--frames", "3"], "o.mp4",
     "must exceed the 3 given frames"),
    ("slow-motion factor 1", "slowmo", ["--video", "{frames}", "--factor", "1"], "o.mp4", "at least 2"),
    ("window longer than the model's", "i2v", ["--image", "{coffee}", "--window", "9"], "o.mp4",
     "between 2 and 5"),
    ("float16 on the CPU", "i2v", ["--image", "{coffee}", "--dtype", "fp16"], "o.mp4", "float16 is not supported"),
    ("missing task input", "i2v", [], "o.mp4", "i2v needs --image"),
    ("input of another task", "i2v", ["--image", "{coffee}", "--first", "{coffee}"], "o.mp4",
     "--first is not an input of i2v"),
    ("malformed --known", "custom", ["--known", "x={coffee}"], "o.mp4", "POSITION=IMAGE"),
    ("unknown output format", "i2v", ["--image", "{coffee}"], "o.avi", "use .mp4, .gif"),
    ("negative skip guidance", "i2v", ["--image", "{coffee}", "--skip-guidance", "-0.5"], "o.mp4",
     "--skip-guidance must be a number >= 0"),
]


@pytest.mark.parametrize(("why", "task", "args", "name", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_writes_nothing(tiny_checkpoint, inputs, tmp_path, capsys,  # noqa: F811
                                                  why, task, args, name, message):
    files = {**{k: str(v) for k, v in inputs.items()}, "missing": str(tmp_path / "missing.png")}
    out = tmp_path / "out" / name
    code = generate(tiny_checkpoint, out, task, *[a.format(**files) for a in args])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("mardini generate: error: ") and err.count("\n") == 1, err
    assert message in err
    assert not out.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("how", "message"), [
    ("no codec", "no codec/ folder: it is incomplete"),
    ("no weights", "no model.safetensors: it is incomplete"),
    ("no config", "no config.json: it is incomplete"),
    ("other version", "format version 99"),
    ("codec of other channels", "16-channel latents"),
])
def test_bad_checkpoints_are_one_line(tiny_checkpoint, inputs, tmp_path, capsys, how, message):  # noqa: F811
    checkpoint = broken_checkpoint(tiny_checkpoint, tmp_path / "ck", how)
    out = tmp_path / "out.mp4"
    assert generate(checkpoint, out, "i2v", "--image", str(inputs["coffee"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_existing_output_needs_force(tiny_checkpoint, inputs, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "o.gif"
    out.write_bytes(b"previous")
    assert generate(tiny_checkpoint, out, "i2v", "--image", str(inputs["coffee"])) == 2
    assert "pass --force" in capsys.readouterr().err and out.read_bytes() == b"previous"
    assert generate(tiny_checkpoint, out, "i2v", "--image", str(inputs["coffee"]), "--force") == 0
    assert decoded_frames(out) == 5


def test_a_failure_while_writing_leaves_no_partial_output(tiny_checkpoint, inputs, tmp_path, capsys,  # noqa: F811
                                                          monkeypatch):
    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OSError("No space left on device")

    class FailingFrame:
        from_ndarray = staticmethod(failing)

    monkeypatch.setattr(av, "VideoFrame", FailingFrame)
    out = tmp_path / "o.mp4"
    assert generate(tiny_checkpoint, out, "i2v", "--image", str(inputs["coffee"])) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_installed_command_prints_no_traceback(tiny_checkpoint, tmp_path):  # noqa: F811
    result = subprocess.run([sys.executable, "-m", "mardini.cli", "generate", "interpolate", "--checkpoint",
                             str(tiny_checkpoint), "--first", str(tmp_path / "a.png"), "--last",
                             str(tmp_path / "b.png"), "--out", str(tmp_path / "o.mp4")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == f"mardini generate: error: image '{tmp_path / 'a.png'}' does not exist\n"
    assert list(tmp_path.iterdir()) == []
