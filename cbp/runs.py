"""Launch training runs from a notebook and read what they wrote (used by the book's pages 05 and 06).

A training page does three things, each one function here:

1. :func:`train_command` turns the page's parameters (backbone, dataset, classifier, OCCL on/off,
   iterations, number of GPUs, seed) into the command line of the engine:
   ``python -m cbp.train --preset NAME --out RUN_DIR --section.key=value ...`` for one process,
   ``python -m torch.distributed.run --nproc_per_node=K -m cbp.train ...`` (= ``torchrun``) for K GPUs.
   The preset is the paper's recipe for the backbone on ADE20K / COCO-Stuff-10K, or the CPU-sized
   ``synthetic`` preset with the backbone swapped in.
2. :func:`run` starts it as a subprocess, echoes its output line by line, and prints one line per
   new record of ``log.jsonl`` (throttled to about ``max_lines`` lines for a long run); a non-zero
   exit raises :class:`RunFailed` with the last lines of the output.
3. :func:`read_log`, :func:`read_metrics`, :func:`per_class_table` read ``log.jsonl`` /
   ``eval.jsonl`` / ``metrics.json`` into pandas, and :func:`predict_examples` loads
   ``ckpt_last.pt`` to segment a few validation images.
"""

from __future__ import annotations

import collections
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.paper import family

#: Paper preset suffix of each family (``<dataset>_<suffix>`` in :data:`cbp.config.PRESETS`).
_PRESET_SUFFIX = {"fcn": "fcn_r50", "convnext": "convnext_b", "swin": "swin_b"}

#: Training iterations that keep a CPU run of the synthetic set to about a minute per backbone.
CPU_ITERS: dict[str, int] = {
    "cnn_tiny": 200,
    "resnet18": 60,
    "convnext_atto": 100,
    "swin_atto": 100,
    "mit_b0": 100,
}
#: Default for the backbones not in :data:`CPU_ITERS` (the paper's large models).
CPU_ITERS_LARGE = 20

#: The synthetic set the training pages use (smaller than the study's, so that evaluating a large
#: backbone on a CPU takes a minute, not ten): 50 classes, 2000 training and 100 validation images of 64 x 64.
NOTEBOOK_SYNTHETIC = {"root": "data/synthetic-50-small", "classes": 50, "train": 2000, "val": 100}


class RunFailed(RuntimeError):
    """A training subprocess exited with a non-zero status; the message ends with its last lines."""


def repo_root(start: str | Path | None = None) -> Path:
    """The repository root (the folder with ``pyproject.toml`` and ``cbp/``) at or above ``start`` (cwd).

    The book executes pages inside ``notebooks/``, Papermill wherever it is started; runs and data
    go under the repository root in both cases.
    """
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "cbp").is_dir():
            return p
    raise FileNotFoundError(f"no cbp repository at or above {here}: run the notebook inside the repository")


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
    fam = family(backbone)
    if dataset == "synthetic":
        return "synthetic", [] if backbone == "cnn_tiny" else [f"--model.backbone={backbone}"]
    if dataset not in ("ade20k", "cocostuff10k"):
        raise ValueError(f"dataset must be 'synthetic', 'ade20k' or 'cocostuff10k' (got {dataset!r})")
    if fam == "segformer":
        if backbone.startswith("mit_b"):
            return f"{dataset}_segformer_b{backbone[-1]}", []
        return f"{dataset}_segformer_b0", [f"--model.backbone={backbone}"]
    preset = f"{dataset}_{_PRESET_SUFFIX[fam]}"
    default_backbone = {"fcn": "resnet50", "convnext": "convnext_b", "swin": "swin_b"}[fam]
    return preset, [] if backbone == default_backbone else [f"--model.backbone={backbone}"]


def total_iters(spec: RunSpec) -> int:
    """Iterations the run will train: ``spec.iters``, the CPU default, or the preset's schedule."""
    from cbp.config import get_preset

    return spec.resolved_iters or get_preset(preset_for(spec.dataset, spec.backbone)[0]).train.iters


def auto_baseline(spec: RunSpec) -> bool:
    """Train the baseline too by default, except for a large backbone on a CPU (it would double minutes)."""
    return spec.gpus > 0 or spec.dataset != "synthetic" or spec.backbone in CPU_ITERS


