"""Launch the engine from a book page: the page's parameters -> a ``python -m cbp.train`` / ``torchrun``
command -> a subprocess whose progress the page shows (used by chapters 5 and 6).

:func:`train_command` builds the command line, :func:`run` starts it and streams its output in
short form, :func:`train_runs` trains, resumes or reuses the runs of a page. Nothing is ever deleted
unless a page asks for it (its parameter ``resume=False``, which says what it deletes before it
does), and then only a run: a folder the engine recognises as one and that holds nothing the engine
did not write. The engine's public API is all it uses: its command-line parser (:mod:`cbp.engine.command`),
its presets (:func:`cbp.engine.config.preset_for`) and its run-folder checks (:mod:`cbp.engine.run_dir`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cbp.engine.command import parse_args
from cbp.engine.config import get_preset, preset_for
from cbp.engine.run_dir import (
    LOCK_NAME,
    ResumeRefused,
    RunLocked,
    check_resume_config,
    foreign_files,
    is_run,
    is_unused,
    locked,
)
from cbp.io import read_json

#: Training iterations that keep a CPU run of the synthetic set to about a minute per backbone.
CPU_ITERS: dict[str, int] = dict(cnn_tiny=200, resnet18=60, convnext_atto=100, swin_atto=100, mit_b0=100)

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


def run_experiments(*args: str, root: Path) -> None:
    """``python -m cbp.experiments ARGS`` in ``root``, printed first; a failed step fails the page
    (chapter 7's and the appendices' ``rerun`` parameter)."""
    cmd = [sys.executable, "-m", "cbp.experiments", *args]
    print("running:", " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=root, check=True)


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
            return root / self.out_dir  # an absolute out_dir stays itself
        occl = "_occl" if self.occl else ""
        iters = f"{self.resolved_iters}it" if self.resolved_iters else "paper"
        name = f"{self.prefix}_{self.backbone}_{self.classifier}{occl}_{self.dataset}_{iters}_s{self.seed}"
        return root / "runs" / name

    def baseline(self) -> RunSpec:
        """The paper's baseline of this run: learnable 1x1 classifier with bias, no OCCL, same rest."""
        out = f"{self.out_dir.rstrip('/')}_baseline" if self.out_dir else ""
        return dataclasses.replace(self, classifier="linear", occl=False, out_dir=out)


def train_command(spec: RunSpec, root: Path, *, python: str = sys.executable) -> list[str]:
    """The command line that trains ``spec`` (run it with ``cwd=root``).

    CPU (``gpus == 0``): one process, ``--train.device=cpu``. One GPU: ``--train.device=cuda``.
    K GPUs: ``python -m torch.distributed.run --standalone --nproc_per_node=K -m cbp.train ...``
    (what ``torchrun`` runs). The total batch stays the preset's; the engine accumulates gradients
    when K x device batch is smaller. Logging: ``--train.progress=true`` (the engine's bar, which
    :func:`run` condenses to about 20 lines on the page) and about 50 ``log.jsonl`` records per run
    (at most every 50 iterations).
    """
    if spec.gpus < 0:
        raise ValueError(f"gpus must be >= 0 (0 = CPU), got {spec.gpus}")
    if spec.classifier not in ("cbp", "linear"):
        raise ValueError(
            f"classifier must be 'cbp' (frozen prototypes) or 'linear' (learnable), got {spec.classifier!r}"
        )
    preset, overrides = preset_for(spec.dataset, spec.backbone)
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={spec.gpus}"]
    cmd = [python, *(torchrun if spec.gpus > 1 else []), "-m", "cbp.train", "--preset", preset]
    cmd += ["--out", str(spec.run_dir(root)), *overrides]
    device = "cuda" if spec.gpus > 0 else "cpu"
    cmd += [f"--model.classifier={spec.classifier}", f"--loss.occl={str(spec.occl).lower()}"]
    cmd += [f"--seed={spec.seed}", f"--train.device={device}", "--train.progress=true"]
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
        cmd += [f"--train.iters={iters}", f"--train.log_every={max(1, min(50, iters // 50))}"]
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


#: A line of the engine's training bar, e.g.
#: ``train:  45%|####  | 90/200 [00:10<00:12, 8.90it/s, loss=1.234, lr=1.00e-03]``.
_TRAIN_BAR = re.compile(r"^train:\s+\d+%\|.*?\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]")
_EVAL_BAR = re.compile(r"^eval:\s+\d+%\|")


