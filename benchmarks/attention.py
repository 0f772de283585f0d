"""Identity attention against dense masked attention, on the same inputs.

MarDini's Identity Attention (section 2.3.2): reference frames attend only to themselves,
generated (masked / noisy) frames attend to every token. ``mardini.models.layers`` implements it
by sending only the generated queries through ``scaled_dot_product_attention`` (cost ~ #generated
x #all); the slow reference is the same pattern written as a dense (B, 1, L, L) boolean mask
(``dense_identity_mask``), cost ~ #all x #all whatever the mask says.

For each case (frames, share of frames generated, dtype) this script:

1. draws q, k, v of shape (B, H, L, D) with L = frames * tokens_per_frame, and picks the
   generated frames at random (seeded; the count is what matters for the cost);
2. checks that both implementations give the same output (max abs difference under a tolerance
   per dtype; reference rows must equal their value vectors exactly in both);
3. times both, alternating dense / identity on every repeat so that load changes on the machine
   hit both alike, after warm-up calls; reports the median time of each and, as the speed-up, the
   median (and range) of the per-repeat ratios dense / identity.

The dense mask is built once per case, outside the timed region (the fairest setting for the
dense path); its build time is recorded separately in the JSON. The identity timing includes
everything the model pays per call (index computation, gather, SDPA, scatter).

Usage::

    python benchmarks/attention.py                       # full run, Markdown table on stdout
    python benchmarks/attention.py --quick               # smoke run, small sizes
    python benchmarks/attention.py --out results.json    # also write every number as JSON
"""

from __future__ import annotations

import os

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # idle OpenMP threads sleep instead of spinning

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mardini.models.layers import dense_identity_mask, identity_attention  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Max abs difference allowed between the two implementations (outputs are O(1) or smaller).
TOLERANCE = {"fp32": 1e-4, "bf16": 2e-2}

FULL = dict(frames=[9, 17], tokens_per_frame=256, heads=8, head_dim=64, batch=1, warmup=2, repeats=9)
QUICK = dict(frames=[9], tokens_per_frame=16, heads=2, head_dim=16, batch=1, warmup=1, repeats=2)


