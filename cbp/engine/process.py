"""The process a run lives in: its device, its process group (when launched by torchrun), its seeds,
its numerical switches (determinism, AMP) and its signals (SIGTERM / SIGINT stop a run cleanly)."""

from __future__ import annotations

import os
import random
import signal
import warnings
from typing import Any

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


def configure_backends(cfg: Config, device: torch.device) -> str:
    """Determinism switches; returns the AMP mode actually used (``fp16`` falls back to ``none`` on CPU,
    which has no float16 autocast worth having; ``bf16`` runs on CPU as on CUDA)."""
    if device.type == "cpu" and cfg.train.amp == "fp16":
        warnings.warn(
            "train.amp=fp16 is for CUDA; training in float32 on CPU (bf16 works on CPU)", stacklevel=1
        )
    if cfg.train.deterministic:
        torch.backends.cudnn.benchmark = False
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    return cfg.train.amp if device.type == "cuda" or cfg.train.amp == "bf16" else "none"


class StopFlag:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint at the end of the iteration and exits.

    A second signal exits at once.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt(
                f"second signal {signal.Signals(signum).name}: exiting without a checkpoint"
            )
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # Under torchrun a rank that leaves the loop on an exception (its peer died, a bug) is exiting, and
        # torchrun SIGTERMs the survivors: SIGTERM stays ignored so that it cannot kill this rank before
        # it says why in one line (cbp.engine.errors.run_cli). Otherwise the handlers it found come back.
        exiting = exc is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1
        for s, h in self._old.items():
            signal.signal(s, signal.SIG_IGN if exiting and s == signal.SIGTERM else h)
