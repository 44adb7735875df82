"""Launch the engine from a book page: the page's parameters -> a ``python -m cbp.train`` / ``torchrun``
command -> a subprocess whose progress the page shows (used by chapters 5 and 6).

:func:`train_command` builds the command line, :func:`run` starts it and shows its progress,
:func:`train_runs` trains (or reuses) the runs of a page.
"""

from __future__ import annotations

import collections
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

from cbp.engine.config import PAPER_DATASETS, PAPER_PRESETS, get_preset
from cbp.io import read_jsonl
from cbp.models.builder import get_spec

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


def total_iters(spec: RunSpec) -> int:
    """Iterations the run will train: ``spec.iters``, the CPU default, or the preset's schedule."""

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
    seen = len(read_jsonl(log_path))  # a resumed run: only new records
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
        records = read_jsonl(log_path)[seen:]
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
