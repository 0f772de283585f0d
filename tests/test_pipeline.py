"""MarDiniPipeline: the general call, its guarantees, the window schedule and the output writers.

Runs a tiny randomly initialised checkpoint (``mardini init --preset mardini-tiny``) on real frames
(bikes.mp4, scikit-image photos) with 2-5 DDIM steps at 64x64.
"""

from __future__ import annotations

import json
import random
import shutil

import av
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import wake_zero_init
from mardini import MarDiniPipeline
from mardini.checkpoint import CODEC_DIR, CheckpointError, load_checkpoint
from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
from mardini.config import DiffusionConfig
from mardini.io import MediaError, read_video, write_contact_sheet, write_gif, write_mp4, write_png_folder
from mardini.pipeline import resolve_dtype
from mardini.windows import default_overlap, plan_windows
from pipeline_support import (bikes, bikes_path, count_calls, decoded_frames, photos, pipe, round_trip,  # noqa: F401
                              tiny_checkpoint)


# --- the general call ----------------------------------------------------------------------------


def test_known_frames_come_back_as_their_codec_round_trip(pipe, bikes):
    out = pipe.generate(bikes[[0, 3]], [0, 3], 5, steps=2, seed=0, progress=False)
    assert out.frames.shape == (1, 5, 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.known.tolist() == [[True, False, False, True, False]]
    np.testing.assert_array_equal(out.frames[0, [0, 3]], round_trip(pipe, bikes[[0, 3]]))
    # Generated frames are not copies of the references.
    assert not np.array_equal(out.frames[0, 1], out.frames[0, 0])
    assert len(out.pil()) == 5 and out.pil()[0].size == (64, 64)


def test_known_frames_are_resized_to_the_output_size(pipe):
    clip = read_video(bikes_path(), max_frames=1)  # 272x640, the native size
    out = pipe.generate(clip, [0], 3, height=64, steps=2, seed=0, progress=False)
    # One side given: the other keeps the aspect ratio (640 * 64 / 272 = 150.6 -> 144, a multiple of 16).
    assert out.frames.shape == (1, 3, 64, 144, 3)
    np.testing.assert_array_equal(out.frames[0, 0], round_trip(pipe, clip, 64, 144)[0])


def test_output_size_rules(pipe):
    # By default the trained size (64x64 here) with the input's aspect ratio, not the input's size.
    assert pipe.output_size(like=(70, 90)) == (64, 80)
    assert pipe.output_size(like=(512, 512)) == pipe.output_size(like=(8000, 8000)) == (64, 64)
    assert pipe.output_size(like=(480, 1920)) == (32, 128)
    assert pipe.output_size(height=256, width=256, like=(70, 90)) == (256, 256)  # more when asked
    assert pipe.output_size() == (64, 64)  # the config's default when nothing is known
    assert pipe.output_size(height=32, like=(100, 200)) == (32, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        pipe.output_size(height=70, width=64)


@pytest.mark.parametrize("window", [None, 3])
def test_planner_runs_once_per_window_whatever_the_step_count(pipe, bikes, count_calls, window):
    counts = {}
    for steps in (2, 5):
        with count_calls(pipe.model.planner) as plans, count_calls(pipe.model.generator) as denoises:
            out = pipe.generate(bikes[[0, 4]], [0, 4], 5, steps=steps, seed=0, window=window, progress=False)
        counts[steps] = len(plans)
        assert len(plans) == len(out.windows)
        assert len(denoises) == steps * len(out.windows)  # one generator call per step and window
    # A 3-frame window fills the 0-4 gap hierarchically: (0, 2, 4), then (0, 1, 2) and (2, 3, 4).
    expected = 1 if window is None else 3
    assert counts == {2: expected, 5: expected}


def test_seeded_runs_repeat_exactly_and_the_seed_matters(pipe, photos):
    def run(seed: int) -> np.ndarray:
        return pipe.generate([photos["astronaut"]], [2], 5, steps=2, seed=seed, progress=False).frames

    first = run(7)
    np.testing.assert_array_equal(first, run(7))
    other = run(8)
    assert not np.array_equal(first[0, [0, 1, 3, 4]], other[0, [0, 1, 3, 4]])
    np.testing.assert_array_equal(first[0, 2], other[0, 2])  # the known frame does not depend on the noise
    generator = torch.Generator().manual_seed(7)
    np.testing.assert_array_equal(first, pipe.generate([photos["astronaut"]], [2], 5, steps=2, generator=generator,
                                                       progress=False).frames)


def test_batch_of_videos_with_their_own_known_frames(pipe, bikes, count_calls):
    batch = np.stack([bikes[:5], bikes[3:8]])
    mask = np.array([[True, False, False, False, True], [False, False, True, False, False]])
    with count_calls(pipe.model.planner) as plans, count_calls(pipe.model.generator) as denoises:
        out = pipe.generate(batch, mask, steps=2, seed=0, guidance_scale=2.5, progress=False)
    assert out.frames.shape == (2, 5, 64, 64, 3)
    assert plans == [2]  # one planner call for the whole batch
    assert denoises == [4, 4]  # guidance doubles the batch: conditional and unconditional
    np.testing.assert_array_equal(out.frames[0, [0, 4]], round_trip(pipe, batch[0, [0, 4]]))
    np.testing.assert_array_equal(out.frames[1, 2], round_trip(pipe, batch[1, [2]])[0])
    np.testing.assert_array_equal(out.known, mask)


def test_positions_and_mask_forms_agree_and_num_samples_draws_different_videos(pipe, bikes):
    by_position = pipe.generate([bikes[0], bikes[1]], [1, 3], 5, steps=2, seed=3, progress=False)
    video = np.zeros((5, 64, 64, 3), np.uint8)
    video[[1, 3]] = bikes[[0, 1]]
    by_mask = pipe.generate(video, [False, True, False, True, False], steps=2, seed=3, progress=False)
    np.testing.assert_array_equal(by_position.frames, by_mask.frames)
    # Float frames, with NaN where the mask says "unknown": those values are never read.
    floats = torch.full((5, 3, 64, 64), float("nan"))
    floats[[1, 3]] = torch.tensor(bikes[[0, 1]]).permute(0, 3, 1, 2).float() / 127.5 - 1
    by_floats = pipe.generate(floats, torch.tensor([False, True, False, True, False]), steps=2, seed=3,
                              progress=False)
    np.testing.assert_array_equal(by_position.frames, by_floats.frames)

    samples = pipe.generate([bikes[0]], [0], 5, steps=2, seed=3, num_samples=3, progress=False)
    assert samples.frames.shape == (3, 5, 64, 64, 3)
    assert (samples.frames[:, 0] == samples.frames[0, 0]).all()
    assert not np.array_equal(samples.frames[0, 1:], samples.frames[1, 1:])


def test_float_tensor_and_pil_inputs(pipe, photos):
    image = photos["chelsea"]
    as_uint8 = pipe.generate([image], [0], 3, steps=2, seed=0, progress=False).frames
    as_pil = pipe.generate([Image.fromarray(image)], [0], 3, steps=2, seed=0, progress=False).frames
    as_float = torch.tensor(image).permute(2, 0, 1).float() / 127.5 - 1
    as_tensor = pipe.generate(as_float[None], [0], 3, steps=2, seed=0, progress=False).frames
    np.testing.assert_array_equal(as_uint8, as_pil)
    np.testing.assert_array_equal(as_uint8, as_tensor)


def test_bad_requests_are_clear_errors(pipe, bikes):
    small = bikes[0][:48]
    with pytest.raises(ValueError, match="differ in size"):
        pipe.generate([bikes[0], small], [0, 4], 5)
    with pytest.raises(ValueError, match="outside a 5-frame video"):
        pipe.generate([bikes[0]], [5], 5)
    with pytest.raises(ValueError, match="repeat"):
        pipe.generate([bikes[0], bikes[1]], [1, 1], 5)
    with pytest.raises(ValueError, match="one frame per position"):
        pipe.generate([bikes[0], bikes[1]], [1], 5)
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        pipe.generate(torch.full((1, 3, 64, 64), 200.0), [0], 5)
    with pytest.raises(ValueError, match="window must be between 2 and 5"):
        pipe.generate([bikes[0]], [0], 9, window=9)
    with pytest.raises(ValueError, match="at least 2 frames"):
        pipe.generate([bikes[0]], [0], 1)
    with pytest.raises(ValueError, match="at least 1"):
        pipe.generate([bikes[0]], [0], 5, steps=0)
    with pytest.raises(ValueError, match="at least one known frame"):
        pipe.generate(np.stack([bikes[:5]]), np.zeros((1, 5), bool))
    with pytest.raises(ValueError, match="know different positions"):
        pipe.generate(np.stack([bikes[:1].repeat(9, 0)] * 2), np.eye(2, 9, dtype=bool))


def test_progress_bar_counts_the_denoising_steps(pipe, bikes, capsys):
    pipe.generate([bikes[0]], [0], 3, steps=3, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "denoising" in err and "/3 " in err  # a bar over the 3 steps
    pipe.generate([bikes[0]], [0], 3, steps=3, seed=0, progress=False)
    assert capsys.readouterr().err == ""


# --- dtypes, offload, checkpoints -----------------------------------------------------------------


def test_dtypes(tiny_checkpoint, bikes):
    with pytest.raises(ValueError, match="float16 is not supported on the CPU"):
        MarDiniPipeline.from_pretrained(tiny_checkpoint, dtype="fp16")
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", "cpu")
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    bf16 = MarDiniPipeline.from_pretrained(tiny_checkpoint, dtype="bf16")
    assert bf16.dtype == torch.bfloat16 and next(bf16.codec.parameters()).dtype == torch.bfloat16
    out = bf16.generate([bikes[0]], [0], 3, steps=2, seed=0, progress=False)
    assert out.frames.shape == (1, 3, 64, 64, 3)
    np.testing.assert_array_equal(out.frames[0, 0], round_trip(bf16, bikes[:1])[0])


def test_model_cpu_offload_gives_the_same_video(tiny_checkpoint, bikes, count_calls):
    # On this CPU-only machine the "accelerator" is the CPU too; this checks the placement code path.
    pipe = MarDiniPipeline.from_pretrained(tiny_checkpoint)
    reference = pipe.generate([bikes[0]], [1], 5, steps=2, seed=0, progress=False).frames
    pipe = MarDiniPipeline.from_pretrained(tiny_checkpoint, device="cpu", cpu_offload=True)
    assert pipe.device == torch.device("cpu") and pipe._offload_device == torch.device("cpu")
    with count_calls(pipe.model.planner) as plans:
        offloaded = pipe.generate([bikes[0]], [1], 5, steps=2, seed=0, progress=False).frames
    np.testing.assert_array_equal(reference, offloaded)
    assert plans == [1]


def test_save_pretrained_round_trip(pipe, bikes, tmp_path):
    pipe.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == [CODEC_DIR, "config.json", "model.safetensors"]
    again = MarDiniPipeline.from_pretrained(tmp_path / "copy")
    a = pipe.generate([bikes[0]], [0], 5, steps=2, seed=1, progress=False).frames
    np.testing.assert_array_equal(a, again.generate([bikes[0]], [0], 5, steps=2, seed=1, progress=False).frames)
    # Saving over an existing checkpoint replaces its codec folder whole.
    pipe.save_pretrained(tmp_path / "copy")
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]


def test_incomplete_or_mismatched_checkpoints(tiny_checkpoint, tmp_path):
    folder = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, folder)
    shutil.rmtree(folder / CODEC_DIR)
    with pytest.raises(CheckpointError, match="no codec/ folder: it is incomplete.*mardini init"):
        load_checkpoint(folder)
    # A codec of other latent channels: a clear error, at load time and when building a pipeline.
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(latent_channels=8, width=8, depth=1)))
    codec.save_pretrained(folder / CODEC_DIR)
    with pytest.raises(CheckpointError, match="8-channel latents .* takes 16-channel"):
        load_checkpoint(folder)
    model, _ = load_checkpoint(tiny_checkpoint)
    with pytest.raises(ValueError, match="use a codec that matches the model"):
        MarDiniPipeline(model, codec)
    (folder / CODEC_DIR / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["format_version"] = 2
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 2"):
        MarDiniPipeline.from_pretrained(folder)


# --- the window schedule -------------------------------------------------------------------------


def test_window_schedule_covers_every_frame_once_from_known_frames():
    rng = random.Random(0)
    for _ in range(2000):
        num_frames, window = rng.randint(2, 70), rng.randint(3, 17)
        known = rng.sample(range(num_frames), rng.randint(1, min(num_frames, 5)))
        overlap = rng.randint(1, window - 1)
        filled = set(known)
        for w in plan_windows(known, num_frames, window, overlap):
            assert len(w.positions) <= window and list(w.positions) == sorted(set(w.positions))
            assert w.known_positions and w.new_positions
            assert set(w.known_positions) <= filled and not set(w.new_positions) & filled
            filled |= set(w.new_positions)
        assert filled == set(range(num_frames))


def test_window_schedule_shapes():
    assert [w.positions for w in plan_windows([0], 5, 5)] == [(0, 1, 2, 3, 4)]
    assert plan_windows([0, 1], 2, 5) == []
    # Sliding extension: each window keeps the last `overlap` frames.
    assert [w.positions for w in plan_windows([0, 1], 11, 5, overlap=2)] == [
        (0, 1, 2, 3, 4), (3, 4, 5, 6, 7), (6, 7, 8, 9, 10)]
    # An image mid-video: the first window is centred on it, then extends both ways.
    assert plan_windows([10], 21, 5)[0].positions == (8, 9, 10, 11, 12)
    # Hierarchical: 4 keyframes, 8 apart -> one level of 3 windows, then 3 windows filling the rest.
    levels = [w.positions for w in plan_windows([0, 8, 16, 24], 25, 5)]
    assert levels[:3] == [(0, 2, 4, 6, 8), (8, 10, 12, 14, 16), (16, 18, 20, 22, 24)]
    assert levels[3:] == [(0, 1, 2, 3, 4), (4, 5, 6, 7, 8), (8, 9, 10, 11, 12), (12, 13, 14, 15, 16),
                          (16, 17, 18, 19, 20), (20, 21, 22, 23, 24)]
    # The paper's example (F.1): 4 frames to 128 with a 17-frame window; 3 windows, then 8.
    assert [len(w.new_positions) for w in plan_windows([0, 42, 85, 127], 128, 17)][:3] == [15, 15, 15]
    assert len(plan_windows([0, 42, 85, 127], 128, 17)) == 11
    assert default_overlap(17) == 5 and default_overlap(5) == 2 and default_overlap(2) == 1
    with pytest.raises(ValueError, match="at least one known frame"):
        plan_windows([], 5, 5)
    with pytest.raises(ValueError, match="overlap must be between 1 and 4"):
        plan_windows([0], 9, 5, overlap=5)


# --- writing and reading videos ------------------------------------------------------------------




def test_writers_produce_files_that_decode_back(pipe, bikes, tmp_path):
    out = pipe.generate([bikes[0]], [0], 5, steps=2, seed=0, progress=False)
    for name in ("clip.mp4", "clip.gif", "frames"):
        path = out.save(tmp_path / name, fps=8)
        assert decoded_frames(path) == 5
    decoded = read_video(tmp_path / "clip.mp4")
    assert decoded.shape == (5, 64, 64, 3)
    np.testing.assert_array_equal(read_video(tmp_path / "frames"), out.frames[0])  # PNGs are lossless
    sheet = out.save_contact_sheet(tmp_path / "sheet.png", columns=5)
    assert Image.open(sheet).size == (5 * 64 + 4 * 2, 64)
    with pytest.raises(MediaError, match="use .mp4, .gif"):
        out.save(tmp_path / "clip.avi")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.gif", "clip.mp4", "frames", "sheet.png"]


def test_writers_leave_nothing_under_the_name_when_they_fail(bikes, tmp_path, monkeypatch):
    calls = {"n": 0}
    save = Image.Image.save

    def failing_save(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_png_folder(bikes, tmp_path / "frames")
    calls["n"] = 2
    with pytest.raises(OSError, match="disk full"):
        write_gif(bikes, tmp_path / "clip.gif")
    calls["n"] = 2
    with pytest.raises(OSError, match="disk full"):
        write_contact_sheet(bikes, tmp_path / "sheet.png")
    class FailingFrame:
        @staticmethod
        def from_ndarray(*args, **kwargs):  # noqa: ANN002, ANN003, ANN205
            raise OSError("disk full")

    monkeypatch.setattr(av, "VideoFrame", FailingFrame)
    with pytest.raises(OSError, match="disk full"):
        write_mp4(bikes, tmp_path / "clip.mp4")
    assert list(tmp_path.iterdir()) == []


def test_png_folder_never_replaces_a_folder_of_other_files(bikes, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(MediaError, match="holds other files"):
        write_png_folder(bikes, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    write_png_folder(bikes[:3], tmp_path / "frames")
    write_png_folder(bikes[:2], tmp_path / "frames")  # a previous output is replaced whole
    assert len(list((tmp_path / "frames").iterdir())) == 2


def test_reference_prior_is_used_by_the_pipeline_and_kept_by_its_checkpoint(tiny_checkpoint, bikes, tmp_path):
    from mardini.diffusion import reference_interpolation

    pipe = MarDiniPipeline.from_pretrained(tiny_checkpoint)
    pipe.model.config.diffusion.prior = "reference_interpolation"
    pipe.model.generator.zero_output_layer()  # predicts v = 0: one step from pure noise returns the prior
    out = pipe.generate(bikes[[0, 4]], [0, 4], 5, steps=1, seed=0, progress=False)
    with torch.no_grad():
        high, _ = pipe.encode(torch.from_numpy(bikes[[0, 4]]).permute(0, 3, 1, 2).float() / 127.5 - 1, 64, 64)
        latents = torch.zeros(1, 5, *high.shape[1:])
        latents[0, [0, 4]] = high
        mask = torch.tensor([[False, True, True, True, False]])
        expected = pipe.decode(reference_interpolation(latents, mask))
    from mardini.pipeline import to_uint8

    np.testing.assert_allclose(out.frames[0].astype(int), to_uint8(expected)[0].astype(int), atol=1)
    pipe.save_pretrained(tmp_path / "with-prior")
    assert MarDiniPipeline.from_pretrained(tmp_path / "with-prior").config.diffusion.prior == "reference_interpolation"
    # Checkpoints written before the prior existed (no such key) read as the paper's formulation.
    legacy = shutil.copytree(tiny_checkpoint, tmp_path / "legacy")
    config = json.loads((legacy / "config.json").read_text())
    del config["config"]["diffusion"]["prior"]
    (legacy / "config.json").write_text(json.dumps(config))
    assert MarDiniPipeline.from_pretrained(legacy).config.diffusion.prior == "none"


def test_grid_shift_changes_frames_from_noise_only_from_the_second_step_and_is_kept(tiny_checkpoint, bikes, tmp_path):
    pipe = MarDiniPipeline.from_pretrained(tiny_checkpoint)
    wake_zero_init(pipe.model)  # a trained-looking generator: its prediction depends on the grid
    plain = pipe.generate(bikes[0], [0], 5, steps=3, seed=0, progress=False).frames
    one_step = pipe.generate(bikes[0], [0], 5, steps=1, seed=0, progress=False).frames
    pipe.model.config.diffusion.grid_shift = "alternate"
    moved = pipe.generate(bikes[0], [0], 5, steps=3, seed=0, progress=False)
    assert not np.array_equal(moved.frames, plain)
    assert np.array_equal(moved.frames[:, 0], plain[:, 0])  # the reference is given, not made
    # The first call is the unmoved one: a one-step sampler (the in-betweens' default) is unchanged.
    assert np.array_equal(pipe.generate(bikes[0], [0], 5, steps=1, seed=0, progress=False).frames, one_step)
    pipe.save_pretrained(tmp_path / "moved")
    assert MarDiniPipeline.from_pretrained(tmp_path / "moved").config.diffusion.grid_shift == "alternate"


def test_default_steps_follow_the_mask_with_a_prior(tiny_checkpoint, bikes):
    from mardini import tasks

    pipe = MarDiniPipeline.from_pretrained(tiny_checkpoint)
    diffusion = pipe.model.config.diffusion
    inbetween = torch.tensor([[False, True, True, True, False]])
    beyond = torch.tensor([[False, True, True, True, True]])
    diffusion.inbetween_steps = 1
    assert pipe.default_steps(inbetween) == diffusion.sampling_steps  # no prior: one default for all
    diffusion.prior = "between_references"
    assert pipe.default_steps(inbetween) == 1 and pipe.default_steps(beyond) == diffusion.sampling_steps
    diffusion.sampling_steps = 2
    # Slow motion: every window in-betweens; expansion: frames past the last reference.
    slow = tasks.slow_motion(pipe, bikes[:5], factor=2, seed=0, progress=False)
    assert len(slow.windows) > 1 and slow.steps == [1] * len(slow.windows)
    assert tasks.expand(pipe, bikes[:2], 5, seed=0, progress=False).steps == [2]
    assert tasks.interpolate(pipe, bikes[0], bikes[4], 5, steps=3, seed=0, progress=False).steps == [3]
    assert tasks.interpolate(pipe, bikes[0], bikes[4], 5, seed=0, progress=False).steps == [1]
    # A loop's frames lie between two copies of one image: their interpolation is a still, and
    # they take the full sampler; the mask alone (no latents) cannot tell.
    assert tasks.loop(pipe, bikes[0], 5, seed=0, progress=False).steps == [2]
    assert tasks.loop(pipe, bikes[0], 5, steps=1, seed=0, progress=False).steps == [1]
    latents = torch.randn(1, 5, 4, 2, 2)
    looped = latents.clone()
    looped[:, 4] = looped[:, 0]
    assert pipe.default_steps(inbetween, latents) == 1 and pipe.default_steps(inbetween, looped) == 2
    with pytest.raises(ValueError, match="inbetween_steps must be a positive"):
        DiffusionConfig(inbetween_steps=0)
