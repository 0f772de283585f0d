"""The two networks together: what a checkpoint holds and what the pipeline runs."""

from __future__ import annotations

import torch
from torch import nn

from mardini.config import MarDiniConfig, get_preset
from mardini.models.generator import Generator
from mardini.models.planner import Planner


class MarDini(nn.Module):
    """Planner (MAR, heavy, low resolution) + generator (DM, light, high resolution)."""

    def __init__(self, config: MarDiniConfig):
        super().__init__()
        self.config = config
        self.planner = Planner(config.planner, config.latent_channels)
        self.generator = Generator(config.generator, config.latent_channels, plan_dim=config.planner.dim)

    @classmethod
    def from_preset(cls, name: str, device: torch.device | str | None = None) -> "MarDini":
        """Build an untrained model from a named preset (``device="meta"`` allocates nothing)."""
        with torch.device(device or "cpu"):
            return cls(get_preset(name))

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of each network; the planner's excludes its stage-one projection head."""
        head = self.planner.head
        head_params = sum(p.numel() for p in head.parameters()) if head is not None else 0
        return {
            "planner": sum(p.numel() for p in self.planner.parameters()) - head_params,
            "planner_head": head_params,
            "generator": sum(p.numel() for p in self.generator.parameters()),
        }

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute block activations in the backward pass instead of storing them."""
        self.planner.gradient_checkpointing = enabled
        self.generator.gradient_checkpointing = enabled
