"""What the command lines print and return when something goes wrong.

A user's mistake (a bad key or value, a missing file, a full disk, a diverged run) is one line on
stderr that says what was wrong, which key / path / file, and what to do; never a traceback. A bug
(anything else) prints its traceback and returns 1. ``CBP_DEBUG=1`` prints the traceback for every
error. Exit codes, the same for ``cbp.train``, ``cbp.evaluate``, ``cbp.experiments`` and
``cbp.data.synthetic``:

====  ==========================================================================
rc    meaning
====  ==========================================================================
0     success
1     a bug: the traceback is printed; please report it
2     usage or config: an unknown option or key, a bad value, a run directory
      that holds another config, a second process on the same run, a checkpoint
      of another model (backbone, classifier or class count)
3     the run diverged (a non-finite loss or state); the last good checkpoint is kept
4     data or file: a missing / unreadable / unsafe file or folder, a full disk,
      a read-only output folder
5     torchrun: this rank lost its peer process (another rank or the launcher
      ended, e.g. killed); the last checkpoint is kept: re-run to resume
====  ==========================================================================

Under ``torchrun`` rank 0 prints the line (the other ranks stay quiet unless they hit a bug; every
rank that lost its peer says so, rank 0 may be the one that ended) and every rank writes it to
torchrun's error file, so torchrun's summary names the cause too.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cbp.cli import EXIT_BUG, EXIT_DATA, EXIT_DIVERGED, EXIT_PEER, EXIT_USAGE, OneLineParser
from cbp.engine.config import ConfigError
from cbp.io import UnreadableFileError, WrongCheckpointError

# the exit codes and the parser live in cbp.cli (cbp.data uses them too) and are re-exported here
__all__ = [
    "EXIT_BUG",
    "EXIT_DATA",
    "EXIT_DIVERGED",
    "EXIT_PEER",
    "EXIT_USAGE",
    "DataError",
    "OneLineParser",
    "describe",
    "one_line",
    "out_folder",
    "run_cli",
]


class DataError(Exception):
    """Data or a file the run needs is missing or unusable (exit code 4); the message says which and what to do."""


def one_line(text: str) -> str:
    """``text`` on one line: its lines joined by '; ' (a trailing ':' is kept as it is)."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    out = ""
    for p in parts:
        out += p if not out else (" " if out.endswith(":") else "; ") + p
    return out


_WORKER = re.compile(r"^Caught (\w+) in DataLoader worker process \d+\.")


def _message(exc: BaseException) -> str:
    """The message of ``exc``, or, for an exception a DataLoader worker raised, the worker's own one.

    torch re-raises a worker's exception in the main process as the same type whose message is
    "Caught X in DataLoader worker process N." and the worker's traceback, which ends with
    ``module.X: message`` (with ``num_workers=0`` the dataset's exception arrives as it was raised).
    """
    text = str(exc)
    m = _WORKER.match(text)
    if m:
        last = list(re.finditer(rf"^(?:[\w.]+\.)?{m.group(1)}: ", text, re.MULTILINE))
        if last:
            text = text[last[-1].end() :]
    return text


#: What a collective (gloo, NCCL) raises when the process at the other end ended, and what the
#: DataLoader raises when torchrun, ending the job after another rank failed, terminated its workers.
_PEER_LOST = re.compile(
    r"Connection (?:reset|closed) by peer|Broken pipe|ncclRemoteError|NCCL communicator was aborted"
    r"|remote process exited|DataLoader worker \(pid \d+\) is killed by signal: Terminated"
)


def _lost_peer(exc: BaseException) -> str | None:
    """Under torchrun, what says that this rank lost its peer process, in ``exc`` or in an exception it
    was raised while handling (a gloo error during the backward, then the DataLoader's); else None."""
    if _env_int("WORLD_SIZE", 1) < 2:
        return None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        m = _PEER_LOST.search(str(e)) if isinstance(e, RuntimeError) else None
        if m:
            return m.group(0)
        e = e.__cause__ or e.__context__
    return None


def _free_mb(folder: Path | None) -> str:
    if folder is None:
        return ""
    for p in (folder, *folder.parents):
        if p.exists():
            return f" ({shutil.disk_usage(p).free / 2**20:.0f} MB free there)"
    return ""


