"""The run folder (``--out RUN``): what the engine writes there, who may use it, whether a run may resume.

What it holds. ``python -m cbp.train --out RUN`` writes only the files of :data:`ENGINE_FILES` into
``RUN`` (``python -m cbp.evaluate`` adds ``eval-*.json``). A folder is a *run* (:func:`is_run`) when
it holds a ``config.json`` the engine wrote (a JSON object with exactly the config's sections, which
reads as a config) and a checkpoint, a log or the run's lock (the engine takes the lock first, and
writes ``config.json`` once the set-up has succeeded). Any other file or sub-folder in it is
*foreign* (:func:`foreign_files`): the engine never wrote it, so whatever deletes runs
(``cbp.book.launch``) leaves such a folder alone, and ``cbp.evaluate --out`` never writes over a
file of a run.

Who uses it. Only one process at a time: ``.lock``, an ``flock`` the kernel releases when the
process ends (:func:`try_lock_run_dir`, :func:`locked`, and the engine's :func:`run_dir_lock`); a
second process stops at once (:class:`RunLocked`, exit code 2), naming the holder's PID.

Whether a run may resume. Running again in the same folder resumes from the checkpoint with the
same config (:func:`check_resume_config`), except for run-time keys that cannot change the weights
(:data:`RUN_TIME_KEYS`: data.root, num_workers, progress, log/ckpt/eval intervals, device) and
:data:`RECOVERY_KEYS`: ``train.iters`` may grow (the poly schedule is then recomputed for the new
length from the resumed iteration on), never below the checkpoint; ``optim.lr``, ``optim.grad_clip``
and ``train.amp`` may change to recover from a divergence. Any other difference is refused
(:class:`ResumeRefused`, exit code 2, listing the differences). Each accepted change is printed and
appended to ``changes.jsonl`` (:func:`open_run_dir`).

Every start cuts ``log.jsonl`` and ``eval.jsonl`` back to the checkpoint's iteration (to empty
without one; a partial last line is dropped with a warning, :func:`cut_log`) and removes the
temporary files a killed process left, so that after any kill each iteration appears once in each log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import warnings
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch.distributed as dist

from cbp.distributed import is_distributed, is_main_process
from cbp.engine.checkpoint import CKPT_NAME, PREV_NAME
from cbp.engine.config import Config, ConfigError, diff, from_dict, to_dict
from cbp.io import append_jsonl, read_json, write_json

__all__ = [
    "CONFIG_NAME",
    "ENGINE_FILES",
    "LOCK_NAME",
    "MARKERS",
    "RECOVERY_KEYS",
    "RUN_LOGS",
    "RUN_TIME_KEYS",
    "ResumeRefused",
    "RunLocked",
    "check_resume_config",
    "cut_log",
    "foreign_files",
    "is_engine_file",
    "is_run",
    "is_unused",
    "locked",
    "open_run_dir",
    "run_dir_lock",
    "try_lock_run_dir",
]

CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"

#: The JSON-lines logs that every start cuts back to the checkpoint's iteration.
RUN_LOGS = ("log.jsonl", "eval.jsonl")

#: The names (shell patterns) of everything the engine writes in a run folder.
ENGINE_FILES = (
    CONFIG_NAME,
    LOCK_NAME,
    *RUN_LOGS,
    "changes.jsonl",
    "metrics.json",
    CKPT_NAME,
    PREV_NAME,
    f"{CKPT_NAME}.unreadable",  # set aside by a resume (cbp.engine.checkpoint.load_latest)
    f"{CKPT_NAME}.nonfinite",
    "eval-*.json",  # python -m cbp.evaluate's records
    ".*.tmp",  # a write in progress, or left by a killed process
)

#: Besides ``config.json``, a run holds at least one of these.
MARKERS = (CKPT_NAME, PREV_NAME, "log.jsonl", LOCK_NAME)


# --------------------------------------------------------------------------------------------
# What a run folder holds


def is_engine_file(name: str) -> bool:
    """Whether the engine writes a file of this name in a run folder (:data:`ENGINE_FILES`)."""
    return any(fnmatchcase(name, pattern) for pattern in ENGINE_FILES)


def foreign_files(folder: Path) -> list[str]:
    """The entries of ``folder`` the engine does not write, sorted; a sub-folder ends with ``/``.

    [] for a folder that does not exist (or is not a folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p.name + "/" if p.is_dir() and not p.is_symlink() else p.name
        for p in folder.iterdir()
        if p.is_dir() or not is_engine_file(p.name)
    )


