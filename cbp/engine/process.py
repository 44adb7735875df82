"""The process a run lives in: its device, its process group (when launched by torchrun) and its seeds."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

from cbp.engine.config import Config, ConfigError


def setup_distributed(cfg: Config) -> torch.device:
    """Initialise the process group when launched by torchrun (nccl on CUDA, gloo on CPU); the device."""
    use_cuda = cfg.train.device == "cuda" or (cfg.train.device == "auto" and torch.cuda.is_available())
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device=cuda but no CUDA device is available; use --train.device=cpu (or auto)"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        return torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's global and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the legacy global state is what code we call may use)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """Distinct, reproducible seed per rank."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])
