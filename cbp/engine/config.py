"""Run configuration: a tree of dataclasses, presets, and ``--section.key=value`` overrides.

Every knob of a run is a field below; a preset is a plain function returning a filled-in
:class:`Config`; the command line changes single fields::

    python -m cbp.train --preset ade20k_segformer_b0 --out runs/b0 --train.iters=40000 --loss.occl=false

Overrides are type-checked against the field's annotation (bool / int / float / str / tuple /
Literal choices; a float is finite: ``nan`` and ``inf`` are refused); an unknown key fails with the
closest valid key.

Schedules of the paper (Section 4, "following the default settings [of mmsegmentation] for each
dataset"), as mmsegmentation's configs spell them:

* FCN (ResNet-50, dilated): SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly power 0.9,
  min lr 1e-4, no warm-up; auxiliary FCN head with loss weight 0.4.
* SegFormer (MiT-B0..B5): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01; head lr x10;
  no weight decay on ``norm`` / ``pos_block``; 1500-iteration linear warm-up from ratio 1e-6, then
  poly power 1.0 to 0.
* Swin-B (UPerNet): AdamW lr 6e-5, betas (0.9, 0.999), weight decay 0.01, **no** head lr x10; no
  weight decay on ``absolute_pos_embed`` / ``relative_position_bias_table`` / ``norm``; the same
  warm-up and poly 1.0; auxiliary head 0.4.
* ConvNeXt-B (UPerNet): the paper says "SGD for convolution models", but mmsegmentation's
  ConvNeXt config (which the paper says it follows) uses AdamW lr 1e-4, weight decay 0.05,
  stage-wise lr decay 0.9 over 12 layers (no decay on 1-D parameters and biases), the same
  warm-up and poly 1.0, fp16, and sliding-window testing (crop 512, stride 341). The preset takes
  mmsegmentation's; ``--optim.name=sgd --optim.lr=0.01 ...`` gives the other reading.

The batch is 16 in total (8 GPUs x 2 in the paper); on fewer devices gradient accumulation keeps
the total (``train.device_batch`` images per device and step, ``train.grad_accum`` = 0 picks the
number of accumulation steps).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cbp.models.builder import get_spec
from cbp.paper import (
    PAPER_ABLATION,
    PAPER_ABLATION_ITERS,
    PAPER_HEAD_LR_MULT,
    PAPER_HPARAMS,
    PAPER_ITERS,
    PAPER_TAU,
)

# --------------------------------------------------------------------------------------------
# The tree


@dataclass
class ModelConfig:
    """Segmentor and classifier (see :func:`cbp.models.create_model`)."""

    backbone: str = "cnn_tiny"
    classifier: Literal["cbp", "linear"] = "cbp"
    length: float = PAPER_ABLATION.length  # T, the common L2 norm of the prototypes (Alg. 1); 2.0
    init: str = "orthogonal+equal"  # orthogonal+equal | orthogonal | equal | random | text | masked ...
    update: Literal["frozen", "gradient", "ema", "penalty"] = "frozen"
    ema_momentum: float = 0.99  # m of update=ema (not given in the paper)
    # update=penalty's loss: weight x (1/N) sum_i sum_{j != i} cos(w_i, w_j)^2 (amendment 5; was 0.01)
    penalty_weight: float = 1.0
    penalty_form: Literal["squared", "absolute"] = "squared"  # cos^2 or |cos| (not said in the paper)
    proto_seed: int = 0
    embeddings: str = ""  # (N, D) class embeddings, a torch.save'd tensor, for init text/masked* (Table 5)
    aux_head: bool = False  # mmseg's auxiliary FCN head (FCN, UPerNet), loss weight loss.aux_weight
    dropout: float = 0.1
    pretrained: str = ""  # "" = from scratch, "hub" = the user's timm/smp hub weights, else a local path
    img_size: int = 0  # fixed input size for Swin (0 = the crop size)


@dataclass
class DataConfig:
    """Dataset and the training / test pipelines (see :mod:`cbp.data`)."""

    name: Literal["synthetic", "ade20k", "cocostuff10k"] = "synthetic"
    root: str = "data/synthetic-50"
    crop_size: tuple[int, int] = (64, 64)
    scale: tuple[int, int] = (64, 64)  # mmseg Resize img_scale before ratio_range
    ratio_range: tuple[float, float] = (1.0, 1.0)
    cat_max_ratio: float = 0.75
    flip: bool = False
    photometric: bool = False
    test_scale: tuple[int, int] = (64, 64)  # test-time resize (keep ratio), mmseg (2048, 512)
    # synthetic generator (cbp.data.synthetic.ensure_synthetic), used only when name == "synthetic"
    synthetic_classes: int = 50
    synthetic_train: int = 4000
    synthetic_val: int = 900
    synthetic_size: int = 64
    synthetic_seed: int = 0


@dataclass
class LossConfig:
    """Pixel cross-entropy + OCCL (Eq. 6, 7) + the penalty variant's regulariser."""

    ce: bool = True
    ce_resolution: Literal["input", "feature"] = "input"  # feature: labels nearest-downsampled
    aux_weight: float = 0.4
    occl: bool = True
    lam: float = PAPER_ABLATION.lam  # lambda, weight of the centroid loss (Eq. 4); 1.0
    phi: float = PAPER_ABLATION.phi  # weight of the category loss (Eq. 5); 0.3
    tau: float = PAPER_TAU  # 0.07
    # OCCL's two views (cbp.losses.assign_views); "objects" = half of each class's objects per view, the
    # paper's reading (protocol amendment 5); "batch" (image halves) was the default before it
    views: Literal["objects", "batch", "random", "global"] = "objects"
    normalize: bool = True
    class_reduction: Literal["mean", "sum"] = "mean"  # over classes in Eq. 4-5 (print: a sum)
    category_form: Literal["prototypes", "printed"] = "prototypes"  # Eq. 5: CE over prototypes / as printed
    ignore_index: int = 255


