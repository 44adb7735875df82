"""Shared test set-up: every test starts from the same seeds, on one CPU thread."""

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002  (seeds legacy np.random users too)
    torch.manual_seed(0)
