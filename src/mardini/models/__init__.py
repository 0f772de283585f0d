"""MarDini's networks: the MAR planner, the DM generator, and the layers they share."""

from mardini.models.generator import Generator
from mardini.models.mardini import MarDini
from mardini.models.planner import Planner

__all__ = ["Generator", "MarDini", "Planner"]
