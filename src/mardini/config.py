"""Model configurations and the named preset registry.

Every architectural number lives here, as a dataclass, so a checkpoint's ``config.json`` fully
describes the networks it holds. The paper's four models (appendix A, table 5) are presets; so are
the small ones used by tests and CPU training.

Choices the paper leaves open (documented in docs/design.md as well):

* **Low/high resolution ratio** (``low_res_factor = 0.5``): the planner sees frames at half the
  generator's side length. Table 2 only says "asymmetric resolution"; half keeps the planner's
  spatio-temporal sequence 4x shorter than the generator's while leaving enough detail to plan
  motion.
* **Patch sizes** (``patch_size = 2`` for both models): the DiT-XL/2 convention for 8x latents.
* **MLP type** (``mlp = "gelu"``): a two-matrix GELU MLP. With it the parameter counts of table 5
  come out (1.34B, 3.22B, ~0.29B); a SwiGLU MLP is available as ``mlp = "swiglu"``.
* **Noise schedule**: see :class:`DiffusionConfig`.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

AttentionPattern = Literal["spatiotemporal", "temporal"]
MlpKind = Literal["gelu", "swiglu"]

#: Values of ``DiffusionConfig.prior`` (see :mod:`mardini.diffusion.prior`).
PRIORS = ("none", "reference_interpolation", "between_references")
#: How training draws timesteps (see :func:`mardini.diffusion.losses.sample_timesteps`).
TIMESTEP_SAMPLINGS = ("uniform", "logit_normal")
#: How the masked diffusion loss combines clips (`mardini.diffusion.losses.masked_diffusion_loss`).
CLIP_WEIGHTINGS = ("elements", "log", "log_inbetweens")
#: How the sampler moves the generator's token grid between denoiser calls (DiffusionConfig.grid_shift).
GRID_SHIFTS = ("none", "alternate", "average")

#: Version of the checkpoint format written by :mod:`mardini.checkpoint`.
FORMAT_VERSION = 1


@dataclass
class PlannerConfig:
    """The MAR planning model (section 2.3.1): Llama-style blocks on low-resolution latents."""

    dim: int = 4096
    depth: int = 8
    heads: int = 32
    mlp_dim: int = 4096
    mlp: MlpKind = "gelu"
    patch_size: int = 2
    # Projection head f of Eq. 2, used only in the stage-one reconstruction warm-up.
    reconstruction_head: bool = True
    # Identity attention in the spatio-temporal layers (section 2.3.2); off only for ablations.
    identity_attention: bool = True


@dataclass
class GeneratorConfig:
    """The DM generation model (section 2.3.1): DiT-style blocks on high-resolution latents."""

    dim: int = 1024
    depth: int = 8
    heads: int = 16
    mlp_dim: int = 4096
    mlp: MlpKind = "gelu"
    patch_size: int = 2
    # Second self-attention of each block: all tokens of all frames, or each spatial position
    # across frames (section 2.4.2). The weights are the same in both, so this can be switched.
    attention: AttentionPattern = "spatiotemporal"
    # Width of the sinusoidal timestep features fed to the timestep MLP (DiT uses 256).
    time_freq_dim: int = 256
    # Identity attention in the second self-attention (section 2.3.2); off only for ablations
    # (figure 5c: without it the early training loss does not come down).
    identity_attention: bool = True
    # Width of a small convolution on the predicted latents after the last linear layer (U-ViT, Bao
    # et al. 2023, section 3.1: a 3x3 conv after the final linear layer "improves visual quality").
    # Each token predicts its p x p patch alone, so neighbouring patches can disagree at their edge:
    # the 16-px token grid our corpus models drew at mid and low noise (docs/benchmarks.md, "seam by
    # noise level"). 0: none (the first bundled model's format).
    output_conv: int = 0


@dataclass
class DiffusionConfig:
    """Noise schedule and sampler defaults.

    The schedule is Stable Diffusion's scaled-linear betas rescaled to zero terminal SNR (Lin et al.
    2024, "Common diffusion noise schedules and sample steps are flawed"): at the last training step
    the latent is pure noise, so image-to-video sampling starts from exactly what the model saw in
    training, and v-prediction (section 2.4.1) stays well defined there. DDIM uses "trailing"
    timestep spacing, which the same paper shows is required to reach the terminal step.
    """

    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    zero_terminal_snr: bool = True
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"
    sampling_steps: int = 25
    # Mean the generated frames are diffused around: "none" (the paper: zero),
    # "reference_interpolation" (every generated frame) or "between_references" (in-betweens
    # only); our addition for small models, see mardini.diffusion.prior.
    prior: str = "none"
    # With a prior, the residual is divided by this before noising: the schedule assumes unit
    # variance, and residuals around the reference interpolation are smaller (std 0.43 on the
    # bundled model's training clips, 0.5 around a single reference).
    prior_scale: float = 0.5
    # DDIM steps when none are asked for, a prior is on and every generated frame lies between
    # two different references (interpolation, slow motion); None: sampling_steps. In-betweens
    # start at the references' interpolation, and a prior model does best there with a step or
    # two (docs/benchmarks.md); frames beyond the references, and a loop's frames (between two
    # copies of one image, whose interpolation is a still), still take sampling_steps.
    inbetween_steps: int | None = None
    # Move the generator's token grid by half a token between denoiser calls while sampling
    # (our addition; mardini.diffusion.sampling.shifted_grid): "none" (the paper), "alternate"
    # (every other call, no extra cost) or "average" (each call averaged with a moved one, twice
    # the cost). It hides the 16-px grid a small generator draws in frames made from noise; it
    # does not fix what is drawn inside the tokens (docs/benchmarks.md, "Moving the token grid").
    grid_shift: str = "none"
    # Skip-layer guidance while sampling (our addition; mardini.diffusion.sampling.guided_denoiser):
    # every prediction is pushed away from the generator's own prediction with block
    # `skip_guidance_block` left out, v + skip_guidance * (v_cond - v_skipped). 0 (the paper) turns
    # it off. It applies with classifier-free guidance (guidance_scale != 1: image-to-video,
    # expansion), not to in-betweens and loops, which appendix B leaves unguided. A small
    # generator's frames made from noise keep about two thirds of the detail its codec could
    # return (docs/benchmarks.md, "Skip-layer guidance"); guiding away from the network without
    # its last block gives some of it back.
    skip_guidance: float = 0.0
    skip_guidance_block: int = -1

    def __post_init__(self) -> None:
        if self.grid_shift not in GRID_SHIFTS:
            raise ValueError(f"unknown grid_shift '{self.grid_shift}'; use one of {GRID_SHIFTS}")
        if isinstance(self.skip_guidance, bool) or not isinstance(self.skip_guidance, (int, float)) or not (
                math.isfinite(self.skip_guidance) and self.skip_guidance >= 0):
            raise ValueError(f"skip_guidance must be a finite number >= 0 (0 turns it off), got {self.skip_guidance!r}")
        if isinstance(self.skip_guidance_block, bool) or not isinstance(self.skip_guidance_block, int):
            raise ValueError(f"skip_guidance_block must be a block index (e.g. -1, the last), got "
                             f"{self.skip_guidance_block!r}")
        if self.prior not in PRIORS:
            raise ValueError(f"unknown diffusion prior '{self.prior}'; use one of {PRIORS} ('none' is the paper's)")
        if not self.prior_scale > 0:
            raise ValueError(f"prior_scale must be positive, got {self.prior_scale}")
        for name in ("sampling_steps", "inbetween_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive number of DDIM steps, got {value!r}")


@dataclass
class MarDiniConfig:
    """A complete MarDini model: latent space, planner, generator, diffusion and default video size."""

    name: str = "custom"
    latent_channels: int = 16
    vae_downsample: int = 8
    # Default output size in pixels (height, width) and frame count (the training window).
    height: int = 512
    width: int = 512
    num_frames: int = 9
    # Planner input side length relative to the generator's (see module docstring).
    low_res_factor: float = 0.5
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)

    def low_resolution(self, height: int | None = None, width: int | None = None) -> tuple[int, int]:
        """Pixel size of the planner's input for a given high-resolution frame size.

        Rounded to a multiple of ``vae_downsample * planner.patch_size`` so it patchifies exactly.
        """
        h = self.height if height is None else height
        w = self.width if width is None else width
        unit = self.vae_downsample * self.planner.patch_size
        return (max(unit, round(h * self.low_res_factor / unit) * unit),
                max(unit, round(w * self.low_res_factor / unit) * unit))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MarDiniConfig":
        """Build from a (possibly partial) dict; unknown keys are an error, not silently dropped."""
        sections = {"planner": PlannerConfig, "generator": GeneratorConfig, "diffusion": DiffusionConfig}
        values = _check_fields(cls, data, "config")
        for key, section in sections.items():
            if key in values:
                values[key] = section(**_check_fields(section, values[key], key))
        config = cls(**values)
        validate_config(config)
        return config


#: Inclusive (low, high) bounds of the numbers of a config. The highs are far above the paper's
#: models (table 5) yet keep a stranger's config.json from describing a network that takes minutes
#: and gigabytes to build (e.g. depth 10**6) before its weights are even compared.
LIMITS: dict[str, tuple[float, float]] = {
    "latent_channels": (1, 1024), "vae_downsample": (1, 64), "height": (1, 16384), "width": (1, 16384),
    "num_frames": (2, 1024), "dim": (1, 32768), "depth": (1, 256), "heads": (1, 1024), "mlp_dim": (1, 131072),
    "patch_size": (1, 16), "time_freq_dim": (2, 8192), "num_train_timesteps": (2, 100_000),
    "sampling_steps": (1, 100_000), "inbetween_steps": (1, 100_000),
}
_CHOICES = {"beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
            "prediction_type": ("epsilon", "v_prediction", "sample"),
            "timestep_spacing": ("leading", "trailing", "linspace")}


def validate_config(config: MarDiniConfig) -> None:
    """Check the type and range of every value (a checkpoint's config.json may come from anyone).

    Raises ValueError naming the field, its value and what it must be.
    """
    sections = [("", config), ("planner.", config.planner), ("generator.", config.generator),
                ("diffusion.", config.diffusion)]
    for prefix, section in sections:
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            if f.name in ("planner", "generator", "diffusion"):
                continue
            _check_value(prefix + f.name, getattr(section, f.name), hints[f.name])
    for prefix, section, axes in (("planner.", config.planner, 2), ("generator.", config.generator, 3)):
        if section.dim % section.heads:
            raise ValueError(f"{prefix}dim {section.dim} is not divisible by {prefix}heads {section.heads}")
        head_dim = section.dim // section.heads
        if head_dim % 2 or head_dim < 2 * axes:
            raise ValueError(f"{prefix}dim / {prefix}heads = {head_dim} must be even and at least {2 * axes} "
                             f"(rotary positions on {axes} axes)")
    if config.vae_downsample & (config.vae_downsample - 1):
        raise ValueError(f"vae_downsample must be a power of two, got {config.vae_downsample}")
    if not 0 < config.low_res_factor <= 1:
        raise ValueError(f"low_res_factor must be in (0, 1], got {config.low_res_factor}")
    d = config.diffusion
    if not 0 < d.beta_start < d.beta_end < 1:
        raise ValueError(f"diffusion betas must satisfy 0 < beta_start < beta_end < 1, got {d.beta_start}, {d.beta_end}")
    depth = config.generator.depth
    if not -depth <= d.skip_guidance_block < depth:
        raise ValueError(f"diffusion.skip_guidance_block {d.skip_guidance_block} is not a block of the {depth}-block "
                         f"generator; use {-depth} to {depth - 1} (-1: the last)")


def _check_value(name: str, value: Any, hint: Any) -> None:
    key = name.rsplit(".", 1)[-1]
    options = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        if value not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
        return
    if type(None) in options:  # Optional[...]
        if value is None:
            return
        hint = next(o for o in options if o is not type(None))
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ValueError(f"{name} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ValueError(f"{name} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    if key in LIMITS and hint in (int, float):
        low, high = LIMITS[key]
        if not low <= value <= high:
            raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")


def _check_fields(cls: type, values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ValueError(f"config section '{where}' must be a mapping, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in config section '{where}'; "
                         f"valid fields: {', '.join(sorted(names))}")
    return dict(values)


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------

def _paper(name: str, planner_depth: int, planner_mlp: int, attention: AttentionPattern,
           frames: int) -> MarDiniConfig:
    # Table 5: planner width 4096 (depth 8 or 16, MLP 4096 or 8192); generator 8 x 1024, MLP 4096.
    return MarDiniConfig(
        name=name, height=512, width=512, num_frames=frames,
        planner=PlannerConfig(dim=4096, depth=planner_depth, heads=32, mlp_dim=planner_mlp),
        generator=GeneratorConfig(dim=1024, depth=8, heads=16, mlp_dim=4096, attention=attention),
    )


PRESETS: dict[str, MarDiniConfig] = {
    "mardini-s-st": _paper("mardini-s-st", 8, 4096, "spatiotemporal", 9),
    "mardini-l-st": _paper("mardini-l-st", 16, 8192, "spatiotemporal", 9),
    "mardini-s-t": _paper("mardini-s-t", 8, 4096, "temporal", 17),
    "mardini-l-t": _paper("mardini-l-t", 16, 8192, "temporal", 17),
    # CPU-sized model: what the bundled default is trained from (128x128, 9 frames). Asymmetric
    # like the paper's: the planner has ~2.7x the generator's parameters but sees 4x fewer tokens.
    "mardini-cpu": MarDiniConfig(
        name="mardini-cpu", height=128, width=128, num_frames=9,
        planner=PlannerConfig(dim=384, depth=6, heads=6, mlp_dim=1152),
        generator=GeneratorConfig(dim=192, depth=4, heads=3, mlp_dim=576, time_freq_dim=128),
    ),
    # Smallest useful model, for tests: runs a forward pass in milliseconds.
    "mardini-tiny": MarDiniConfig(
        name="mardini-tiny", height=64, width=64, num_frames=5,
        planner=PlannerConfig(dim=64, depth=2, heads=4, mlp_dim=128),
        generator=GeneratorConfig(dim=64, depth=2, heads=4, mlp_dim=128, time_freq_dim=32),
    ),
}


def get_preset(name: str) -> MarDiniConfig:
    """Return a fresh copy of a named preset (mutating it never changes the registry)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    return MarDiniConfig.from_dict(PRESETS[name].to_dict())
