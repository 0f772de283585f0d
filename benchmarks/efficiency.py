"""Generation latency and memory of the four planner/generator designs: the paper's table 2 on this machine.

Arms: {planner at low resolution (``low_res_factor`` 0.5, the asymmetric resolution) or at the
generator's resolution (1.0)} x {generator with temporal attention (asymmetric attention) or
spatio-temporal attention}. The symmetric design of table 2 is planner at high resolution +
spatio-temporal generator; every arm is reported as a ratio to it at the same size and length.

What is timed: one full generation as `MarDiniPipeline.generate` runs it (encode the given frame,
the planner once, every DDIM step of the generator, decode all frames), image-to-video style (1
given frame, the rest generated, as in table 2's "9 (1 to 8)"), guidance 2.5 (appendix B; the
generator runs on a doubled batch), 25 steps, the window set to the clip length so one model call
covers it. The model is the ``mardini-cpu`` preset with untrained weights and a random
`FrameAutoencoder` codec of the default size (speed does not depend on weights).

Each arm runs in its own fresh process (forked from a server process that has only imported
torch and mardini), so its peak RSS is its own: ``peak_rss_mb`` (the whole process: Python,
torch, weights, activations) and ``generation_mb`` (peak minus the RSS once the model was built).
On a GPU, ``torch.cuda.max_memory_allocated`` is reported too. Each arm: one warm-up generation of
2 steps, then ``--repeats`` timed generations (median reported). Forward hooks time the planner,
the generator calls and the codec, giving the planner's share of the time and the achieved
GFLOP/s of the denoising loop (FLOPs of one generator call counted with FlopCounterMode, the CPU
attention kernel included), against this machine's fp32 matmul peak measured in the same run.

Before the arms, a probe process runs one planner and one generator call per shape to count FLOPs
and estimate the run's duration, which is printed; the estimate is refined after every arm.

Usage::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/efficiency.py --out efficiency.json --markdown efficiency.md
    python benchmarks/efficiency.py --quick --out /tmp/efficiency.json    # smoke run, seconds
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import datetime  # noqa: E402
import multiprocessing  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

from mardini.evaluation.efficiency import matmul_peak  # noqa: E402
from mardini.evaluation.reporting import fmt, machine_info, write_json, write_text  # noqa: E402

#: (name, planner low_res_factor, generator attention); the last is the symmetric reference.
ARMS = [
    ("asymmetric (low-res planner, temporal generator)", 0.5, "temporal"),
    ("low-res planner, spatio-temporal generator", 0.5, "spatiotemporal"),
    ("high-res planner, temporal generator", 1.0, "temporal"),
    ("symmetric (high-res planner, spatio-temporal generator)", 1.0, "spatiotemporal"),
]
SYMMETRIC = (1.0, "spatiotemporal")
#: Setup per arm not seen by the probe (fork, model and codec construction), seconds.
ARM_OVERHEAD_S = 3.0


def arm_label(factor: float, attention: str) -> str:
    return next(name for name, f, a in ARMS if f == factor and a == attention)


def shapes(args: argparse.Namespace) -> dict[str, list[tuple[int, int]]]:
    """(size, frames) of the table-2 grid and of the two scaling series."""
    return {
        "grid": [(s, f) for s in args.sizes for f in args.frames],
        "frame_scaling": [(args.scaling_size, f) for f in args.scaling_frames],
        "size_scaling": [(s, args.scaling_length) for s in args.scaling_sizes],
    }


def build_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One spec per (size, frames, arm): every arm on the grid, the scaling arms on the series."""
    wanted: list[tuple[int, int, float, str]] = []
    series = shapes(args)
    for name, points in series.items():
        arms = ARMS if name == "grid" else [a for a in ARMS if a[0].split(" ")[0] in args.scaling_arms]
        for size, frames in points:
            for _, factor, attention in arms:
                if (size, frames, factor, attention) not in wanted:
                    wanted.append((size, frames, factor, attention))
    specs = []
    for size, frames, factor, attention in wanted:
        specs.append({"preset": args.preset, "low_res_factor": factor, "attention": attention, "size": size,
                      "frames": frames, "steps": args.steps, "guidance": args.guidance, "repeats": args.repeats,
                      "warmup_steps": args.warmup_steps, "known": [0], "threads": args.threads,
                      "device": args.device, "seed": 0})
    return specs


def run_in_process(ctx: Any, task: str, spec: dict[str, Any], timeout: float | None = None) -> tuple[str, Any]:
    from mardini.evaluation.efficiency import worker

    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=worker, args=(task, spec, child))
    process.start()
    child.close()
    try:
        if timeout is not None and not parent.poll(timeout):
            process.kill()
            return "error", f"timed out after {timeout:.0f} s"
        status, result = parent.recv()
    except EOFError:
        status, result = "error", "the worker process died (killed for memory?)"
    process.join()
    if process.exitcode not in (0, None) and status == "ok":
        status, result = "error", f"worker exit code {process.exitcode}"
    return status, result


