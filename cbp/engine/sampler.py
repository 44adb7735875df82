"""Iteration-based data order that a resumed run continues exactly.

Training reads one endless stream of sample indices: the concatenation of per-epoch
permutations, epoch ``e``'s permutation drawn from ``seed + e`` exactly as
``torch.utils.data.DistributedSampler`` draws it (``torch.randperm(n, generator=manual_seed(seed + e))``,
i.e. ``set_epoch(e)``). Global iteration ``t`` consumes stream positions
``[t * B, (t + 1) * B)`` for the total batch ``B``; within it, accumulation step ``k`` on rank ``r``
takes the ``b = B / (world * accum)`` positions starting at ``t * B + (k * world + r) * b``.
The position of iteration ``t`` is arithmetic, so resuming at ``t`` needs no replay, and the
global batch of an iteration does not depend on how it is split over devices and accumulation
steps.

Augmentation randomness is a function of the stream position too (:class:`SeededSamples`
seeds torch / numpy / random for each sample from ``(seed, position)`` in a forked RNG
state), so the data do not depend on the number of DataLoader workers or on where a run was
interrupted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of epoch ``epoch``: the same as ``DistributedSampler(shuffle=True)`` after ``set_epoch``."""
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g)  # (n,)


class StreamSampler(Sampler[tuple[int, int]]):
    """Endless per-rank sampler over the global stream; yields ``(dataset index, stream position)``.

    Args:
        num_samples: length of the dataset.
        batch_size: total batch B over ranks and accumulation steps.
        world_size: number of ranks.
        rank: this rank.
        accum: gradient-accumulation steps per iteration.
        seed: seed of the epoch permutations.
        start_iter: first iteration to produce (the resumed iteration).
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        accum: int = 1,
        seed: int = 0,
        start_iter: int = 0,
    ) -> None:
        if num_samples < 1:
            raise ValueError("StreamSampler needs a non-empty dataset")
        if batch_size % (world_size * accum):
            raise ValueError(
                f"total batch {batch_size} is not divisible by world_size x grad_accum = {world_size} x {accum}; "
                "change train.batch_size, train.grad_accum or the number of processes"
            )
        self.n, self.batch_size, self.world_size, self.rank = num_samples, batch_size, world_size, rank
        self.accum, self.seed, self.start_iter = accum, seed, start_iter
        self.micro = batch_size // (world_size * accum)

    def position(self, iteration: int) -> tuple[int, int]:
        """(epoch, offset in that epoch) of the first sample of ``iteration``."""
        pos = iteration * self.batch_size
        return pos // self.n, pos % self.n

    def _global(self, pos: int, cache: dict[int, torch.Tensor]) -> int:
        epoch = pos // self.n
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_permutation(self.n, self.seed, epoch)
        return int(cache[epoch][pos % self.n])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        cache: dict[int, torch.Tensor] = {}
        it = self.start_iter
        while True:
            base = it * self.batch_size
            for k in range(self.accum):
                first = base + (k * self.world_size + self.rank) * self.micro
                for pos in range(first, first + self.micro):
                    yield self._global(pos, cache), pos
            it += 1

    def __len__(self) -> int:  # endless; DataLoader only needs it for len(loader)
        return 2**62


def _sample_seed(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class SeededSamples(Dataset):
    """Wraps a dataset whose transform is random; item ``(index, position)`` is drawn with RNGs
    seeded from ``(seed, position)`` (the global RNG states are restored afterwards)."""

    def __init__(self, dataset: Any, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, position = item
        s = _sample_seed(self.seed, position)
        np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002 (the legacy global state is what code we call may use)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            np.random.seed(s % 2**32)  # noqa: NPY002 (the legacy global state is what code we call may use)
            random.seed(s)
            try:
                return self.dataset[index]
            finally:
                np.random.set_state(np_state)  # noqa: NPY002 (the legacy global state is what code we call may use)
                random.setstate(py_state)


class ShardSampler(Sampler[int]):
    """Evaluation order: rank ``r`` takes indices ``r, r + world, ...`` without padding duplicates,
    so every image is counted exactly once after the confusion matrices are summed."""

    def __init__(self, num_samples: int, *, world_size: int = 1, rank: int = 0) -> None:
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
