"""cbp.book.training_page: what chapters 5 and 6 share (launching and reading the runs, the paper's
numbers beside them, and the conclusions drawn from them), on fake run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cbp.book import launch, training_page
from cbp.paper import PAPER_TABLE1_GAINS

PARAMS = {
    "backbone": "cnn_tiny",
    "dataset": "synthetic",
    "data_root": "",
    "classifier": "cbp",
    "occl": True,
    "baseline": None,
    "iters": 0,
    "gpus": 0,
    "seed": 0,
    "batch_size": 0,
    "pretrained": "",
    "out_dir": "",
    "eval_points": -1,
    "resume": None,
    "workshop": False,
    "examples": 4,  # a page's other parameters are ignored
}


def _write_run(
    run_dir: Path, *, miou: float, iou: list[float], losses: list[float], evals: list[float]
) -> Path:
    """A finished run's files: 6 classes (most frequent first), losses and validations as given."""
    run_dir.mkdir(parents=True)
    log = "".join(json.dumps({"iter": 2 * (i + 1), "loss": v}) + "\n" for i, v in enumerate(losses))
    (run_dir / "log.jsonl").write_text(log)
    ev = "".join(json.dumps({"iter": 10 * (i + 1), "mIoU": v}) + "\n" for i, v in enumerate(evals))
    (run_dir / "eval.jsonl").write_text(ev)
    metrics = {
        "mIoU": miou,
        "mAcc": miou + 10,
        "aAcc": 80.0,
        "class_names": [f"c{i}" for i in range(6)],
        "IoU": iou,
        "Acc": iou,
        "F1": iou,
        "pixel_counts": [600.0, 500.0, 400.0, 300.0, 200.0, 100.0],
        "prototype_norms": [2.0] * 6,
        "iters": 40,
        "device": "cpu (x86_64, 1 threads) x1",
        "seconds": 60.0,
        "config": {"data": {"name": "synthetic"}, "train": {"batch_size": 8}, "model": {"pretrained": ""}},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def _page(tmp_path: Path, *, baseline: bool = True) -> training_page.PageRuns:
    dirs = {
        "CBP + OCCL": _write_run(
            tmp_path / "ours",
            miou=30.0,
            iou=[60.0, 50.0, 30.0, 20.0, 10.0, 0.0],
            losses=[5.0, 3.0, 2.0],
            evals=[10.0, 20.0, 28.0],
        )
    }
    if baseline:
        dirs["learnable baseline"] = _write_run(
            tmp_path / "base",
            miou=25.0,
            iou=[62.0, 48.0, 20.0, 10.0, 0.0, 0.0],
            losses=[4.0, 2.5, 1.5],
            evals=[12.0, 15.0, 30.0],
        )
    spec = launch.RunSpec(prefix="05")
    metrics = {label: json.loads((d / "metrics.json").read_text()) for label, d in dirs.items()}
    return training_page.PageRuns(spec, dirs, metrics)


def test_train_and_read_builds_the_spec_from_the_page_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _page(tmp_path)
    calls = []

    def fake_train_runs(spec, **kw):
        calls.append((spec, kw))
        print("== CBP + OCCL: already trained")
        return page.dirs

    monkeypatch.setattr(launch, "train_runs", fake_train_runs)
    params = PARAMS | {"workshop": True, "pretrained": "hub"}
    got = training_page.train_and_read(params, prefix="06", datasets=("synthetic", "x"), root=tmp_path)
    spec, kw = calls[0]
    assert (spec.iters, spec.eval_points, spec.prefix) == (20, 0, "06")  # the workshop setting
    assert spec.extra == ("--model.pretrained=hub",)
    assert kw == {"baseline": None, "resume": True, "datasets": ("synthetic", "x"), "root": tmp_path}
    assert got.dirs == page.dirs and got.ours["mIoU"] == 30.0 and got.baseline["mIoU"] == 25.0
    out = capsys.readouterr().out
    assert out.startswith("preset 'synthetic' : 20 iterations") and "== CBP + OCCL: already trained" in out

    training_page.train_and_read(PARAMS | {"resume": False, "iters": 7}, prefix="05", datasets=("synthetic",))
    spec, kw = calls[1]
    assert spec.iters == 7 and spec.eval_points == -1 and spec.extra == () and kw["resume"] is False
    with pytest.raises(KeyError, match="workshop"):
        training_page.train_and_read(
            {k: v for k, v in PARAMS.items() if k != "workshop"}, prefix="05", datasets=()
        )


def test_page_runs_tables(tmp_path: Path) -> None:
    page = _page(tmp_path)
    summary = page.summary()
    assert list(summary.index) == ["CBP + OCCL", "learnable baseline"]
    assert summary.loc["CBP + OCCL", "mIoU"] == 30.0 and summary.loc["learnable baseline", "minutes"] == 1.0
    assert list(page.per_class()["CBP + OCCL"]["class"]) == [f"c{i}" for i in range(6)]
    assert _page(tmp_path / "alone", baseline=False).baseline is None


def test_frequency_thirds_average_each_third_of_the_frequency_order() -> None:
    table = pd.DataFrame({"IoU": [60.0, 50.0, 30.0, np.nan, 10.0, 0.0]})
    thirds = training_page.frequency_thirds(table)
    assert thirds.to_dict() == {"frequent": 55.0, "middle": 30.0, "rare": 5.0}  # NaN left out


def test_what_to_notice_states_what_the_runs_wrote(tmp_path: Path) -> None:
    page = _page(tmp_path)
    numbers = training_page.notice_numbers(page)
    assert (
        numbers.loc["CBP + OCCL", "first loss"] == 5.0
        and numbers.loc["learnable baseline", "last loss"] == 1.5
    )
    assert (
        numbers.loc["CBP + OCCL", "classes at IoU 0"] == 1
        and numbers.loc["learnable baseline", "classes at IoU 0"] == 2
    )
    assert numbers.loc["learnable baseline", "of them in the rarer half"] == 2
    text = training_page.what_to_notice(page)
    assert "SYNTHETIC, 40 iters" in text and "cpu (x86_64, 1 threads) x1" in text  # which runs
    assert "from 5.00 to 2.00 (CBP + OCCL), 4.00 to 1.50 (learnable baseline)" in text
    assert "ended 5.00 mIoU points above the learnable baseline** (30.00 vs 25.00)" in text
    assert "ahead at 2 of 4 validations" in text  # 10 < 12, 20 > 15, 28 < 30, final 30 > 25
    # thirds: ours 55 / 25 / 5, baseline 55 / 15 / 0 -> +0.0, +10.0, +5.0
    assert "frequent +0.0, middle +10.0, rare +5.0 points" in text and "on the middle classes" in text
    assert "(rarest third: 5.0 vs 0.0 mean IoU)" in text
    assert "Classes never segmented** (IoU 0, of 6): 1 (CBP + OCCL; 1 in the rarer half), 2 (" in text
    assert "one seed" in text
    alone = training_page.what_to_notice(_page(tmp_path / "alone", baseline=False))
    assert "no baseline run" in alone and "Both runs" not in alone


def test_what_to_notice_says_below_when_the_run_is_behind(tmp_path: Path) -> None:
    page = _page(tmp_path)
    page.metrics["CBP + OCCL"]["mIoU"] = 20.0
    assert "ended 5.00 mIoU points below the learnable baseline" in training_page.what_to_notice(page)


def test_paper_comparison_and_recipe_table(tmp_path: Path) -> None:
    page = _page(tmp_path)
    gains, table, caveat = training_page.paper_comparison(page, "cocostuff10k")
    assert gains.iloc[:, 0].tolist() == [
        f"+{v:.1f}" for (d, _), v in PAPER_TABLE1_GAINS.items() if d == "cocostuff10k"
    ]
    assert "+5.00" in table.to_html() and "not comparable" in caveat.data
    recipes = training_page.recipe_table()
    fcn = recipes.loc["FCN (ResNet-50)"]
    assert fcn.loc["ADE20K", "T"] == 2.0 and fcn.loc["COCO-Stuff-10K", "T"] == 0.3  # Section 4's recipes
    assert fcn.loc["COCO-Stuff-10K", "iterations"] == 80_000
    assert fcn.loc["COCO-Stuff-10K", "paper gain"] == PAPER_TABLE1_GAINS[("cocostuff10k", "fcn")]
    assert len(recipes) == 8  # 4 paper models x 2 datasets (SegFormer B0-B5 once)


def test_paper_gains_sentence_states_the_gains_it_is_given() -> None:
    gains = {("A", "ADE20K"): 1.0, ("A", "COCO-Stuff-10K"): 0.5, ("B", "ADE20K"): 0.7,
             ("B", "COCO-Stuff-10K"): 1.5, ("C", "ADE20K"): 1.3, ("C", "COCO-Stuff-10K"): 1.4}  # fmt: skip
    recipes = pd.DataFrame({"paper gain": gains.values()}, index=pd.MultiIndex.from_tuples(gains))
    recipes = recipes.rename_axis(["paper model", "dataset"])
    assert training_page.paper_gains_sentence(recipes) == (
        "paper: the gain is larger on COCO-Stuff-10K than on ADE20K for 2 of 3 models (B, C); it ranges "
        "from +0.5 to +1.5 mIoU on COCO-Stuff-10K and from +0.7 to +1.3 on ADE20K."
    )
    assert training_page.paper_gains_sentence(recipes, "ade20k", "cocostuff10k").startswith(
        "paper: the gain is larger on ADE20K than on COCO-Stuff-10K for 1 of 3 models (A); it ranges from +0.7"
    )
    coco = [v for (d, _), v in PAPER_TABLE1_GAINS.items() if d == "cocostuff10k"]  # the paper's own gains
    text = training_page.paper_gains_sentence(training_page.recipe_table())
    assert f"ranges from {min(coco):+.1f} to {max(coco):+.1f} mIoU on COCO-Stuff-10K" in text


def test_show_figures_draws_the_named_figures_of_the_runs_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = _page(tmp_path)
    monkeypatch.setattr(page, "examples", lambda count: {"examples": count})
    drawn, finished = [], []
    for name in ("plot_losses", "plot_miou", "plot_per_class_iou", "plot_predictions"):
        monkeypatch.setattr(
            training_page.figures, name, lambda arg, name=name: drawn.append((name, arg)) or name
        )
    monkeypatch.setattr(training_page, "finish", finished.append)
    training_page.show_figures(page, examples=3)
    assert finished == ["plot_losses", "plot_miou", "plot_per_class_iou", "plot_predictions"]
    assert drawn[0][1] == drawn[1][1] == page.dirs and drawn[3][1] == {"examples": 3}
    assert list(drawn[2][1]) == list(page.metrics)  # one per-class table per run
    drawn.clear()
    finished.clear()
    training_page.show_figures(page, "predictions", "mIoU")
    assert finished == ["plot_predictions", "plot_miou"] and drawn[0][1] == {"examples": 4}
    training_page.show_figures(page, examples=3, runs_of="chapter 5's")
    assert capsys.readouterr().out == "the runs are chapter 5's: see its figures\n" and len(finished) == 2
