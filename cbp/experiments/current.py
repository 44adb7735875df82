"""Which study the book reads: one pointer to the current study, and the superseded ones (history).

Every page that reports the study reads :data:`CURRENT` (its results folders, its name); when a new
study lands, this file changes and the pages follow. The superseded studies (:data:`HISTORY`) are
read only by the book's appendix "History of the study"; a test fails when one of their arms' means
appears on another page (:func:`superseded_arm_means`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cbp.experiments import verdicts
from cbp.experiments.runner import results_dir
from cbp.experiments.study import CALIBRATION_CANDIDATES

STUDY = "ablations"


@dataclass(frozen=True)
class Study:
    """One study of the protocol: its name on the pages and the profiles whose records it consists of."""

    name: str  # "first", "second", "third"
    amendment: str  # the protocol's amendment(s) that define it
    begun: str  # ISO date of its first commit
    profiles: tuple[str, ...]  # its results profiles (results/<study>[-<profile>]), in reading order
    benchmark: str  # in words, for captions

    def folders(self, root: str | Path = ".") -> dict[str, Path]:
        """``profile -> results folder`` (existing or not)."""
        return {p: Path(root) / results_dir(STUDY, p) for p in self.profiles}


#: The study the book's main pages read, amendment 6's: calibration, tuning, schedule check, verdicts.
CURRENT = Study(
    name="third",
    amendment="6",
    begun="2026-12-06",
    profiles=(*(f"calib-{c}" for c in CALIBRATION_CANDIDATES), "a6-tune", "a6-schedule", "a6"),
    benchmark="SYNTHETIC 150-class set calibrated to the paper's regime",
)

#: The superseded studies, oldest first: read only by the appendix "History of the study".
HISTORY: tuple[Study, ...] = (
    Study("first", "1-4", "2026-11-25", ("default", "long"), "SYNTHETIC 50-class set, generator 1"),
    Study(
        "second",
        "5",
        "2026-11-28",
        ("tune", "endpoints", "tables", "hard150"),
        "SYNTHETIC 50-class set (and 150 classes), generator 2",
    ),
)

#: The current study's verdict runs (amendment 6's profile ``a6``).
VERDICT_PROFILE = "a6"


def superseded_arm_means(root: str | Path = ".") -> set[str]:
    """Every superseded study's arms' seed-mean mIoU and mAcc, as the pages print them (2 decimals).

    An arm is a profile's run name without its seed (regime, arm, variant); means of one seed are included (a one-seed arm's "mean" is
    its value). Used by the test that keeps these numbers on the history page only.
    """
    out: set[str] = set()
    for study in HISTORY:
        for folder in study.folders(root).values():
            df = verdicts.records(folder)  # an empty folder has no arms
            arms = df.run.str.replace(r"-s\d+$", "", regex=True)  # regime-arm[-variant], without the seed
            out.update(f"{float(np.mean(g[m])):.2f}" for _, g in df.groupby(arms) for m in ("mIoU", "mAcc"))
    return out
