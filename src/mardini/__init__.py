"""MarDini: masked auto-regressive diffusion for video generation (arXiv 2410.20280)."""

from typing import TYPE_CHECKING, Any

from mardini.config import PRESETS, MarDiniConfig, get_preset
from mardini.models import Generator, MarDini, Planner

if TYPE_CHECKING:
    from mardini.pipeline import MarDiniPipeline

__version__ = "0.1.0"
__all__ = ["PRESETS", "Generator", "MarDini", "MarDiniConfig", "MarDiniPipeline", "Planner", "get_preset"]


def __getattr__(name: str) -> Any:
    # The pipeline pulls in diffusers' scheduler, PIL and PyAV: import it only when asked for.
    if name == "MarDiniPipeline":
        from mardini.pipeline import MarDiniPipeline

        return MarDiniPipeline
    raise AttributeError(f"module 'mardini' has no attribute '{name}'")
