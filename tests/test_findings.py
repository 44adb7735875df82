"""The findings summary scores ties as ties, shows words, and matches what the intro page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cbp.book import findings
from cbp.experiments import claims

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "ablations"


def _results(arms: dict[str, list[float]], regime: str = "pretrained") -> dict:
    """A results dict with given per-seed mIoU (mAcc = mIoU) for some arms."""
    recs = {
        arm: [{"metrics": {"mIoU": v, "mAcc": v}, "analysis": {}} for v in vals] for arm, vals in arms.items()
    }
    return {"runs": {}, "by_arm": {regime: recs}}


def _claim(key: str) -> claims.Claim:
    return next(c for c in claims.CLAIMS if c.key == key)


def test_a_clear_gain_on_a_paper_tie_does_not_hold() -> None:
    tie = _claim("t3_cbp")  # "+CBP alone ≈ baseline", the paper's +0.1
    gain = _results({"cbp": [40.0, 40.5, 41.0], "linear": [30.0, 30.5, 31.0]})
    level = _results({"cbp": [30.1, 30.6, 31.1], "linear": [30.0, 30.5, 31.0]})
    loss = _results({"cbp": [20.0, 20.5, 21.0], "linear": [30.0, 30.5, 31.0]})
    # the study itself scores a clear gain on a paper tie as not holding (it once said "holds (clear gain ...)")
    assert claims.evaluate_claim(tie, gain, "pretrained")["verdict"].startswith(claims.FAILS)
    assert claims.evaluate_claim(tie, gain, "pretrained")["score"] == findings.FAILS
    assert claims.evaluate_claim(tie, level, "pretrained")["score"] == findings.HOLDS
    assert claims.evaluate_claim(tie, loss, "pretrained")["score"] == findings.FAILS
    words = findings.verdict_words(tie, claims.evaluate_claim(tie, gain, "pretrained"))
    assert words.startswith("does not hold") and "gain" in words


def test_a_directional_claim_keeps_the_protocol_rule() -> None:
    claim = _claim("t3_both")  # CBP + OCCL beats the baseline
    up = _results({"cbp_occl": [40.0, 40.5, 41.0], "linear": [30.0, 30.5, 31.0]})
    flat = _results({"cbp_occl": [30.0, 32.0, 29.0], "linear": [30.0, 30.5, 31.0]})
    assert claims.evaluate_claim(claim, up, "pretrained")["score"] == findings.HOLDS
    assert claims.evaluate_claim(claim, flat, "pretrained")["score"] == findings.NOISE
    missing = _results({"linear": [30.0, 30.5, 31.0]})
    assert claims.evaluate_claim(claim, missing, "pretrained")["score"] == findings.NOT_RUN


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no recorded study")
def test_verdict_table_is_narrow_and_in_words() -> None:
    table = findings.verdict_table(claims.load_results(RESULTS))
    assert len(table.columns) <= 6
    assert list(table.columns[:3]) == [
        "claim",
        "verdict, pretrained",
        "verdict, scratch",
    ]  # verdict beside claim
    for text in table["claim"]:
        assert "_" not in text, f"code name in a claim: {text}"
    table8 = table[table["claim"].str.contains("Table 8")]["claim"].item()
    assert "class separability" in table8 and "mIoU" not in table8
    # the count agrees with the table's own cells
    counts = findings.counts(claims.load_results(RESULTS))
    paper_rows = table[~table["paper"].str.contains("not in paper")]
    n_holds = int((paper_rows["verdict, pretrained"] == findings.HOLDS).sum())
    assert counts.loc[findings.HOLDS, "pretrained"] == n_holds
    assert counts["pretrained"].sum() == len(paper_rows)


def test_readme_and_intro_first_screen_numbers_are_the_records() -> None:
    """The five lines of the README and of the intro: the current study's calibration and the paper's
    premise on its sets as :mod:`cbp.book.current_study` computes them from the records, and the second
    study's 150-class reversal (history) as its records give it."""
    from cbp.book import current_study

    pages = {
        name: " ".join((ROOT / name).read_text(encoding="utf-8").split())
        for name in ("README.md", "book/intro.md")
    }
    hard = claims.load_results(ROOT / "results/ablations-v2-hard150")
    (row,) = claims.paired_verdict_rows(hard, claim_keys=("t3_both",))
    lo, hi = row["ci95"]
    quoted = f"{row['mean']:+.2f} mIoU [{lo:+.2f}, {hi:+.2f}]".replace("-", "\u2212")
    assert row["n"] == 3 and row["mean"] < 0
    for sentence in (current_study.calibration_sentence(ROOT), current_study.premise_sentence(ROOT), quoted):
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
    )
    offenders = []
    for path in sorted((ROOT / "cbp").rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(re.search(p, line) for p in patterns):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, offenders
