"""cbp.runs: training commands from a page's parameters, and reading a run's files (no training here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cbp.book import captions, figures, launch, run_data
from cbp.engine.config import PRESETS, apply_overrides, get_preset
from cbp.engine.train import parse_args
from cbp.paper import PAPER_TABLE1_GAINS

ROOT = Path("/repo")


def _overrides(cmd: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)


def test_synthetic_cpu_command() -> None:
    cmd = launch.train_command(launch.RunSpec(backbone="swin_b", iters=20, prefix="05"), ROOT)
    assert cmd[:3] == [sys.executable, "-m", "cbp.train"]
    assert cmd[cmd.index("--preset") + 1] == "synthetic"
    assert cmd[cmd.index("--out") + 1] == "/repo/runs/05_swin_b_cbp_occl_synthetic_20it_s0"
    o = _overrides(cmd)
    assert o["model.backbone"] == "swin_b" and o["train.iters"] == "20" and o["train.device"] == "cpu"
    assert o["loss.occl"] == "true" and o["model.classifier"] == "cbp" and o["train.progress"] == "false"
    assert o["data.root"] == "/repo/data/synthetic-50-small"
    assert "train.eval_every" not in o  # large model on a CPU: final validation only
    assert launch.format_command(cmd).startswith("python -m cbp.train --preset synthetic")


def test_default_iters_and_eval_points() -> None:
    spec = launch.RunSpec()
    o = _overrides(launch.train_command(spec, ROOT))
    assert o["train.iters"] == str(launch.CPU_ITERS["cnn_tiny"])
    assert int(o["train.eval_every"]) == launch.CPU_ITERS["cnn_tiny"] // 4  # 3 validations + the final one
    assert "model.backbone" not in o  # the synthetic preset's own backbone


def test_torchrun_paper_command() -> None:
    spec = launch.RunSpec(backbone="swin_b", dataset="ade20k", data_root="/d/ADE", gpus=8, prefix="05")
    cmd = launch.train_command(spec, ROOT)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert cmd[cmd.index("--preset") + 1] == "ade20k_swin_b"
    o = _overrides(cmd)
    assert o["data.root"] == "/d/ADE" and o["train.device"] == "cuda"
    assert "train.iters" not in o  # the preset's 160K
    assert launch.total_iters(spec) == 160_000
    assert o["train.eval_every"] == str(160_000 // 4)
    assert launch.format_command(cmd).startswith("torchrun --standalone --nproc_per_node=8 -m cbp.train")


@pytest.mark.parametrize(
    ("dataset", "backbone", "preset", "extra"),
    [
        ("ade20k", "resnet50", "ade20k_fcn_r50", []),
        ("ade20k", "resnet101", "ade20k_fcn_r50", ["--model.backbone=resnet101"]),
        ("ade20k", "mit_b3", "ade20k_segformer_b3", []),
        ("cocostuff10k", "convnext_b", "cocostuff10k_convnext_b", []),
        ("cocostuff10k", "swin_t", "cocostuff10k_swin_b", ["--model.backbone=swin_t"]),
        ("synthetic", "cnn_tiny", "synthetic", []),
    ],
)
def test_preset_for(dataset: str, backbone: str, preset: str, extra: list[str]) -> None:
    assert launch.preset_for(dataset, backbone) == (preset, extra)
    assert preset in PRESETS


def test_every_backbone_has_a_preset_and_a_paper_gain() -> None:
    from cbp.models import BACKBONES

    for backbone in BACKBONES:
        for dataset in ("ade20k", "cocostuff10k"):
            preset, _ = launch.preset_for(dataset, backbone)
            assert preset in PRESETS
            assert (dataset, BACKBONES[backbone].paper_model) in PAPER_TABLE1_GAINS
    with pytest.raises(KeyError, match="unknown backbone .vgg16.: expected one of"):
        launch.preset_for("ade20k", "vgg16")  # the KeyError lists the valid names
    with pytest.raises(ValueError, match="dataset"):
        launch.preset_for("cityscapes", "cnn_tiny")


def test_command_parses_with_the_engine() -> None:
    """The engine's own parser accepts every override the helper writes (resnet101 on COCO-Stuff, baseline)."""
    spec = launch.RunSpec(backbone="resnet101", dataset="cocostuff10k", gpus=1, batch_size=8).baseline()
    cmd = launch.train_command(spec, ROOT)
    cfg, out = parse_args(cmd[cmd.index("cbp.train") + 1 :])
    assert cfg.model.backbone == "resnet101" and cfg.model.classifier == "linear" and not cfg.loss.occl
    assert cfg.data.root == "/repo/data/coco_stuff10k" and cfg.train.batch_size == 8
    assert cfg.loss.lam == 1.0 and cfg.model.length == 0.3  # COCO-Stuff FCN row of the paper's Section 4
    assert out == Path("/repo/runs/run_resnet101_linear_cocostuff10k_paper_s0")
    ref = apply_overrides(get_preset("cocostuff10k_fcn_r50"), ["--model.backbone=resnet101"])
    assert cfg.optim == ref.optim