def progress_line(line: str) -> tuple[int, int, str] | None:
    """(iteration, total, summary) of a line of the engine's training bar; None for any other line.

    The summary reads ``iter 90/200  loss 1.234  lr 1.00e-03  8.90 it/s  eta 0.2 min``.
    """
    m = _TRAIN_BAR.match(line.strip())
    if m is None:
        return None
    it, total = int(m.group(1)), int(m.group(2))
    fields = [f.strip() for f in m.group(3).split(",")]
    times = fields[0].split("<") if fields else []
    parts = [f"iter {it}/{total}"]
    parts += [f.replace("=", " ") for f in fields[2:]]  # loss=..., lr=... (the bar's postfix)
    if len(fields) > 1 and not fields[1].startswith("?"):
        parts.append(fields[1].replace("it/s", " it/s").replace("s/it", " s/it"))
    if len(times) == 2 and times[1] != "?" and it < total:
        parts.append(f"eta {times[1]}")
    return it, total, "  ".join(parts)


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    total_iters: int | None = None,
    max_lines: int = 20,
) -> float:
    """Run a training command, streaming its output in short form; the wall time in seconds.

    The engine's output (stdout and stderr, one stream) is read line by line as it comes: its
    training bar becomes about ``max_lines`` summary lines over the run (``iter i/N  loss ...  lr
    ...``, the last iteration always), its evaluation bars are left out, and every other line (set-up
    messages, warnings, the final mIoU line) is printed as it is.

    Args:
        cmd: the command (from :func:`train_command`; it should leave ``train.progress`` on).
        cwd: working directory of the subprocess.
        total_iters: iterations of the run (default: the bar's own total).
        max_lines: about how many progress lines to print over the run.

    Raises:
        RunFailed: the command exited with a non-zero status (the message quotes its last 40 lines).
    """
    last_lines: collections.deque[str] = collections.deque(maxlen=40)
    start = time.time()
    with subprocess.Popen(
        list(cmd),
        cwd=cwd,
        # One thread unless the caller says otherwise: on a busy CPU (a laptop in a workshop, the study
        # on the other core) torch's default of one thread per core spins against the other load
        # (30 synthetic iterations: 89 s with 2 threads vs 16 s with 1, the other core busy).
        env={"OMP_NUM_THREADS": "1", **os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,  # universal newlines: each '\r' update of a tqdm bar is a line
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        _condense(proc.stdout, last_lines, total_iters=total_iters, max_lines=max_lines)
    seconds = time.time() - start
    if proc.returncode != 0:
        quoted = "\n".join(last_lines)
        raise RunFailed(
            f"training exited with status {proc.returncode} after {seconds:.0f} s: {format_command(cmd)}\n"
            f"last {len(last_lines)} lines of its output:\n{quoted}"
        )
    return seconds


def _condense(
    lines: Iterable[str], last_lines: collections.deque[str], *, total_iters: int | None, max_lines: int
) -> None:
    """Print the engine's output ``lines`` in short form as they come (see :func:`run`); each printed or
    echoed line is appended to ``last_lines``, the error message's quote."""
    printed = next_print = -1
    for raw in lines:
        line = raw.rstrip()
        if not line or _EVAL_BAR.match(line):
            continue
        progress = progress_line(line)
        if progress is None:
            last_lines.append(line)
            print(line, flush=True)
            continue
        it, total, summary = progress
        total = total_iters or total
        step = max(1, total // max(1, max_lines))
        if it != printed and (it >= next_print or it == total):
            print(summary, flush=True)
            last_lines.append(summary)
            printed, next_print = it, (it // step + 1) * step


class RunDirConflict(ValueError):
    """A page's run folder holds a run of another config (or other files); nothing is deleted."""


def holds_run(run_dir: Path) -> bool:
    """Whether a page's run folder holds a run (True) or nothing yet (False: no folder, an empty one, or
    only the lock of a start that stopped before its set-up was done).

    Raises:
        RunDirConflict: the folder holds files the engine does not write (the one-line message names
            the folder and them), or it is not a run (a ``config.json`` the engine did not write).
    """
    run_dir = Path(run_dir)
    if foreign := foreign_files(run_dir):
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise RunDirConflict(
            f"{run_dir} holds files the engine does not write ({shown}), so a page neither trains in it nor "
            "deletes it; nothing was deleted. Move them elsewhere, or choose another out_dir."
        )
    if is_run(run_dir):
        return True
    if is_unused(run_dir):
        return False
    raise RunDirConflict(
        f"{run_dir} is not a cbp run folder (a run holds a config.json written by the engine and a "
        "checkpoint or a log); nothing was deleted. Choose another out_dir."
    )


def run_dir_state(cmd: Sequence[str], run_dir: Path) -> str:
    """What :func:`train_runs` finds in the run folder of ``cmd``: ``"new"``, ``"finished"`` or ``"unfinished"``.

    ``"finished"``: a run of the same config (up to the keys the engine lets a resume change, e.g.
    ``data.root`` or ``train.num_workers``) whose ``metrics.json`` covers ``train.iters``: it is
    reused. ``"unfinished"``: the same config without a final result (or with ``train.iters``
    raised): the engine resumes it from its checkpoint.

    Raises:
        RunDirConflict: the folder holds a run of another config (the message names the folder and
            the differing keys), or files that are not a run's (:func:`holds_run`).
    """
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return "new"
    cfg, _ = parse_args(list(cmd[list(cmd).index("cbp.train") + 1 :]))
    try:
        check_resume_config(cfg, run_dir)
    except ResumeRefused as e:
        keys = "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in e.changed.items())
        raise RunDirConflict(
            f"{run_dir} holds a run of another config (differing keys: {keys}); nothing was deleted. "
            "Pass resume=False (the page's parameter `resume`) to delete it and train afresh, or choose "
            "another out_dir."
        ) from None
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and int(read_json(metrics).get("iters", 0)) >= cfg.train.iters:
        return "finished"
    return "unfinished"


def delete_run_dir(run_dir: Path) -> list[str]:
    """Delete the run folder ``run_dir`` (only a run, with nothing the engine did not write); what it deleted.

    Only :func:`train_runs` with ``resume=False`` calls it; it prints the folder and its files before
    it deletes them. A folder that holds no run yet (:func:`holds_run`) is left as it is.

    Raises:
        RunDirConflict: ``run_dir`` is not a run or holds files the engine does not write, or a
            process holds its lock (nothing is deleted).
    """
    run_dir = Path(run_dir)
    if not holds_run(run_dir):
        return []
    try:
        with locked(run_dir):  # never delete a run a process is training right now
            files = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_NAME)
            print(f"== resume=False: deleting {run_dir} ({len(files)} files: {', '.join(files)})", flush=True)
            shutil.rmtree(run_dir)
    except RunLocked as e:
        raise RunDirConflict(
            f"{run_dir} is in use by process {e.holder} (it holds the run's lock); nothing was deleted. "
            "Wait for it to finish or stop it first."
        ) from None
    return files


def train_runs(
    spec: RunSpec,
    *,
    baseline: bool | None,
    resume: bool = True,
    datasets: Sequence[str] = ("synthetic", "ade20k", "cocostuff10k"),
    root: Path | None = None,
) -> dict[str, Path]:
    """Train the page's run (and its learnable baseline), printing each command and its progress.

    Args:
        spec: the run.
        baseline: also train :meth:`RunSpec.baseline`; None = :func:`auto_baseline`.
        resume: True reuses a finished run of the same config ("already trained") and resumes an
            unfinished one, deleting nothing; False deletes the runs' folders first (saying what it
            deletes, before it does; only runs: see :func:`holds_run`) and trains afresh, e.g. after a
            change to the code. The training pages' parameter of the same name.
        datasets: the datasets this page accepts.
        root: repository root (default :func:`repo_root`).

    Returns:
        ``label -> run directory``, e.g. ``{"CBP + OCCL": ..., "learnable baseline": ...}``.

    Raises:
        ValueError: ``spec.dataset`` is not one of ``datasets``.
        RunDirConflict: a run folder holds a run of another config, or files that are not a run.
        RunFailed: a run exited with an error.
    """
    if spec.dataset not in datasets:
        accepted = ", ".join(map(repr, datasets))
        raise ValueError(f"dataset={spec.dataset!r} is not one of {accepted} on this page")
    root = root or repo_root()
    with_baseline = auto_baseline(spec) if baseline is None else baseline
    specs = {run_name(s): s for s in ([spec, spec.baseline()] if with_baseline else [spec])}
    for s in specs.values():  # refuse a folder that is not a run before deleting or training anything
        holds_run(s.run_dir(root))
    out = {}
    for label, s in specs.items():
        run_dir = s.run_dir(root)
        cmd = train_command(s, root)
        if not resume:
            delete_run_dir(run_dir)
        state = run_dir_state(cmd, run_dir)
        if state == "finished":
            print(f"== {label}: already trained -> {run_dir} (resume=False retrains it)\n", flush=True)
        else:
            what = "resuming" if state == "unfinished" else "training"
            print(f"== {label} ({what}): {format_command(cmd)}", flush=True)
            seconds = run(cmd, cwd=root, total_iters=total_iters(s))
            print(f"== {label}: done in {seconds:.0f} s -> {run_dir}\n", flush=True)
        out[label] = run_dir
    return out


class _PageLines(io.TextIOBase):
    """A page's stdout while it trains: each ``==`` line once complete, paths relative to the repository."""

    def __init__(self, target: io.TextIOBase, prefix: str) -> None:
        self.target, self.prefix, self.rest = target, prefix, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.rest = (self.rest + text).split("\n")
        for line in lines:
            if line.startswith("=="):
                self.target.write(line.replace(self.prefix, "") + "\n")
                self.target.flush()
        return len(text)


@contextlib.contextmanager
def page_lines(root: Path | None = None) -> Iterator[None]:
    """Inside, stdout shows only the ``==`` lines of :func:`train_runs` (what it trains, reuses or
    deletes), each as it comes, with paths relative to the repository ``root`` (default
    :func:`repo_root`); the engine's progress is left out, each run keeps it in its ``log.jsonl``."""
    with contextlib.redirect_stdout(_PageLines(sys.stdout, f"{root or repo_root()}/")):
        yield


def run_name(spec: RunSpec) -> str:
    """ "CBP + OCCL", "CBP", "learnable baseline" (linear, no OCCL) or "learnable + OCCL"."""
    if spec.classifier == "cbp":
        return "CBP + OCCL" if spec.occl else "CBP"
    return "learnable + OCCL" if spec.occl else "learnable baseline"
