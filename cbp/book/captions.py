"""Markdown and tables that label a run for a reader: what it trained on, how long, on which hardware,
and the paper's Table 1 gain beside it."""

from __future__ import annotations

from typing import Any

import pandas as pd

from cbp.models.builder import get_spec
from cbp.paper import (
    DATASET_NAMES,
    DATASET_SIZES,
    PAPER_ITERS,
    PAPER_MODEL,
    PAPER_TABLE1_GAINS,
    table1_setting,
)


def run_label(metrics: dict[str, Any]) -> str:
    """ "this run: SYNTHETIC, 200 iters, batch 8, cpu (...) x1" from a ``metrics.json``."""
    cfg = metrics.get("config", {})
    name = cfg.get("data", {}).get("name", "?")
    batch = cfg.get("train", {}).get("batch_size", "?")
    return (
        f"this run: {DATASET_NAMES.get(name, name)}, {metrics['iters']} iters, batch {batch}, "
        f"{_init_text(metrics)}, {metrics.get('device', '?')}"
    )


def _init_text(metrics: dict[str, Any]) -> str:
    """ "pretrained" or "from scratch": how the run's encoder started (its ``model.pretrained``)."""
    return "pretrained" if metrics.get("config", {}).get("model", {}).get("pretrained") else "from scratch"


def compare_with_paper(
    paper_dataset: str,
    backbone: str,
    ours: dict[str, Any],
    baseline: dict[str, Any] | None,
    *,
    run_label: str,
) -> pd.DataFrame:
    """The paper's Table 1 gain for the backbone's family beside this run's numbers, each row labelled.

    Args:
        paper_dataset: the page's dataset of the paper's Table 1 ("ade20k" or "cocostuff10k"), whatever
            this run trained on (the label says that).
        backbone: its backbone.
        ours: ``metrics.json`` of the page's run (CBP + OCCL by default; "method mIoU" in the table).
        baseline: ``metrics.json`` of the learnable baseline run, or None.
        run_label: e.g. "this run: SYNTHETIC, 200 iters, cpu x1".
    """
    fam = get_spec(backbone).paper_model
    gain = "run with baseline=True" if baseline is None else f"{ours['mIoU'] - baseline['mIoU']:+.2f}"
    base = "not run" if baseline is None else f"{baseline['mIoU']:.2f}"
    return pd.DataFrame(  # two rows: the paper's, this run's
        {
            "source": [table1_setting(paper_dataset), run_label],
            "model": [PAPER_MODEL[fam], backbone],
            "baseline mIoU": ["Table 1 of the paper", base],
            "method mIoU": ["Table 1 of the paper", f"{ours['mIoU']:.2f}"],
            "gain (mIoU points)": [f"+{PAPER_TABLE1_GAINS[(paper_dataset, fam)]:.1f}", gain],
        }
    )


def synthetic_caveat(paper_dataset: str, ours: dict[str, Any]) -> str:
    """Markdown warning that a synthetic run's numbers are not comparable with the paper's Table 1.

    Args:
        paper_dataset: the page's dataset of the paper ("ade20k" or "cocostuff10k").
        ours: the run's ``metrics.json`` (its ``iters`` and ``device`` are quoted).
    """
    name, (images, classes) = DATASET_NAMES[paper_dataset], DATASET_SIZES[paper_dataset]
    return (
        "**These numbers are not comparable with the paper's.** This run trained on the SYNTHETIC "
        f"set ({len(ours['class_names'])} classes, 64 x 64 images, textures instead of scenes) for "
        f"{ours['iters']} iterations {_init_text(ours)} on {ours['device']}; the paper trains ImageNet-pretrained models on {name}'s "
        f"{images} real images ({classes} classes) at 512 x 512 for {PAPER_ITERS[paper_dataset] // 1000}K "
        "iterations on 8 GPUs. A gain measured in one short run is also within seed noise (the ablation "
        f"chapter runs several seeds). Run this page with `-p dataset {paper_dataset} -p data_root ... "
        "-p gpus 8 -p pretrained hub` for a comparable number."
    )


def run_lines(metrics: dict[str, dict[str, Any]]) -> str:
    """Markdown list: per run, on which data, how long, on which hardware (from its ``metrics.json``)."""
    return "\n".join(
        f"- **{label}**: {run_label(m)}, {m['seconds'] / 60:.1f} min" for label, m in metrics.items()
    )
