"""ConvNeXt's stage-wise learning-rate decay (``cbp.engine.optim``) against rates worked out by hand.

The documented rule (``cbp/engine/optim.py``, ``cbp/engine/config.py``: mmseg's
``LearningRateDecayOptimizerConstructor`` with ``decay_type="stage_wise"``, ``num_layers=12``, decay
0.9, as mmseg's ConvNeXt config): with ``L = num_layers + 2 = 14``, a parameter of stage id ``s`` has
the rate ``lr x 0.9 ** (L - s - 1)``, where mmseg's ``get_stage_id_for_convnext`` gives

* the stem and the downsampling layers (``backbone.downsample_layers.*``): ``s = 0`` -> ``0.9 ** 13``;
* stage i (``backbone.stages.i.*``): ``s = i + 1`` -> ``0.9 ** (12 - i)``;
* everything else, the decode and auxiliary heads and the backbone's per-output norms
  ``backbone.norm0..3``: ``s = L - 1`` -> ``0.9 ** 0 = 1``.

The exponents below are written out per parameter name (not computed by the rule under test), for a
hand-made module named as cbp's ConvNeXt segmentor is (timm's ``stem_0``, ``stages_i.downsample``,
``stages_i.blocks``, cbp's ``out_norms.i`` for mmseg's ``norm{i}``) and for the real ``convnext_atto``.
"""

from __future__ import annotations

import re

import pytest
from torch import nn

from cbp.engine.config import OptimConfig, get_preset
from cbp.engine.optim import build_optimizer, param_groups, poly_lr, set_lr

LR, RATE = 1e-4, 0.9


def _cfg() -> OptimConfig:
    """The ConvNeXt presets' optimiser (lr 1e-4, stage-wise decay 0.9 over 12 layers, no decay on 1-D)."""
    cfg = get_preset("ade20k_convnext_b").optim
    assert (cfg.lr, cfg.layer_decay_rate, cfg.layer_decay_layers, cfg.no_decay_1d) == (LR, RATE, 12, True)
    assert cfg.head_lr_mult == 1.0
    return cfg


class _Stage(nn.Module):
    def __init__(self, downsample: bool) -> None:
        super().__init__()
        self.downsample = nn.Sequential(nn.LayerNorm(4), nn.Conv2d(4, 4, 2)) if downsample else None
        self.blocks = nn.Sequential(nn.Conv2d(4, 4, 1))


class _Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.stem_0 = nn.Conv2d(3, 4, 4)
        self.model.stem_1 = nn.LayerNorm(4)
        for i in range(4):
            setattr(self.model, f"stages_{i}", _Stage(downsample=i > 0))
        self.out_norms = nn.ModuleList([nn.LayerNorm(4) for _ in range(4)])


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = _Encoder()
        self.decoder = nn.Conv2d(4, 4, 3)
        self.aux_head = nn.Conv2d(4, 4, 1)
        self.classifier = nn.Conv2d(4, 3, 1)


#: Parameter-name prefix -> exponent of 0.9, by hand from the rule in the module docstring.
HAND_EXPONENTS = {
    "encoder.model.stem_0.": 13,  # mmseg downsample_layers.0 (the stem): s = 0
    "encoder.model.stem_1.": 13,
    "encoder.model.stages_0.blocks.": 12,  # stage 0: s = 1
    "encoder.model.stages_1.downsample.": 13,  # mmseg downsample_layers.1: s = 0
    "encoder.model.stages_1.blocks.": 11,  # stage 1: s = 2
    "encoder.model.stages_2.downsample.": 13,
    "encoder.model.stages_2.blocks.": 10,  # stage 2: s = 3
    "encoder.model.stages_3.downsample.": 13,
    "encoder.model.stages_3.blocks.": 9,  # stage 3: s = 4
    "encoder.out_norms.": 0,  # mmseg backbone.norm0..3: the "else" branch, s = L - 1
    "decoder.": 0,
    "aux_head.": 0,
    "classifier.": 0,
}


def _exponent(name: str) -> int:
    (exp,) = [e for prefix, e in HAND_EXPONENTS.items() if name.startswith(prefix)]
    return exp


def _rates(model: nn.Module, cfg: OptimConfig) -> dict[str, tuple[float, float]]:
    """Parameter name -> (base lr, weight decay) of its group."""
    return {name: (g["base_lr"], g["weight_decay"]) for g in param_groups(model, cfg) for name in g["names"]}


def test_stage_wise_rates_of_a_hand_made_convnext() -> None:
    cfg = _cfg()
    model = _Toy()
    rates = _rates(model, cfg)
    names = [n for n, _ in model.named_parameters()]
    assert sorted(rates) == sorted(names)  # every parameter in exactly one group
    for name in names:
        lr, wd = rates[name]
        assert lr == pytest.approx(LR * RATE ** _exponent(name), rel=1e-12), name
        one_d = dict(model.named_parameters())[name].ndim == 1  # biases and norms: no weight decay
        assert wd == (0.0 if one_d else 0.05), name
    # spot values written out: the stem at 0.9^13 = 0.254..., stage 3 at 0.9^9 = 0.387..., heads at 1
    assert rates["encoder.model.stem_0.weight"][0] == pytest.approx(2.5418658283290005e-05)
    assert rates["encoder.model.stages_3.blocks.0.weight"][0] == pytest.approx(3.874204890000001e-05)
    assert rates["encoder.out_norms.0.weight"][0] == pytest.approx(1e-4)
    assert rates["classifier.weight"][0] == pytest.approx(1e-4)


def test_stage_wise_rates_of_convnext_atto_and_the_scheduled_lr() -> None:
    """The real model's names (timm convnext_atto + UPerNet + CBP): each group's rate by hand, and
    ``set_lr`` scales every group's own rate by the same poly / warm-up factor."""
    from cbp.engine.build import build_model

    cfg = get_preset("ade20k_convnext_b")
    cfg.model.backbone = "convnext_atto"
    model = build_model(cfg, 5)
    rates = _rates(model, cfg.optim)
    stage = re.compile(r"encoder\.model\.stages_(\d)\.blocks\.")
    for name, (lr, _) in rates.items():
        if m := stage.match(name):
            exp = 12 - int(m.group(1))
        elif name.startswith(("encoder.model.stem_", "encoder.model.stages_")):  # stem, downsample
            assert name.startswith("encoder.model.stem_") or ".downsample." in name, name
            exp = 13
        else:
            assert not name.startswith("encoder.model."), name
            exp = 0  # out_norms, decoder, auxiliary head, classifier
        assert lr == pytest.approx(LR * RATE**exp, rel=1e-12), name
    assert {round(lr / LR, 12) for lr, _ in rates.values()} == {
        round(RATE**e, 12) for e in (0, 9, 10, 11, 12, 13)
    }
    optimizer = build_optimizer(model, cfg.optim)
    it, total = 700, cfg.train.iters  # inside the 1500-iteration warm-up
    first = set_lr(optimizer, it, total, cfg.optim)
    for group in optimizer.param_groups:
        assert group["lr"] == pytest.approx(poly_lr(group["base_lr"], it, total, cfg.optim), rel=1e-12)
        assert group["lr"] / group["base_lr"] == pytest.approx(first / optimizer.param_groups[0]["base_lr"])
