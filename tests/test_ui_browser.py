"""``mardini ui`` as a person uses it: the server in a subprocess on a free local port, driven in
headless Chromium (Playwright with Debian's /usr/bin/chromium; it downloads no browser).

Skipped, with the reason, where gradio, playwright or Chromium is missing (.ci/run installs them).
With ``MARDINI_UI_SCREENSHOT=docs/ui.png`` the server runs the bundled model instead of the
untrained tiny one and the interpolation test saves its screenshot there (the README's picture).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline_support import tiny_checkpoint  # noqa: F401 - fixture

pytest.importorskip("gradio", reason="the page needs the ui extra: pip install -e '.[ui]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser tests need playwright: pip install -e '.[ui-test]'")

CHROMIUM = os.environ.get("MARDINI_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).is_file():
    pytest.skip(f"browser tests need Chromium at {CHROMIUM}: apt-get install chromium", allow_module_level=True)

# A closed network and a root user: no sandbox, no GPU, nothing fetched in the background.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("MARDINI_UI_SCREENSHOT")
START_TIMEOUT = 180  # seconds: importing gradio and torch on a busy 2-core machine
RUN_TIMEOUT = 120_000  # ms for one generation with the tiny model (or the bundled one, 1 step)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:  # noqa: F811
    """``mardini ui`` on a free port of 127.0.0.1; yields its URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    checkpoint = [] if SCREENSHOT else ["--checkpoint", str(tiny_checkpoint)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_WAIT_POLICY": "PASSIVE"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mardini.cli", "ui", *checkpoint, "--port", str(port),
                                 "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mardini ui exited with {proc.returncode}:\n{log.read_text()}")
            # A direct loopback connection: urllib would honour a proxy from the environment.
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                connection.request("GET", "/")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                connection.close()
            if time.monotonic() > deadline:
                pytest.fail(f"mardini ui did not answer on {url} within {START_TIMEOUT} s:\n{log.read_text()}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()  # no request failed on the server


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Debian Chromium with a fresh profile."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@pytest.fixture()
def page(browser, server: str):  # noqa: ANN001, ANN201 - playwright objects
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.goto(server)
    yield page
    page.close()


def _type(field, value: str, timeout: float = 10.0) -> None:  # noqa: ANN001 - a playwright locator
    """Type ``value`` into a text field and make sure it stays: right after the page loads, the field's
    component may still be mounting and reset what was typed (seen on the first page after the server
    starts), so the value is typed again until the field keeps it."""
    deadline = time.monotonic() + timeout
    while True:
        field.fill(value)
        field.press("Tab")  # commit it (a change event), as leaving the field does
        time.sleep(0.2)
        if field.input_value() == value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the field does not keep {value!r}: it shows {field.input_value()!r}")


def test_the_page_names_mardini_and_has_a_tab_per_task(page):  # noqa: ANN001
    sync_api.expect(page).to_have_title("MarDini")  # set by the page's script once the app has loaded
    for title in ("Image to video", "Interpolation", "Loop", "Expansion", "Slow motion", "Any known frames"):
        sync_api.expect(page.get_by_role("tab", name=title)).to_be_visible()


def test_interpolation_example_makes_a_playable_video(page, tmp_path):  # noqa: ANN001
    page.get_by_role("tab", name="Interpolation").click()
    page.get_by_text("wheat, frames 0 and 8").click()  # the example fills both frames
    panel = page.get_by_role("tabpanel")
    sync_api.expect(panel.get_by_role("cell", name="frame_08.png")).to_be_visible()
    panel.get_by_text("Settings").click()
    _type(page.locator("#interpolate-steps").get_by_role("textbox"), "1")
    page.locator("#interpolate-generate").click()

    video = page.locator("#interpolate-video video")
    video.wait_for(timeout=RUN_TIMEOUT)
    assert video.get_attribute("src")
    # The browser reads the mp4's header: a real, playable file of 9 frames at 8 fps.
    page.wait_for_function("document.querySelector('#interpolate-video video').readyState >= 1")
    assert video.evaluate("v => v.duration") == pytest.approx(9 / 8, abs=0.2)
    sync_api.expect(page.locator("#interpolate-summary")).to_contain_text("9 frames of")
    sync_api.expect(page.locator("#interpolate-command textarea")).to_have_value(
        re.compile(r"^mardini generate interpolate .*--first \S*frame_00.png --last \S*frame_08.png"))
    for name in ("mardini-interpolate.mp4", "mardini-interpolate.gif", "mardini-interpolate-sheet.png"):
        sync_api.expect(page.locator("#interpolate-files").get_by_role("cell", name=name)).to_be_visible()
    page.wait_for_function("document.querySelector('#interpolate-sheet img')?.complete")
    shot = tmp_path / "ui.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    if SCREENSHOT:
        shutil.copyfile(shot, SCREENSHOT)


@pytest.mark.parametrize("task", ["i2v", "loop", "expand", "slowmo", "custom"])
def test_every_other_tab_runs_its_example(page, task):  # noqa: ANN001
    from mardini.ui import TASK_TITLES, example_requests

    example = example_requests()[task][0]
    page.get_by_role("tab", name=TASK_TITLES[task]).click()
    page.get_by_text(example["label"]).click()
    panel = page.get_by_role("tabpanel")
    names = [Path(p).name for key in ("image", "video", "known") for p in
             ([example[key]] if isinstance(example.get(key), str) else example.get(key, []))]
    sync_api.expect(panel.get_by_role("cell", name=names[-1])).to_be_visible()
    panel.get_by_text("Settings").click()
    _type(page.locator(f"#{task}-steps").get_by_role("textbox"), "1")
    page.locator(f"#{task}-generate").click()
    page.locator(f"#{task}-video video").wait_for(timeout=RUN_TIMEOUT)
    assert page.locator(f"#{task}-video video").get_attribute("src")
    sync_api.expect(page.locator(f"#{task}-summary")).to_contain_text(f"({task}: ")
    sync_api.expect(page.locator(f"#{task}-command textarea")).to_have_value(re.compile(f"mardini generate {task} "))


def test_two_users_queue_and_see_the_denoising_progress(browser, server):  # noqa: ANN001
    """A long request in one tab, then a short one in another tab of a second page: the second waits
    in the queue (all tabs share one slot) while the first shows its denoising progress."""
    first, second = browser.new_page(), browser.new_page()
    try:
        for page, task, label in ((first, "interpolate", "wheat, frames 0 and 8"), (second, "loop", "ocean, frame 0")):
            page.bring_to_front()  # Chromium defers a background page's updates
            page.set_default_timeout(30_000)
            page.goto(server)
            page.get_by_role("tab", name="Interpolation" if task == "interpolate" else "Loop").click()
            page.get_by_text(label).click()
            sync_api.expect(page.get_by_role("tabpanel").get_by_role("cell", name="frame_00.png")).to_be_visible()
            page.get_by_role("tabpanel").get_by_text("Settings").click()
            # typed and committed before the page goes to the background
            _type(page.locator(f"#{task}-steps").get_by_role("textbox"), "300" if task == "interpolate" else "1")
        first.bring_to_front()
        sync_api.expect(first.locator("#interpolate-steps").get_by_role("textbox")).to_have_value("300")
        first.locator("#interpolate-generate").click()
        sync_api.expect(first.locator("#interpolate-video")).to_contain_text(re.compile(r"\d+/300 steps.*denoising"))
        second.bring_to_front()
        sync_api.expect(second.locator("#loop-steps").get_by_role("textbox")).to_have_value("1")
        second.locator("#loop-generate").click()
        sync_api.expect(second.locator("#loop-video")).to_contain_text("queue: 1/1")
        second.locator("#loop-video video").wait_for(timeout=RUN_TIMEOUT)
        first.bring_to_front()
        first.locator("#interpolate-video video").wait_for(timeout=RUN_TIMEOUT)
    finally:
        first.close()
        second.close()


def test_a_bad_upload_gets_a_readable_message(page, tmp_path):  # noqa: ANN001
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    page.get_by_role("tab", name="Interpolation").click()
    for field in ("#interpolate-first", "#interpolate-last"):
        page.locator(f"{field} input[type=file]").set_input_files(str(notes))
    panel = page.get_by_role("tabpanel")
    sync_api.expect(panel.get_by_role("cell", name="notes.png")).to_have_count(2)
    page.locator("#interpolate-generate").click()
    sync_api.expect(page.get_by_text("cannot read image 'notes.png': cannot identify image file")).to_be_visible()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(tmp_path / "bad-upload.png"), full_page=True)
