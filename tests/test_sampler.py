"""Augmentation randomness of the training stream: new draws every epoch, the same draws on a re-run,
a resume or another number of DataLoader workers."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader

from cbp.engine.sampler import SeededSamples, StreamSampler


class RandomViews:
    """A dataset whose item draws from the three global RNGs augmentation code may use."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(
            [index, torch.rand(()).item(), np.random.rand(), random.random()],  # noqa: NPY002
            dtype=torch.float64,
        )


def stream(start_iter: int, iters: int, *, workers: int = 0, batch: int = 4) -> torch.Tensor:
    data = SeededSamples(RandomViews(), seed=5)
    sampler = StreamSampler(len(data), batch, seed=5, start_iter=start_iter)
    loader = DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers)
    it = iter(loader)
    return torch.cat([next(it) for _ in range(iters)])  # (iters * batch, 4)


def test_each_epoch_draws_new_augmentation() -> None:
    rows = stream(0, 6)  # 24 samples = 4 epochs of 6 images
    by_index: dict[int, list[torch.Tensor]] = {}
    for r in rows:
        by_index.setdefault(int(r[0]), []).append(r[1:])
    assert sorted(by_index) == list(range(6)) and all(len(v) == 4 for v in by_index.values())
    for index, draws in by_index.items():
        d = torch.stack(draws)  # (epochs, 3): torch, numpy, random
        for rng in range(3):
            assert len(set(d[:, rng].tolist())) == 4, f"image {index} repeats its augmentation across epochs"


def test_augmentation_is_reproducible_and_resumable() -> None:
    torch.manual_seed(123)
    np.random.seed(123)  # noqa: NPY002
    a = stream(0, 6)
    torch.manual_seed(7)  # the global RNG state of the caller does not matter
    b = stream(0, 6)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    resumed = stream(3, 3)  # a run resumed at iteration 3 reads the same samples, drawn the same way
    torch.testing.assert_close(resumed, a[12:], rtol=0, atol=0)
    torch.testing.assert_close(stream(0, 6, workers=2), a, rtol=0, atol=0)  # workers do not matter


def test_seeded_samples_restore_the_global_rngs() -> None:
    data = SeededSamples(RandomViews(), seed=5)
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002
    random.seed(1)
    data[(0, 0)]
    after = (torch.rand(()).item(), np.random.rand(), random.random())  # noqa: NPY002
    torch.manual_seed(1)
    np.random.seed(1)  # noqa: NPY002
    random.seed(1)
    assert after == (torch.rand(()).item(), np.random.rand(), random.random())  # noqa: NPY002