@dataclass
class OptimConfig:
    """Optimizer and the iteration-based poly schedule with linear warm-up (mmcv semantics)."""

    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW
    weight_decay: float = 0.01
    head_lr_mult: float = 1.0  # lr multiplier of every parameter outside "encoder."
    no_decay_keys: tuple[str, ...] = ()  # parameter-name substrings with weight decay 0 (mmseg custom_keys)
    no_decay_1d: bool = False  # weight decay 0 on 1-D parameters and biases (mmseg lr-decay constructor)
    layer_decay_rate: float = 1.0  # ConvNeXt stage-wise lr decay (1.0 = off)
    layer_decay_layers: int = 12
    power: float = 1.0  # poly power
    min_lr: float = 0.0
    warmup_iters: int = 100
    warmup_ratio: float = 1e-6
    grad_clip: float = 0.0  # max gradient norm (0 = off)


@dataclass
class TrainConfig:
    """Loop, distribution, precision, logging and checkpointing."""

    iters: int = 3000
    batch_size: int = 8  # total over devices and accumulation steps
    device_batch: int = 0  # images per device and forward pass (0 = batch_size / world_size)
    grad_accum: int = 0  # 0 = batch_size / (world_size * device_batch)
    amp: Literal["none", "bf16", "fp16"] = "none"  # bf16 on CUDA or CPU; fp16 on CUDA only (float32 on CPU)
    sync_bn: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = 50
    ckpt_every: int = 1000
    eval_every: int = 0  # 0 = evaluate only at the end
    num_workers: int = 2
    deterministic: bool = True  # torch.use_deterministic_algorithms on CPU; cudnn.benchmark off
    progress: bool = True  # tqdm bar on rank 0


@dataclass
class EvalConfig:
    """Evaluation on the validation split: whole image or mmseg's sliding window."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)


@dataclass
class Config:
    """A complete run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    preset: str = ""


# --------------------------------------------------------------------------------------------
# Presets


