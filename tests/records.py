"""The tests' one fake-record factory: a training record as ``cbp.experiments.runner`` writes it.

Only the fields the readers use are filled (``run``, ``kind``, ``regime``, ``arm``, ``seed``, ``config``,
``metrics``, ``hardware``, ``analysis``, ``curve``); a test adds others through ``fields``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The CPU model the study's records carry (``hardware.cpu_model``).
CPU = "AuthenticAMD AMD EPYC (family 25, model 1, stepping 1; no AVX-512)"


def train_record(
    arm: str,
    seed: int,
    miou: float,
    *,
    regime: str = "pretrained",
    iters: int = 2000,
    macc: float | None = None,
    analysis: dict[str, Any] | None = None,
    curve: list[tuple[int, float]] | None = None,
    cpu: str = CPU,
    **fields: Any,
) -> dict[str, Any]:
    """A training record: final ``miou`` (mAcc ``miou + 5`` unless given), ``curve`` as (iteration, mIoU)
    pairs (mAcc 5 above), ``fields`` added at the top level (replacing the defaults)."""
    rec: dict[str, Any] = {
        "run": f"{regime}-{arm}-s{seed}",
        "kind": "train",
        "regime": regime,
        "arm": arm,
        "seed": seed,
        "config": {"train": {"iters": iters}},
        "metrics": {"mIoU": miou, "mAcc": miou + 5 if macc is None else macc},
        "hardware": {"cpu_model": cpu},
        "analysis": analysis or {},
        "curve": [{"iter": t, "mIoU": v, "mAcc": v + 5} for t, v in curve or ()],
    }
    rec.update(fields)
    return rec


def write_records(folder: str | Path, recs: list[dict[str, Any]]) -> Path:
    """Write ``recs`` as a results folder (one JSON file each, in order) and return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(recs):
        (folder / f"{i:03d}-{r['run']}.json").write_text(json.dumps(r))
    return folder
