"""The code the training pages (chapters 5 and 6) share: train or reuse a page's runs, read what they
wrote, set the paper's Table 1 gain beside them, and the conclusions their figures support.

A training page for a dataset is then its parameters, one call of :func:`train_and_read`, its figures
(:func:`show_figures`) and its narrative; :func:`paper_comparison` and :func:`what_to_notice` end it.
Everything is read from the runs' own files (``metrics.json``, ``log.jsonl``), so a page states no
number that its runs did not write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.book import captions, figures, launch, run_data
from cbp.book.plotting import finish
from cbp.book.run_data import per_class_table, predict_examples, read_log, read_metrics, summary_row
from cbp.engine.config import PAPER_PRESETS, get_preset
from cbp.models.builder import get_spec
from cbp.paper import DATASET_NAMES, PAPER_MODEL, PAPER_TABLE1_GAINS, table1_setting

__all__ = ["PAGE_PARAMETERS", "PageRuns", "paper_comparison", "paper_gains_sentence", "recipe_table",
           "show_figures", "train_and_read", "what_to_notice"]  # fmt: skip

#: The parameters of chapters 5 and 6 and their types (checked by :func:`cbp.book.parameters.check_parameters`).
PARAMETER_TYPES: dict[str, type | tuple] = {
    "backbone": str, "dataset": str, "data_root": str, "classifier": str, "occl": bool,
    "baseline": (bool, None), "iters": int, "gpus": int, "seed": int, "batch_size": int,
    "pretrained": str, "out_dir": str, "eval_points": int, "resume": bool, "examples": int, "workshop": bool,
}  # fmt: skip

#: The parameters of a training page that :func:`train_and_read` reads (see chapter 5's parameters cell):
#: those of :data:`PARAMETER_TYPES` but ``examples``.
PAGE_PARAMETERS: tuple[str, ...] = tuple(name for name in PARAMETER_TYPES if name != "examples")

#: Label of the learnable baseline run (:func:`cbp.book.launch.run_name` of a linear run without OCCL).
BASELINE = "learnable baseline"


@dataclass
class PageRuns:
    """The runs of a training page: the page's run first (CBP + OCCL by default), then its baseline.

    Attributes:
        spec: the page's run.
        dirs: label -> run folder.
        metrics: label -> the run's ``metrics.json``.
    """

    spec: launch.RunSpec
    dirs: dict[str, Path]
    metrics: dict[str, dict[str, Any]]

    @property
    def ours(self) -> dict[str, Any]:
        """``metrics.json`` of the page's run."""
        return next(iter(self.metrics.values()))

    @property
    def baseline(self) -> dict[str, Any] | None:
        """``metrics.json`` of the learnable baseline, or None when it was not trained."""
        return self.metrics.get(BASELINE)

    def summary(self) -> pd.DataFrame:
        """One row per run: mIoU, mAcc, aAcc, iterations, device, minutes."""
        return pd.DataFrame([summary_row(m, label) for label, m in self.metrics.items()]).set_index("run")

    def per_class(self) -> dict[str, pd.DataFrame]:
        """label -> :func:`cbp.book.run_data.per_class_table` (classes from the most to the least frequent)."""
        return {label: per_class_table(m) for label, m in self.metrics.items()}

    def examples(self, count: int) -> dict[str, dict[str, Any]]:
        """label -> the first ``count`` validation images segmented by the run's final checkpoint."""
        return {label: predict_examples(d, list(range(count))) for label, d in self.dirs.items()}


def train_and_read(
    params: Mapping[str, Any], *, prefix: str, datasets: Sequence[str], root: Path | None = None
) -> PageRuns:
    """Train the page's run and its learnable baseline (or reuse finished ones), then read their metrics.

    Prints the preset and the number of iterations, then, as they come, the lines of
    :func:`cbp.book.launch.train_runs` (each run's command, or that it is reused); the per-iteration
    log stays in each run's ``log.jsonl``.

    Args:
        params: the page's parameters, the names of :data:`PAGE_PARAMETERS` (a notebook passes its
            ``globals()``). ``workshop=True`` caps ``iters`` at 20 unless set and turns intermediate
            validation off; ``resume`` None means True; ``pretrained`` "" trains from scratch.
        prefix: the run folders' prefix (``runs/PREFIX_...``), the chapter's number.
        datasets: the datasets the page accepts.
        root: repository root (default :func:`cbp.book.launch.repo_root`).

    Returns:
        The runs, their folders and their ``metrics.json``.
    """
    p = {name: params[name] for name in PAGE_PARAMETERS}
    iters, eval_points = p["iters"], p["eval_points"]
    if p["workshop"]:  # a short schedule, no intermediate validation
        iters, eval_points = iters or 20, 0
    same = ("backbone", "dataset", "data_root", "classifier", "occl", "gpus", "seed", "out_dir", "batch_size")
    spec = launch.RunSpec(
        **{name: p[name] for name in same},  # the RunSpec fields named as the page's parameters
        iters=iters,
        eval_points=eval_points,
        extra=(f"--model.pretrained={p['pretrained']}",) if p["pretrained"] else (),
        prefix=prefix,
    )
    preset, overrides = launch.preset_for(p["dataset"], p["backbone"])
    print(f"preset {preset!r} {' '.join(overrides)}: {launch.total_iters(spec)} iterations")
    with launch.page_lines(root):  # the '==' lines as they come
        dirs = launch.train_runs(
            spec, baseline=p["baseline"], resume=p["resume"] is not False, datasets=datasets, root=root
        )
    return PageRuns(spec, dirs, {label: read_metrics(d) for label, d in dirs.items()})