def is_run(folder: Path) -> bool:
    """Whether ``folder`` is a run: the engine's ``config.json`` and a checkpoint, a log or the lock."""
    folder = Path(folder)
    config = folder / CONFIG_NAME
    if not config.is_file() or not any((folder / name).is_file() for name in MARKERS):
        return False
    try:
        data = json.loads(config.read_text())
        if not isinstance(data, dict) or data.keys() != to_dict(Config()).keys():
            return False
        from_dict(data)
    except (OSError, ValueError):  # unreadable, not JSON, not a config (a ConfigError is a ValueError)
        return False
    return True


def is_unused(folder: Path) -> bool:
    """Whether ``folder`` holds nothing yet: it does not exist, is empty, or holds only the lock (of a
    start that stopped before its set-up was done)."""
    folder = Path(folder)
    return not folder.is_dir() or {p.name for p in folder.iterdir()} <= {LOCK_NAME}


# --------------------------------------------------------------------------------------------
# Who uses it: the lock


class RunLocked(ConfigError):
    """Another process is training in the run directory (exit code 2, like any usage error).

    Attributes:
        out: the run directory.
        holder: the holder's PID as its lock file says (or "(unknown PID)").
    """

    def __init__(self, out: Path, holder: str) -> None:
        super().__init__(
            f"{out} is in use: process {holder} is training this run. Wait for it to finish, or stop it "
            f"(kill {holder}: it saves a checkpoint, and the same command resumes), or use another --out"
        )
        self.out, self.holder = out, holder