# --------------------------------------------------------------------------------------------
# Machine and cases
# --------------------------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_info() -> dict:
    """CPU model, family/model numbers and the SIMD flags that matter for fp32 / bf16 kernels."""
    info: dict = {"model_name": platform.processor() or platform.machine()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # first processor only
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    info["model_name"] = fields.get("model name", info["model_name"])
    info["vendor"] = fields.get("vendor_id")
    info["family"] = fields.get("cpu family")
    info["model"] = fields.get("model")
    flags = fields.get("flags", "").split()
    info["simd_flags"] = [f for f in flags if f.startswith(("avx2", "avx512f", "avx512_bf16", "amx")) or f == "fma"]
    info["logical_cpus"] = text.count("processor\t:")
    return info


def machine_info(threads: int) -> dict:
    return {
        "cpu": cpu_info(),
        "available_cores": available_cores(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def generated_counts(frames: int, shares: list[float]) -> list[int]:
    """Numbers of generated frames to test: 1, round(share * frames) for each share, frames - 1.

    Counts are kept in [1, frames - 1] (at least one reference frame) and deduplicated.
    """
    if frames < 2:
        raise ValueError("need at least 2 frames (one reference, one generated)")
    counts = {1, frames - 1}
    for share in shares:
        counts.add(min(max(math.floor(share * frames + 0.5), 1), frames - 1))
    return sorted(counts)


def make_inputs(batch: int, heads: int, frames: int, tokens_per_frame: int, head_dim: int,
                n_generated: int, dtype: torch.dtype, seed: int):
    gen = torch.Generator().manual_seed(seed)
    length = frames * tokens_per_frame
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=gen).to(dtype) for _ in range(3))
    frame_is_generated = torch.zeros(batch, frames, dtype=torch.bool)
    for b in range(batch):
        frame_is_generated[b, torch.randperm(frames, generator=gen)[:n_generated]] = True
    token_is_generated = frame_is_generated.repeat_interleave(tokens_per_frame, dim=1)
    return q, k, v, token_is_generated


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------


def time_pair(dense_fn, identity_fn, warmup: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall times in ms of both functions, alternating them on every repeat."""
    for _ in range(warmup):
        dense_fn()
        identity_fn()
    dense, ident = [], []
    for i in range(repeats):
        # Alternate which goes first too, so neither always runs on a cache the other warmed.
        order = ((dense_fn, dense), (identity_fn, ident)) if i % 2 == 0 else ((identity_fn, ident), (dense_fn, dense))
        for fn, store in order:
            start = time.perf_counter()
            fn()
            store.append((time.perf_counter() - start) * 1e3)
    return dense, ident


def run_case(frames: int, n_generated: int, dtype_name: str, args) -> dict:
    dtype = DTYPES[dtype_name]
    q, k, v, token_is_generated = make_inputs(args.batch, args.heads, frames, args.tokens_per_frame,
                                              args.head_dim, n_generated, dtype, args.seed)
    length = frames * args.tokens_per_frame
    n_gen_tokens = n_generated * args.tokens_per_frame

    start = time.perf_counter()
    mask = dense_identity_mask(token_is_generated)
    mask_ms = (time.perf_counter() - start) * 1e3

    def dense_fn():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def identity_fn():
        return identity_attention(q, k, v, token_is_generated)

    with torch.inference_mode():
        out_dense = dense_fn()
        out_ident = identity_fn()
        diff = (out_dense.float() - out_ident.float()).abs()
        max_abs_diff = float(diff.max())
        reference = ~token_is_generated[:, None, :, None].expand_as(v)
        # A reference token's softmax has one entry: its output is exactly its value vector.
        ref_exact = bool(torch.equal(out_ident[reference], v[reference])
                         and torch.equal(out_dense[reference], v[reference]))
        tol = TOLERANCE[dtype_name]
        outputs_match = max_abs_diff <= tol and ref_exact
        if not outputs_match:
            raise AssertionError(f"identity and dense attention disagree for frames={frames}, "
                                 f"generated={n_generated}, {dtype_name}: max abs diff {max_abs_diff:.3g} "
                                 f"(tolerance {tol:g}), reference rows exact: {ref_exact}")
        del out_dense, out_ident, diff
        dense_ms, ident_ms = time_pair(dense_fn, identity_fn, args.warmup, args.repeats)

    dense_med, ident_med = statistics.median(dense_ms), statistics.median(ident_ms)
    # Each repeat times dense and identity back to back, so their ratio is robust to slow drifts
    # of the machine's speed (shared hosts); the reported speed-up is the median of these ratios.
    paired = [d / i for d, i in zip(dense_ms, ident_ms)]
    return {
        "frames": frames,
        "tokens": length,
        "generated_frames": n_generated,
        "generated_share": n_generated / frames,
        "generated_tokens": n_gen_tokens,
        "dtype": dtype_name,
        "max_abs_diff": max_abs_diff,
        "tolerance": tol,
        "reference_rows_exact": ref_exact,
        "outputs_match": outputs_match,
        "dense_ms": dense_med,
        "identity_ms": ident_med,
        "speedup": statistics.median(paired),
        "speedup_min": min(paired),
        "speedup_max": max(paired),
        "speedup_of_medians": dense_med / ident_med,
        # SDPA work: identity does (#generated queries x L keys), dense does (L x L).
        "flop_ratio": (n_gen_tokens * length) / (length * length),
        "ideal_speedup": length / n_gen_tokens,
        "dense_ms_samples": dense_ms,
        "identity_ms_samples": ident_ms,
        "dense_mask_build_ms": mask_ms,
    }


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown_table(rows: list[dict]) -> str:
    head = ("| frames | tokens L | generated frames | share | dtype | dense ms | identity ms "
            "| speed-up (min–max) | FLOP ratio G·L / L² (ideal speed-up) | max abs diff |")
    lines = [head, "|---:|---:|---:|---:|:---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['frames']} | {r['tokens']} | {r['generated_frames']} | {r['generated_share']:.0%} | {r['dtype']} "
            f"| {_ms(r['dense_ms'])} | {_ms(r['identity_ms'])} "
            f"| {r['speedup']:.2f}x ({r['speedup_min']:.2f}–{r['speedup_max']:.2f}) "
            f"| {r['flop_ratio']:.3f} (ideal {r['ideal_speedup']:.2f}x) | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run with small defaults: {QUICK}")
    p.add_argument("--frames", type=int, nargs="+", help=f"frame counts (full default {FULL['frames']})")
    p.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75],
                   help="shares of frames generated, besides 1 frame and all-but-one which are always run")
    p.add_argument("--tokens-per-frame", type=int, help=f"tokens per frame (full default {FULL['tokens_per_frame']})")
    p.add_argument("--heads", type=int, help=f"attention heads (full default {FULL['heads']})")
    p.add_argument("--head-dim", type=int, help=f"channels per head (full default {FULL['head_dim']})")
    p.add_argument("--batch", type=int, help=f"batch size (full default {FULL['batch']})")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    p.add_argument("--warmup", type=int, help=f"untimed calls of each implementation per case (full default {FULL['warmup']})")
    p.add_argument("--repeats", type=int, help=f"timed calls of each per case; the median is reported (full default {FULL['repeats']})")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: cores available to this process)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the results (with machine info) as JSON here")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads is None:
        args.threads = available_cores()
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rows = []
    for dtype_name in args.dtypes:
        for frames in args.frames:
            for n_generated in generated_counts(frames, args.shares):
                row = run_case(frames, n_generated, dtype_name, args)
                rows.append(row)
                print(f"[{time.perf_counter() - started:6.1f}s] frames={frames} generated={n_generated} "
                      f"{dtype_name}: dense {row['dense_ms']:.1f} ms, identity {row['identity_ms']:.1f} ms, "
                      f"x{row['speedup']:.2f}", file=sys.stderr, flush=True)
    results = {
        "command": "python benchmarks/attention.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(torch.get_num_threads()),
        "config": config,
        "rows": rows,
        "all_outputs_match": all(r["outputs_match"] for r in rows),
        "total_seconds": time.perf_counter() - started,
    }
    m = results["machine"]
    print(f"CPU: {m['cpu'].get('model_name')} (family {m['cpu'].get('family')}, model {m['cpu'].get('model')}), "
          f"{m['available_cores']} cores, torch {m['torch']}, {m['torch_threads']} threads; "
          f"batch {args.batch}, {args.heads} heads x {args.head_dim} channels, {args.tokens_per_frame} tokens/frame; "
          f"medians of {args.repeats} repeats after {args.warmup} warm-up; speed-up = median (min–max) "
          f"of dense/identity over repeats timed back to back")
    print()
    print(markdown_table(rows))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
