"""What the training loop reads and changes (:class:`TrainState`), set up fresh (:func:`build_state`)
or restored from the run's latest checkpoint (:func:`resume`)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import Dataset

from cbp.distributed import get_rank, get_world_size, is_distributed, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import (
    batch_split,
    build_model_and_optimizer,
    build_occl,
    build_split,
    ensure_data,
    test_transform,
    train_transform,
)
from cbp.engine.config import Config, ConfigError
from cbp.engine.process import configure_backends, rank_seed, seed_everything
from cbp.losses import OCCL


@dataclass
class TrainState:
    """What the loop reads and changes: the model (and its DDP wrapper), optimiser, scaler, iteration.

    ``iteration`` counts the optimiser steps taken; ``resumed_from`` is the iteration this process
    started at (the checkpoint's, or 0); ``good`` is the last good checkpoint, (its iteration, its
    file), which a re-run resumes from (None: none yet). The data stream is a function of the
    iteration (:class:`cbp.engine.sampler.StreamSampler`), so it needs no state of its own.
    """

    cfg: Config
    out: Path
    device: torch.device
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    occl: OCCL | None
    generators: dict[str, torch.Generator]
    train_set: Dataset
    val_set: Dataset
    micro: int
    accum: int
    amp: str
    iteration: int = 0
    resumed_from: int = 0
    good: tuple[int, Path] | None = None
    start_time: float = field(default_factory=time.time)

    @property
    def ckpt_path(self) -> Path:
        return self.out / checkpoint.CKPT_NAME


def build_state(cfg: Config, out: Path, device: torch.device) -> TrainState:
    """Data, model, optimiser, scaler and OCCL of a fresh run (iteration 0); writes nothing."""
    micro, accum = batch_split(cfg, get_world_size())
    amp = configure_backends(cfg, device)
    ensure_data(cfg)
    train_set = build_split(cfg, "train", train_transform(cfg))
    val_set = build_split(cfg, "val", test_transform(cfg))
    model, optimizer = build_model_and_optimizer(cfg, device, train_set.num_classes)
    occl = build_occl(cfg, seed=rank_seed(cfg.seed, get_rank()))
    return TrainState(
        cfg=cfg,
        out=out,
        device=device,
        model=model,
        ddp_model=model,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda") if amp == "fp16" else None,
        occl=occl,
        generators={"occl": occl.generator} if occl is not None else {},
        train_set=train_set,
        val_set=val_set,
        micro=micro,
        accum=accum,
        amp=amp,
    )


def resume(state: TrainState) -> None:
    """Load the run's latest readable checkpoint (when there is one), then restore or seed the RNGs."""
    rank = get_rank()
    resumed_rng = None
    latest = checkpoint.load_latest(state.out, map_location="cpu", set_aside=True)
    if latest is not None:
        resumed_rng = _load_checkpoint(state, *latest)
    if resumed_rng is not None:
        checkpoint.set_rng_state(resumed_rng, state.generators)
    else:
        seed_everything(rank_seed(state.cfg.seed, rank) + state.iteration)


def _load_checkpoint(state: TrainState, ckpt: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """Model, optimiser, scaler and iteration from ``ckpt`` (read from ``path``); this rank's saved RNG
    states, or None when the checkpoint has another world size (the RNGs are then re-seeded)."""
    rank, world = get_rank(), get_world_size()
    hint = (
        f"does data.root ({state.cfg.data.root}) hold the run's data set (the same classes)? Pass the "
        "run's data.root, or train this config in a new --out"
    )
    checkpoint.load_model_state(state.model, ckpt, path, hint=hint)
    load_optimizer_state(state.optimizer, ckpt["optimizer"])
    if state.scaler is not None and ckpt.get("scaler"):
        state.scaler.load_state_dict(ckpt["scaler"])
    state.iteration = state.resumed_from = int(ckpt["iter"])
    state.good = (state.iteration, path)
    if state.cfg.train.iters < state.iteration:
        raise ConfigError(
            f"train.iters={state.cfg.train.iters} is below the iteration of {path} ({state.iteration}): a run "
            f"cannot be shortened; pass --train.iters={state.iteration} or more, or use a new --out"
        )
    resumed_rng = None
    if ckpt.get("world_size") == world and len(ckpt.get("rng", [])) == world:
        resumed_rng = ckpt["rng"][rank]
    elif is_main_process():
        warnings.warn(
            f"resuming with world_size {world} from a checkpoint of world_size {ckpt.get('world_size')}: "
            "the data stream continues exactly but the per-rank RNG states are re-seeded (not bit-exact)",
            stacklevel=1,
        )
    if is_main_process():
        print(f"[cbp.train] resuming {state.out} from iteration {state.iteration} ({path.name})", flush=True)
    return resumed_rng


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a checkpoint's optimiser state but keep each group's ``base_lr`` from the current config,
    so that a resume with another ``optim.lr`` trains with it (the schedule scales ``base_lr``)."""
    base_lrs = [g["base_lr"] for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, base_lr in zip(optimizer.param_groups, base_lrs):
        group["base_lr"] = base_lr


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun, else the model itself."""
    if not is_distributed():
        return model
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