def show_figures(page: PageRuns, *names: str, examples: int = 4, runs_of: str = "") -> None:
    """Draw the page's figures named ("losses", "mIoU", "per-class IoU", "predictions" of ``examples``
    validation images; all four in this order when none is named); when the runs are another page's
    (``runs_of``, e.g. "chapter 5's"), only say so."""
    if runs_of:
        print(f"the runs are {runs_of}: see its figures")
        return
    draw = {"losses": lambda: figures.plot_losses(page.dirs), "mIoU": lambda: figures.plot_miou(page.dirs),
            "per-class IoU": lambda: figures.plot_per_class_iou(page.per_class()),
            "predictions": lambda: figures.plot_predictions(page.examples(examples))}  # fmt: skip
    for name in names or draw:
        finish(draw[name]())


def paper_comparison(page: PageRuns, paper_dataset: str) -> list[Any]:
    """What a page shows beside the paper: the gains of CBP + OCCL that the paper's text gives for every
    model (Section 4.2), the gain of this run's model family beside this run's gain over its baseline,
    and, for a synthetic run, why the two are not comparable.

    Args:
        page: the page's runs.
        paper_dataset: the paper's dataset of the page ("ade20k" or "cocostuff10k").

    Returns:
        Objects to ``display`` in order: a DataFrame, a table (pandas Styler) and, for a synthetic
        run, a Markdown caveat.
    """
    from IPython.display import Markdown

    gains = {PAPER_MODEL[f]: f"+{PAPER_TABLE1_GAINS[(paper_dataset, f)]:.1f}" for f in PAPER_MODEL}
    column = pd.Series(gains, name="mIoU gain of CBP + OCCL (paper)")
    ours = page.ours
    table = captions.compare_with_paper(
        paper_dataset, page.spec.backbone, ours, page.baseline, run_label=captions.run_label(ours)
    )
    shown = [column.rename_axis(table1_setting(paper_dataset)).to_frame(), table.style.hide(axis="index")]
    if page.spec.dataset == "synthetic":
        shown.append(Markdown(captions.synthetic_caveat(paper_dataset, ours)))
    return shown


def paper_gains_sentence(recipes: pd.DataFrame, dataset: str = "cocostuff10k", other: str = "ade20k") -> str:
    """The paper's gains of CBP + OCCL on ``dataset`` against ``other``, per model, as one sentence."""
    a, b, gain = DATASET_NAMES[dataset], DATASET_NAMES[other], recipes["paper gain"].unstack("dataset")
    larger = gain.index[gain[a] > gain[b]].tolist()
    return (
        f"paper: the gain is larger on {a} than on {b} for {len(larger)} of {len(gain)} models "
        f"({', '.join(larger)}); it ranges from {gain[a].min():+.1f} to {gain[a].max():+.1f} mIoU on {a} "
        f"and from {gain[b].min():+.1f} to {gain[b].max():+.1f} on {b}."
    )


def recipe_table(datasets: Sequence[str] = ("ade20k", "cocostuff10k")) -> pd.DataFrame:
    """The paper's recipe of each Table 1 model on each dataset, read from this project's presets
    (``<dataset>_<model>``, one preset per model family), and the gain of CBP + OCCL the paper gives.

    Returns:
        One row per (paper model, dataset name); columns "lambda", "phi", "T", "iterations" (of the
        preset) and "paper gain" (mIoU points, Section 4.2 text).
    """
    rows, seen = {}, set()
    for suffix, backbone in PAPER_PRESETS.items():
        family = get_spec(backbone).paper_model
        if family in seen:  # e.g. SegFormer B1-B5: the same recipe as B0
            continue
        seen.add(family)
        for dataset in datasets:
            cfg = get_preset(f"{dataset}_{suffix}")
            rows[(PAPER_MODEL[family], DATASET_NAMES[dataset])] = {
                "lambda": cfg.loss.lam, "phi": cfg.loss.phi, "T": cfg.model.length,
                "iterations": cfg.train.iters, "paper gain": PAPER_TABLE1_GAINS[(dataset, family)],
            }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["paper model", "dataset"])


