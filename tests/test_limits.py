"""Request limits shared by the CLI and the UI (issue 15): frame counts, default size, memory."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from mardini import limits
from mardini.cli import main
from mardini.config import get_preset
from pipeline_support import tiny_checkpoint  # noqa: F401 - fixture

FAST = ["--steps", "1", "--quiet", "--device", "cpu"]


@pytest.mark.parametrize("count", [0, -1, 1, 10**6])
def test_frame_counts_outside_the_limits_are_refused(count):
    with pytest.raises(limits.RequestError, match=f"at least 2 frames and at most {limits.MAX_FRAMES}.*got {count}"):
        limits.check_frame_count(count, minimum=2)
    assert limits.check_frame_count(9, minimum=2) == 9 and limits.check_frame_count(None) is None


def test_default_size_is_the_trained_size_with_the_inputs_aspect_ratio():
    config = get_preset("mardini-cpu")  # trained at 128x128
    assert limits.output_size(config, like=(512, 512)) == (128, 128)
    assert limits.output_size(config, like=(8000, 8000)) == (128, 128)
    assert limits.output_size(config, like=(720, 1280)) == (96, 176)  # 16:9, about 128x128 pixels
    assert limits.output_size(config, height=256, like=(720, 1280)) == (256, 448)  # more when asked
    assert limits.output_size(config) == (128, 128)


def test_memory_estimate_refuses_what_does_not_fit():
    config = get_preset("mardini-cpu")
    small = limits.estimate_memory(config, 128, 128, 9)
    big = limits.estimate_memory(config, 8000, 8000, 9)
    assert 300 * 2**20 < small < 2**30 and big > 100 * 2**30
    assert limits.check_memory(config, 128, 128, 9, available=8 * 2**30) == small
    with pytest.raises(limits.RequestError, match=r"8000x8000 x 9 frames needs about .* GB of memory but 8.0 GB is "
                                                  r"available; ask for a smaller size \(the model was trained at 128x128"):
        limits.check_memory(config, 8000, 8000, 9, available=8 * 2**30)
    assert limits.available_memory() is None or limits.available_memory() > 0


def _image(tmp_path, size):
    path = tmp_path / f"photo{size}.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return path


@pytest.mark.parametrize("frames,expected", [("0", "at least 2 frames"), ("-1", "at least 2 frames"),
                                             ("1000000", "at most 4096")])
def test_cli_refuses_bad_frame_counts_at_once(tiny_checkpoint, tmp_path, capsys, frames, expected):  # noqa: F811
    started = time.time()
    assert main(["generate", "i2v", "--checkpoint", str(tiny_checkpoint), "--image", str(_image(tmp_path, 64)),
                 "--frames", frames, "--out", str(tmp_path / "o.mp4"), *FAST]) == 2
    err = capsys.readouterr().err
    assert expected in err and "ref_index" not in err and time.time() - started < 10
    assert not (tmp_path / "o.mp4").exists()


def test_cli_defaults_to_the_trained_size_and_refuses_a_size_beyond_memory(tiny_checkpoint, tmp_path, capsys,  # noqa: F811
                                                                           monkeypatch):
    from mardini.io import read_video

    image = _image(tmp_path, 512)
    assert main(["generate", "i2v", "--checkpoint", str(tiny_checkpoint), "--image", str(image),
                 "--out", str(tmp_path / "small"), *FAST]) == 0
    assert read_video(tmp_path / "small").shape[1:3] == (64, 64)  # mardini-tiny's trained size, not 512
    assert "64x64" in capsys.readouterr().out

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was refused")

    monkeypatch.setattr("mardini.pipeline.MarDiniPipeline.from_pretrained", no_loading)
    monkeypatch.setattr(limits, "available_memory", lambda: 4 * 2**30)
    assert main(["generate", "i2v", "--checkpoint", str(tiny_checkpoint), "--image", str(image), "--height", "8000",
                 "--width", "8000", "--out", str(tmp_path / "big.mp4"), *FAST]) == 2
    assert "needs about" in capsys.readouterr().err and not (tmp_path / "big.mp4").exists()


def test_check_request_is_the_one_call_a_front_end_makes(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 8 * 2**30)  # the same answer on any machine
    config = get_preset("mardini-cpu")
    assert limits.check_request(config, [(720, 1280)]) == (96, 176, 9)
    assert limits.check_request(config, [(64, 64), (90, 120)], num_frames=17, height=64, width=96) == (64, 96, 17)
    with pytest.raises(limits.RequestError, match="at least 3 frames"):
        limits.check_request(config, [(64, 64)] * 2, num_frames=2, minimum_frames=3)
    with pytest.raises(limits.RequestError, match="at least one known frame"):
        limits.check_request(config, [])
    with pytest.raises(limits.RequestError, match="needs about"):
        limits.check_request(config, [(8000, 8000)], height=8000, width=8000)
    assert limits.check_request(config, [(8000, 8000)], height=8000, width=8000, memory=False) == (8000, 8000, 9)


def test_out_of_memory_is_recognised_and_named_in_one_line():
    import torch

    for err in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't "
                                            "allocate memory: you tried to allocate 9663676416 bytes"),
                torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")):
        assert limits.is_out_of_memory(err), err
    for err in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("out of memory"),
                KeyError("x")):
        assert not limits.is_out_of_memory(err), err
    message = limits.out_of_memory_message(128, 256, 33)
    assert "\n" not in message and "256x128 x 33 frames" in message and "--window" in message
    assert "--window" not in limits.out_of_memory_message(cli=False)


def test_cli_turns_running_out_of_memory_into_one_line_and_lets_bugs_through(
        tiny_checkpoint, tmp_path, capsys, monkeypatch):  # noqa: F811 - the fixture's name
    image = _image(tmp_path, 64)
    args = ["generate", "i2v", "--checkpoint", str(tiny_checkpoint), "--image", str(image), *FAST]

    def fail(error):
        def sample(*a, **k):
            raise error
        return sample

    monkeypatch.setattr("mardini.pipeline.MarDiniPipeline.sample",
                        fail(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")))
    assert main([*args, "--out", str(tmp_path / "a.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mardini generate: error: out of memory while generating" in err
    assert not (tmp_path / "a.mp4").exists()
    monkeypatch.setattr("mardini.pipeline.MarDiniPipeline.sample", fail(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # not an input problem: the traceback is kept
        main([*args, "--out", str(tmp_path / "b.mp4")])
