"""Optimizer parameter groups and the iteration-based learning-rate schedule (mmseg semantics).

The schedule is a pure function of the iteration counter (no stateful scheduler), so a resumed
run sets exactly the learning rate the uninterrupted run would have set:

* poly (mmcv ``PolyLrUpdaterHook``, by iteration): ``lr_t = (lr_0 - min_lr) (1 - t / T)^power + min_lr``;
* linear warm-up (mmcv ``warmup='linear'``) over the first ``warmup_iters`` iterations multiplies it by
  ``1 - (1 - t / warmup_iters) (1 - warmup_ratio)``.

``lr_0`` is each group's own base rate (``lr x head_lr_mult`` for the head, ``x`` the stage-wise
decay factor for ConvNeXt), as mmcv applies its ``lr_mult``.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from cbp.engine.config import OptimConfig


def poly_lr(base_lr: float, it: int, total: int, cfg: OptimConfig) -> float:
    """Learning rate of iteration ``it`` (0-based) for a group whose base rate is ``base_lr``."""
    progress = min(it, total) / max(total, 1)
    lr = (base_lr - cfg.min_lr) * (1.0 - progress) ** cfg.power + cfg.min_lr
    if cfg.warmup_iters > 0 and it < cfg.warmup_iters:
        k = (1.0 - it / cfg.warmup_iters) * (1.0 - cfg.warmup_ratio)
        lr = lr * (1.0 - k)
    return lr


def set_lr(optimizer: torch.optim.Optimizer, it: int, total: int, cfg: OptimConfig) -> float:
    """Set every group's lr for iteration ``it``; returns the lr of the first (backbone) group."""
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(group["base_lr"], it, total, cfg)
    return optimizer.param_groups[0]["lr"]


def _stage_id(name: str, num_layers: int) -> int:
    """mmseg ``get_stage_id_for_convnext``: stem/downsampling 0, stage i -> i + 1, anything else
    (the heads, and the per-output norms ``out_norms``, mmseg's ``backbone.norm0..3``) -> max."""
    if not name.startswith("encoder."):
        return num_layers - 1
    if "downsample" in name or "stem" in name:
        return 0
    m = re.search(r"stages[._](\d+)", name)
    return int(m.group(1)) + 1 if m else num_layers - 1


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Parameter groups: backbone (``encoder.*``) vs head lr, weight-decay exemptions, stage-wise decay.

    Only parameters with ``requires_grad`` are included: frozen CBP prototypes are buffers and
    never reach the optimizer.
    """
    groups: dict[tuple[float, float], dict] = {}
    num_layers = cfg.layer_decay_layers + 2
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lr_mult = 1.0 if name.startswith("encoder.") else cfg.head_lr_mult
        if cfg.layer_decay_rate != 1.0:
            lr_mult *= cfg.layer_decay_rate ** (num_layers - _stage_id(name, num_layers) - 1)
        no_decay = any(key in name for key in cfg.no_decay_keys) or (
            cfg.no_decay_1d and (p.ndim == 1 or name.endswith(".bias"))
        )
        wd = 0.0 if no_decay else cfg.weight_decay
        key = (lr_mult, wd)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "base_lr": cfg.lr * lr_mult, "weight_decay": wd}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    # backbone group first so that set_lr's return value is the base lr
    return sorted(groups.values(), key=lambda g: (g["base_lr"] != cfg.lr, -g["base_lr"], g["weight_decay"]))


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over :func:`param_groups`; the group lrs are set per iteration by :func:`set_lr`."""
    groups = param_groups(model, cfg)
    for g in groups:
        g["lr"] = g["base_lr"]
    if cfg.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    else:
        raise ValueError(f"unknown optimizer {cfg.name!r}: expected 'sgd' or 'adamw'")
    for g in opt.param_groups:  # names are for humans; keep them out of the state dict
        g.pop("names", None)
    return opt