def synthetic() -> Config:
    """The CPU default: 50-class synthetic scene parsing, 64x64, cnn_tiny from scratch (the book's synthetic benchmark)."""
    return Config(
        # lambda, phi, T of the paper's ablations (1.0, 0.3, 2.0), tau 0.07
        model=ModelConfig(backbone="cnn_tiny", classifier="cbp", length=PAPER_ABLATION.length),
        data=DataConfig(name="synthetic", root="data/synthetic-50", synthetic_classes=50, cat_max_ratio=1.0),
        loss=LossConfig(
            ce_resolution="feature",
            occl=True,
            lam=PAPER_ABLATION.lam,
            phi=PAPER_ABLATION.phi,
            tau=PAPER_TAU,
            views="objects",
        ),
        # the paper's SegFormer recipe (mmseg): decoder and classifier at 10x the encoder's lr (amendment 5)
        optim=OptimConfig(
            name="adamw",
            lr=1e-3,
            head_lr_mult=float(PAPER_HEAD_LR_MULT),
            weight_decay=0.01,
            power=1.0,
            warmup_iters=100,
            warmup_ratio=1e-6,
        ),
        train=TrainConfig(iters=3000, batch_size=8, log_every=50, ckpt_every=500, num_workers=1),
        eval=EvalConfig(mode="whole", crop_size=(64, 64), stride=(43, 43)),
        preset="synthetic",
    )


def synthetic150() -> Config:
    """As :func:`synthetic` with all 150 ADE20K-like classes (the harder v1 set)."""
    cfg = synthetic()
    cfg.data.root = "data/synthetic-150"
    cfg.data.synthetic_classes = 150
    cfg.preset = "synthetic150"
    return cfg


_ADE = {"name": "ade20k", "root": "data/ade/ADEChallengeData2016", "iters": PAPER_ITERS["ade20k"]}
_COCO = {"name": "cocostuff10k", "root": "data/coco_stuff10k", "iters": PAPER_ITERS["cocostuff10k"]}


def _paper(dataset: dict[str, Any], backbone: str) -> Config:
    family = get_spec(backbone).paper_model  # "fcn" | "convnext" | "swin" | "segformer"
    lam, phi, length = PAPER_HPARAMS[(dataset["name"], family)]  # Section 4 (cbp.paper)
    cfg = Config(
        model=ModelConfig(backbone=backbone, classifier="cbp", length=length, aux_head=family != "segformer"),
        data=DataConfig(
            name=dataset["name"],
            root=dataset["root"],
            crop_size=(512, 512),
            scale=(2048, 512),
            ratio_range=(0.5, 2.0),
            cat_max_ratio=0.75,
            flip=True,
            photometric=True,
            test_scale=(2048, 512),
        ),
        loss=LossConfig(ce_resolution="input", occl=True, lam=lam, phi=phi, tau=PAPER_TAU),
        train=TrainConfig(
            iters=dataset["iters"],
            batch_size=16,
            device_batch=2,
            log_every=50,
            ckpt_every=dataset["iters"] // 10,  # 16K (ADE20K), 8K (COCO-Stuff-10K)
            num_workers=4,
            sync_bn=True,
        ),
        eval=EvalConfig(mode="whole", crop_size=(512, 512), stride=(341, 341)),
    )
    cfg.optim = _paper_optim(family)
    if family == "swin":
        cfg.model.img_size = 512
    elif family == "convnext":
        cfg.train.amp = "fp16"
        cfg.eval.mode = "slide"
    return cfg


def _paper_optim(family: str) -> OptimConfig:
    """The optimiser and schedule of a paper model family (mmseg's configs of each model)."""
    if family == "fcn":
        return OptimConfig(
            name="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, power=0.9, min_lr=1e-4, warmup_iters=0
        )
    warmup = {"power": 1.0, "min_lr": 0.0, "warmup_iters": 1500, "warmup_ratio": 1e-6}
    if family == "segformer":
        return OptimConfig(
            name="adamw",
            lr=6e-5,
            betas=(0.9, 0.999),
            weight_decay=0.01,
            head_lr_mult=float(PAPER_HEAD_LR_MULT),
            no_decay_keys=("pos_block", "norm"),
            **warmup,
        )
    if family == "swin":
        return OptimConfig(
            name="adamw",
            lr=6e-5,
            betas=(0.9, 0.999),
            weight_decay=0.01,
            no_decay_keys=("absolute_pos_embed", "relative_position_bias_table", "norm"),
            **warmup,
        )
    if family == "convnext":
        return OptimConfig(
            name="adamw",
            lr=1e-4,
            betas=(0.9, 0.999),
            weight_decay=0.05,
            no_decay_1d=True,
            layer_decay_rate=0.9,
            layer_decay_layers=12,
            **warmup,
        )
    return OptimConfig()  # a family without a recipe of its own: the defaults


