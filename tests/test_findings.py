"""The first screen of the README and the intro quotes the records, and no verdict's words are parsed back."""

from __future__ import annotations

import re
from pathlib import Path

from cbp.experiments import verdicts

ROOT = Path(__file__).resolve().parents[1]


def test_readme_and_intro_first_screen_numbers_are_the_records() -> None:
    """The five lines of the README and of the intro: the current study's calibration and the paper's
    premise on its sets as :mod:`cbp.book.current_study` computes them from the records, and the second
    study's 150-class reversal (history) as its records give it."""
    from cbp.book import current_study

    pages = {
        name: " ".join((ROOT / name).read_text(encoding="utf-8").split())
        for name in ("README.md", "book/intro.md")
    }
    hard = verdicts.records(ROOT / "results/ablations-v2-hard150")
    row = verdicts.compare(hard).set_index("key").loc["t3_both"]  # CBP + OCCL vs the baseline
    quoted = f"{row['mean']:+.2f} mIoU [{row.lo:+.2f}, {row.hi:+.2f}]".replace("-", "\u2212")
    assert row.n == 3 and row["mean"] < 0
    sentences = [current_study.calibration_sentence(ROOT), current_study.premise_sentence(ROOT), quoted]
    for sentence in (*sentences, current_study.progress_sentence(ROOT)):
        for name, text in pages.items():
            assert sentence in text, (name, sentence)
    # the tuning's outcome in words: CBP + OCCL's own head lr against every arm's (study.TUNED6)
    from cbp.experiments import study

    tuned = study.TUNED6
    higher = tuned is not None and tuned["cbp_head_lr_mult"] > tuned["head_lr_mult"]
    for name, text in pages.items():
        assert ("OCCL won at a higher learning rate" in text) == higher, name


def test_no_verdict_words_are_parsed_back() -> None:
    """Verdicts are constants or a Verdict enum where they are made; pages only format them (issue 18)."""
    patterns = (
        r'verdict[\w\]\["\'\)]*\.split\(',
        r'verdict[\w\]\["\'\)]*\.startswith\(',
        r"verdict\w*\)\.split",
        r"""\.split\(["'] \(["']\)""",  # a display label cut back to its first words (issue 18)
        r"""(==|!=|\bin)\s*["'](holds|does not hold|not resolved|no record)["']""",  # a verdict's words compared
        r"""["'](holds|does not hold|not resolved|no record)["']\s*(==|!=|in\b|not in\b)""",  # ... either way
    )
    offenders = []
    for path in sorted(
        [*(ROOT / "cbp").rglob("*.py"), *(ROOT / "notebooks").glob("*.py"), *(ROOT / "book").glob("*.py")]
    ):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(re.search(p, line) for p in patterns):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