def try_lock_run_dir(out: Path) -> tuple[int | None, str]:
    """Take the run folder's exclusive lock without waiting (creating the folder if needed).

    Returns (open locked file descriptor, "") or (None, the holder's PID as its lock file says); the
    lock lasts until the descriptor is closed or the process ends.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        for _ in range(20):  # the holder writes its PID just after taking the lock
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            if holder:
                break
            time.sleep(0.05)
        os.close(fd)
        return None, holder or "(unknown PID)"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, ""


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the run folder's lock (this process only) inside; e.g. to delete a run nobody trains.

    Raises:
        RunLocked: another process holds it (nothing waits).
    """
    fd, holder = try_lock_run_dir(Path(out))
    if fd is None:
        raise RunLocked(Path(out), holder)
    try:
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``out/.lock`` (rank 0) while this process uses the run directory.

    The kernel releases the lock when the process ends, however it ends, so the file left by a
    crashed run never blocks the next one. When another process holds it, every rank raises
    :class:`RunLocked` naming the holder's PID, before anything is built. When this process created
    ``out`` and fails before writing anything into it (a failed set-up), ``out`` is removed again.
    """
    created = not out.exists()
    fd, holder = try_lock_run_dir(out) if is_main_process() else (None, "")
    if is_distributed():
        box = [holder]
        dist.broadcast_object_list(box, src=0)
        holder = box[0]
    if holder:
        raise RunLocked(out, holder)
    try:
        yield
    except BaseException:
        if created and fd is not None and {p.name for p in out.iterdir()} == {LOCK_NAME}:
            with contextlib.suppress(OSError):  # the set-up's error is the one to report, not this
                (out / LOCK_NAME).unlink()
                out.rmdir()
        raise
    finally:
        if fd is not None:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# Whether a run may resume


RUN_TIME_KEYS = frozenset(
    {
        "data.root",
        "train.num_workers",
        "train.progress",
        "train.log_every",
        "train.ckpt_every",
        "train.eval_every",
        "train.device",
    }
)
"""Keys that a resume may change because they cannot change the trained weights (where the data are
staged, how fast and how verbosely the run goes)."""

RECOVERY_KEYS = frozenset({"train.iters", "optim.lr", "optim.grad_clip", "train.amp"})
"""Keys that a resume may change although they change the run from the resumed iteration on. They are a
longer run (``train.iters`` may grow, never below the checkpoint) and the remedies for a divergence
that the non-finite-loss message advises (a lower lr, clipping, another AMP mode)."""


class ResumeRefused(ConfigError):
    """The run folder holds a run of another config (exit code 2).

    Attributes:
        changed: every difference, key -> (value in ``config.json``, value now), the refused ones
            and the accepted ones.
    """

    def __init__(self, message: str, changed: dict[str, tuple[Any, Any]]) -> None:
        super().__init__(message)
        self.changed = changed


def check_resume_config(cfg: Config, out: Path) -> dict[str, tuple[Any, Any]]:
    """Compare ``cfg`` with the ``config.json`` of a run in ``out``; the differences, key -> (old, new).

    Raises:
        ResumeRefused: a key outside :data:`RUN_TIME_KEYS` and :data:`RECOVERY_KEYS` differs (resuming
            would mix two experiments); the message lists those keys.
    """
    path = out / CONFIG_NAME
    if not path.is_file():
        return {}
    changed = diff(from_dict(read_json(path)), cfg)
    refused = {k: v for k, v in changed.items() if k not in RUN_TIME_KEYS | RECOVERY_KEYS}
    if refused:
        lines = "\n".join(f"  {k}: {a!r} (in config.json) -> {b!r} (now)" for k, (a, b) in refused.items())
        raise ResumeRefused(
            f"{out} holds a run with a different config; re-running there resumes it, so only run-time keys "
            f"({', '.join(sorted(RUN_TIME_KEYS))}) and {', '.join(sorted(RECOVERY_KEYS))} may change. "
            f"Differences:\n{lines}\nUse a new --out directory for a different experiment.",
            changed,
        )
    return changed


# --------------------------------------------------------------------------------------------
# Opening it: logs cut back, config written


def open_run_dir(out: Path, cfg: Config, iteration: int, changed: dict[str, tuple[Any, Any]]) -> None:
    """After a successful set-up (rank 0): remove stale temporary files, cut ``log.jsonl`` and
    ``eval.jsonl`` back to the resumed ``iteration``, write ``config.json``, report config changes."""
    if not is_main_process():
        return
    for tmp in out.glob(".*.tmp"):  # left by a process killed while writing (we hold the lock)
        tmp.unlink(missing_ok=True)
    for name in RUN_LOGS:  # to the checkpoint's iteration, to empty without one
        cut_log(out / name, iteration)
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        print(f"[cbp.train] resuming at iteration {iteration} with changed keys: {what}", flush=True)
        append_jsonl(out / "changes.jsonl", {"iter": iteration, "changed": changed})
    write_json(to_dict(cfg), out / CONFIG_NAME)


def cut_log(path: Path, iteration: int) -> None:
    """Keep the records of the JSON-lines log ``path`` up to ``iteration`` (rewritten atomically).

    A run killed after a log line but before its next checkpoint wrote lines the resumed run writes
    again; a run killed mid-write (or out of disk) left a partial line. Both are dropped, the
    partial one with a warning that names the file.
    """
    if not path.is_file():
        return
    text = path.read_text()
    keep, bad = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            bad.append(number)
        elif record.get("iter", 0) <= iteration:
            keep.append(line + "\n")
    if bad:
        warnings.warn(
            f"{path}: dropped {len(bad)} partial or unreadable line(s) (line {', '.join(map(str, bad))}), "
            "left by a run that was killed or ran out of disk while writing",
            stacklevel=2,
        )
    if "".join(keep) != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(keep))
        os.chmod(tmp, 0o644)
        tmp.replace(path)