def _preset(dataset: dict[str, Any], backbone: str, name: str) -> Callable[[], Config]:
    def make() -> Config:
        cfg = _paper(dataset, backbone)
        cfg.preset = name
        return cfg

    make.__doc__ = f"{dataset['name']}, {get_spec(backbone).paper_model} ({backbone}), paper Section 4."
    return make


def ade20k_ablation_segformer_b0() -> Config:
    """Ablations of Section 4.3: SegFormer-B0 on ADE20K, 40K iterations, lambda 1, phi 0.3, T = 2."""
    cfg = _paper(_ADE, "mit_b0")
    cfg.train.iters = PAPER_ABLATION_ITERS
    cfg.train.ckpt_every = PAPER_ABLATION_ITERS // 10
    cfg.loss.lam, cfg.loss.phi, cfg.model.length = PAPER_ABLATION
    cfg.preset = "ade20k_ablation_segformer_b0"
    return cfg


#: The paper's models of Table 1: preset suffix -> backbone (``<dataset>_<suffix>`` in :data:`PRESETS`).
#: The one table of which backbone each paper preset trains; a backbone's recipe (decoder, lambda,
#: phi, T, optimiser) follows from :attr:`cbp.models.BackboneSpec.paper_model`.
PAPER_PRESETS: dict[str, str] = {
    "fcn_r50": "resnet50",
    "convnext_b": "convnext_b",
    "swin_b": "swin_b",
    **{f"segformer_b{k}": f"mit_b{k}" for k in range(6)},
}
PAPER_DATASETS = ("ade20k", "cocostuff10k")


def preset_for(dataset: str, backbone: str) -> tuple[str, list[str]]:
    """The preset of ``backbone`` on ``dataset`` and the overrides that adapt it.

    Args:
        dataset: "synthetic", "ade20k" or "cocostuff10k".
        backbone: a name of :data:`cbp.models.BACKBONES`.

    Returns:
        (preset name, overrides): ``("ade20k_swin_b", [])``, ``("ade20k_fcn_r50",
        ["--model.backbone=resnet101"])`` (no preset of its own: its family's),
        ``("synthetic", ["--model.backbone=swin_b"])``.
    """
    paper_model = get_spec(backbone).paper_model
    if dataset == "synthetic":
        return "synthetic", [] if backbone == "cnn_tiny" else [f"--model.backbone={backbone}"]
    if dataset not in PAPER_DATASETS:
        raise ValueError(f"dataset must be 'synthetic', 'ade20k' or 'cocostuff10k' (got {dataset!r})")
    for suffix, preset_backbone in PAPER_PRESETS.items():  # the backbone's own preset, if it has one
        if preset_backbone == backbone:
            return f"{dataset}_{suffix}", []
    # else the first preset of its paper model (e.g. resnet101 -> fcn_r50, cnn_tiny -> segformer_b0)
    suffix = next(s for s, b in PAPER_PRESETS.items() if get_spec(b).paper_model == paper_model)
    return f"{dataset}_{suffix}", [f"--model.backbone={backbone}"]


PRESETS: dict[str, Callable[[], Config]] = {"synthetic": synthetic, "synthetic150": synthetic150}
for _ds, _prefix in ((_ADE, "ade20k"), (_COCO, "cocostuff10k")):
    for _suffix, _bb in PAPER_PRESETS.items():
        PRESETS[f"{_prefix}_{_suffix}"] = _preset(_ds, _bb, f"{_prefix}_{_suffix}")