def frequency_thirds(table: pd.DataFrame) -> pd.Series:
    """Mean IoU (%) of the most frequent, middle and rarest third of the classes (by training pixels).

    Args:
        table: a :func:`cbp.book.run_data.per_class_table`, classes from the most to the least frequent.

    Returns:
        ``"frequent"``, ``"middle"``, ``"rare"`` -> mean IoU over the classes of that third present in
        validation (NaN IoUs left out).
    """
    parts = np.array_split(table["IoU"].to_numpy(), 3)
    return pd.Series([np.nanmean(p) for p in parts], index=["frequent", "middle", "rare"])


def notice_numbers(page: PageRuns) -> pd.DataFrame:
    """Per run, the numbers :func:`what_to_notice` concludes from: the first and last logged total loss,
    mIoU, the mean IoU of the frequent / middle / rare third of the classes (NaN when the pixel counts
    are unknown), how many classes scored an IoU of 0 and how many of those are in the rarer half."""
    rows = {}
    for label, metrics in page.metrics.items():
        log = read_log(page.dirs[label])
        table = per_class_table(metrics)
        by_frequency = table["pixel_count"].notna().all()
        thirds = (
            frequency_thirds(table) if by_frequency else pd.Series(np.nan, ["frequent", "middle", "rare"])
        )
        zero = (table["IoU"] == 0).to_numpy()
        rarer_half = np.arange(len(table)) >= len(table) / 2
        rows[label] = {
            "first loss": float(log["loss"].iloc[0]),
            "last loss": float(log["loss"].iloc[-1]),
            "mIoU": metrics["mIoU"],
            **{f"IoU {k} third": v for k, v in thirds.items()},
            "classes at IoU 0": int(zero.sum()),
            "of them in the rarer half": int((zero & rarer_half).sum()) if by_frequency else np.nan,
        }
    return pd.DataFrame(rows).T


def what_to_notice(page: PageRuns, *, figures: str = "figure") -> str:
    """The conclusions the page's figures support, as Markdown, with the numbers of its runs.

    What is said depends on the numbers (which run is ahead, at how many validations, where the
    difference is largest); the runs are named (data, iterations, hardware), and a comparison of one
    run per arm is called what it is: one seed.

    Args:
        page: the page's runs.
        figures: how the text names the figures it refers to ("losses figure", ...), e.g. "figure of
            chapter 5" on a page that shows another page's runs without their figures.
    """
    numbers = notice_numbers(page)
    ours_label = next(iter(page.metrics))
    lines = [f"Runs of this page ({captions.run_label(page.ours).removeprefix('this run: ')}):", ""]
    falls = ", ".join(
        f"{r['first loss']:.2f} to {r['last loss']:.2f} ({label})" for label, r in numbers.iterrows()
    )
    lines.append(f"- **Both runs trained** (losses {figures}): the total loss fell from {falls}.")
    base = page.baseline
    if base is None:
        lines[-1] = lines[-1].replace("Both runs", "The run")
        lines.append(f"- **mIoU {page.ours['mIoU']:.2f}**; with no baseline run there is no gain to read.")
        return "\n".join(lines)
    gain = page.ours["mIoU"] - base["mIoU"]
    ours_v = run_data.validations(page.dirs[ours_label], page.ours)
    base_v = run_data.validations(page.dirs[BASELINE], base)
    common = ours_v.index.intersection(base_v.index)
    ahead = int((ours_v[common] > base_v[common]).sum())
    lines.append(
        f"- **{ours_label} ended {abs(gain):.2f} mIoU points {'above' if gain > 0 else 'below'} the "
        f"learnable baseline** ({page.ours['mIoU']:.2f} vs {base['mIoU']:.2f}) and was ahead at {ahead} "
        f"of {len(common)} validation{'s' if len(common) != 1 else ''} (mIoU {figures}). "
        "This is one run per arm, one seed: chapter 7 "
        "repeats the comparison over several seeds and schedules before calling it."
    )
    thirds = ["frequent", "middle", "rare"]
    diff = {
        k: numbers.loc[ours_label, f"IoU {k} third"] - numbers.loc[BASELINE, f"IoU {k} third"] for k in thirds
    }
    if not np.isnan(list(diff.values())).any():
        where = max(diff, key=lambda k: abs(diff[k]))
        lines.append(
            f"- **Where the difference is** (per-class {figures}; mean IoU of each third of the classes by "
            f"training pixels, {ours_label} minus the baseline): "
            + ", ".join(f"{k} {diff[k]:+.1f}" for k in thirds)
            + f" points. The largest change is on the {where} classes (rarest third: "
            + " vs ".join(f"{numbers.loc[label, 'IoU rare third']:.1f}" for label in (ours_label, BASELINE))
            + " mean IoU); the paper's argument (Section 3) is that frozen prototypes help the rare ones most."
        )
        zero = ", ".join(
            f"{int(r['classes at IoU 0'])} ({label}; {int(r['of them in the rarer half'])} in the rarer half)"
            for label, r in numbers.iterrows()
        )
        lines.append(f"- **Classes never segmented** (IoU 0, of {len(page.ours['class_names'])}): {zero}.")
    return "\n".join(lines)
