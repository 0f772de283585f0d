"""Measuring generation cost: latency by phase, peak memory, FLOPs and the machine's matmul peak.

The pieces behind ``benchmarks/efficiency.py`` (the paper's table 2), importable so that its
per-arm worker processes can be forked from a process that has already imported torch:

- `build_pipeline`: an untrained model of a preset with the arm's planner resolution
  (``low_res_factor``) and generator attention, plus a random `FrameAutoencoder` codec of the
  default size (timings do not depend on the weights);
- `profile_generation`: full generations (planner + every denoising step + decode) of one arm,
  with the time of each phase taken by forward hooks, and the process's peak memory (peak RSS on
  the CPU, ``torch.cuda.max_memory_allocated`` on a GPU);
- `count_flops`: FLOPs of one planner call and one generator call with
  `torch.utils.flop_counter.FlopCounterMode`, which has no formula for the CPU's fused attention
  kernel (``aten._scaled_dot_product_flash_attention_for_cpu``): `SDPA_CPU_FLOPS` adds it, with
  torch's own SDPA formula;
- `matmul_peak`: the best fp32 matmul throughput of this machine (a large square matmul).
"""

from __future__ import annotations

import gc
import os
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from mardini.codecs import FrameAutoencoder, FrameAutoencoderCodec, FrameAutoencoderConfig
from mardini.config import get_preset
from mardini.models import MarDini
from mardini.pipeline import MarDiniPipeline


def _sdpa_cpu_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


