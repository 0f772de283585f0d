"""The training loop for every stage of the recipe (section 2.4, appendix B), top to bottom.

One function, :func:`train`, runs a stage: build or load the model, build the data, then
repeat {encode clips, draw masks, compute the stage's loss, step AdamW, update the EMA}, writing
a checkpoint every ``checkpoint_every`` steps and on SIGTERM / Ctrl-C. Launched with
``torchrun`` it trains data-parallel (DDP; gloo on CPU, NCCL on GPU), each rank on its own shard.

Exactness of ``--resume``: every random draw of step N (masks, timesteps, noise, dropout) comes
from a generator seeded by (seed, N, rank), and the data position is stored, so a resumed run
continues with exactly the numbers the uninterrupted run would have used.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import time
from collections import deque
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)
from torch.distributed.tensor import DTensor, distribute_tensor
from tqdm.auto import tqdm

from mardini.checkpoint import CheckpointError, atomic_write
from mardini.codecs import LatentCodec, load_codec
from mardini.config import MarDiniConfig, get_preset
from mardini.data import ShardedClipSampler, build_dataset
from mardini.diffusion import diffusion_prior, make_scheduler, masked_diffusion_loss, masked_reconstruction_loss
from mardini.models.mardini import MarDini
from mardini.training.config import StageConfig, stage_to_dict
from mardini.training.masking import palindrome
from mardini.training.state import clean_stale_folders, latest_usable_checkpoint, load_start_model, \
    optimizer_state_from_tensors, resolve_codec_dir, resolve_start, write_checkpoint

#: Exit status of a run stopped by SIGTERM/SIGINT after saving its checkpoint (EX_TEMPFAIL of
#: sysexits.h: "try again later"), so a scheduler can tell a preempted job from a finished one (0).
PREEMPTED_EXIT_CODE = 75
#: What a run writes into its folder; ``overwrite=True`` removes these and nothing else.
RUN_ENTRIES = ("checkpoints", "metrics.jsonl", "stage.json", "samples", "tensorboard")
#: Stage fields that may differ on ``--resume`` without changing what is trained.
RESUME_FREE_FIELDS = ("name", "log_every", "checkpoint_every", "keep_checkpoints", "sample_every", "log_data",
                      "compile", "gradient_checkpointing")
#: Steps of loss history the divergence check compares a step's loss with (their median).
DIVERGENCE_HISTORY = 20


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss became non-finite); the message says what to do."""


