"""What every command line of cbp shares, below the engine so that ``cbp.data`` can use it too: the
exit codes and an ``argparse`` parser whose usage errors are one line.

The exit codes (the same for ``cbp.train``, ``cbp.evaluate``, ``cbp.experiments`` and
``cbp.data.synthetic``; :mod:`cbp.engine.errors` says what each command prints):
1 a bug, 2 usage or config, 3 a diverged run, 4 data or file, 5 a rank of a ``torchrun`` job that lost
its peer process (another rank or the launcher ended).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_BUG, EXIT_USAGE, EXIT_DIVERGED, EXIT_DATA, EXIT_PEER = 1, 2, 3, 4, 5


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line (``[prog] error: ...``, exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        name = self.prog.removeprefix("python -m ")
        print(f"[{name}] error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USAGE)
