"""Config tree, presets and ``--section.key=value`` overrides; CLI errors of ``python -m cbp.train``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cbp.engine.train as train
from cbp.engine.command import parse_args
from cbp.engine.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    diff,
    from_dict,
    get_preset,
    read_config_file,
    to_dict,
    valid_keys,
)

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_are_typed() -> None:
    cfg = apply_overrides(
        get_preset("synthetic"),
        [
            "--train.iters=12",
            "--seed",
            "5",
            "--optim.lr=3e-4",
            "--loss.occl=false",
            "--loss.ce=yes",
            "--model.classifier=linear",
            "--data.crop_size=32",
            "--optim.betas=(0.8, 0.99)",
            "--optim.no_decay_keys=norm,pos_block",
            "--data.root=/x/y",
            "--train.iters=1e3",
            "--model.aux_head",
        ],
    )
    assert cfg.train.iters == 1000 and isinstance(cfg.train.iters, int)
    assert cfg.seed == 5 and cfg.optim.lr == 3e-4
    assert cfg.loss.occl is False and cfg.loss.ce is True and cfg.model.aux_head is True
    assert cfg.model.classifier == "linear"
    assert cfg.data.crop_size == (32, 32) and cfg.optim.betas == (0.8, 0.99)
    assert cfg.optim.no_decay_keys == ("norm", "pos_block") and cfg.data.root == "/x/y"


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("--train.iters=ten", "expected an integer"),
        ("--train.iters=1.5", "expected an integer"),
        ("--optim.lr=fast", "expected a number"),
        ("--loss.occl=maybe", "expected a boolean"),
        ("--model.classifier=mlp", "expected one of cbp, linear"),
        ("--train.amp=fp8", "expected one of none, bf16, fp16"),
        ("--data.crop_size=1,2,3", "expected 2 comma-separated values"),
        ("--model=cbp", "is a section"),
        ("--train.iters", "needs a value"),
        ("--train.iters=0", "train.iters must be >= 1"),
    ],
)
def test_override_type_errors(arg: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_preset("synthetic"), [arg])


@pytest.mark.parametrize(
    ("arg", "nearest"),
    [
        ("--train.itres=3", "--train.iters"),
        ("--trian.iters=3", "--train.iters"),
        ("--lr=3", "--optim.lr"),
        ("--loss.lambda=1", "--loss.lam"),
        ("--seeed=1", "--seed"),
        ("--data.rot=/d", "--data.root"),
    ],
)
def test_unknown_key_suggests_nearest(arg: str, nearest: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown config key .*Did you mean {nearest}\\?"):
        apply_overrides(get_preset("synthetic"), [arg])


def test_round_trip_and_diff() -> None:
    cfg = apply_overrides(get_preset("ade20k_swin_b"), ["--train.iters=7", "--optim.betas=0.8,0.9"])
    back = from_dict(to_dict(cfg))
    assert back == cfg and isinstance(back.optim.betas, tuple)
    other = from_dict(to_dict(cfg))
    other.loss.phi = 0.5
    assert diff(cfg, other) == {"loss.phi": (0.2, 0.5)}
    assert len(valid_keys()) == len(set(valid_keys())) > 50


def test_presets_cover_the_paper_table() -> None:
    # (lambda, phi, length) of the paper's Section 4
    table = {
        "ade20k_fcn_r50": (0.4, 0.1, 2.0),
        "ade20k_convnext_b": (1.0, 0.2, 2.0),
        "ade20k_swin_b": (1.0, 0.2, 1.0),
        "ade20k_ablation_segformer_b0": (1.0, 0.3, 2.0),
        "cocostuff10k_fcn_r50": (1.0, 0.3, 0.3),
        "cocostuff10k_convnext_b": (1.0, 0.3, 3.0),
        "cocostuff10k_swin_b": (1.0, 0.3, 2.0),
        **{f"ade20k_segformer_b{k}": (1.0, 0.1, 1.0) for k in range(6)},
        **{f"cocostuff10k_segformer_b{k}": (1.0, 0.1, 1.0) for k in range(6)},
    }
    assert set(table) | {"synthetic", "synthetic150"} == set(PRESETS)
    for name, (lam, phi, length) in table.items():
        cfg = get_preset(name)
        assert (cfg.loss.lam, cfg.loss.phi, cfg.model.length, cfg.loss.tau) == (lam, phi, length, 0.07), name
        assert cfg.train.batch_size == 16 and cfg.data.crop_size == (512, 512) and cfg.preset == name
        want_iters = 40_000 if "ablation" in name else 160_000 if name.startswith("ade20k") else 80_000
        assert cfg.train.iters == want_iters, name
        apply_overrides(cfg, [])  # validates
    fcn = get_preset("ade20k_fcn_r50").optim
    assert (fcn.name, fcn.lr, fcn.momentum, fcn.weight_decay, fcn.power, fcn.min_lr) == (
        "sgd",
        0.01,
        0.9,
        5e-4,
        0.9,
        1e-4,
    )
    seg = get_preset("cocostuff10k_segformer_b5").optim
    assert (seg.name, seg.lr, seg.betas, seg.weight_decay, seg.head_lr_mult) == (
        "adamw",
        6e-5,
        (0.9, 0.999),
        0.01,
        10.0,
    )
    assert (seg.warmup_iters, seg.warmup_ratio, seg.power, seg.min_lr) == (1500, 1e-6, 1.0, 0.0)
    assert get_preset("ade20k_swin_b").optim.head_lr_mult == 1.0  # mmseg's Swin config has no head lr x10
    assert (
        get_preset("ade20k_fcn_r50").model.aux_head and not get_preset("ade20k_segformer_b0").model.aux_head
    )


def test_synthetic_preset_is_the_cpu_default() -> None:
    cfg = get_preset("synthetic")
    assert cfg == PRESETS["synthetic"]() and isinstance(cfg, Config)
    assert (cfg.data.name, cfg.data.synthetic_classes, cfg.model.backbone) == ("synthetic", 50, "cnn_tiny")
    assert (
        cfg.data.crop_size == (64, 64) and cfg.train.batch_size == 8 and cfg.loss.ce_resolution == "feature"
    )
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.warmup_iters) == (
        "adamw",
        1e-3,
        0.01,
        100,
    )
    assert (cfg.model.length, cfg.loss.tau, cfg.loss.lam, cfg.loss.phi) == (2.0, 0.07, 1.0, 0.3)
    assert not cfg.data.flip  # the orientation cue of the synthetic set
    assert get_preset("synthetic150").data.synthetic_classes == 150


def test_unknown_preset_lists_presets() -> None:
    with pytest.raises(
        KeyError, match="Did you mean 'synthetic'.*Valid presets: synthetic, synthetic150, ade20k_fcn_r50"
    ):
        get_preset("synthetc")


@pytest.mark.filterwarnings(
    "ignore:Unable to enable fault handler:UserWarning"
)  # torch's @record, captured stderr
def test_cli_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as e:
        train.cli(["--preset=nope", f"--out={tmp_path}"])
    assert e.value.code == 2
    assert "[cbp.train] error: unknown preset 'nope'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):  # main raises, cli reports
        train.main(["--preset=nope", f"--out={tmp_path}"])
    with pytest.raises(SystemExit):
        train.cli([f"--out={tmp_path}", "--optim.lrr=1"])
    assert "Did you mean --optim.lr?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train.cli(["--train.iters=3"])
    assert e.value.code == 2 and "--out RUN_DIR is required" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        parse_args(["--list-presets"])
    assert e.value.code == 0 and "ade20k_ablation_segformer_b0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("train.iters", "100", "expected an integer"),
        ("train.iters", 1.5, "expected an integer"),
        ("train.iters", True, "expected an integer"),
        ("optim.lr", "1e-3", "expected a number"),
        ("optim.lr", False, "expected a number"),
        ("loss.occl", 1, "expected true or false"),
        ("loss.ce_resolution", "pixels", "expected one of input, feature"),
        ("model.backbone", 3, "expected a string"),
        ("data.crop_size", [64], "expected a list of 2 values"),
        ("data.crop_size", 64, "expected a list of 2"),
        ("data.crop_size", [64, "x"], "expected an integer"),
        ("optim.no_decay_keys", ["norm", 1], "expected a string"),
    ],
)
def test_from_dict_type_checks_like_the_overrides(key: str, value: object, message: str) -> None:
    data = to_dict(get_preset("synthetic"))
    section, name = key.split(".")
    data[section][name] = value
    with pytest.raises(ConfigError, match=f"run/config.json: {key}=.*{message}"):
        from_dict(data, source="run/config.json")


def test_from_dict_accepts_what_json_gives() -> None:
    data = to_dict(get_preset("synthetic"))
    data["optim"]["lr"] = 1  # an int for a float
    data["train"]["iters"] = 200.0  # an integral float for an int
    cfg = from_dict(data)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.train.iters == 200 and isinstance(cfg.train.iters, int)
    assert cfg.data.crop_size == (64, 64) and isinstance(cfg.data.crop_size, tuple)
    with pytest.raises(
        ConfigError, match="unknown config key --model.backbon.*Did you mean --model.backbone"
    ):
        from_dict({"model": {"backbon": "x"}})
    with pytest.raises(ConfigError, match="model is a section"):
        from_dict({"model": "cnn_tiny"})


def test_config_file_is_a_base_with_overrides_on_top(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--config FILE`` (a run's config.json, or a record embedding one) then overrides, as Lightning's CLI."""
    base = apply_overrides(get_preset("ade20k_swin_b"), ["--train.iters=7", "--seed=3"])
    path = tmp_path / "config.json"
    path.write_text(json.dumps(to_dict(base)))
    cfg, out = parse_args(["--config", str(path), "--out", str(tmp_path / "r"), "--loss.phi=0.5"])
    assert out == tmp_path / "r"
    assert diff(base, cfg) == {"loss.phi": (0.2, 0.5)}  # everything else from the file, not a preset
    record = tmp_path / "metrics.json"
    record.write_text(json.dumps({"mIoU": 1.0, "config": to_dict(base)}))
    assert read_config_file(record) == base
    with pytest.raises(SystemExit) as e:
        parse_args(["--config", str(path), "--print-config", "--train.iters=9"])
    printed = json.loads(capsys.readouterr().out)
    assert e.value.code == 0 and printed["train"]["iters"] == 9 and printed["seed"] == 3


