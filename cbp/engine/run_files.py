"""What a run folder holds: the files the engine writes there, and whether a folder is a run.

``python -m cbp.train --out RUN`` writes only the files of :data:`ENGINE_FILES` into ``RUN``
(``python -m cbp.evaluate`` adds ``eval-*.json``). A folder is a *run* when it holds a
``config.json`` the engine wrote (a JSON object with exactly the config's sections, which reads as
a config) and a checkpoint, a log or the run's lock (the engine takes the lock first, and writes
``config.json`` once the set-up has succeeded). Any other file or sub-folder in it is *foreign*: the
engine never wrote it, so whatever deletes runs (``cbp.book.launch``) leaves such a folder alone,
and ``cbp.evaluate --out`` never writes over a file of a run.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

from cbp.engine.checkpoint import CKPT_NAME, PREV_NAME
from cbp.engine.config import Config, from_dict, to_dict

CONFIG_NAME = "config.json"
LOCK_NAME = ".lock"

#: The names (shell patterns) of everything the engine writes in a run folder.
ENGINE_FILES = (
    CONFIG_NAME,
    LOCK_NAME,
    "log.jsonl",
    "eval.jsonl",
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
