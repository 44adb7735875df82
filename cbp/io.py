"""Reading and writing the project's JSON and JSON-lines files, in one place.

Every JSON file the engine, the study and the book write goes through :func:`write_json` (atomic:
a temporary file in the same folder, then a rename, so a reader never sees half a file) and every
``*.jsonl`` log is read by :func:`read_jsonl`, which keeps the complete lines only (a line being
written, or cut by a crash, is left out).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The temporaries this project's writers leave while they work: ``.<name>.<pid>.tmp`` (:func:`write_json`)
#: and ``.<name>.tmp-<pid>-<random>`` (the synthetic generator's folder); the pid is the writer's.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.tmp$|^\..+\.tmp-(\d+)-[^/]*$")


def read_json(path: str | Path) -> Any:
    """The JSON value stored in ``path`` (raises FileNotFoundError / json.JSONDecodeError)."""
    return json.loads(Path(path).read_text())


def write_json(obj: Any, path: str | Path, *, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file + rename), mode 0644.

    NaN and infinity are refused (``allow_nan=False``): they are not JSON and other readers choke
    on them; store None instead.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=indent, allow_nan=False) + "\n")
        os.chmod(tmp, 0o644)
        tmp.replace(path)
    finally:
        if tmp.exists():  # (not unlink(missing_ok=True): on a read-only file system it raises over the cause)
            tmp.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporaries (``.<name>.<pid>.tmp`` and ``.<name>.tmp-<pid>-*``) in ``folder`` whose writer is no longer running.

    A writer killed mid-write (kill -9, a power cut) leaves its temporary behind; one still writing keeps
    it, whoever calls this. Returns the paths removed.
    """
    removed = []
    for path in Path(folder).glob(".*"):
        m = _TEMPORARY.match(path.name)
        if m is None or pid_alive(int(m.group(1) or m.group(2))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a JSON-lines file, in order ([] if the file does not exist).

    Reading stops at the first line that is not valid JSON: a line being written (or cut by a
    crash) is the last one, and everything before it is whole.
    """
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
            break
    return out


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as a line of ``path`` and flush it to the OS."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


class UnreadableFileError(ValueError):
    """A file that cannot be read safely (exit code 4): a torch file that :func:`load_torch` refuses
    (unsafe pickle, another program's objects) or cannot read, or a data set's file that is not a
    regular file (:func:`cbp.data.ade20k.check_regular`), cannot be decoded (an empty or corrupt image,
    a decompression bomb, a broken ``cbp_meta.json``) or does not fit (a label of another size than
    its image, values outside the classes). The message names the file."""


class WrongCheckpointError(ValueError):
    """A readable torch file of another model (exit code 2, like a bad option: the file is fine, but not
    for this config): a checkpoint of another backbone, classifier or class count. The message names the
    file, the first key that differs and both shapes (:func:`state_mismatch`)."""


def state_mismatch(model: Mapping[str, Any], saved: Mapping[str, Any]) -> str | None:
    """Where a file's state dict ``saved`` does not fit a model's ``model``, in words; None when it fits.

    The first key, in the model's order, that is missing from the file or has another shape there
    ("classifier.prototypes is (150, 256) in the file, (50, 256) in this model"), else the first key of
    the file that the model lacks.
    """

    def shape(value: Any) -> tuple[int, ...] | None:
        return tuple(value.shape) if hasattr(value, "shape") else None

    for key, value in model.items():
        if key not in saved:
            return f"{key} {shape(value)} of this model is not in the file"
        if shape(saved[key]) != shape(value):
            return f"{key} is {shape(saved[key])} in the file, {shape(value)} in this model"
    extra = [key for key in saved if key not in model]
    if extra:
        return f"{extra[0]} {shape(saved[extra[0]])} of the file is not in this model"
    return None


def load_torch(path: str | Path, map_location: str | Any = "cpu") -> Any:
    """``torch.load`` of a file a user may supply, safely: ``weights_only=True``, never unpickling code.

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: (a ValueError) the file is not a plain tensors-and-containers file (a
            pickle that would run code, or a checkpoint of another program holding objects), or it is
            truncated; the message names the file.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message starts by suggesting weights_only=False; quote only what it refused
        refused = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if not refused:  # not a pickle of objects but bytes the unpickler cannot read at all
            raise UnreadableFileError(
                f"{path} is not a readable torch file (truncated or corrupt?)"
            ) from None
        raise UnreadableFileError(
            f"{path} was not loaded: it holds Python objects that torch's safe loader refuses "
            f"(loading them could run code from the file). Save plain tensors instead, e.g. "
            f"torch.save(model.state_dict(), PATH). ({refused[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise UnreadableFileError(
            f"{path} is not a readable torch file (truncated or corrupt?): {e}"
        ) from None