PRESETS["ade20k_ablation_segformer_b0"] = ade20k_ablation_segformer_b0


def get_preset(name: str) -> Config:
    """The preset ``name``; an unknown name raises a ``KeyError`` listing the valid ones."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown preset {name!r}.{hint} Valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]()


# --------------------------------------------------------------------------------------------
# Overrides


class ConfigError(ValueError):
    """A bad override or an inconsistent configuration."""


def _fields(obj: Any) -> dict[str, Any]:
    """Field name -> resolved type annotation of a dataclass (instance or class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return typing.get_type_hints(cls)


def valid_keys(cfg: Config | None = None) -> list[str]:
    """All dotted keys, e.g. ``["model.backbone", ..., "seed"]``."""
    cfg = cfg or Config()
    keys = []
    for name in _fields(cfg):
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value):
            keys += [f"{name}.{sub}" for sub in _fields(value)]
        else:
            keys.append(name)
    return keys


_TRUE = {"1", "true", "yes", "on", "t", "y"}
_FALSE = {"0", "false", "no", "off", "f", "n"}


def _parse(key: str, text: str, tp: Any) -> Any:
    """Parse ``text`` as a value of type ``tp`` for the key ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if text not in choices:
            raise ConfigError(
                f"--{key}={text!r}: expected one of {', '.join(map(str, choices))}; e.g. --{key}={choices[0]}"
            )
        return text
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"--{key}={text!r}: expected a boolean (true/false, 1/0, yes/no)")
    if tp is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            try:
                value = float(text)  # allow 1e3
            except ValueError:
                value = None
            if value is not None and value.is_integer():
                return int(value)
            raise ConfigError(f"--{key}={text!r}: expected an integer, e.g. --{key}=1000") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--{key}={text!r}: expected a number, e.g. --{key}=0.01") from None
        if not math.isfinite(value):  # float() takes "nan" and "inf"; no knob of a run means either
            raise ConfigError(f"--{key}={text!r}: expected a finite number, e.g. --{key}=0.01")
        return value
    if tp is str:
        return text
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p.strip() for p in text.strip().strip("()[]").split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse(key, p, args[0]) for p in parts)
        if len(parts) == 1 and len(args) > 1:  # "512" -> (512, 512)
            parts = parts * len(args)
        if len(parts) != len(args):
            raise ConfigError(
                f"--{key}={text!r}: expected {len(args)} comma-separated values, e.g. --{key}="
                + ",".join("1" for _ in args)
            )
        return tuple(_parse(key, p, a) for p, a in zip(parts, args))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"--{key}: union types are not supported by the parser ({tp})")
    raise ConfigError(f"--{key}: don't know how to parse type {tp}")


def _nearest_hint(cfg: Config, key: str) -> str:
    """' Did you mean --x.y?' for the valid key closest to ``key`` (whole key, then its last part)."""
    keys = valid_keys(cfg)
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in keys}
    leaf = difflib.get_close_matches(key.rsplit(".", 1)[-1], by_leaf, n=1, cutoff=0.6)
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if leaf and ("." not in key or not close):  # --lr -> --optim.lr, --itres -> --train.iters
        close = [by_leaf[leaf[0]]]
    return f" Did you mean --{close[0]}?" if close else ""


def _locate(cfg: Config, key: str) -> tuple[Any, str, Any]:
    """(object holding the field, field name, annotation) of a dotted ``key``; nearest key on error."""
    parts = key.split(".")
    obj: Any = cfg
    for i, part in enumerate(parts):
        hints = _fields(obj) if dataclasses.is_dataclass(obj) else {}
        if part not in hints:
            hint = _nearest_hint(cfg, key)
            raise ConfigError(
                f"unknown config key --{key}.{hint} Valid keys: see `python -m cbp.train --help-keys`"
            )
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(obj, part)):
                raise ConfigError(f"--{key} is a section; set one of its keys, e.g. --{key}.<name>=...")
            return obj, part, hints[part]
        obj = getattr(obj, part)
    raise AssertionError("unreachable")


def set_override(cfg: Config, key: str, text: str) -> None:
    """Set the dotted ``key`` of ``cfg`` from the string ``text`` (type-checked)."""
    obj, name, tp = _locate(cfg, key)
    setattr(obj, name, _parse(key, text, tp))


def apply_overrides(cfg: Config, args: list[str]) -> Config:
    """Apply ``--section.key=value`` (or ``--section.key value``) arguments to ``cfg`` in place."""
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: overrides look like --section.key=value")
        body = arg[2:]
        if "=" in body:
            key, text = body.split("=", 1)
        else:
            key = body
            _locate(cfg, key)  # unknown key errors before a missing value
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                _, _, tp = _locate(cfg, key)
                if tp is bool:  # a bare --loss.occl means true
                    text = "true"
                else:
                    raise ConfigError(f"--{key} needs a value: --{key}=VALUE")
            else:
                i += 1
                text = args[i]
        set_override(cfg, key, text)
        i += 1
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Cross-field checks with messages that say how to fix them."""
    t = cfg.train
    if t.iters < 1:
        raise ConfigError(f"train.iters must be >= 1 (got {t.iters})")
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size must be >= 1 (got {t.batch_size})")
    for key in ("log_every", "ckpt_every"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1 (got {getattr(t, key)})")
    if t.eval_every < 0 or t.grad_accum < 0 or t.device_batch < 0 or t.num_workers < 0:
        raise ConfigError("train.eval_every, grad_accum, device_batch and num_workers must be >= 0")
    if cfg.optim.warmup_iters < 0 or not 0 < cfg.optim.warmup_ratio <= 1:
        raise ConfigError("optim.warmup_iters must be >= 0 and optim.warmup_ratio in (0, 1]")
    if cfg.loss.occl and cfg.loss.views == "batch" and t.batch_size < 2:
        raise ConfigError("OCCL with loss.views=batch needs train.batch_size >= 2 (two halves of the batch)")
    if not (cfg.loss.ce or cfg.loss.occl):
        raise ConfigError("both loss.ce and loss.occl are off: nothing to train; turn one on")
    if cfg.optim.lr < 0:
        raise ConfigError(f"optim.lr must be >= 0 (got {cfg.optim.lr}); e.g. --optim.lr=6e-5")
    if cfg.optim.weight_decay < 0 or cfg.optim.min_lr < 0 or cfg.optim.grad_clip < 0:
        raise ConfigError("optim.weight_decay, optim.min_lr and optim.grad_clip must be >= 0")
    if not cfg.loss.tau > 0:
        raise ConfigError(
            f"loss.tau must be > 0 (got {cfg.loss.tau}): it divides the similarities of Eq. 4-5; the paper "
            "uses --loss.tau=0.07"
        )
    if cfg.loss.lam < 0 or cfg.loss.phi < 0 or cfg.loss.aux_weight < 0:
        raise ConfigError("loss.lam, loss.phi and loss.aux_weight must be >= 0 (loss weights)")
    if not cfg.model.length > 0:
        raise ConfigError(f"model.length (T, the prototypes' norm) must be > 0 (got {cfg.model.length})")
    if not 0 <= cfg.model.ema_momentum < 1:
        raise ConfigError(f"model.ema_momentum must be in [0, 1) (got {cfg.model.ema_momentum})")
    sizes = {
        "data.crop_size": cfg.data.crop_size,
        "data.scale": cfg.data.scale,
        "data.test_scale": cfg.data.test_scale,
        "eval.crop_size": cfg.eval.crop_size,
        "eval.stride": cfg.eval.stride,
    }
    for key, size in sizes.items():
        if min(size) < 1:
            raise ConfigError(f"{key} must be positive (got {','.join(map(str, size))})")


# --------------------------------------------------------------------------------------------
# Serialisation


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain JSON-able dict (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _check_value(key: str, value: Any, tp: Any, source: str) -> Any:
    """``value`` read from JSON for the field ``key`` of type ``tp``, type-checked as an override is.

    JSON lists become tuples; an integral float is accepted for an int and an int for a float; a bool
    is not a number.
    """

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key}={value!r}: expected {expected}; fix the value in {source}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if not isinstance(value, str) or value not in choices:
            raise bad(f"one of {', '.join(map(str, choices))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if not math.isfinite(value):  # json reads NaN and Infinity
            raise bad("a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise bad(f"a list of {'values' if args[-1] is Ellipsis else len(args)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(key, v, args[0], source) for v in value)
        if len(value) != len(args):
            raise bad(f"a list of {len(args)} values")
        return tuple(_check_value(key, v, a, source) for v, a in zip(value, args))
    raise ConfigError(f"{source}: {key}: don't know how to check type {tp}")


def from_dict(data: dict[str, Any], *, source: str = "config") -> Config:
    """Inverse of :func:`to_dict`, type-checked like the overrides; unknown keys are an error.

    Args:
        data: ``{"model": {...}, "data": {...}, ..., "seed": 0, "preset": "..."}`` (keys left out keep
            their defaults).
        source: what the dict was read from (a file name), for the error messages.

    Raises:
        ConfigError: an unknown key (with the nearest valid one) or a value of the wrong type.
    """
    cfg = Config()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object of config sections, got {type(data).__name__}")
    for key, value in data.items():
        section = getattr(cfg, key, None)
        items = value.items() if isinstance(value, dict) else [(None, value)]
        if dataclasses.is_dataclass(section) and not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} is a section and needs a JSON object, got {value!r}")
        for sub, v in items:
            dotted = key if sub is None else f"{key}.{sub}"
            try:
                obj, name, tp = _locate(cfg, dotted)
            except ConfigError as e:
                raise ConfigError(f"{source}: {e} (a config of another version of cbp?)") from None
            setattr(obj, name, _check_value(dotted, v, tp, source))
    return cfg


#: The largest ``--config`` file read (a run's ``config.json`` is about 2 KB, a record embedding one
#: tens of KB); a larger file is refused from its size, before it is read.
MAX_CONFIG_BYTES = 1 << 20


def read_config_file(path: str | Path) -> Config:
    """The config stored in ``path``: a run's ``config.json``, or a JSON record that embeds one under
    ``"config"`` (``metrics.json``, ``eval-*.json``); the base of ``--config FILE``.

    Raises:
        FileNotFoundError: no such file (exit code 4, as an unreadable one).
        ConfigError: (exit code 2) over :data:`MAX_CONFIG_BYTES` (refused from its size, before it is
            read), not UTF-8, not JSON, nested too deeply for the parser, or not a config (unknown keys,
            wrong types).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config file {path} not found: pass a run's config.json (python -m cbp.train writes one in --out)"
        )
    size, raw = path.stat().st_size, b""
    if size <= MAX_CONFIG_BYTES:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)  # a file that grew since stat() is cut at the limit too
    if max(size, len(raw)) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path} is {max(size, len(raw)) / 2**20:.1f} MB, more than a config file holds (at most "
            f"{MAX_CONFIG_BYTES // 2**20} MB); pass a run's config.json"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); pass a run's config.json"
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); pass a run's config.json") from None
    except RecursionError:
        raise ConfigError(
            f"{path} is nested too deeply for the JSON parser (a config is two levels deep); pass a run's "
            "config.json"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict) and "model" not in data:
        data = data["config"]
    return from_dict(data, source=str(path))


def diff(a: Config, b: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ: key -> (a's value, b's value)."""
    da, db = to_dict(a), to_dict(b)
    out = {}
    for key in valid_keys(a):
        va, vb = da, db
        for part in key.split("."):
            va, vb = va[part], vb[part]
        if va != vb:
            out[key] = (va, vb)
    return out


def format_keys(cfg: Config) -> str:
    """Every key with its type and current value, one a line (``--help-keys``)."""
    lines = []
    for key in valid_keys(cfg):
        obj, name, tp = _locate(cfg, key)
        tname = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
        if typing.get_origin(tp) is Literal:
            tname = "|".join(map(str, typing.get_args(tp)))
        lines.append(f"  --{key}={getattr(obj, name)!r}  ({tname})")
    return "\n".join(lines)