class TrainingInterrupted(SystemExit):
    """SIGTERM/SIGINT stopped the run after its checkpoint was saved.

    A ``SystemExit`` with status :data:`PREEMPTED_EXIT_CODE`, so a script that calls :func:`train`
    (and ``mardini train``) exits with that status unless it catches this.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.signal, self.step, self.checkpoint = signum, step, checkpoint


class StageLoss(nn.Module):
    """The stage's objective as one module, so DDP sees a single forward per step."""

    def __init__(self, model: MarDini, cfg: StageConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.scheduler = make_scheduler(model.config.diffusion)

    def forward(self, z_high: Tensor, z_low: Tensor, generate: Tensor, rng: torch.Generator) -> Tensor:
        if self.cfg.train == "planner":  # stage 1b, Eq. 2
            return masked_reconstruction_loss(self.model.planner, z_low, generate)
        plan = self.model.planner(z_low, generate) if self.cfg.train == "joint" else None  # Eq. 3 / Eq. 1
        return masked_diffusion_loss(self.model.generator, self.scheduler, z_high, generate, plan,
                                     plan_dropout=self.cfg.plan_dropout, rng=rng,
                                     prior=diffusion_prior(self.model.config.diffusion, z_high, generate),
                                     timestep_sampling=self.cfg.timestep_sampling,
                                     timestep_mean=self.cfg.timestep_mean, timestep_std=self.cfg.timestep_std,
                                     terminal_share=self.cfg.timestep_terminal_share,
                                     clip_weighting=self.cfg.clip_weighting, clip_loss_floor=self.cfg.clip_loss_floor)


def lr_at(step: int, cfg: StageConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _build_model(cfg: StageConfig) -> tuple[MarDini, LatentCodec, Path]:
    model, codec_dir = load_start_model(cfg.init)
    if model is None:
        if cfg.codec is None:
            raise ValueError(f"stage '{cfg.name}' starts from the preset '{cfg.init}' and needs a codec folder: "
                             f"set `codec:` in its YAML (e.g. the output of `mardini train-vae`)")
        model = MarDini(get_preset(cfg.init))
        codec_dir = resolve_codec_dir(cfg.codec)
    elif cfg.codec is not None:
        codec_dir = resolve_codec_dir(cfg.codec)
    assert codec_dir is not None
    codec = load_codec(codec_dir)
    if codec.latent_channels != model.config.latent_channels:
        raise ValueError(f"the codec in '{codec_dir}' has {codec.latent_channels} latent channels but the model "
                         f"expects {model.config.latent_channels}; use a matching codec or preset")
    if cfg.generator_attention is not None:  # None keeps the checkpoint's pattern
        model.config.generator.attention = cfg.generator_attention
        model.generator.attention = cfg.generator_attention
    width = cfg.generator_output_conv
    if width is not None and width != model.config.generator.output_conv:
        if model.config.generator.output_conv:
            raise ValueError(f"stage '{cfg.name}' asks for generator_output_conv {width}, but '{cfg.init}' already "
                             f"has one of width {model.config.generator.output_conv}; leave the key out to keep it")
        if width:
            model.generator.add_output_conv(width)
    if cfg.prior is not None and cfg.prior != model.config.diffusion.prior:
        if model.config.diffusion.prior == "none":
            # The output layer was trained to predict the velocity of the latents themselves;
            # zeroed (as adaLN-Zero starts it), the generator begins this stage by returning the
            # prior. Between two priors it keeps what it learnt: they agree on the in-betweens.
            model.generator.zero_output_layer()
        model.config.diffusion.prior = cfg.prior
    if cfg.drop_reconstruction_head and model.planner.head is not None:
        model.planner.head = None
        model.config.planner.reconstruction_head = False
    # Frames and size of this stage become the checkpoint's defaults (resolution grows by stage).
    model.config.num_frames, model.config.height, model.config.width = cfg.frames, cfg.height, cfg.width
    return model, codec, codec_dir


def _trainable(model: MarDini, cfg: StageConfig) -> list[nn.Parameter]:
    model.requires_grad_(False)
    if cfg.train in ("generator", "joint"):
        model.generator.requires_grad_(True)
    if cfg.train == "generator":
        # Eq. 1 conditions on Z_uncond, which enters after the plan projection: the projection
        # gets no gradient, so it is frozen (a trainable parameter without AdamW state would
        # break --resume).
        model.generator.plan_proj.requires_grad_(False)
    if cfg.train in ("planner", "joint"):
        model.planner.requires_grad_(True)
        if cfg.train == "joint" and model.planner.head is not None:
            model.planner.head.requires_grad_(False)  # Eq. 3 never reaches f
    return [p for p in model.parameters() if p.requires_grad]


def _make_dataset(cfg: StageConfig, model_config: MarDiniConfig) -> Any:
    low = model_config.low_resolution(cfg.height, cfg.width)
    return build_dataset(cfg.data, frames=cfg.frames, size=(cfg.height, cfg.width), low_size=low, seed=cfg.seed)


def build_stage_cache(cfg: StageConfig, out: str | Path, *, model: str | None = None, codec: str | None = None,
                      epochs: int = 1, num_clips: int | None = None, overwrite: bool = False) -> Path:
    """Encode a stage's training clips once (both resolutions) into a latent cache at ``out``.

    Training from the cache (``data: {kind: latents, path: OUT}``) skips video decoding and the
    codec's forward pass every step (about half of an uncached CPU step, docs/benchmarks.md).
    The clips are the stage's own (its data, frames, size, seed and held-out time range); the
    planner's resolution comes from ``model`` (a preset or checkpoint; default the stage's
    ``init``) and the codec from ``codec`` (default the stage's ``codec:``, else ``init``'s), so a
    later stage's cache can be built before the stage it starts from has finished.
    """
    from mardini.checkpoint import CODEC_DIR, read_config
    from mardini.data import build_latent_cache

    if cfg.data.get("kind") == "latents":
        raise ValueError(f"stage '{cfg.name}' already reads a latent cache; point --config at a pixel-data stage")
    source = model or cfg.init
    start = resolve_start(source)  # None for a preset name
    model_config = get_preset(source) if start is None else read_config(start)[0]
    codec_path = codec or cfg.codec
    if codec_path is not None:
        codec_dir = resolve_codec_dir(codec_path)
    elif start is not None:
        codec_dir = start / CODEC_DIR
    else:
        raise ValueError(f"stage '{cfg.name}' names no codec: pass --codec (a codec folder or train-vae run)")
    dataset = _make_dataset(cfg, model_config)
    origin = {"stage": cfg.name, "data": cfg.data, "codec": str(Path(codec_dir).resolve()),
              "frames": cfg.frames, "height": cfg.height, "width": cfg.width, "seed": cfg.seed}
    build_latent_cache(dataset, load_codec(codec_dir).eval(), out, epochs=epochs, num_clips=num_clips,
                       overwrite=overwrite, origin=origin)
    return Path(out)


@torch.no_grad()
def _latents(clips: list[dict[str, Any]], codec: LatentCodec, device: torch.device) -> tuple[Tensor, Tensor]:
    """Latents of a batch of clips: read from a latent cache, or encoded now."""
    if "high_latents" in clips[0]:
        return (torch.stack([c["high_latents"] for c in clips]).to(device),
                torch.stack([c["low_latents"] for c in clips]).to(device))
    high = torch.stack([c["high"] for c in clips]).to(device)
    low = torch.stack([c["low"] for c in clips]).to(device)
    return codec.encode(high), codec.encode(low)


def _tensorboard(out_dir: Path) -> Any:
    """A TensorBoard writer when the tensorboard package is installed (optional), else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


@torch.no_grad()
def _write_sample(model: MarDini, codec: LatentCodec, cfg: StageConfig, z_high: Tensor, z_low: Tensor,
                  generate: Tensor, path: Path | None) -> tuple[Tensor, Tensor]:
    """A GIF of the current weights on one training clip: codec round trip above, prediction below.

    Returns the two decoded rows, ``(truth, predicted)`` uint8 frames ``(T, 3, H, W)`` on the CPU,
    so the preview's scores reuse them instead of decoding again.
    """
    from mardini.diffusion import default_steps, guided_denoiser, sample_ddim
    from mardini.io import write_gif

    was_training = model.training
    model.eval()
    z_high, z_low, generate = z_high[:1].float(), z_low[:1].float(), generate[:1]
    if cfg.train == "planner":  # stage 1b has no diffusion: show the head's reconstruction (Eq. 2)
        predicted = model.planner.reconstruct(model.planner(z_low, generate), *z_low.shape[-2:])
        truth, predicted = z_low, torch.where(generate[:, :, None, None, None], predicted, z_low)
    else:
        plan = model.planner(z_low, generate) if cfg.train == "joint" else None
        scheduler = make_scheduler(model.config.diffusion)
        predicted = sample_ddim(guided_denoiser(model.generator, generate, plan), z_high, generate, scheduler,
                                steps=default_steps(model.config.diffusion, generate, z_high),
                                rng=torch.Generator().manual_seed(0),
                                prior=diffusion_prior(model.config.diffusion, z_high, generate))
        truth = z_high
    rows = [((codec.decode(z.to(next(codec.parameters()).device))[0] + 1) * 127.5).round().clamp(0, 255)
            for z in (truth, predicted)]
    truth_frames, predicted_frames = (row.to(torch.uint8).cpu() for row in rows)
    if path is not None:
        write_gif(torch.cat([truth_frames, predicted_frames], dim=-2).permute(0, 2, 3, 1).numpy(), path)
    model.train(was_training)
    return truth_frames, predicted_frames


def preview_scores(truth: Tensor, predicted: Tensor, generate: Tensor, config: MarDiniConfig) -> dict[str, Any] | None:
    """The flow-free scores of `mardini.evaluation.artefacts` on a preview's generated frames.

    `truth` and `predicted` are the preview's decoded rows ``(T, 3, H, W)`` (uint8, or float in
    [0, 1]), `generate` its ``(T,)`` mask. ``preview_seam`` is `seam` on the generator's token grid
    (1.0: no grid; a block mosaic scores well above 1), ``preview_sharpness`` the generated frames'
    `sharpness` over the truth's same frames, both decoded by the same codec so its own blur and
    8-px grid cancel. Only generated frames count (references are copied, not made); None when
    there is none. A score the frames cannot give (too small for the grid, flat truth) is left out.
    """
    from mardini.evaluation.artefacts import seam, sharpness
    from mardini.evaluation.interpolation import model_grid

    generated = generate.reshape(-1).bool().cpu()
    if generated.shape[0] != predicted.shape[0]:
        raise ValueError(f"a mask of {generated.shape[0]} frames for a preview of {predicted.shape[0]}")
    if not generated.any():
        return None
    made, real = predicted[generated], truth[generated]
    token, block = model_grid(config)
    scores: dict[str, Any] = {}
    try:
        scores["preview_seam"] = seam(made, token=token, block=block)
    except ValueError:  # frames smaller than two tokens: no grid to measure
        pass
    sharp = sharpness(made, real)
    if math.isfinite(sharp):  # a flat truth gives NaN, which is not JSON
        scores["preview_sharpness"] = sharp
    scores["preview_generated_frames"] = int(generated.sum())
    return scores


def _full(tensor: Tensor) -> Tensor:
    """The whole tensor on the CPU, gathering it when it is an FSDP shard (a collective)."""
    if isinstance(tensor, DTensor):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu()


def _like(full: Tensor, reference: Tensor) -> Tensor:
    """``full`` laid out like ``reference``: sharded the same way when that is an FSDP shard."""
    if isinstance(reference, DTensor):
        return distribute_tensor(full, reference.device_mesh, reference.placements)
    return full


def _should_stop(stop: dict[str, Any], world: int) -> bool:
    """Whether any rank got SIGTERM/SIGINT; agreed by all ranks so none waits on a finished one."""
    if world == 1:
        return stop["signal"] is not None
    flag = torch.tensor([0 if stop["signal"] is None else int(stop["signal"])])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() and stop["signal"] is None:
        stop["signal"] = int(flag.item())
    return bool(flag.item())


def _rank_spread(model: nn.Module) -> float:
    """Largest difference between ranks of a weight checksum: 0 when DDP keeps them in sync."""
    checksum = torch.stack([sum(p.detach().double().sum() for p in model.parameters()),
                            sum(p.detach().double().abs().sum() for p in model.parameters())])
    high, low = checksum.clone(), checksum.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def _step_rng(cfg: StageConfig, step: int, rank: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step * 1009 + rank)


def prepare_run_folder(out_dir: Path, resume: bool, overwrite: bool, rank: int) -> None:
    """Refuse to mix two runs in one folder; with ``overwrite`` remove the old run's files (rank 0).

    Checkpoints of an earlier run in the folder would sort beside the new run's (and a later
    ``--resume`` would pick the wrong ones), and metrics.jsonl would interleave both.
    """
    if resume and overwrite:
        raise TrainingError("--resume continues the run in --out and --overwrite deletes it; pass one of them")
    if resume:
        if not out_dir.is_dir():
            raise TrainingError(f"--resume: run folder '{out_dir}' does not exist; drop --resume to start a new run")
        return
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise TrainingError(f"--out '{out_dir}' is a file, not a run folder; choose a folder")
    if not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise TrainingError(f"run folder '{out_dir}' is not empty; continue its run with --resume, delete it with "
                            f"--overwrite, or choose a new --out")
    if rank == 0:
        for entry in [*(out_dir / name for name in RUN_ENTRIES), *out_dir.glob("data_rank*.jsonl")]:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def config_changes(saved: dict[str, Any], cfg: StageConfig, world: int) -> list[str]:
    """What differs between a checkpoint's stage config and world size and this run's, as ``key: old -> new``.

    Bookkeeping fields (:data:`RESUME_FREE_FIELDS`) may change; fields the checkpoint does not
    record (it predates them) are not compared.
    """
    old = _flatten(saved.get("stage", {}))
    new = _flatten(json.loads(json.dumps(stage_to_dict(cfg))))  # tuples as JSON lists, like the saved ones
    changes = [f"{key}: {old[key]!r} -> {new[key]!r}" for key in sorted(new)
               if key in old and key.split(".")[0] not in RESUME_FREE_FIELDS and old[key] != new[key]]
    saved_world = saved.get("world_size")
    if saved_world is not None and saved_world != world:
        changes.append(f"world size: {saved_world} -> {world} processes")
    return changes


def _agreed(value: float, world: int) -> float:
    """The mean of ``value`` over ranks (a collective), so every rank takes the same decision."""
    if world == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item()) / world


def check_divergence(step: int, loss: float, grad_norm: float | None, history: deque, cfg: StageConfig,
                     what: str = "the loss") -> None:
    """Raise TrainingError when the loss or gradient norm is non-finite, or the loss is more than
    ``cfg.divergence_factor`` times the median of the recent ``history`` (a diverging run).

    A log-weighted loss (``clip_weighting`` other than ``elements``) is a mean of logs of errors,
    often negative: there "``factor`` times the error" is ``log(factor)`` added to the loss, so
    the check compares the loss with the median plus ``log(factor)``."""
    advice = (f"nothing was saved from this step. Resume from the last checkpoint with a lower optim.lr "
              f"(now {cfg.optim.lr}) or precision=fp32")
    if not math.isfinite(loss):
        raise TrainingError(f"{what} became {loss} at step {step}; {advice}")
    if grad_norm is not None and not math.isfinite(grad_norm):
        raise TrainingError(f"the gradient norm became {grad_norm} at step {step}; {advice}")
    if cfg.divergence_factor and history:
        level = statistics.median(history)
        factor = cfg.divergence_factor
        if cfg.clip_weighting == "elements":
            diverged = level > 0 and loss > factor * level
            how = f"more than {factor:g}x its running level {level:.4g}"
        else:
            diverged = loss > level + math.log(factor)
            how = (f"more than log({factor:g}) = {math.log(factor):.3g} above its running level {level:.4g} "
                   f"(a log-weighted loss: the error grew more than {factor:g}x)")
        if diverged:
            raise TrainingError(f"training diverged: {what} was {loss:.4g} at step {step}, {how} "
                                f"(divergence_factor); {advice}")


def train(cfg: StageConfig, out_dir: str | Path, resume: bool = False, max_steps: int | None = None,
          progress: bool = True, overwrite: bool = False, allow_config_change: bool = False) -> Path:
    """Run one stage; returns the folder of the last checkpoint written.

    Args:
        cfg: the stage (see ``configs/``).
        out_dir: run folder; checkpoints go to ``out_dir/checkpoints``, metrics to ``metrics.jsonl``.
            A folder that is not empty is refused unless ``resume`` or ``overwrite`` is given.
        resume: continue from the newest complete checkpoint in ``out_dir``.
        max_steps: stop after this global step (for short runs); the schedule still follows ``cfg.steps``.
        overwrite: delete the run already in ``out_dir`` (its checkpoints, metrics, samples) first.
        allow_config_change: resume although the stage config, seed, batch size or world size
            differs from the checkpoint's (refused otherwise, naming what changed).

    Raises:
        TrainingError: a refused folder or config change, or a diverging run (non-finite loss or
            gradient norm, or a loss far above its running level); no diverged weights are saved.
        TrainingInterrupted: SIGTERM/SIGINT, after saving; exit status :data:`PREEMPTED_EXIT_CODE`.
    """
    rank, world = _distributed()
    out_dir = Path(out_dir)
    prepare_run_folder(out_dir, resume, overwrite, rank)
    if rank == 0:
        clean_stale_folders(out_dir)  # half-written step-N.tmp of a killed run
    if world > 1:
        dist.barrier()  # no rank reads the folder while rank 0 still cleans it
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() \
        else torch.device("cpu")
    torch.manual_seed(cfg.seed)
    model, codec, codec_dir = _build_model(cfg)
    step, data_position = 0, 0
    resumed = latest_usable_checkpoint(out_dir) if resume else None
    if resume and resumed is None and (out_dir / "checkpoints").exists():
        raise CheckpointError(f"--resume: no usable checkpoint in '{out_dir}/checkpoints'")
    if resumed is not None:
        changes = config_changes(resumed[1]["state"], cfg, world)
        if changes and not allow_config_change:
            raise TrainingError(f"--resume: '{resumed[0]}' was trained with a different setup ({'; '.join(changes)}); "
                                f"resume with the same config and process count, or pass --allow-config-change")
        model.load_state_dict(resumed[1]["weights"])
    model.set_gradient_checkpointing(cfg.gradient_checkpointing)
    model.to(device).train()
    codec.to(device).eval()
    _trainable(model, cfg)
    sharded = world > 1 and cfg.distributed == "fsdp"
    objective: nn.Module = StageLoss(model, cfg)
    if sharded:
        # FSDP2: every transformer block is its own shard group, the rest belongs to the root.
        from torch.distributed.fsdp import fully_shard

        for block in [*model.planner.blocks, *model.generator.blocks]:
            fully_shard(block)
        fully_shard(objective)
    elif world > 1:
        objective = nn.parallel.DistributedDataParallel(objective, find_unused_parameters=True)
    state_module = objective  # parameter names in saved optimiser state come from this module
    params = [p for p in objective.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  weight_decay=cfg.optim.weight_decay)
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}  # local shards under FSDP
    if resumed is not None:
        state = resumed[1]["state"]
        set_optimizer_state_dict(state_module, optimizer, options=StateDictOptions(full_state_dict=True),
                                 optim_state_dict=optimizer_state_from_tensors(resumed[1]["optimizer"],
                                                                               state["optimizer"]))
        ema = {k: _like(resumed[1]["ema"][k].to(device), v) for k, v in ema.items()}
        step, data_position = state["step"], state["data_position"]
    if cfg.compile:
        objective = torch.compile(objective)

    dataset = _make_dataset(cfg, model.config)
    sampler = ShardedClipSampler(len(dataset), rank=rank, world_size=world, seed=cfg.seed)
    if len(sampler) < cfg.batch_size:
        raise ValueError(f"the data gives {len(sampler)} clips per process per epoch, fewer than batch_size="
                         f"{cfg.batch_size}; add videos, raise the data's clips_per_epoch or lower batch_size")
    per_step = cfg.batch_size * cfg.grad_accum

    def batches(position: int):
        """Yield (position after the batch, clips) forever, from ``position`` clips into the run.

        Items are indexed by (epoch, index), which fixes their random crop and timing, so the
        stream after a resume is the stream the uninterrupted run would have seen.
        """
        order: tuple[int, list[int]] = (-1, [])
        while True:
            epoch, offset = divmod(position, len(sampler))
            if order[0] != epoch:
                order = (epoch, sampler.indices(epoch))
            chunk = order[1][offset:offset + cfg.batch_size]
            if len(chunk) < cfg.batch_size:  # too few left in this epoch: start the next
                position = (epoch + 1) * len(sampler)
                continue
            position += cfg.batch_size
            clips = [dataset[(epoch, i)] for i in chunk]
            if cfg.log_data:
                with (out_dir / f"data_rank{rank}.jsonl").open("a") as f:
                    f.write(json.dumps([[c.get("source"), c.get("start")] for c in clips]) + "\n")
            yield position, clips

    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum  # finish the current step, save, then exit

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else nullcontext()
    total = min(cfg.steps, max_steps) if max_steps else cfg.steps
    metrics_path = out_dir / "metrics.jsonl"
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(stage_to_dict(cfg), indent=1)
        atomic_write(out_dir / "stage.json", lambda tmp: tmp.write_text(text))  # never half-written
    tensorboard = _tensorboard(out_dir) if rank == 0 else None
    bar = tqdm(total=total, initial=step, desc=cfg.name, disable=not progress or rank != 0, dynamic_ncols=True)
    stream = batches(data_position)
    last_checkpoint: Path | None = resumed[0] if resumed is not None else None
    saved_step = step if resumed is not None else None  # a step is never written twice
    history: deque = deque(maxlen=DIVERGENCE_HISTORY)
    last_batch: tuple[Tensor, Tensor, Tensor] | None = None

    def check_before_saving() -> None:
        """The loss of the weights about to be saved, on the last batch: a step that diverged the
        weights shows only in the next step's loss, and must not reach a checkpoint."""
        if last_batch is None:
            return
        probe_rng = torch.Generator(device).manual_seed(cfg.seed * 1_000_003 + step * 1009 + rank + 7)
        with torch.no_grad(), autocast:
            loss = float(objective(*last_batch, probe_rng))
        check_divergence(step, _agreed(loss, world), None, history, cfg,
                         what=f"the loss of the weights after step {step}")

    def save() -> Path | None:
        """Gather full state dicts (collective under FSDP: every rank calls this); rank 0 writes."""
        nonlocal saved_step
        if saved_step == step:
            return None
        check_before_saving()
        saved_step = step
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = {k.removeprefix("model."): v for k, v in get_model_state_dict(state_module, options=full).items()}
        optimizer_state = get_optimizer_state_dict(state_module, optimizer, options=full)
        ema_full = {k: _full(v) for k, v in ema.items()}
        if rank != 0:
            return None
        state = {"data_position": data_position, "stage": stage_to_dict(cfg), "world_size": world}
        return write_checkpoint(out_dir, step, model, weights, ema_full, optimizer_state, codec_dir, state,
                                cfg.keep_checkpoints)

    first_step = step
    try:
        started = time.time()
        while step < total and not _should_stop(stop, world):
            rng = _step_rng(cfg, step, rank, device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            for micro in range(cfg.grad_accum):
                data_position, clips = next(stream)
                z_high, z_low = _latents(clips, codec, device)
                mask_rng = torch.Generator().manual_seed(rng.initial_seed() + micro)
                generate, loops = cfg.masks.sample_with_loops(len(clips), z_high.shape[1], step / max(1, cfg.steps),
                                                              mask_rng)
                generate = generate.to(device)
                if loops.any():  # the "loop" task: clips played forward and back, first frame = last
                    z_high, z_low = palindrome(z_high, loops), palindrome(z_low, loops)
                sync = nullcontext() if world == 1 or micro == cfg.grad_accum - 1 else objective.no_sync()
                with sync, autocast:
                    loss = objective(z_high, z_low, generate, rng) / cfg.grad_accum
                loss.backward()
                loss_sum += loss.item()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            # Before the update: a diverging step changes no weight (and every rank agrees to stop).
            step_loss = _agreed(loss_sum, world)
            check_divergence(step, step_loss, float(grad_norm), history, cfg)
            history.append(step_loss)
            last_batch = (z_high, z_low, generate)
            optimizer.step()
            with torch.no_grad():
                decay = cfg.optim.ema_decay
                for name, value in model.state_dict().items():
                    ema[name].lerp_(value.float(), 1 - decay) if value.is_floating_point() else ema[name].copy_(value)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.4f}")
            if step % cfg.log_every == 0 or step == total:
                # A collective: every rank calls it. Shards differ by design under FSDP.
                spread = _rank_spread(model) if world > 1 and not sharded else None
            if rank == 0 and (step % cfg.log_every == 0 or step == total):
                elapsed = time.time() - started
                record = {"rank_weight_spread": spread, "step": step, "loss": loss_sum, "lr": lr_at(step - 1, cfg), "grad_norm": float(grad_norm),
                          "clips_per_s": world * per_step * (step - first_step) / max(elapsed, 1e-9),
                          "time": time.time()}
                with metrics_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if tensorboard is not None:
                    for key in ("loss", "lr", "grad_norm", "clips_per_s"):
                        tensorboard.add_scalar(f"train/{key}", record[key], step)
            if cfg.sample_every and step % cfg.sample_every == 0 and (rank == 0 or sharded):
                # Under FSDP every rank runs the sampling forward passes (they all-gather weights).
                path = out_dir / "samples" / f"step-{step:07d}.gif" if rank == 0 else None
                if sharded:  # the root's own weights (embeddings, tokens) are gathered by hand here
                    objective.unshard()
                truth_frames, predicted_frames = _write_sample(model, codec, cfg, z_high, z_low, generate, path)
                if sharded:
                    objective.reshard()
                # The loss never showed the generator's 16-px block mosaic (issue 14): score it here.
                # Stage 1b previews the planner's reconstruction, not a generation: nothing to score.
                scores = (preview_scores(truth_frames, predicted_frames, generate[0], model.config)
                          if rank == 0 and cfg.train != "planner" else None)
                if scores is not None:
                    with metrics_path.open("a") as f:
                        f.write(json.dumps({"step": step, **scores}) + "\n")
                    if tensorboard is not None:
                        for key in ("preview_seam", "preview_sharpness"):
                            if key in scores:
                                tensorboard.add_scalar(f"preview/{key.removeprefix('preview_')}", scores[key], step)
            if step % cfg.checkpoint_every == 0:
                last_checkpoint = save() or last_checkpoint
        if stop["signal"] is not None or step == total:
            last_checkpoint = save() or last_checkpoint
    finally:
        bar.close()
        if tensorboard is not None:
            tensorboard.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stop["signal"] is not None and rank == 0:
        print(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved to {last_checkpoint}; "
              f"exiting with status {PREEMPTED_EXIT_CODE} (continue with --resume)", flush=True)
    if world > 1:
        dist.barrier()
    if stop["signal"] is not None:
        raise TrainingInterrupted(stop["signal"], step, last_checkpoint)
    assert last_checkpoint is not None or rank != 0
    return last_checkpoint if last_checkpoint is not None else out_dir
