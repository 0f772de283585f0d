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

MaskMode = Literal["random", "interpolation", "tasks"]
#: The masks of `mode: tasks`, by the inference task each one trains (mardini.tasks):
#: "interpolation" keeps the first and last frame (also looping, whose two ends are one image);
#: "image_to_video" keeps one frame at a random position (the anchor window may put it anywhere);
#: "expansion" keeps the first k frames, k from 1 to half the clip (sliding-window extension keeps
#: a third of the window); "random" keeps `preserved`'s share at random positions (figure 4);
#: "loop" keeps the first and last frame of the clip made a palindrome (`palindrome`), so its two
#: ends are one image and the frames between move out and back, as a loop's should.
TASKS = ("interpolation", "image_to_video", "expansion", "random", "loop")


def palindrome(latents: Tensor, which: Tensor) -> Tensor:
    """The clips ``which`` (bool, one per clip) played forward to their middle frame and back:
    frame k becomes frame ``min(k, K - 1 - k)``, so the last frame is the first.

    Why: real video almost never returns to its first frame, so first+last masks alone teach that
    two equal ends mean a still, and a loop (`mardini.tasks.loop`) stood still once the in-betweens
    were trained to stay close to the cross-fade. Measured: 1000 steps of it at a seventh of the
    clips, then at four times that share, or on the paper's loss, did not make loops move by eye
    (docs/benchmarks.md, "Loops: more loop training, guidance, and what the loop figure measures").
    """
    frames = latents.shape[1]
    order = torch.minimum(torch.arange(frames), frames - 1 - torch.arange(frames)).to(latents.device)
    return torch.where(which.to(latents.device).reshape(-1, *([1] * (latents.dim() - 1))), latents[:, order], latents)


@dataclass
class MaskSchedule:
    """Share of frames preserved as references, possibly moving linearly over a stage.

    ``preserved`` is the range at the start of the stage and ``preserved_end`` (if set) the
    range at its end; stage 3 lowers it towards a single reference frame (image-to-video).
    ``mode = "interpolation"`` keeps the first and last frame (stage 2). In random mode,
    ``interpolation_share`` of the clips still get the first+last mask, so a stage that moves on
    to fewer references keeps practising the previous stage's task (the paper's "joint task"
    stages train every task at once, section 2.4.1).

    ``mode = "tasks"`` draws each clip's mask from ``tasks``, relative weights over `TASKS`
    (e.g. ``{interpolation: 1, image_to_video: 1, expansion: 0.5, random: 0.5}``). Random
    positions alone rarely give the masks users ask for: with 11-30% references only ~15% of
    clips had a single reference and almost none the first k frames, and the bundled model's
    image-to-video broke into blocks where its in-betweens did not (docs/benchmarks.md, "block
    ablation").
    """

    mode: MaskMode = "random"
    preserved: tuple[float, float] = (0.35, 1.0)
    preserved_end: tuple[float, float] | None = None
    interpolation_share: float = 0.0
    tasks: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("random", "interpolation", "tasks"):
            raise ValueError(f"unknown mask mode '{self.mode}'; use 'random', 'interpolation' or 'tasks'")
        if not 0.0 <= self.interpolation_share <= 1.0:
            raise ValueError(f"masks.interpolation_share must be in [0, 1]; got {self.interpolation_share!r}")
        if self.mode == "tasks":
            if not isinstance(self.tasks, dict) or not self.tasks:
                raise ValueError(f"masks mode 'tasks' needs masks.tasks, weights over {list(TASKS)}, e.g. "
                                 "{interpolation: 1, image_to_video: 1}")
            unknown = sorted(set(self.tasks) - set(TASKS))
            if unknown:
                raise ValueError(f"unknown task(s) {unknown} in masks.tasks; use {list(TASKS)}")
            bad = {k: v for k, v in self.tasks.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0}
            if bad or sum(self.tasks.values()) <= 0:
                raise ValueError(f"masks.tasks weights must be non-negative numbers, not all zero; got {self.tasks}")
            if self.interpolation_share:
                raise ValueError("masks.interpolation_share belongs to mode 'random'; in mode 'tasks' give "
                                 "interpolation a weight in masks.tasks instead")
        elif self.tasks is not None:
            raise ValueError(f"masks.tasks is only read in mode 'tasks' (mode is '{self.mode}')")

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
        return self.sample_with_loops(batch, frames, progress, rng)[0]

    def sample_with_loops(self, batch: int, frames: int, progress: float,
                          rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw a (batch, frames) generate-mask and which clips (batch,) are to be made a
        :func:`palindrome` (the "loop" task; all False in other modes)."""
        no_loops = torch.zeros(batch, dtype=torch.bool)
        if frames < 2:
            raise ValueError(f"training needs clips of at least 2 frames (one reference, one generated), got {frames}")
        if self.mode == "interpolation":
            mask = torch.ones(batch, frames, dtype=torch.bool)
            mask[:, 0] = mask[:, -1] = False
            if frames == 2:
                mask[:, -1] = True
            return mask, no_loops
        if self.mode == "tasks":
            return self._sample_tasks(batch, frames, progress, rng)
        return self._sample_random(batch, frames, progress, rng), no_loops

    def _sample_random(self, batch: int, frames: int, progress: float, rng: torch.Generator) -> Tensor:
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

    def _sample_tasks(self, batch: int, frames: int, progress: float, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        assert self.tasks is not None
        names = [name for name in TASKS if self.tasks.get(name, 0) > 0]
        weights = torch.tensor([float(self.tasks[name]) for name in names])
        task = torch.multinomial(weights, batch, replacement=True, generator=rng)
        # Every task's mask is drawn for every clip (fixed random-number use), then picked.
        mask = self._sample_random(batch, frames, progress, rng)
        interpolation = torch.ones(batch, frames, dtype=torch.bool)
        interpolation[:, 0] = False
        interpolation[:, -1] = frames == 2  # 2 frames: first+last leaves nothing to generate
        single = torch.randint(0, frames, (batch,), generator=rng)
        image_to_video = torch.arange(frames)[None, :] != single[:, None]
        k = torch.randint(1, max(1, frames // 2) + 1, (batch,), generator=rng)
        expansion = torch.arange(frames)[None, :] >= k[:, None]
        loops = torch.zeros(batch, dtype=torch.bool)
        for i, name in enumerate(names):
            chosen = task == i
            if name in ("interpolation", "loop"):
                mask[chosen] = interpolation[chosen]
                if name == "loop" and frames > 2:  # 2 frames: nothing between the ends to loop
                    loops |= chosen
            elif name == "image_to_video":
                mask[chosen] = image_to_video[chosen]
            elif name == "expansion":
                mask[chosen] = expansion[chosen]
        return mask, loops
