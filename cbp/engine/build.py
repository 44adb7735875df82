"""Build the model, the datasets, OCCL and the optimiser a :class:`cbp.engine.config.Config` describes
(shared by train and evaluate), and split the batch over devices and accumulation steps."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cbp.data import build_dataset
from cbp.data.synthetic import META_FILE, ensure_synthetic, read_meta
from cbp.data.transforms import TestTransform, TrainTransform
from cbp.distributed import barrier, is_distributed, is_main_process
from cbp.engine import checkpoint
from cbp.engine.config import Config, ConfigError, from_dict
from cbp.engine.errors import DataError
from cbp.engine.optim import build_optimizer
from cbp.engine.process import seed_everything
from cbp.io import load_torch, read_json
from cbp.losses import OCCL
from cbp.models import create_model
from cbp.models.builder import get_spec
from cbp.prototypes import category_basis_prototypes


def ensure_data(cfg: Config) -> None:
    """Make sure the data of ``cfg`` are there: a synthetic set is used as it is, or generated when missing.

    A synthetic root that already holds a set (``cbp_meta.json``) is used as it is, whatever the
    ``data.synthetic_*`` keys say: its class count and sizes come from its metadata and are printed.
    Those keys (the preset's generation parameters) apply only when the set is generated, on rank 0
    (the other ranks wait at a barrier).
    """
    if cfg.data.name == "synthetic":
        root = Path(cfg.data.root)
        if is_main_process():
            meta = read_meta(root)
            if meta is None:
                ensure_synthetic(
                    root,
                    classes=cfg.data.synthetic_classes,
                    train=cfg.data.synthetic_train,
                    val=cfg.data.synthetic_val,
                    size=cfg.data.synthetic_size,
                    seed=cfg.data.synthetic_seed,
                    progress=cfg.train.progress,
                )
            else:
                p = meta.get("params", {})
                print(
                    f"[cbp] using the synthetic set in {root} as it is: {meta.get('num_classes')} classes, "
                    f"{p.get('train')} training and {p.get('val')} validation images of {p.get('size')} x "
                    f"{p.get('size')} (from its {META_FILE}; data.synthetic_* apply only when a set is generated)",
                    flush=True,
                )
        barrier()


def check_inputs(cfg: Config, *, pretrained: bool = True) -> None:
    """Check, before anything is built or written, the names and files ``cfg`` refers to.

    Args:
        cfg: the run's config.
        pretrained: also check ``model.pretrained`` (evaluation does not read it).

    Raises:
        ConfigError: an unknown backbone, or ``train.device=cuda`` without a CUDA device.
        cbp.engine.errors.DataError: a missing data root (real datasets), pretrained or embeddings file.
    """
    try:
        get_spec(cfg.model.backbone)
    except KeyError as e:
        raise ConfigError(f"model.backbone: {e.args[0]}; e.g. --model.backbone=mit_b0") from None
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device=cuda but no CUDA device is available here; use --train.device=auto or cpu"
        )
    root = Path(cfg.data.root)
    if cfg.data.name != "synthetic" and not root.is_dir():
        raise DataError(
            f"data.root={root}: no such folder; the {cfg.data.name} data are expected there (see the book's "
            "'Using the engine'); pass --data.root=DIR with your copy"
        )
    if cfg.data.name == "synthetic" and root.exists() and not root.is_dir():
        raise DataError(f"data.root={root} is a file; pass a folder (it is generated when missing)")
    if pretrained and cfg.model.pretrained not in ("", "hub") and not Path(cfg.model.pretrained).is_file():
        raise DataError(
            f"model.pretrained={cfg.model.pretrained}: no such file; pass encoder weights saved with "
            "torch.save(state_dict), 'hub' for the timm / smp weights, or '' to train from scratch"
        )
    if cfg.model.embeddings and not Path(cfg.model.embeddings).is_file():
        raise DataError(
            f"model.embeddings={cfg.model.embeddings}: no such file; pass an (N, D) tensor saved with torch.save"
        )


def train_transform(cfg: Config) -> Any:
    """mmseg's training pipeline with the config's sizes."""

    d = cfg.data
    return TrainTransform(
        crop_size=d.crop_size,
        scale=d.scale,
        ratio_range=d.ratio_range,
        cat_max_ratio=d.cat_max_ratio,
        flip=d.flip,
        photometric=d.photometric,
        ignore_index=cfg.loss.ignore_index,
    )


def test_transform(cfg: Config) -> Any:
    """mmseg's test pipeline (keep-ratio resize to ``data.test_scale``, normalise)."""

    return TestTransform(scale=cfg.data.test_scale)


def build_split(cfg: Config, split: str, transform: Any = None) -> Any:
    """The ``"train"`` or ``"val"`` split of ``cfg.data`` (see :func:`cbp.data.build_dataset`)."""

    return build_dataset(cfg.data.name, cfg.data.root, split, transform)


def build_model(cfg: Config, num_classes: int) -> nn.Module:
    """:func:`cbp.models.create_model` with ``cfg.model``."""

    m = cfg.model
    pretrained: bool | str = {"": False, "hub": True}.get(m.pretrained, m.pretrained)
    init: Any = m.init
    if m.embeddings:  # Table 5's text / masked inits: build the prototypes from the class embeddings here
        embeddings = load_torch(m.embeddings)  # (N, D); weights_only: the file never runs code
        # create_model takes no embeddings=; a (N, C) tensor init is used as it is (then equalised)
        init = category_basis_prototypes(
            num_classes,
            get_spec(m.backbone).channels,
            m.length,
            seed=m.proto_seed,
            init=m.init,
            embeddings=embeddings,
        )
    return create_model(
        m.backbone,
        num_classes,
        classifier=m.classifier,
        pretrained=pretrained,
        img_size=(m.img_size or cfg.data.crop_size[0]) if m.backbone.startswith("swin") else None,
        length=m.length,
        init=init,
        update=m.update,
        proto_seed=m.proto_seed,
        momentum=m.ema_momentum,
        penalty_weight=m.penalty_weight,
        penalty_form=m.penalty_form,
        aux_head=m.aux_head,
        dropout=m.dropout,
    )


def build_occl(cfg: Config, seed: int = 0) -> Any:
    """:class:`cbp.losses.OCCL` with ``cfg.loss``, or None when ``loss.occl`` is off.

    Args:
        cfg: the run's config.
        seed: seed of the ``"random"`` view split (the engine passes a per-rank seed).
    """

    if not cfg.loss.occl:
        return None
    loss = cfg.loss
    return OCCL(
        tau=loss.tau,
        lam=loss.lam,
        phi=loss.phi,
        views=loss.views,
        normalize=loss.normalize,
        class_reduction=loss.class_reduction,
        category_form=loss.category_form,
        ignore_index=loss.ignore_index,
        seed=seed,
    )


def read_run_config(run_dir: str | Path) -> Config:
    """The resolved config of a ``python -m cbp.train`` run directory (its ``config.json``).

    Raises:
        FileNotFoundError: ``run_dir`` has no ``config.json``.
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {run_dir} must be a directory written by `python -m cbp.train`"
        )
    return from_dict(read_json(path), source=str(path))


def restore_model(cfg: Config, num_classes: int, ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a trained run with the weights of one of its checkpoints.

    The encoder's pretraining file (``model.pretrained``) is not read: the checkpoint holds every
    weight, and the file may not exist where the run is restored. ``cfg`` is not modified.

    Args:
        cfg: the run's config (:func:`read_run_config`).
        num_classes: N, the number of classes.
        ckpt_path: a checkpoint the engine wrote (``RUN_DIR/ckpt_last.pt``).

    Returns:
        (model on the CPU, the checkpoint dict: ``"model"``, ``"iter"``, ...).

    Raises:
        cbp.io.WrongCheckpointError: the checkpoint is of another model (exit code 2).
    """

    ckpt = checkpoint.load(Path(ckpt_path))
    fresh = copy.deepcopy(cfg)
    fresh.model.pretrained = ""
    model = build_model(fresh, num_classes)
    hint = (
        f"pass a checkpoint of this run ({cfg.model.backbone}, {cfg.model.classifier}, {num_classes} classes), "
        "or evaluate the run folder the checkpoint belongs to"
    )
    checkpoint.load_model_state(model, ckpt, Path(ckpt_path), hint=hint)
    return model, ckpt


def build_model_and_optimizer(
    cfg: Config, device: torch.device, num_classes: int
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model (same init on every rank; DDP also broadcasts rank 0's) and its optimiser."""
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    if cfg.train.sync_bn and is_distributed():
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif is_main_process():
            warnings.warn("train.sync_bn needs CUDA; keeping per-rank BatchNorm on CPU", stacklevel=1)
    optimizer = build_optimizer(model, cfg.optim)
    buffers = {id(b) for b in model.buffers()}
    assert not any(id(p) in buffers for g in optimizer.param_groups for p in g["params"]), (
        "a buffer (frozen prototypes) reached the optimizer"
    )
    if cfg.model.classifier == "cbp" and cfg.model.update in ("frozen", "ema"):
        proto = model.classifier.prototypes
        assert not any(p is proto for g in optimizer.param_groups for p in g["params"]), (
            "the frozen prototypes must never be optimised"
        )
    return model, optimizer


def batch_split(cfg: Config, world: int) -> tuple[int, int]:
    """(images per device and forward pass, accumulation steps) that keep ``train.batch_size`` in total."""
    total = cfg.train.batch_size
    if cfg.train.grad_accum > 0:
        accum = cfg.train.grad_accum
    elif cfg.train.device_batch > 0 and world * cfg.train.device_batch < total:
        if total % (world * cfg.train.device_batch):
            raise ConfigError(
                f"train.batch_size={total} is not a multiple of world_size x train.device_batch = "
                f"{world} x {cfg.train.device_batch}; set --train.grad_accum or --train.device_batch"
            )
        accum = total // (world * cfg.train.device_batch)
    else:
        accum = 1
    if total % (world * accum):
        raise ConfigError(
            f"train.batch_size={total} is not divisible by world_size x grad_accum = {world} x {accum}; "
            "change --train.batch_size, --train.grad_accum or the number of processes"
        )
    micro = total // (world * accum)
    if cfg.loss.occl and cfg.loss.views in ("batch", "global") and (micro < 2 or micro % 2):
        raise ConfigError(
            f"OCCL views={cfg.loss.views!r} splits each forward batch in two halves, but each device gets "
            f"{micro} image(s) per forward pass (batch {total} / world {world} / accum {accum}); use an "
            "even per-device batch >= 2 (--train.grad_accum / --train.device_batch) or --loss.views=random"
        )
    return micro, accum
