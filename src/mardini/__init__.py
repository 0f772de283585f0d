"""MarDini: masked auto-regressive diffusion for video generation (arXiv 2410.20280)."""

from typing import TYPE_CHECKING, Any

from mardini.config import PRESETS, MarDiniConfig, get_preset

if TYPE_CHECKING:
    from mardini.models import Generator, MarDini, Planner
    from mardini.pipeline import MarDiniPipeline

__version__ = "0.1.0"
__all__ = ["PRESETS", "Generator", "MarDini", "MarDiniConfig", "MarDiniPipeline", "Planner", "get_preset"]


def __getattr__(name: str) -> Any:
    # The networks import torch and the pipeline diffusers, PIL and PyAV: import them only when asked
    # for, so `mardini --help` and the CLI's input checks answer at once, and the CLI can set
    # OMP_WAIT_POLICY before torch loads OpenMP.
    if name == "MarDiniPipeline":
        from mardini.pipeline import MarDiniPipeline

        return MarDiniPipeline
    if name in ("Generator", "MarDini", "Planner"):
        from mardini import models

        return getattr(models, name)
    raise AttributeError(f"module 'mardini' has no attribute '{name}'")
