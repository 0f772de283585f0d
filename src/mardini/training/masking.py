"""Which frames are references and which are generated, for training (sections 2.2 and 2.4.1).

The paper's figure 4 gives, per stage, the share of frames *preserved* as references
(NOTES.md). A mask is (B, K) bool, True = generate. Every sampled mask keeps at least one
reference and generates at least one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

MaskMode = Literal["random", "interpolation"]


@dataclass
class MaskSchedule:
    """Share of frames preserved as references, possibly moving linearly over a stage.

    ``preserved`` is the range at the start of the stage and ``preserved_end`` (if set) the
    range at its end; stage 3 lowers it towards a single reference frame (image-to-video).
    ``mode = "interpolation"`` keeps the first and last frame (stage 2). In random mode,
    ``interpolation_share`` of the clips still get the first+last mask, so a stage that moves on
    to fewer references keeps practising the previous stage's task (the paper's "joint task"
    stages train every task at once, section 2.4.1).
    """

    mode: MaskMode = "random"
    preserved: tuple[float, float] = (0.35, 1.0)
    preserved_end: tuple[float, float] | None = None
    interpolation_share: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.interpolation_share <= 1.0:
            raise ValueError(f"masks.interpolation_share must be in [0, 1]; got {self.interpolation_share!r}")

    def range_at(self, progress: float) -> tuple[float, float]:
        """Preserved-share range after ``progress`` (0..1) of the stage."""
        if self.preserved_end is None:
            return tuple(self.preserved)  # type: ignore[return-value]
        p = min(max(progress, 0.0), 1.0)
        lo = self.preserved[0] + p * (self.preserved_end[0] - self.preserved[0])
        hi = self.preserved[1] + p * (self.preserved_end[1] - self.preserved[1])
        return lo, hi

    def sample(self, batch: int, frames: int, progress: float, rng: torch.Generator) -> Tensor:
        """Draw a (batch, frames) generate-mask."""
        if frames < 2:
            raise ValueError(f"training needs clips of at least 2 frames (one reference, one generated), got {frames}")
        if self.mode == "interpolation":
            mask = torch.ones(batch, frames, dtype=torch.bool)
            mask[:, 0] = mask[:, -1] = False
            if frames == 2:
                mask[:, -1] = True
            return mask
        if self.mode != "random":
            raise ValueError(f"unknown mask mode '{self.mode}'; use 'random' or 'interpolation'")
        lo, hi = self.range_at(progress)
        share = lo + (hi - lo) * torch.rand(batch, generator=rng)
        keep = (share * frames).round().long().clamp(1, frames - 1)
        # Random positions: references anywhere, so one model serves every task (section 2.2).
        order = torch.rand(batch, frames, generator=rng).argsort(dim=1)
        ranks = order.argsort(dim=1)
        mask = ranks >= keep[:, None]
        if self.interpolation_share > 0 and frames > 2:  # 2 frames: first+last leaves nothing to generate
            first_last = torch.rand(batch, generator=rng) < self.interpolation_share
            mask[first_last] = True
            mask[first_last, 0] = False
            mask[first_last, -1] = False
        return mask
