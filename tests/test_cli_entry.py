"""The command line's entry (issue 15): OpenMP policy before torch, fast input checks, --version, per-task help."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mardini.cli import main


def _python(code, env_extra=None, drop=("OMP_WAIT_POLICY",)):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_sets_a_passive_openmp_policy_before_torch_loads():
    code = ("import os, sys\nimport mardini.cli\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    assert _python(code).stdout.split() == ["PASSIVE", "False"]
    # The user's own choice stays.
    assert _python(code, {"OMP_WAIT_POLICY": "ACTIVE"}).stdout.split() == ["ACTIVE", "False"]


def test_python_dash_m_mardini_and_version():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-m", "mardini", "--version"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("mardini 0.")


def test_a_missing_input_is_reported_before_torch_is_imported(tmp_path):
    code = ("import sys\nfrom mardini.cli import main\n"
            f"rc = main(['generate', 'i2v', '--image', {str(tmp_path / 'missing.png')!r}, '--out', "
            f"{str(tmp_path / 'out.mp4')!r}])\nprint(rc, 'torch' in sys.modules)")
    done = _python(code)
    assert done.stdout.split() == ["2", "False"], done.stderr
    assert "image '" in done.stderr and "missing.png' does not exist" in done.stderr


def test_an_unwritable_output_is_reported_before_any_work(tmp_path, capsys):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    # /proc takes no new files, even for root; checked before the model is loaded.
    assert main(["generate", "i2v", "--image", str(image), "--out", "/proc/mardini-out.mp4"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert main(["generate", "interpolate", "--first", str(image), "--last", str(tmp_path / "b.png"),
                 "--out", str(tmp_path / "o.gif")]) == 2
    assert f"image '{tmp_path / 'b.png'}' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("task,shown,hidden", [("i2v", "--image", "--first"), ("interpolate", "--last", "--image"),
                                               ("custom", "--known", "--video")])
def test_each_task_has_its_own_help(task, shown, hidden, capsys):
    with pytest.raises(SystemExit):
        main(["generate", task, "--help"])
    text = capsys.readouterr().out
    option = f"{hidden} {hidden[2:].upper()}"  # how argparse lists an option with its value
    assert shown in text and option not in text and "example: mardini generate " + task in text
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    assert "--first FIRST" in capsys.readouterr().out  # without a task: every input


def test_demo_on_a_non_empty_folder_needs_force(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--force" in err
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