def estimate_arm_s(spec: dict[str, Any], probe: dict[str, Any]) -> float:
    """Seconds an arm should take: warm-up + repeats x (planner + steps x generator + codec) + setup."""
    s = probe["seconds"]
    fixed = s["planner"] + s["encode"] + s["decode"]
    return (ARM_OVERHEAD_S + fixed + spec["warmup_steps"] * s["generator"]
            + spec["repeats"] * (fixed + spec["steps"] * s["generator"]))


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mardini-cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="table-2 grid: frame sizes")
    parser.add_argument("--frames", type=int, nargs="+", default=[9, 13], help="table-2 grid: clip lengths")
    parser.add_argument("--scaling-frames", type=int, nargs="+", default=[9, 17, 33],
                        help="latency vs clip length, at --scaling-size")
    parser.add_argument("--scaling-size", type=int, default=128)
    parser.add_argument("--scaling-sizes", type=int, nargs="+", default=[128, 192, 256],
                        help="latency vs frame size, at --scaling-length frames")
    parser.add_argument("--scaling-length", type=int, default=9)
    parser.add_argument("--scaling-arms", nargs="+", default=["asymmetric", "low-res", "high-res", "symmetric"],
                        choices=["asymmetric", "low-res", "high-res", "symmetric"],
                        help="arms measured along the scaling series (default: all four)")
    parser.add_argument("--estimate-only", action="store_true",
                        help="measure the matmul peak, run the probe, print the estimated duration and stop")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps per generation (default 25, as table 2)")
    parser.add_argument("--guidance", type=float, default=2.5, help="guidance scale (2.5: the generator runs twice)")
    parser.add_argument("--repeats", type=int, default=2, help="timed generations per arm (median reported)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the untimed warm-up generation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per arm (default: torch's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on an arm after this many seconds")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny preset, 64 px, 5 frames, 2 steps, 1 repeat; scaling (9 frames, "
                             "96 px) of the asymmetric arm only")
    parser.add_argument("--out", type=Path, help="results JSON")
    parser.add_argument("--markdown", type=Path, help="tables as Markdown")
    args = parser.parse_args(argv)
    if args.quick:
        args.preset, args.sizes, args.frames, args.steps, args.repeats, args.warmup_steps = \
            "mardini-tiny", [64], [5], 2, 1, 1
        args.scaling_frames, args.scaling_size, args.scaling_sizes, args.scaling_length = [5, 9], 64, [64, 96], 5
        args.scaling_arms = ["asymmetric"]
        args.matmul_size = 512

    started = time.time()
    machine = machine_info()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = matmul_peak(args.matmul_size, device=args.device)
    print(f"fp32 matmul peak ({args.matmul_size}^3): {peak['gflops']:.1f} GFLOP/s", flush=True)

    ctx = multiprocessing.get_context("forkserver")
    # Every arm is forked from this server: it has imported torch and mardini and run nothing.
    ctx.set_forkserver_preload(["mardini.evaluation.efficiency"])
    specs = build_specs(args)
    status, probes = run_in_process(ctx, "probe", {"arms": specs, "threads": args.threads}, args.timeout)
    if status != "ok":
        raise RuntimeError(f"the probe failed: {probes}")
    estimates = [estimate_arm_s(s, p) for s, p in zip(specs, probes)]
    total_estimate = sum(estimates)
    print(f"{len(specs)} arms; estimated duration {datetime.timedelta(seconds=round(total_estimate))} "
          f"(probe-based; the machine's load changes it)", flush=True)
    if args.estimate_only:
        return {"estimated_duration_s": total_estimate, "arms": len(specs), "matmul_peak": peak}
    order = sorted(range(len(specs)), key=estimates.__getitem__)
    results: list[dict[str, Any] | None] = [None] * len(specs)
    done_estimate, done_actual = 0.0, 0.0
    for count, i in enumerate(order, start=1):
        spec = specs[i]
        arm_start = time.time()
        status, result = run_in_process(ctx, "profile", spec, args.timeout)
        elapsed = time.time() - arm_start
        done_estimate += estimates[i]
        done_actual += elapsed
        flops = probes[i]["flops"]
        entry: dict[str, Any] = {"arm": arm_label(spec["low_res_factor"], spec["attention"]),
                                 "planner_low_res_factor": spec["low_res_factor"],
                                 "generator_attention": spec["attention"], "size": spec["size"],
                                 "frames": spec["frames"], "planner_gflops": flops["planner"] / 1e9,
                                 "generator_gflops_per_call": flops["generator"] / 1e9,
                                 "estimated_s": estimates[i], "wall_s": elapsed}
        if status == "ok":
            entry.update(result)
            denoise_flops = flops["generator"] * result["generator_calls"]
            gen_s = result["phases_s"]["generator"]
            entry["denoise_gflops_per_s"] = denoise_flops / gen_s / 1e9 if gen_s else None
            entry["denoise_fraction_of_matmul_peak"] = ratio(entry["denoise_gflops_per_s"], peak["gflops"])
            line = (f"latency {result['latency_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB, planner "
                    f"{100 * result['planner_share']:.0f}%")
        else:
            entry["error"] = result
            line = f"FAILED: {result}"
        results[i] = entry
        remaining = sum(estimates[j] for j in order[count:]) * (done_actual / max(done_estimate, 1e-9))
        print(f"[{count}/{len(specs)}] {spec['size']}px x {spec['frames']} frames, {entry['arm']}: {line} "
              f"(remaining ~{datetime.timedelta(seconds=round(remaining))})", flush=True)

    arms = [r for r in results if r is not None]
    by_key = {(r["planner_low_res_factor"], r["generator_attention"], r["size"], r["frames"]): r for r in arms}
    for r in arms:
        ref = by_key.get((*SYMMETRIC, r["size"], r["frames"]))
        ok = "error" not in r and ref is not None and "error" not in ref
        r["latency_vs_symmetric"] = ratio(r.get("latency_s"), ref.get("latency_s")) if ok else None
        r["peak_rss_vs_symmetric"] = ratio(r.get("peak_rss_mb"), ref.get("peak_rss_mb")) if ok else None
        r["generation_mb_vs_symmetric"] = ratio(r.get("generation_mb"), ref.get("generation_mb")) if ok else None

    series = shapes(args)
    tables = {"table2": table2(arms, series["grid"]),
              "frame_scaling": scaling_table(arms, series["frame_scaling"], "frames"),
              "size_scaling": scaling_table(arms, series["size_scaling"], "size")}
    for name, text in tables.items():
        print(f"\n{name}\n{text}", flush=True)
    duration = time.time() - started
    report = {
        "benchmark": "generation latency and memory of the planner/generator designs (paper table 2)",
        "machine": machine, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "matmul_peak": peak,
        "settings": {"preset": args.preset, "steps": args.steps, "guidance": args.guidance,
                     "repeats": args.repeats, "warmup_steps": args.warmup_steps, "given_frames": [0],
                     "codec": "random FrameAutoencoder, default size (width 64, depth 3)",
                     "weights": "untrained (timing does not depend on them)", "device": args.device,
                     "threads": args.threads or torch.get_num_threads(), "quick": args.quick,
                     "series": {k: [list(s) for s in v] for k, v in series.items()},
                     "memory": "peak RSS of a fresh process per arm (forkserver); generation_mb = peak minus RSS "
                               "after building the model" if args.device == "cpu" else
                               "torch.cuda.max_memory_allocated"},
        "arms": arms, "tables": tables,
        "estimated_duration_s": total_estimate, "duration_s": duration,
    }
    if args.out:
        write_json(report, args.out)
    if args.markdown:
        text = "\n\n".join(f"### {name}\n\n{t}" for name, t in tables.items())
        write_text(text, args.markdown)
    print(f"\ndone in {datetime.timedelta(seconds=round(duration))} (estimated "
          f"{datetime.timedelta(seconds=round(total_estimate))})")
    return report


