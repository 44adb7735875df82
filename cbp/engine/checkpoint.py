"""Atomic checkpoints, the previous one kept, and the RNG states a bit-exact resume needs.

A checkpoint is written to a temporary file in the run directory (synced to disk, mode 0644) and
moved over the old one with ``os.replace`` (atomic on POSIX), so a crash or a kill mid-write never
leaves a truncated ``ckpt_last.pt``; the temporary file it may leave (``.ckpt_last.pt.*.tmp``) is
removed by the next start. The checkpoint it replaces stays as ``ckpt_prev.pt`` (a hard link
made before the move, so ``ckpt_last.pt`` exists at every moment), and :func:`load_latest` falls
back to it, with a warning, when ``ckpt_last.pt`` cannot be read (a disk that lied about a sync,
a file copied half-way) or holds non-finite values (saved by an engine before :func:`nonfinite` was
checked on every save: a diverged state must never be resumed).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cbp.io import UnreadableFileError, WrongCheckpointError, load_torch, state_mismatch

CKPT_NAME = "ckpt_last.pt"
PREV_NAME = "ckpt_prev.pt"


def rng_state(extra_generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's RNG states: torch (CPU), CUDA (all devices), numpy, python, and named generators.

    Only tensors, numbers, strings, lists and dicts: a checkpoint holding them loads with
    ``torch.load(..., weights_only=True)``, which never runs code from the file.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (legacy global state: code we call may use it)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "generators": {k: g.get_state() for k, g in (extra_generators or {}).items()},
    }
    return state


def set_rng_state(state: dict[str, Any], extra_generators: dict[str, torch.Generator] | None = None) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    numpy_state = (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    np.random.set_state(numpy_state)  # noqa: NPY002 (the legacy global state is what code we call may use)
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for k, g in (extra_generators or {}).items():
        if k in state.get("generators", {}):
            g.set_state(state["generators"][k])


def save_atomic(obj: Any, path: Path, *, previous: Path | None = None) -> None:
    """``torch.save`` to a temporary file beside ``path`` (synced, mode 0644), then ``os.replace`` it into place.

    Args:
        obj: what to save (tensors, numbers, strings, lists, dicts: it loads with ``weights_only=True``).
        path: the file, e.g. ``RUN/ckpt_last.pt``.
        previous: where the file being replaced is kept (e.g. ``RUN/ckpt_prev.pt``); None keeps nothing.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if previous is not None and path.is_file():
            _keep(path, Path(previous))
        os.replace(tmp, path)
        _sync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _keep(path: Path, previous: Path) -> None:
    """Make ``previous`` a copy of ``path`` atomically, ``path`` staying in place (a hard link if possible)."""
    fd, tmp = tempfile.mkstemp(dir=previous.parent, prefix=f".{previous.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(path, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(path, tmp)
        os.replace(tmp, previous)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sync_dir(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_run_checkpoint(obj: Any, run_dir: Path) -> Path:
    """Write ``run_dir/ckpt_last.pt`` atomically, keeping the checkpoint it replaces as ``ckpt_prev.pt``."""
    path = Path(run_dir) / CKPT_NAME
    save_atomic(obj, path, previous=Path(run_dir) / PREV_NAME)
    return path


def nonfinite(ckpt: dict[str, Any]) -> list[str]:
    """The floating-point tensors of a checkpoint's model (parameters and buffers) and optimiser state
    that hold a NaN or an infinity, by name (``model.decoder.bn.running_var``,
    ``optimizer.state.3.exp_avg_sq``); [] for a good checkpoint."""
    found: list[str] = []

    def walk(x: Any, name: str) -> None:
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                found.append(name)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(v, f"{name}.{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                walk(v, f"{name}.{i}")

    for key in ("model", "optimizer"):
        walk(ckpt.get(key), key)
    return found


def load_latest(
    run_dir: Path, map_location: str | torch.device = "cpu", *, set_aside: bool = False
) -> tuple[dict[str, Any], Path] | None:
    """The newest usable checkpoint of a run and its path: ``ckpt_last.pt``, else ``ckpt_prev.pt``.

    Usable: readable, and every tensor of its model and optimiser state finite (:func:`nonfinite`).
    ``set_aside`` (the training process, which holds the run's lock): an unusable ``ckpt_last.pt``
    is renamed ``ckpt_last.pt.unreadable`` (or ``.nonfinite``), so that the next save does not keep
    it as ``ckpt_prev.pt`` over the good previous checkpoint.

    Returns:
        None when the run has no checkpoint (a fresh run, or one killed before its first).

    Raises:
        ValueError (the type :func:`cbp.io.load_torch` raises): neither checkpoint can be used; the
            message names both files.
    """
    errors: list[tuple[ValueError, str]] = []  # (why, the suffix of the set-aside file)
    for name in (CKPT_NAME, PREV_NAME):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:
            ckpt = load(path, map_location=map_location)
        except ValueError as e:
            errors.append((e, "unreadable"))
            continue
        if bad_tensors := nonfinite(ckpt):
            more = len(bad_tensors) - 3
            shown = ", ".join(bad_tensors[:3]) + (f" and {more} more" if more > 0 else "")
            errors.append((UnreadableFileError(f"{path} holds non-finite values ({shown})"), "nonfinite"))
            continue
        if errors:
            (why, suffix), bad = errors[0], Path(run_dir) / CKPT_NAME
            aside = ""
            if set_aside and bad.is_file():
                os.replace(bad, bad.with_name(f"{bad.name}.{suffix}"))
                aside = f" (renamed {bad.name}.{suffix})"
            said = f"{bad} is unreadable{aside}" if suffix == "unreadable" else f"{why}{aside}"
            warnings.warn(
                f"{said}, so the run resumes from the previous checkpoint {path} (iteration {ckpt['iter']})"
                + (f": {why}" if suffix == "unreadable" else ""),
                stacklevel=2,
            )
        return ckpt, path
    if errors:
        raise type(errors[-1][0])(
            f"no usable checkpoint in {run_dir}: {'; '.join(str(e) for e, _ in errors)}. Move the run "
            "folder aside and start again (or restore a checkpoint into it)"
        )
    return None


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :mod:`cbp.engine.train`, safely (``weights_only=True``: see :func:`cbp.io.load_torch`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: pass --ckpt PATH or train the run first")
    return load_torch(path, map_location=map_location)


def load_model_state(model: torch.nn.Module, ckpt: dict[str, Any], path: Path, *, hint: str) -> None:
    """Load the weights of the checkpoint ``ckpt`` (read from ``path``) into ``model``.

    Args:
        model: the model of this config.
        ckpt: the checkpoint (its ``"model"`` state dict; its ``"config"`` names the backbone it was saved from).
        path: the file, for the message.
        hint: what to do instead, ending the message.

    Raises:
        WrongCheckpointError: (exit code 2) the checkpoint is of another model (backbone, classifier or
            class count); the message names the file, the first key that differs and both shapes.
    """
    where = state_mismatch(model.state_dict(), ckpt["model"])
    if where is not None:
        saved = (ckpt.get("config") or {}).get("model") or {}
        by = (
            f" (it was saved by a run of {saved['backbone']}, {saved['classifier']})"
            if "backbone" in saved
            else ""
        )
        raise WrongCheckpointError(f"{path} is a checkpoint of another model{by}: {where}; {hint}")
    model.load_state_dict(ckpt["model"])
