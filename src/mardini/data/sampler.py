"""Per-rank sharding of a map-style dataset with an exact, resumable position.

``ShardedClipSampler`` shuffles ``range(dataset_len)`` with a permutation fixed by
``(seed, epoch)`` and deals it to ranks round-robin (rank r takes positions r, r + W, ...), so
ranks see disjoint indices. It counts how many indices it has handed out this epoch;
``state_dict()`` / ``load_state_dict()`` store and restore ``(epoch, position)``, and iteration
continues from there. Finishing an epoch moves the sampler to the next one (position 0), so a
state saved between epochs resumes at the start of the next.

With a ``DataLoader`` the sampler runs ahead of the model by the prefetched batches; save the
number of samples the training loop actually consumed: ``sampler.state_dict(position=consumed)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import Sampler


class ShardedClipSampler(Sampler[int]):
    """Disjoint, shuffled, resumable per-rank indices into a dataset of ``dataset_len`` items.

    Args:
        dataset_len: number of items (``len(dataset)``).
        rank, world_size: this process and the number of processes.
        seed: fixes every epoch's permutation (the same on all ranks).
        shuffle: shuffle each epoch (else ``0, 1, 2, ...`` dealt round-robin).
        drop_last: drop the last ``dataset_len % world_size`` indices of each epoch so every rank
            gets as many and none is repeated (the dropped ones change with the epoch). With
            ``False`` the tail is padded with indices from the start of the permutation, which
            then appear twice in that epoch.
        with_epoch: yield ``(epoch, index)`` pairs, which the datasets of :mod:`mardini.data`
            accept as indices; that carries the epoch into DataLoader workers without
            ``dataset.set_epoch``.
    """

    def __init__(self, dataset_len: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = True, with_epoch: bool = False) -> None:
        for name, value in (("dataset_len", dataset_len), ("world_size", world_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}); got {rank!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
        if drop_last and dataset_len < world_size:
            raise ValueError(f"{dataset_len} item(s) cannot be shared by {world_size} ranks without repeats; "
                             "use more clips (clips_per_epoch) or drop_last=False")
        self.dataset_len, self.rank, self.world_size, self.seed = dataset_len, rank, world_size, seed
        self.shuffle, self.drop_last, self.with_epoch = shuffle, drop_last, with_epoch
        self.epoch = 0
        self.position = 0

    def __len__(self) -> int:
        """Indices per rank in a whole epoch (not what is left of the current one)."""
        if self.drop_last:
            return self.dataset_len // self.world_size
        return -(-self.dataset_len // self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer; got {epoch!r}")
        self.epoch, self.position = epoch, 0

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's whole index list for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(2, epoch)))
            order = rng.permutation(self.dataset_len)
        else:
            order = np.arange(self.dataset_len)
        total = len(self) * self.world_size
        if total > self.dataset_len:  # pad (drop_last=False)
            order = np.concatenate([order, np.resize(order, total - self.dataset_len)])
        return order[:total][self.rank::self.world_size].tolist()

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch
        order = self.indices(epoch)
        while self.position < len(order):
            index = order[self.position]
            self.position += 1
            yield (epoch, index) if self.with_epoch else index
        self.epoch, self.position = epoch + 1, 0

    def state_dict(self, position: int | None = None) -> dict[str, int]:
        """``{"epoch", "position", ...}``; ``position`` overrides the count (e.g. samples consumed)."""
        return {"epoch": self.epoch, "position": self.position if position is None else int(position),
                "seed": self.seed, "dataset_len": self.dataset_len, "world_size": self.world_size,
                "rank": self.rank}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict`; the next index is the one after the saved position.

        Raises ``ValueError`` if the seed, dataset length or world size differ: the permutation
        (or the shards) would then not be the ones the saved position refers to.
        """
        for key in ("seed", "dataset_len", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"cannot resume: saved {key}={state[key]} but this sampler has "
                                 f"{key}={getattr(self, key)}; the data order would differ")
        position = int(state.get("position", 0))
        if not 0 <= position <= len(self):
            raise ValueError(f"saved position {position} is outside an epoch of {len(self)} indices")
        self.epoch = int(state["epoch"])
        self.position = position
        if self.position == len(self):  # the saved epoch was complete
            self.epoch, self.position = self.epoch + 1, 0
