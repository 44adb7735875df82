"""Atomic checkpoints and the RNG states a bit-exact resume needs.

A checkpoint is written to a temporary file in the run directory and moved over the old one
with ``os.replace`` (atomic on POSIX), so a crash or a kill mid-write never leaves a truncated
``ckpt_last.pt``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cbp.io import load_torch

CKPT_NAME = "ckpt_last.pt"


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


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :mod:`cbp.engine.train`, safely (``weights_only=True``: see :func:`cbp.io.load_torch`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: pass --ckpt PATH or train the run first")
    return load_torch(path, map_location=map_location)