def table2(arms: list[dict[str, Any]], grid: list[tuple[int, int]]) -> str:
    lines = ["| generator attention | planner resolution | size | frames | latency (s) | x symmetric | "
             "peak RSS (MB) | generation (MB) | x symmetric | planner share | denoise GFLOP/s | % of matmul peak |",
             "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size, frames in grid:
        for _, factor, attention in ARMS:
            r = next((a for a in arms if (a["planner_low_res_factor"], a["generator_attention"], a["size"],
                                          a["frames"]) == (factor, attention, size, frames)), None)
            if r is None:
                continue
            head = f"| {attention} | {'low (x0.5)' if factor < 1 else 'high (x1)'} | {size} | {frames} |"
            if "error" in r:
                lines.append(f"{head} failed: {r['error']} | | | | | | | |")
                continue
            frac = r.get("denoise_fraction_of_matmul_peak")
            lines.append(f"{head} {fmt(r['latency_s'], 2)} | {fmt(r['latency_vs_symmetric'], 2)} | "
                         f"{fmt(r['peak_rss_mb'], 0)} | {fmt(r['generation_mb'], 0)} | "
                         f"{fmt(r['generation_mb_vs_symmetric'], 2)} | {100 * r['planner_share']:.0f}% | "
                         f"{fmt(r.get('denoise_gflops_per_s'), 1)} | {'–' if frac is None else f'{100 * frac:.0f}%'} |")
    return "\n".join(lines) + "\n"


def scaling_table(arms: list[dict[str, Any]], series: list[tuple[int, int]], axis: str) -> str:
    """Latency of each arm along one axis, and its growth relative to the first point."""
    values = [s[1] if axis == "frames" else s[0] for s in series]
    lines = ["| arm | " + " | ".join(f"{v} {'frames' if axis == 'frames' else 'px'}" for v in values) + " | growth |",
             "|:---|" + "---:|" * (len(values) + 1)]
    for name, factor, attention in ARMS:
        cells, lat = [], []
        for size, frames in series:
            r = next((a for a in arms if (a["planner_low_res_factor"], a["generator_attention"], a["size"],
                                          a["frames"]) == (factor, attention, size, frames)), None)
            value = r.get("latency_s") if r is not None else None
            lat.append(value)
            cells.append(f"{fmt(value, 2)} s" if value is not None else "–")
        growth = " / ".join(fmt(ratio(v, lat[0]), 2) for v in lat[1:]) if lat and lat[0] else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | x{growth} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
