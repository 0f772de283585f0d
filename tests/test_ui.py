"""``mardini ui`` without a browser: every tab's request on the tiny checkpoint, the command each
result shows (it must make the same frames), the output size, readable errors that match the
CLI's, the host warning, the missing-extra message and the shared queue slot.

The page itself, driven in Chromium, is tested in test_ui_browser.py.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mardini import ui
from mardini.cli import main
from mardini.demo import DEMO_INPUTS
from pipeline_support import pipe, tiny_checkpoint  # noqa: F401 - fixtures


def _form(task: str, **changes: object) -> dict:
    """The task's bundled example as the page submits it, with 1 denoising step."""
    example = dict(ui.example_requests()[task][0])
    example.pop("label")
    return {"steps": "1", **example, **changes}


@pytest.mark.parametrize("task", list(ui.TASK_TITLES))
def test_each_example_runs_and_the_command_shown_makes_the_same_frames(pipe, tiny_checkpoint, tmp_path,  # noqa: F811
                                                                        task, capsys):
    result = ui.run_request(ui.request_from_form(task, _form(task)), pipe, tmp_path / "ui",
                            checkpoint=str(tiny_checkpoint), progress=False)
    assert {result.mp4.suffix, result.gif.suffix, result.sheet.suffix} == {".mp4", ".gif", ".png"}
    assert all(p.stat().st_size > 0 for p in (result.mp4, result.gif, result.sheet))
    assert result.given and all(frame.dtype == np.uint8 for frame in result.given)
    assert f"({task}: " in result.summary

    # The command names the bundled clips by their paths: run it as printed, outputs into tmp_path.
    argv = shlex.split(result.command.splitlines()[-1])
    assert argv[:3] == ["mardini", "generate", task]
    assert str(DEMO_INPUTS) in result.command
    argv[argv.index("--out") + 1] = str(tmp_path / "cli.mp4")
    argv[argv.index("--contact-sheet") + 1] = str(tmp_path / "cli-sheet.png")
    assert main(argv[1:] + ["--quiet"]) == 0
    printed = capsys.readouterr().out
    assert result.summary.split(" (")[0] in printed  # "N frames of WxH"
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "cli-sheet.png")),
                                  np.asarray(Image.open(result.sheet)))


def test_uploads_are_named_by_file_name_and_frames_without_a_bundled_folder_get_a_note(pipe, tmp_path):  # noqa: F811
    uploads = []
    for i in (1, 0, 2):  # in upload order; the page takes them in name order
        folder = tmp_path / f"upload{i}"
        folder.mkdir()
        path = folder / f"mine_{i}.png"
        Image.fromarray(np.full((48, 64, 3), 60 * i, np.uint8)).save(path)
        uploads.append(str(path))
    job = ui._validate_request(ui.request_from_form("expand", {"video": uploads, "frames": 5}), pipe)
    assert [int(frame[0, 0, 0]) for frame in job.given] == [0, 60, 120]
    assert job.cli_args[:2] == ["--video", "FRAMES"]
    assert job.notes == ["FRAMES: a folder holding only mine_0.png, mine_1.png, mine_2.png"]
    job = ui._validate_request(ui.request_from_form("i2v", {"image": uploads[0], "frames": 5}), pipe)
    assert job.cli_args[:2] == ["--image", "mine_1.png"]


def test_output_size_is_the_checkpoints_in_the_inputs_aspect_ratio(pipe, tmp_path):  # noqa: F811
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((120, 240, 3), np.uint8)).save(wide)
    large = tmp_path / "large.png"
    Image.fromarray(np.zeros((1080, 1080, 3), np.uint8)).save(large)

    def size(path: Path, **changes: object) -> tuple[int, int]:
        job = ui._validate_request(ui.request_from_form("loop", {"image": str(path), **changes}), pipe)
        return job.height, job.width

    trained = (pipe.config.height, pipe.config.width)
    assert size(large) == trained  # a large square upload: the trained size, not the upload's
    height, width = size(wide)
    assert width > height and height * width <= 2 * trained[0] * trained[1]
    assert size(wide, height="32") == (32, 64)  # one side given keeps the aspect ratio
    with pytest.raises(ValueError, match="height 30 is not a positive multiple of 16"):
        size(wide, height="30", width="64")


def _cli_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err.split(": error: ", 1)[1].strip()