def auto_eval_points(spec: RunSpec) -> int:
    """Intermediate validations for the mIoU curve: 3, except for a large backbone on a CPU (slow to evaluate)."""
    return 3 if spec.gpus > 0 or spec.backbone in CPU_ITERS else 0


def default_iters(dataset: str, backbone: str, gpus: int) -> int:
    """Iterations when the page's ``iters`` is 0: the paper's on real data, a CPU-sized count otherwise."""
    if dataset != "synthetic":
        return 0  # 0 = keep the preset's (160K / 80K)
    if gpus > 0:
        return 3000  # the synthetic preset's schedule
    return CPU_ITERS.get(backbone, CPU_ITERS_LARGE)


@dataclass
class RunSpec:
    """One training run, as a training page describes it (see :func:`train_command`)."""

    backbone: str = "cnn_tiny"
    dataset: str = "synthetic"
    data_root: str = ""  # "" = the preset's folder (synthetic: NOTEBOOK_SYNTHETIC["root"])
    classifier: str = "cbp"
    occl: bool = True
    iters: int = 0  # 0 = default_iters()
    gpus: int = 0  # 0 = CPU, one process; 1 = one GPU; K > 1 = torchrun with K processes
    seed: int = 0
    out_dir: str = ""  # "" = runs/<prefix>_<backbone>_<classifier>[_occl]_<dataset>_<iters>it_s<seed>
    batch_size: int = 0  # 0 = the preset's (16 for the paper, 8 synthetic)
    eval_points: int = -1  # intermediate validations for the mIoU curve (0 = none, -1 = auto_eval_points)
    extra: Sequence[str] = field(default_factory=tuple)  # more --section.key=value overrides
    prefix: str = "run"

    @property
    def resolved_iters(self) -> int:
        return self.iters or default_iters(self.dataset, self.backbone, self.gpus)

    def run_dir(self, root: Path) -> Path:
        """The run directory: ``out_dir`` (relative to ``root``) or the default name under ``root/runs``."""
        if self.out_dir:
            p = Path(self.out_dir)
            return p if p.is_absolute() else root / p
        occl = "_occl" if self.occl else ""
        iters = f"{self.resolved_iters}it" if self.resolved_iters else "paper"
        name = f"{self.prefix}_{self.backbone}_{self.classifier}{occl}_{self.dataset}_{iters}_s{self.seed}"
        return root / "runs" / name

    def baseline(self) -> RunSpec:
        """The paper's baseline of this run: learnable 1x1 classifier with bias, no OCCL, same rest."""
        out = f"{self.out_dir.rstrip('/')}_baseline" if self.out_dir else ""
        return RunSpec(**{**self.__dict__, "classifier": "linear", "occl": False, "out_dir": out})


