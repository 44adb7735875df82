"""One source of defaults: the library's constructors, the engine config and the paper's numbers agree.

Every default is read from the code itself (``inspect.signature``, ``dataclasses.fields``, the
presets), never retyped here, so a default changed in one place and not in the other fails:

* :class:`cbp.OCCL`, :class:`cbp.CBPHead`, :func:`cbp.models.create_model` and
  :func:`cbp.category_basis_prototypes` default to what :mod:`cbp.engine.config` (its dataclasses and
  the ``synthetic`` preset) uses: views, tau, lambda, phi, T, the prototype update's settings;
* the engine passes each of those arguments explicitly, so its runs never depend on a library default;
* the paper's numbers (tau, lambda, phi, T, iterations) are written only in :mod:`cbp.paper`.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import cbp
from cbp import paper
from cbp.engine import build
from cbp.engine.config import PRESETS, LossConfig, ModelConfig, get_preset
from cbp.models import create_model
from cbp.models.builder import get_spec

ROOT = Path(cbp.__file__).resolve().parent

#: library argument -> config field of the same knob (the config's name where it differs).
OCCL_ARGS = {
    "tau": "tau",
    "lam": "lam",
    "phi": "phi",
    "views": "views",
    "normalize": "normalize",
    "class_reduction": "class_reduction",
    "category_form": "category_form",
    "ignore_index": "ignore_index",
}
CBP_HEAD_ARGS = {
    "length": "length",
    "init": "init",
    "update": "update",
    "seed": "proto_seed",
    "momentum": "ema_momentum",
    "penalty_weight": "penalty_weight",
    "penalty_form": "penalty_form",
}
CREATE_MODEL_ARGS = {
    "classifier": "classifier",
    "length": "length",
    "init": "init",
    "update": "update",
    "proto_seed": "proto_seed",
    "momentum": "ema_momentum",
    "penalty_weight": "penalty_weight",
    "penalty_form": "penalty_form",
    "dropout": "dropout",
}
PROTOTYPE_ARGS = {"length": "length", "init": "init", "seed": "proto_seed"}


def signature_defaults(fn: Any) -> dict[str, Any]:
    """Argument -> default of a function or class (its ``__init__``)."""
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def field_defaults(cls: type) -> dict[str, Any]:
    """Field -> default of a config dataclass."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _pairs(fn: Any, args: dict[str, str], section: Any) -> list[tuple[str, Any, Any]]:
    """(argument, library default, config value) for each argument of ``args``."""
    lib = signature_defaults(fn)
    values = section if isinstance(section, dict) else dataclasses.asdict(section)
    return [(arg, lib[arg], values[key]) for arg, key in args.items()]


CASES = [
    (cbp.OCCL, OCCL_ARGS, "loss"),
    (cbp.CBPHead, CBP_HEAD_ARGS, "model"),
    (create_model, CREATE_MODEL_ARGS, "model"),
    (cbp.category_basis_prototypes, PROTOTYPE_ARGS, "model"),
]