@pytest.mark.slow
def test_cli_subprocess_reports_nearest_key(tmp_path: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cbp.train",
            "--preset",
            "synthetic",
            "--out",
            str(tmp_path),
            "--train.iter=5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Did you mean --train.iters?" in r.stderr
    assert not (tmp_path / "config.json").exists()


def test_reading_overrides_reach_the_head_and_the_loss() -> None:
    """The alternative readings of the "Reading the paper" page are config keys that reach the objects."""
    from cbp.engine.build import build_model, build_occl

    cfg = apply_overrides(
        get_preset("synthetic"),
        [
            "--model.update=penalty",
            "--model.penalty_form=absolute",
            "--model.penalty_weight=0.05",
            "--model.ema_momentum=0.9",
            "--loss.class_reduction=sum",
            "--loss.category_form=printed",
            "--loss.views=random",
            "--loss.normalize=false",
        ],
    )
    head = build_model(cfg, num_classes=5).classifier
    assert (head.penalty_form, head.penalty_weight, head.momentum) == ("absolute", 0.05, 0.9)
    occl = build_occl(cfg, seed=3)
    assert (occl.class_reduction, occl.category_form, occl.views, occl.normalize) == (
        "sum",
        "printed",
        "random",
        False,
    )
    assert build_occl(apply_overrides(cfg, ["--loss.occl=false"])) is None
    with pytest.raises(ConfigError, match="category_form"):
        apply_overrides(cfg, ["--loss.category_form=literal"])


def test_every_float_key_refuses_nan_and_inf() -> None:
    """No knob of a run means NaN or infinity: every float field (and float in a tuple) refuses them at
    parsing, on the command line and in a --config file."""
    import typing

    from cbp.engine.config import _locate

    cfg = Config()
    floats = []
    for key in valid_keys(cfg):
        _, _, tp = _locate(cfg, key)
        if tp is float or float in typing.get_args(tp):
            floats.append(key)
    assert {"optim.lr", "loss.lam", "model.length", "data.ratio_range", "optim.betas"} <= set(floats)
    for key in floats:
        for text in ("nan", "inf", "-inf", "NaN"):
            with pytest.raises(ConfigError, match="expected a finite number"):
                apply_overrides(Config(), [f"--{key}={text}"])
        section, name = key.split(".")
        data = to_dict(cfg)
        value = data[section][name]
        data[section][name] = [float("nan")] * len(value) if isinstance(value, list) else float("inf")
        with pytest.raises(ConfigError, match="expected a finite number"):
            from_dict(data)
