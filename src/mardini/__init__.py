"""MarDini: masked auto-regressive diffusion for video generation (arXiv 2410.20280)."""

from mardini.config import PRESETS, MarDiniConfig, get_preset
from mardini.models import Generator, MarDini, Planner

__version__ = "0.1.0"
__all__ = ["PRESETS", "Generator", "MarDini", "MarDiniConfig", "Planner", "get_preset"]