@pytest.mark.parametrize(("changes", "flags"), [
    ({"frames": 2}, ["--frames", "2"]),
    ({"frames": 100_000}, ["--frames", "100000"]),
    ({"height": "8192", "width": "8192", "frames": 4000}, ["--height", "8192", "--width", "8192", "--frames", "4000"]),
    ({"height": "40"}, ["--height", "40"]),
    ({"steps": "0"}, ["--steps", "0"]),
])
def test_settings_the_cli_refuses_give_its_message(pipe, tiny_checkpoint, tmp_path, capsys,  # noqa: F811
                                                             changes, flags):
    form = _form("interpolate", **changes)
    with pytest.raises(ValueError) as caught:
        ui.run_request(ui.request_from_form("interpolate", form), pipe, tmp_path, progress=False)
    cli = _cli_error(capsys, ["generate", "interpolate", "--checkpoint", str(tiny_checkpoint), "--out",
                              str(tmp_path / "x.mp4"), "--first", form["first"], "--last", form["last"],
                              "--quiet", *flags])
    free = re.compile(r"[\d.]+ GB is available")  # the machine's free memory changes between the calls
    assert free.sub("", ui.one_line(caught.value)) == free.sub("", cli)


@pytest.mark.parametrize(("task", "changes", "message"), [
    ("interpolate", {"first": None}, "interpolation needs a first and a last frame: upload two images"),
    ("interpolate", {"first": "{notes}"}, "cannot read image 'notes.png': cannot identify image file"),
    ("expand", {"video": ["{notes_mp4}"]}, "cannot read video 'clip.mp4'"),
    ("expand", {"frames": None}, "expansion needs the number of frames"),
    ("slowmo", {"frames": "9"}, "slow motion needs exactly one of the factor and the number of frames"),
    ("custom", {"positions": "2"}, "2 frame(s) but 1 position(s)"),
    ("custom", {"positions": "2, two"}, "positions are 0-based whole numbers"),
    ("custom", {"positions": "3, 3"}, "position 3 is given twice"),
    ("i2v", {"ref_index": 12}, "ref_index 12 is outside a 9-frame video"),
    ("loop", {"seed": 1.5}, "seed must be a whole number, got 1.5"),
    ("loop", {"guidance": "lots"}, "guidance must be a number, got 'lots'"),
    ("loop", {"fps": 0}, "fps must be a positive number, got 0"),
])
def test_bad_forms_give_one_readable_line(pipe, tmp_path, task, changes, message):  # noqa: F811
    (tmp_path / "up").mkdir()
    files = {"notes": tmp_path / "up" / "notes.png", "notes_mp4": tmp_path / "up" / "clip.mp4"}
    files["notes"].write_text("not an image")
    files["notes_mp4"].write_text("not a video")
    form = _form(task, **{k: [v.format(**files) for v in value] if isinstance(value, list) else
                          value.format(**files) if isinstance(value, str) else value for k, value in changes.items()})
    with pytest.raises(ui.READABLE_ERRORS) as caught:
        ui.run_request(ui.request_from_form(task, form), pipe, tmp_path / "out", progress=False)
    text = ui.one_line(caught.value)
    assert message in text
    assert str(tmp_path) not in text  # uploads are named by file name, not the server's temporary path
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_out_of_memory_and_bugs_get_a_line_of_their_own_not_gradios_bare_error(capsys):
    assert ui.page_error(ValueError("fps must be a positive number,\n got 0")) == "fps must be a positive number, got 0"
    oom = ui.page_error(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB"))
    assert oom.startswith("out of memory while generating") and "height" in oom and "--" not in oom
    assert capsys.readouterr().err == ""  # expected failures leave the server's log alone
    try:
        {}["frames"]
    except KeyError as err:
        bug = ui.page_error(err)
    assert bug.startswith("unexpected error (KeyError: 'frames')") and "server's log" in bug
    assert "Traceback" in capsys.readouterr().err  # the bug's traceback is logged


def test_only_loopback_addresses_go_without_a_warning():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert ui.host_warning(host) is None
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        assert "has no login" in ui.host_warning(host)


def test_ui_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["ui", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'mardini ui: error: mardini ui needs gradio' in err and '.[ui]' in err


def test_every_tab_shares_one_queue_slot(pipe, tmp_path):  # noqa: F811
    pytest.importorskip("gradio", reason="the page needs the ui extra: pip install -e '.[ui]'")
    app = ui.build_app(pipe, workdir=tmp_path)
    generate = [fn for fn in app.fns.values() if fn.api_name in ui.TASK_TITLES]
    assert sorted(fn.api_name for fn in generate) == sorted(ui.TASK_TITLES)
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in generate} == {("generate", 1)}


def test_the_bundled_examples_exist():
    for examples in ui.example_requests().values():
        for example in examples:
            paths = [example[k] for k in ("image", "first", "last") if k in example]
            paths += example.get("video", []) + example.get("known", [])
            assert paths and all(Path(p).is_file() for p in paths)