def describe(
    exc: BaseException, *, codes: Mapping[type, int] | None = None, folder: Path | None = None
) -> tuple[int, str]:
    """(exit code, one-line message) of an exception; code 1 (a bug) when it is none of the known kinds.

    Args:
        exc: the exception.
        codes: more exception types and their codes (e.g. the engine's TrainingDiverged -> 3).
        folder: the folder the command writes to (named when the disk is full).
    """
    text = one_line(_message(exc))
    for tp, code in (codes or {}).items():
        if isinstance(exc, tp):
            return code, text
    if (why := _lost_peer(exc)) is not None:
        rank, world = _rank(), _env_int("WORLD_SIZE", 1)
        peer = f"rank {1 - rank}" if world == 2 else "another rank"
        kept = f"{folder} keeps its last checkpoint; " if folder else ""
        return EXIT_PEER, (
            f"rank {rank} lost its peer process ({peer} or the launcher ended) and stopped too ({why}). "
            f"{kept}torchrun's summary names the process that ended first; re-run the same command to resume"
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = Path(exc.filename).parent if exc.filename else folder
        return EXIT_DATA, (
            f"disk full: no space left writing to {where or 'the output folder'}{_free_mb(where)}; free some "
            "space or write the run elsewhere (--out), then re-run the same command"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        where = Path(exc.filename).parent if exc.filename else folder
        return EXIT_DATA, (
            f"{where or 'the output folder'} is on a read-only file system: nothing can be written there; "
            "pass --out with a folder on a writable disk (or remount it read-write)"
        )
    if isinstance(exc, RuntimeError) and "inline_container" in text:  # torch.save to a path, short write
        return EXIT_DATA, (
            f"writing a torch file in {folder or 'the output folder'} failed{_free_mb(folder)}: is the disk "
            f"full? ({text}); free some space, then re-run the same command"
        )
    if isinstance(exc, (ConfigError, WrongCheckpointError)):
        return EXIT_USAGE, text
    if isinstance(exc, (DataError, UnreadableFileError)):
        return EXIT_DATA, text
    if isinstance(exc, OSError) and isinstance(
        exc, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)
    ):
        if exc.filename and exc.strerror:  # raised by the OS: "[Errno 2] No such file ..." -> readable
            return EXIT_DATA, f"{exc.strerror}: {exc.filename}; check the path (and its permissions)"
        return EXIT_DATA, text
    name = type(exc).__name__
    if name == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA)
        return EXIT_USAGE, (
            f"out of GPU memory ({text.split(';')[0]}); lower --train.device_batch (gradient "
            "accumulation keeps the total batch) or use --train.amp=bf16"
        )
    return EXIT_BUG, f"{name}: {text}"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _rank() -> int:
    return _env_int("RANK", 0)


def _ignore_sigterm() -> None:
    """Ignore SIGTERM from here on (this process is exiting; the main thread only)."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def _write_elastic_error_file(message: str, callstack: str) -> None:
    """torchrun's per-rank error file (``TORCHELASTIC_ERROR_FILE``): its summary then shows ``message``."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    data = {
        "message": {
            "message": message,
            "extraInfo": {"py_callstack": callstack, "timestamp": str(int(time.time()))},
        }
    }
    try:
        Path(path).write_text(json.dumps(data))
    except OSError:
        pass


def run_cli(
    prog: str,
    main: Callable[[list[str]], Any],
    argv: list[str],
    *,
    codes: Mapping[type, int] | None = None,
    folder: Path | None = None,
) -> None:
    """Run ``main(argv)``; turn an exception into one line on stderr and its exit code (see the module).

    Args:
        prog: the name in the message, e.g. ``"cbp.train"``.
        main: the command's function.
        argv: its arguments.
        codes: more exception types and their exit codes.
        folder: the output folder (named when the disk is full).

    Raises:
        SystemExit: with the exit code on any error (``main``'s own SystemExit passes through).
    """
    try:
        main(argv)
        sys.stdout.flush()  # a reader that went away shows here, not as a message at exit
    except SystemExit:
        raise
    except KeyboardInterrupt as e:
        print(f"[{prog}] interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except BrokenPipeError:  # the reader of stdout went away (``... | head``): not a bug, nothing to say
        try:  # no second error when Python flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to flush
            pass
        raise SystemExit(141) from None  # 128 + SIGPIPE, as a shell reports it
    except Exception as e:
        code, message = describe(e, codes=codes, folder=folder)
        debug = os.environ.get("CBP_DEBUG", "") not in ("", "0")
        tb = traceback.format_exc()
        if code == EXIT_BUG:
            rank = _rank()
            where = f" (rank {rank})" if "RANK" in os.environ else ""
            sys.stderr.write(tb)
            print(
                f"[{prog}] internal error{where}: {message}. This is a bug: please report it with the "
                "traceback above.",
                file=sys.stderr,
                flush=True,
            )
        elif _rank() == 0 or code == EXIT_PEER:  # rank 0 may be the process that ended
            if code == EXIT_PEER:  # torchrun's SIGTERM to the survivors must not replace the exit code
                _ignore_sigterm()
            if debug:
                sys.stderr.write(tb)
            print(f"[{prog}] error: {message}", file=sys.stderr, flush=True)
        _write_elastic_error_file(f"[{prog}] error: {message}", tb if code == EXIT_BUG or debug else message)
        raise SystemExit(code) from None


def out_folder(argv: list[str], flag: str = "--out") -> Path | None:
    """The value of ``--out DIR`` / ``--out=DIR`` in ``argv`` (None when absent), without parsing the rest."""
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return Path(argv[i + 1])
        if a.startswith(flag + "="):
            return Path(a.split("=", 1)[1])
    return None