#: FlopCounterMode ``custom_mapping`` for the CPU's fused attention (not counted by torch itself).
SDPA_CPU_FLOPS: dict[Any, Callable[..., int]] = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    SDPA_CPU_FLOPS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def rss_bytes() -> int:
    """The current resident set size of this process (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def matmul_peak(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu") -> dict[str, float]:
    """Best throughput of an ``n x n @ n x n`` matmul in GFLOP/s (``2 n^3`` FLOPs per product)."""
    device = torch.device(device)
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    torch.mm(a, b)  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "best_s": best,
            "gflops": 2.0 * n ** 3 / best / 1e9, "median_gflops": 2.0 * n ** 3 / statistics.median(times) / 1e9}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_pipeline(preset: str, low_res_factor: float, attention: str, size: int, frames: int,
                   device: str | torch.device = "cpu", seed: int = 0) -> MarDiniPipeline:
    """An untrained `preset` model for one arm: planner at ``low_res_factor`` of the output side,
    generator with ``attention``, window = ``frames`` (one model call), plus a random codec."""
    torch.manual_seed(seed)
    cfg = get_preset(preset)
    cfg.low_res_factor = float(low_res_factor)
    cfg.generator.attention = attention  # type: ignore[assignment]
    cfg.num_frames, cfg.height, cfg.width = frames, size, size
    model = MarDini(cfg).eval()
    codec = FrameAutoencoderCodec(FrameAutoencoder(FrameAutoencoderConfig(latent_channels=cfg.latent_channels)))
    return MarDiniPipeline(model, codec).to(device)


class PhaseTimer:
    """Wall time spent in the planner, the generator, the codec's encode and decode, via hooks.

    Also keeps the arguments of the first planner and generator calls (for `count_flops`).
    """

    def __init__(self, pipe: MarDiniPipeline) -> None:
        self.pipe = pipe
        self.device = pipe.device
        self.seconds = {"planner": 0.0, "generator": 0.0, "encode": 0.0, "decode": 0.0}
        self.calls = {"planner": 0, "generator": 0, "encode": 0, "decode": 0}
        self.inputs: dict[str, tuple[tuple, dict]] = {}
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in (("planner", pipe.model.planner), ("generator", pipe.model.generator)):
            self._handles.append(module.register_forward_pre_hook(self._pre(name), with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._post(name), with_kwargs=True))
        codec = pipe.codec
        self._originals = {"encode": codec.encode, "decode": codec.decode}
        codec.encode = self._timed("encode", codec.encode)  # type: ignore[method-assign]
        codec.decode = self._timed("decode", codec.decode)  # type: ignore[method-assign]

    def _pre(self, name: str) -> Callable:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            if name not in self.inputs:
                self.inputs[name] = (args, dict(kwargs))
            _sync(self.device)
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name: str) -> Callable:
        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            _sync(self.device)
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
            self.calls[name] += 1
        return hook

    def _timed(self, name: str, fn: Callable) -> Callable:
        def run(*args: Any, **kwargs: Any) -> Any:
            _sync(self.device)
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync(self.device)
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            return out
        return run

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for name, fn in self._originals.items():
            setattr(self.pipe.codec, name, fn)


@torch.no_grad()
def count_flops(module: torch.nn.Module, args: tuple, kwargs: dict) -> int:
    """FLOPs of one call ``module(*args, **kwargs)`` (matmuls, convolutions and attention)."""
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU_FLOPS) as counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def _known_image(size: int, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (size, size, 3), generator=gen, dtype=torch.uint8)


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """One planner and one generator call of an arm, timed and FLOP-counted (for estimates)."""
    pipe = build_pipeline(spec["preset"], spec["low_res_factor"], spec["attention"], spec["size"], spec["frames"],
                          spec.get("device", "cpu"), spec.get("seed", 0))
    timer = PhaseTimer(pipe)
    known = list(spec.get("known", [0]))
    image = _known_image(spec["size"], spec.get("seed", 0))
    pipe.generate([image] * len(known), known, spec["frames"], steps=1, guidance_scale=spec["guidance"], seed=0,
                  progress=False)
    timer.remove()
    flops = {name: count_flops(getattr(pipe.model, name), *timer.inputs[name]) for name in ("planner", "generator")}
    return {"seconds": dict(timer.seconds), "flops": flops}


def profile_generation(spec: dict[str, Any]) -> dict[str, Any]:
    """Latency by phase and peak memory of full generations of one arm (see the module docstring).

    ``spec``: preset, low_res_factor, attention, size, frames, steps, guidance, repeats,
    warmup_steps, known (positions of the given frames, default [0]), threads, device, seed.
    Meant to run in a fresh process per arm, so the peak memory is this arm's alone.
    """
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec.get("device", "cpu"))
    rss_start = rss_bytes()
    pipe = build_pipeline(spec["preset"], spec["low_res_factor"], spec["attention"], spec["size"], spec["frames"],
                          device, spec.get("seed", 0))
    gc.collect()
    rss_static = rss_bytes()
    timer = PhaseTimer(pipe)
    known = list(spec.get("known", [0]))
    image = _known_image(spec["size"], spec.get("seed", 0))
    frames, steps, guidance = spec["frames"], spec["steps"], spec["guidance"]

    def generate(n_steps: int) -> float:
        _sync(device)
        start = time.perf_counter()
        pipe.generate([image] * len(known), known, frames, steps=n_steps, guidance_scale=guidance, seed=0,
                      progress=False)
        _sync(device)
        return time.perf_counter() - start

    warmup_s = generate(int(spec.get("warmup_steps", 2)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(int(spec.get("repeats", 1))):
        timer.reset()
        total = generate(steps)
        phases = dict(timer.seconds)
        runs.append({"latency_s": total, **{f"{k}_s": v for k, v in phases.items()},
                     "other_s": total - sum(phases.values()), "generator_calls": timer.calls["generator"]})
    timer.remove()
    best = min(runs, key=lambda r: r["latency_s"])
    median = statistics.median(r["latency_s"] for r in runs)
    out: dict[str, Any] = {
        "latency_s": median, "latency_min_s": best["latency_s"], "latencies_s": [r["latency_s"] for r in runs],
        "phases_s": {k: statistics.median(r[f"{k}_s"] for r in runs) for k in ("planner", "generator", "encode",
                                                                               "decode", "other")},
        "generator_calls": runs[0]["generator_calls"], "warmup_s": warmup_s,
        "planner_share": statistics.median(r["planner_s"] / r["latency_s"] for r in runs),
        "peak_rss_mb": peak_rss_bytes() / 2**20,
        "rss_at_start_mb": rss_start / 2**20,
        "rss_with_model_mb": rss_static / 2**20,
        "threads": torch.get_num_threads(),
        "parameters": pipe.model.num_parameters(),
        "tokens": tokens(pipe.config, spec["size"], frames),
    }
    out["generation_mb"] = out["peak_rss_mb"] - out["rss_with_model_mb"]
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def tokens(config: Any, size: int, frames: int) -> dict[str, int]:
    """Tokens of one clip: the generator's (patches) and the planner's (patches + a [NEXT] per row)."""
    g = size // config.vae_downsample // config.generator.patch_size
    low = config.low_resolution(size, size)[0] // config.vae_downsample // config.planner.patch_size
    return {"generator": frames * g * g, "planner": frames * low * (low + 1)}


def worker(task: str, spec: dict[str, Any], conn: Any) -> None:
    """Process entry point: run ``task`` ("profile" or "probe") and send ``("ok", result)`` or ``("error", text)``."""
    try:
        if task == "probe":
            specs: Sequence[dict[str, Any]] = spec["arms"]
            if spec.get("threads"):
                torch.set_num_threads(int(spec["threads"]))
            result: Any = [probe(s) for s in specs]
        else:
            result = profile_generation(spec)
        conn.send(("ok", result))
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which records the failure
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()