def train_command(spec: RunSpec, root: Path, *, python: str = sys.executable) -> list[str]:
    """The command line that trains ``spec`` (run it with ``cwd=root``).

    CPU (``gpus == 0``): one process, ``--train.device=cpu``. One GPU: ``--train.device=cuda``.
    K GPUs: ``python -m torch.distributed.run --standalone --nproc_per_node=K -m cbp.train ...``
    (what ``torchrun`` runs). The total batch stays the preset's; the engine accumulates gradients
    when K x device batch is smaller. Logging: ``--train.progress=false`` (no tqdm bars in the
    notebook) and about 50 ``log.jsonl`` records per run (at most every 50 iterations).
    """
    if spec.gpus < 0:
        raise ValueError(f"gpus must be >= 0 (0 = CPU), got {spec.gpus}")
    if spec.classifier not in ("cbp", "linear"):
        raise ValueError(
            f"classifier must be 'cbp' (frozen prototypes) or 'linear' (learnable), got {spec.classifier!r}"
        )
    preset, overrides = preset_for(spec.dataset, spec.backbone)
    if spec.gpus > 1:
        launcher = [python, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={spec.gpus}"]
    else:
        launcher = [python]
    cmd = [*launcher, "-m", "cbp.train", "--preset", preset, "--out", str(spec.run_dir(root)), *overrides]
    cmd.append(f"--model.classifier={spec.classifier}")
    cmd.append(f"--loss.occl={str(spec.occl).lower()}")
    cmd.append(f"--seed={spec.seed}")
    cmd.append(f"--train.device={'cuda' if spec.gpus > 0 else 'cpu'}")
    cmd.append("--train.progress=false")
    iters = spec.resolved_iters
    if spec.dataset == "synthetic":
        syn = NOTEBOOK_SYNTHETIC
        cmd.append(f"--data.root={root / (spec.data_root or syn['root'])}")
        if not spec.data_root:
            cmd += [f"--data.synthetic_train={syn['train']}", f"--data.synthetic_val={syn['val']}"]
        if spec.gpus == 0:
            cmd.append("--train.num_workers=0")  # 64x64 JPEGs: worker start-up costs more than it saves
    else:  # a relative path is relative to the repository (absolute in config.json, so any cwd reads it)
        from cbp.config import get_preset

        cmd.append(f"--data.root={root / (spec.data_root or get_preset(preset).data.root)}")
    if iters:
        cmd.append(f"--train.iters={iters}")
        cmd.append(f"--train.log_every={max(1, min(50, iters // 50))}")
    points = spec.eval_points if spec.eval_points >= 0 else auto_eval_points(spec)
    every = total_iters(spec) // (points + 1) if points > 0 else 0
    if every >= 1:
        cmd.append(f"--train.eval_every={every}")
    if spec.batch_size:
        cmd.append(f"--train.batch_size={spec.batch_size}")
    cmd += list(spec.extra)
    return cmd


def format_command(cmd: Sequence[str]) -> str:
    """A shell line for ``cmd``, with the interpreter shown as ``python`` and the launcher as ``torchrun``."""
    words = list(cmd)
    if words[1:3] == ["-m", "torch.distributed.run"]:
        words = ["torchrun", *words[3:]]
    elif words and words[0] == sys.executable:
        words[0] = "python"
    return shlex.join(words)


def _format_record(rec: dict[str, Any], total: int | None) -> str:
    """One progress line from a ``log.jsonl`` record."""
    it = f"{rec['iter']}/{total}" if total else str(rec["iter"])
    terms = "  ".join(
        f"{k} {rec[k]:.3f}" for k in ("loss", "ce", "centroid", "category") if rec.get(k) not in (None, 0.0)
    )
    eta = rec.get("eta_s")
    eta_text = f"  eta {eta / 60:.1f} min" if eta is not None else ""
    return (
        f"iter {it}  {terms}  lr {rec.get('lr', 0):.2e}  {rec.get('time_per_iter', 0):.2f} s/iter{eta_text}"
    )


def run(
    cmd: Sequence[str],
    run_dir: Path,
    *,
    cwd: Path | None = None,
    total_iters: int | None = None,
    max_lines: int = 20,
    tail: int = 40,
    env: dict[str, str] | None = None,
    echo: bool = True,
) -> float:
    """Run a training command, echoing its output and its ``log.jsonl`` progress; the wall time in seconds.

    Args:
        cmd: the command (from :func:`train_command`).
        run_dir: its run directory, whose ``log.jsonl`` is followed while it runs.
        cwd: working directory of the subprocess.
        total_iters: iterations of the run (for "iter i/N" and the throttling); None prints every record.
        max_lines: about how many progress lines to print over the run (plus the last record).
        tail: lines of output quoted in the error of a failed run.
        env: extra environment variables.
        echo: print the subprocess's own output lines (warnings, the final mIoU line).

    Raises:
        RunFailed: the command exited with a non-zero status (the message quotes its last ``tail`` lines).
    """
    log_path = Path(run_dir) / "log.jsonl"
    seen = _count_lines(log_path)  # a resumed run: only new records
    last_lines: collections.deque[str] = collections.deque(maxlen=tail)
    lines: list[str] = []
    lock = threading.Lock()
    proc = subprocess.Popen(
        list(cmd),
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    step = max(1, (total_iters or 0) // max(1, max_lines))
    next_print = 0
    start = time.time()

    def drain(final: bool) -> None:
        nonlocal seen, next_print
        with lock:
            out, lines[:] = list(lines), []
        for line in out:
            last_lines.append(line)
            if echo:
                print(line, flush=True)
        records = _read_jsonl(log_path)[seen:]
        seen += len(records)
        for i, rec in enumerate(records):
            last = final and i == len(records) - 1
            if rec["iter"] >= next_print or last or total_iters is None:
                print(_format_record(rec, total_iters), flush=True)
                next_print = (rec["iter"] // step + 1) * step

    while proc.poll() is None:
        time.sleep(0.5)
        drain(final=False)
    reader.join(timeout=5)
    drain(final=True)
    seconds = time.time() - start
    if proc.returncode != 0:
        quoted = "\n".join(last_lines)
        raise RunFailed(
            f"training exited with status {proc.returncode} after {seconds:.0f} s: {format_command(cmd)}\n"
            f"last {len(last_lines)} lines of its output:\n{quoted}"
        )
    return seconds


def prepare_run_dir(run_dir: Path, *, resume: bool) -> None:
    """Delete an earlier run in ``run_dir`` unless ``resume`` (then the engine continues or reuses it).

    Only a directory the engine wrote (it has ``config.json``) is deleted; anything else is an error.
    """
    run_dir = Path(run_dir)
    if resume or not run_dir.exists():
        return
    if not (run_dir / "config.json").is_file():
        raise FileExistsError(
            f"{run_dir} exists but is not a cbp run directory (no config.json); choose another out_dir"
        )
    shutil.rmtree(run_dir)


def train_runs(
    spec: RunSpec,
    *,
    baseline: bool | None,
    resume: bool,
    datasets: Sequence[str] = ("synthetic", "ade20k", "cocostuff10k"),
    root: Path | None = None,
) -> dict[str, Path]:
    """Train the page's run (and its learnable baseline), printing each command and its progress.

    Args:
        spec: the run.
        baseline: also train :meth:`RunSpec.baseline` (learnable classifier, no OCCL, same rest);
            None = :func:`auto_baseline`.
        resume: keep an existing run directory (the engine resumes it, or reuses a finished run);
            False deletes it first so the page shows a run of the current code.
        datasets: the datasets this page accepts.
        root: repository root (default :func:`repo_root`).

    Returns:
        ``label -> run directory``, e.g. ``{"CBP + OCCL": ..., "learnable baseline": ...}``.

    Raises:
        ValueError: ``spec.dataset`` is not one of ``datasets``.
        RunFailed: a run exited with an error.
    """
    if spec.dataset not in datasets:
        raise ValueError(
            f"dataset={spec.dataset!r} is not one of {', '.join(map(repr, datasets))} on this page"
        )
    root = root or repo_root()
    specs = {run_name(spec): spec}
    if baseline is None:
        baseline = auto_baseline(spec)
    if baseline:
        specs[run_name(spec.baseline())] = spec.baseline()
    out = {}
    for label, s in specs.items():
        run_dir = s.run_dir(root)
        prepare_run_dir(run_dir, resume=resume)
        cmd = train_command(s, root)
        print(f"== {label}: {format_command(cmd)}", flush=True)
        seconds = run(cmd, run_dir, cwd=root, total_iters=total_iters(s))
        print(f"== {label}: done in {seconds:.0f} s -> {run_dir}\n", flush=True)
        out[label] = run_dir
    return out


def run_name(spec: RunSpec) -> str:
    """ "CBP + OCCL", "CBP", "learnable baseline" (linear, no OCCL) or "learnable + OCCL"."""
    if spec.classifier == "cbp":
        return "CBP + OCCL" if spec.occl else "CBP"
    return "learnable + OCCL" if spec.occl else "learnable baseline"


def run_label(metrics: dict[str, Any]) -> str:
    """ "this run: SYNTHETIC, 200 iters, batch 8, cpu (...) x1" from a ``metrics.json``."""
    from cbp.paper import DATASET_NAMES

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


# --------------------------------------------------------------------------------------------
# Reading a run


def _count_lines(path: Path) -> int:
    return len(_read_jsonl(path))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of ``path`` ([] if missing); a half-written last line is skipped."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # being written
    return out


def read_log(run_dir: str | Path, name: str = "log.jsonl") -> pd.DataFrame:
    """``log.jsonl`` (or ``eval.jsonl``) of a run as a DataFrame indexed by ``iter``.

    Raises:
        FileNotFoundError: the run has no such file (it has not logged yet, or ``run_dir`` is wrong).
    """
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: has the run in {run_dir} started?")
    records = _read_jsonl(path)
    if not records:
        return pd.DataFrame(columns=["iter"]).set_index("iter")
    return pd.DataFrame.from_records(records).set_index("iter").sort_index()


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a finished run (mIoU, mAcc, aAcc, per-class lists, device, config...)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished")
    return json.loads(path.read_text())


def per_class_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: name, IoU, Acc, F1 (percent; NaN when absent from validation), training pixel
    count and prototype norm, sorted from the most to the least frequent class (by index if counts are unknown).
    """
    n = len(metrics["class_names"])

    def col(key: str) -> np.ndarray:
        values = metrics.get(key)
        if values is None:
            return np.full(n, np.nan)
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    table = pd.DataFrame(
        {
            "class": metrics["class_names"],
            "IoU": col("IoU"),
            "Acc": col("Acc"),
            "F1": col("F1"),
            "pixel_count": col("pixel_counts"),
            "prototype_norm": col("prototype_norms"),
        }
    )
    table.index.name = "class_id"
    table.attrs["order"] = "class index (no pixel counts for this dataset)"
    if table["pixel_count"].notna().all():
        table = table.sort_values("pixel_count", ascending=False, kind="stable")
        table.attrs["order"] = "most to least frequent in training"
    return table


def summary_row(metrics: dict[str, Any], label: str) -> dict[str, Any]:
    """A row for a results table: label, mIoU, mAcc, aAcc, iterations, device, training time."""
    return {
        "run": label,
        "mIoU": round(metrics["mIoU"], 2),
        "mAcc": round(metrics["mAcc"], 2),
        "aAcc": round(metrics["aAcc"], 2),
        "iters": metrics["iters"],
        "device": metrics.get("device", "?"),
        "minutes": round(metrics.get("seconds", float("nan")) / 60, 1),
    }


def predict_examples(run_dir: str | Path, indices: Sequence[int], *, device: str = "cpu") -> dict[str, Any]:
    """Segment some validation images with a run's ``ckpt_last.pt``.

    Returns:
        dict with "images" list of uint8 (H, W, 3), "labels" / "preds" lists of int64 (H, W)
        (255 = ignore in labels), "palette" uint8 (N, 3), "class_names".
    """
    from cbp import checkpoint
    from cbp.build import build_split, read_run_config, restore_model, test_transform
    from cbp.evaluate import predict

    cfg = read_run_config(run_dir)
    raw = build_split(cfg, "val")
    test = build_split(cfg, "val", test_transform(cfg))
    model, _ = restore_model(cfg, test.num_classes, Path(run_dir) / checkpoint.CKPT_NAME)
    model.to(device).eval()
    images, labels, preds = [], [], []
    for i in indices:
        image, label = raw[i]  # (3, H, W) uint8, (H, W) int64
        x, _ = test[i]  # (3, h, w) float, normalised
        pred = predict(model, x[None].to(device), tuple(label.shape), cfg, test.num_classes)  # (1, H, W)
        images.append(image.permute(1, 2, 0).numpy())
        labels.append(label.numpy())
        preds.append(pred[0].cpu().numpy())
    palette = getattr(raw, "palette", None)
    if palette is None:
        palette = np.random.default_rng(0).integers(0, 256, size=(test.num_classes, 3), dtype=np.uint8)
    return {
        "images": images,
        "labels": labels,
        "preds": preds,
        "palette": np.asarray(palette, dtype=np.uint8),
        "class_names": list(raw.class_names),
    }


def colorize(label: np.ndarray, palette: np.ndarray, ignore_color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Class map (H, W) int -> RGB uint8 (H, W, 3) with ``palette`` (N, 3); ignored / out-of-range pixels black."""
    palette = np.asarray(palette, dtype=np.uint8)
    table = np.vstack([palette, np.asarray(ignore_color, dtype=np.uint8)[None]])  # (N + 1, 3)
    idx = np.where((label >= 0) & (label < len(palette)), label, len(palette))
    return table[idx]


# --------------------------------------------------------------------------------------------
# Figures and tables of the training pages


def _run_color(label: str) -> str:
    """The book's colour of a run, from its :func:`run_name` (CBP runs vs learnable ones)."""
    from cbp.plotting import CLASSIFIER_COLORS

    return CLASSIFIER_COLORS["cbp" if "CBP" in label else "learnable"]


def plot_losses(
    runs: dict[str, str | Path], terms: Sequence[str] = ("loss", "ce", "centroid", "category")
) -> Any:
    """One panel per loss term, one line per run (``label -> run_dir``); a term a run lacks is skipped.

    Returns:
        The matplotlib figure.
    """
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), squeeze=False)
    for label, run_dir in runs.items():
        log = read_log(run_dir)
        color = _run_color(label)
        for ax, term in zip(axes[0], terms):
            if term in log and log[term].abs().sum() > 0:
                ax.plot(log.index, log[term], label=label, color=color)
    names = {"loss": "total loss (Eq. 7)", "ce": "cross-entropy", "centroid": "centroid loss (Eq. 4)"}
    names["category"] = "category loss (Eq. 5)"
    for ax, term in zip(axes[0], terms):
        ax.set_title(names.get(term, term))
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss (mean over logged window)")
    axes[0][0].legend()
    return fig


def plot_miou(runs: dict[str, str | Path]) -> Any:
    """Validation mIoU against iterations (``eval.jsonl`` + the final ``metrics.json``), one line per run."""
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    for label, run_dir in runs.items():
        metrics = read_metrics(run_dir)
        points = {metrics["iters"]: metrics["mIoU"]}
        if (Path(run_dir) / "eval.jsonl").is_file():
            points = {**read_log(run_dir, "eval.jsonl")["mIoU"].to_dict(), **points}
        color = _run_color(label)
        ax.plot(list(points), list(points.values()), marker="o", label=label, color=color)
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation mIoU (%)")
    ax.legend()
    return fig


def plot_per_class_iou(tables: dict[str, pd.DataFrame], *, max_classes: int = 60) -> Any:
    """Per-class IoU bars, classes from the most to the least frequent (training pixels), one bar per run.

    Args:
        tables: ``label -> per_class_table(metrics)`` (same classes, same order).
        max_classes: at most this many classes, evenly spread over the frequency order (150 / 171 bars
            are unreadable on a page).
    """
    from matplotlib import pyplot as plt

    first = next(iter(tables.values()))
    order = first.index.to_numpy()
    if len(order) > max_classes:
        order = order[np.linspace(0, len(order) - 1, max_classes).round().astype(int)]
    width = 0.8 / len(tables)
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(min(16.0, 2.0 + 0.22 * len(order)), 3.6))
    for k, (label, table) in enumerate(tables.items()):
        color = _run_color(label)
        ax.bar(
            x + (k - (len(tables) - 1) / 2) * width, table.loc[order, "IoU"], width, label=label, color=color
        )
    ax.set_xticks(x, first.loc[order, "class"], rotation=90, fontsize=7)
    ax.set_xlabel(f"class, {first.attrs.get('order', 'by index')} (no bar: IoU 0, or absent from validation)")
    ax.set_ylabel("IoU (%)")
    ax.legend()
    return fig


def plot_predictions(examples: dict[str, dict[str, Any]]) -> Any:
    """Image | ground truth | one prediction per run, one row per validation image.

    Args:
        examples: ``label -> predict_examples(run_dir, indices)`` (same indices for every run).
    """
    from matplotlib import pyplot as plt

    first = next(iter(examples.values()))
    rows, cols = len(first["images"]), 2 + len(examples)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for r in range(rows):
        panels = [
            ("image", first["images"][r]),
            ("ground truth", colorize(first["labels"][r], first["palette"])),
        ]
        panels += [(label, colorize(ex["preds"][r], ex["palette"])) for label, ex in examples.items()]
        for ax, (title, img) in zip(axes[r], panels):
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if r == 0:
                ax.set_title(title, fontsize=9)
    return fig


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
    from cbp.paper import PAPER_MODEL, PAPER_TABLE1_GAINS, paper_label

    fam = family(backbone)
    rows = []
    rows.append(
        {
            "source": paper_label(paper_dataset),
            "model": PAPER_MODEL[fam],
            "baseline mIoU": "not in our copy",
            "method mIoU": "not in our copy",
            "gain (mIoU points)": f"+{PAPER_TABLE1_GAINS[(paper_dataset, fam)]:.1f}",
        }
    )
    gain = "run with baseline=True" if baseline is None else f"{ours['mIoU'] - baseline['mIoU']:+.2f}"
    rows.append(
        {
            "source": run_label,
            "model": backbone,
            "baseline mIoU": "not run" if baseline is None else f"{baseline['mIoU']:.2f}",
            "method mIoU": f"{ours['mIoU']:.2f}",
            "gain (mIoU points)": gain,
        }
    )
    return pd.DataFrame(rows)


def synthetic_caveat(paper_dataset: str, ours: dict[str, Any]) -> str:
    """Markdown warning that a synthetic run's numbers are not comparable with the paper's Table 1.

    Args:
        paper_dataset: the page's dataset of the paper ("ade20k" or "cocostuff10k").
        ours: the run's ``metrics.json`` (its ``iters`` and ``device`` are quoted).
    """
    from cbp.paper import DATASET_NAMES, DATASET_SIZES, PAPER_ITERS

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