@pytest.mark.parametrize("fn, args, section", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_library_defaults_equal_config_dataclass_defaults(
    fn: Any, args: dict[str, str], section: str
) -> None:
    config = {"loss": field_defaults(LossConfig), "model": field_defaults(ModelConfig)}[section]
    for arg, lib, cfg in _pairs(fn, args, config):
        assert lib == cfg and type(lib) is type(cfg), (
            f"{fn.__name__}({arg}={lib!r}) vs {section}.{arg}={cfg!r}"
        )


@pytest.mark.parametrize("fn, args, section", CASES, ids=lambda c: getattr(c, "__name__", None))
def test_library_defaults_equal_synthetic_preset(fn: Any, args: dict[str, str], section: str) -> None:
    """The CPU preset the study runs (views, tau, lambda, phi, T, penalty weight...) is the library's default."""
    preset = getattr(get_preset("synthetic"), section)
    for arg, lib, cfg in _pairs(fn, args, preset):
        assert lib == cfg, f"{fn.__name__}({arg}={lib!r}) vs synthetic {section}.{arg}={cfg!r}"


def test_the_named_defaults_agree_everywhere() -> None:
    """The knobs the issue names, side by side: views, tau, lambda, phi, T and the penalty weight."""
    occl, head, model = (signature_defaults(f) for f in (cbp.OCCL, cbp.CBPHead, create_model))
    loss, mcfg = field_defaults(LossConfig), field_defaults(ModelConfig)
    syn = get_preset("synthetic")
    assert occl["views"] == loss["views"] == syn.loss.views == "objects"  # protocol amendment 5
    assert occl["tau"] == loss["tau"] == syn.loss.tau == paper.PAPER_TAU
    assert occl["lam"] == loss["lam"] == syn.loss.lam == paper.PAPER_ABLATION.lam
    assert occl["phi"] == loss["phi"] == syn.loss.phi == paper.PAPER_ABLATION.phi
    assert (
        head["length"] == model["length"] == mcfg["length"] == syn.model.length == paper.PAPER_ABLATION.length
    )
    assert head["penalty_weight"] == model["penalty_weight"] == mcfg["penalty_weight"]
    assert syn.model.penalty_weight == mcfg["penalty_weight"]


def test_engine_passes_every_shared_argument_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    """``build_model`` / ``build_occl`` hand every config value over, so no run depends on a library
    default: each call's keyword arguments hold every argument of the tables above, with the config's value."""
    calls: dict[str, dict[str, Any]] = {}

    def spy(name: str):
        def record(*args: Any, **kwargs: Any) -> None:
            calls[name] = kwargs

        return record

    monkeypatch.setattr(build, "create_model", spy("create_model"))
    monkeypatch.setattr(build, "OCCL", spy("OCCL"))
    cfg = get_preset("synthetic")
    # values other than every default, so that a value passed through cannot be a default by chance
    cfg.model.length, cfg.model.update, cfg.model.proto_seed, cfg.model.ema_momentum = 3.5, "ema", 7, 0.5
    cfg.model.penalty_weight, cfg.model.penalty_form, cfg.model.dropout = 0.25, "absolute", 0.0
    cfg.model.init = "orthogonal"
    cfg.loss.tau, cfg.loss.lam, cfg.loss.phi, cfg.loss.views = 0.5, 0.4, 0.1, "random"
    cfg.loss.normalize, cfg.loss.class_reduction, cfg.loss.category_form = False, "sum", "printed"
    cfg.loss.ignore_index = 254
    build.build_model(cfg, 5)
    build.build_occl(cfg)
    model_cfg, loss_cfg = dataclasses.asdict(cfg.model), dataclasses.asdict(cfg.loss)
    for arg, key in CREATE_MODEL_ARGS.items():
        assert arg in calls["create_model"], f"build_model leaves create_model's {arg} at its default"
        assert calls["create_model"][arg] == model_cfg[key], arg
    for arg, key in OCCL_ARGS.items():
        assert arg in calls["OCCL"], f"build_occl leaves OCCL's {arg} at its default"
        assert calls["OCCL"][arg] == loss_cfg[key], arg


def test_create_model_passes_its_arguments_to_the_head() -> None:
    """``create_model``'s classifier arguments reach :class:`cbp.CBPHead` (a default of the head cannot
    take over): a model built with non-default values carries them."""
    model = create_model("cnn_tiny", 4, length=3.0, update="penalty", penalty_weight=0.25, momentum=0.5)
    head = model.classifier
    assert (head.length, head.update, head.penalty_weight, head.momentum) == (3.0, "penalty", 0.25, 0.5)


# --------------------------------------------------------------------------------------------
# The paper's numbers: written in cbp.paper only, taken from there by the presets


def test_paper_presets_take_the_paper_settings() -> None:
    for name in PRESETS:
        cfg = get_preset(name)
        if cfg.data.name == "synthetic":
            continue
        family = get_spec(cfg.model.backbone).paper_model
        if "ablation" in name:
            want, iters = paper.PAPER_ABLATION, paper.PAPER_ABLATION_ITERS
        else:
            want, iters = paper.PAPER_HPARAMS[(cfg.data.name, family)], paper.PAPER_ITERS[cfg.data.name]
        assert (cfg.loss.lam, cfg.loss.phi, cfg.model.length) == tuple(want), name
        assert cfg.train.iters == iters and cfg.loss.tau == paper.PAPER_TAU, name


def _numbers(path: Path) -> list[tuple[int, float]]:
    """(line, value) of every numeric literal of a module."""
    tree = ast.parse(path.read_text())
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float)
    ]


def _paper_results() -> set[float]:
    """The paper's reported numbers that no setting of this project shares by chance: every mIoU and mAcc
    of its ablation tables, Table 8, Fig. 5's F1, Table 7's deltas and the norm correlation."""
    arms = {v for pair in paper.PAPER_ARMS.values() for v in pair if v is not None}
    table8 = {v for pair in paper.PAPER_TABLE8.values() for v in pair if v}
    table7 = {abs(v) for v in paper.PAPER_TABLE7_DELTA.values() if v}
    return arms | table8 | table7 | {*paper.PAPER_RAREST_GROUP_F1.values(), paper.PAPER_NORM_CORRELATION}


@pytest.mark.parametrize(
    "module",
    sorted(str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py") if p.name != "paper.py"),
)
def test_paper_numbers_are_not_retyped(module: str) -> None:
    """tau, the iteration counts and the paper's results appear as literals in cbp/paper.py only."""
    settings = {paper.PAPER_TAU, paper.PAPER_ABLATION_ITERS, *paper.PAPER_ITERS.values()}
    results = _paper_results()
    found = [
        (line, v)
        for line, v in _numbers(ROOT / module)
        if v in settings or (isinstance(v, float) and v in results)
    ]
    assert not found, f"cbp/{module} retypes paper numbers {found}: import them from cbp.paper"


def test_the_paper_numbers_check_finds_a_retyped_number(tmp_path: Path) -> None:
    """The scan above sees a retyped result (33.4) and ignores an integer that equals one by chance (32)."""
    module = tmp_path / "m.py"
    module.write_text("TARGET = 33.4\nWIDTH = 32\n")
    results = _paper_results()
    assert [v for _, v in _numbers(module) if isinstance(v, float) and v in results] == [33.4]


def test_readme_api_example_runs_the_studys_reading(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ten-line API example runs as printed, with the study's OCCL reading (views "objects",
    the paper's tau, lambda, phi and T), and prints a finite loss, an mIoU and CS = 0 (Eq. 8)."""
    import re

    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert 'views="objects"' in code and f"tau={paper.PAPER_TAU}" in code
    assert f"lam={paper.PAPER_ABLATION.lam}" in code and f"phi={paper.PAPER_ABLATION.phi}" in code
    assert code.count(f"length={paper.PAPER_ABLATION.length}") == 2
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), {})
    loss, miou, cs = (float(x) for x in capsys.readouterr().out.split())
    assert math.isfinite(loss) and 0.0 <= miou <= 100.0 and abs(cs) < 1e-5