def test_auto_baseline() -> None:
    assert launch.auto_baseline(launch.RunSpec()) and not launch.auto_baseline(
        launch.RunSpec(backbone="swin_b")
    )
    assert launch.auto_baseline(launch.RunSpec(backbone="swin_b", gpus=1))


def test_baseline_and_names() -> None:
    spec = launch.RunSpec(out_dir="runs/mine/")
    base = spec.baseline()
    assert (base.classifier, base.occl, base.out_dir) == ("linear", False, "runs/mine_baseline")
    assert launch.run_name(spec) == "CBP + OCCL" and launch.run_name(base) == "learnable baseline"
    with pytest.raises(ValueError, match="gpus"):
        launch.train_command(launch.RunSpec(gpus=-1), ROOT)


def _fake_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = [
        {
            "iter": 2,
            "loss": 3.0,
            "ce": 2.0,
            "centroid": 0.5,
            "category": 1.0,
            "lr": 1e-3,
            "time_per_iter": 0.1,
        },
        {
            "iter": 4,
            "loss": 2.0,
            "ce": 1.5,
            "centroid": 0.3,
            "category": 0.7,
            "lr": 5e-4,
            "time_per_iter": 0.1,
        },
    ]
    text = "".join(json.dumps(r) + "\n" for r in log) + '{"iter": 6, "loss": '  # half-written last line
    (run_dir / "log.jsonl").write_text(text)
    metrics = {
        "mIoU": 40.0,
        "mAcc": 50.0,
        "aAcc": 80.0,
        "class_names": ["wall", "flag", "sky"],
        "IoU": [70.0, None, 50.0],
        "Acc": [80.0, None, 60.0],
        "F1": [82.0, None, 66.0],
        "pixel_counts": [100.0, 1.0, 10.0],
        "prototype_norms": [2.0, 2.0, 2.0],
        "iters": 4,
        "device": "cpu (x86_64, 2 threads) x1",
        "seconds": 90.0,
        "config": {"data": {"name": "synthetic"}, "train": {"batch_size": 8}, "model": {"pretrained": ""}},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_read_log_and_metrics(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path)
    log = run_data.read_log(run_dir)
    assert list(log.index) == [2, 4]  # the incomplete line is skipped
    np.testing.assert_allclose(log["loss"].to_numpy(), [3.0, 2.0])
    table = run_data.per_class_table(run_data.read_metrics(run_dir))
    assert list(table["class"]) == ["wall", "sky", "flag"]  # by training pixels, most first
    assert np.isnan(table.loc[1, "IoU"]) and table.loc[2, "IoU"] == 50.0
    row = run_data.summary_row(run_data.read_metrics(run_dir), "x")
    assert row["mIoU"] == 40.0 and row["minutes"] == 1.5
    label = captions.run_label(run_data.read_metrics(run_dir))
    assert label.startswith("this run: SYNTHETIC, 4 iters, batch 8, from scratch")
    with pytest.raises(FileNotFoundError, match="eval.jsonl"):
        run_data.read_log(run_dir, "eval.jsonl")


def test_compare_with_paper_labels(tmp_path: Path) -> None:
    metrics = run_data.read_metrics(_fake_run(tmp_path))
    base = {**metrics, "mIoU": 38.5}
    table = captions.compare_with_paper(
        "cocostuff10k", "swin_b", metrics, base, run_label="this run: SYNTHETIC"
    )
    assert list(table["source"]) == [
        "paper: COCO-Stuff-10K, 80K iters, batch 16 on 8 GPUs, ImageNet-pretrained",
        "this run: SYNTHETIC",
    ]
    assert list(table["gain (mIoU points)"]) == ["+0.6", "+1.50"]
    alone = captions.compare_with_paper("ade20k", "mit_b0", metrics, None, run_label="x")
    assert list(alone["gain (mIoU points)"]) == ["+1.0", "run with baseline=True"]


@pytest.mark.parametrize(
    ("dataset", "facts"),
    [
        ("ade20k", ("ADE20K's 20K", "150 classes", "160K")),
        ("cocostuff10k", ("COCO-Stuff-10K's 9K", "171 classes", "80K")),
    ],
)
def test_synthetic_caveat_and_run_lines(tmp_path: Path, dataset: str, facts: tuple[str, ...]) -> None:
    metrics = run_data.read_metrics(_fake_run(tmp_path))
    text = captions.synthetic_caveat(dataset, metrics)
    assert "not comparable" in text and f"for {metrics['iters']} iterations from scratch" in text
    assert "(3 classes," in text  # the run's own classes, not a fixed 50
    pretrained = {**metrics, "config": {**metrics["config"], "model": {"pretrained": "enc.pt"}}}
    assert "iterations pretrained on" in captions.synthetic_caveat(dataset, pretrained)
    assert ", pretrained," in captions.run_label(pretrained)
    assert all(f in text for f in facts) and f"-p dataset {dataset}" in text
    lines = captions.run_lines(
        {"CBP + OCCL": metrics, "learnable baseline": {**metrics, "seconds": 90.0}}
    ).splitlines()
    assert lines[0].startswith("- **CBP + OCCL**: this run: SYNTHETIC") and lines[1].endswith(", 1.5 min")


def test_run_streams_log_and_fails_with_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    script = (
        "import json, sys\n"
        f"p = {str(run_dir / 'log.jsonl')!r}\n"
        "for i in (1, 2):\n"
        "    open(p, 'a').write(json.dumps({'iter': i, 'loss': 1.0 / i, 'lr': 0.1}) + '\\n')\n"
        "print('hello from the run')\n"
    )
    launch.run([sys.executable, "-c", script], run_dir, total_iters=2)
    out = capsys.readouterr().out
    assert "hello from the run" in out and "iter 2/2" in out
    with pytest.raises(launch.RunFailed, match=r"status 3(.|\n)*boom"):
        launch.run([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], run_dir)


def test_prepare_run_dir(tmp_path: Path) -> None:
    other = tmp_path / "notes"
    other.mkdir()
    (other / "a.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a cbp run"):
        launch.prepare_run_dir(other, resume=False)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    launch.prepare_run_dir(run_dir, resume=True)
    assert run_dir.exists()
    launch.prepare_run_dir(run_dir, resume=False)
    assert not run_dir.exists()


def test_colorize() -> None:
    palette = np.array([[10, 0, 0], [0, 20, 0]], dtype=np.uint8)
    label = np.array([[0, 1], [255, 1]])
    rgb = figures.colorize(label, palette)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [0, 20, 0])
