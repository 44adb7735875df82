"""The findings summary scores ties as ties, shows words, and matches what the intro page says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from cbp.book import findings
from cbp.experiments import claims, endpoints

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
    assert findings.score(tie, claims.evaluate_claim(tie, gain, "pretrained")["verdict"]) == findings.FAILS
    assert findings.score(tie, claims.evaluate_claim(tie, level, "pretrained")["verdict"]) == findings.HOLDS
    assert findings.score(tie, claims.evaluate_claim(tie, loss, "pretrained")["verdict"]) == findings.FAILS
    words = findings.verdict_words(tie, claims.evaluate_claim(tie, gain, "pretrained"))
    assert words.startswith("does not hold") and "gain" in words


def test_a_directional_claim_keeps_the_protocol_rule() -> None:
    claim = _claim("t3_both")  # CBP + OCCL beats the baseline
    up = _results({"cbp_occl": [40.0, 40.5, 41.0], "linear": [30.0, 30.5, 31.0]})
    flat = _results({"cbp_occl": [30.0, 32.0, 29.0], "linear": [30.0, 30.5, 31.0]})
    assert findings.score(claim, claims.evaluate_claim(claim, up, "pretrained")["verdict"]) == findings.HOLDS
    assert (
        findings.score(claim, claims.evaluate_claim(claim, flat, "pretrained")["verdict"]) == findings.NOISE
    )
    missing = _results({"linear": [30.0, 30.5, 31.0]})
    assert (
        findings.score(claim, claims.evaluate_claim(claim, missing, "pretrained")["verdict"])
        == findings.NOT_RUN
    )


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


@pytest.mark.skipif(not RESULTS.is_dir(), reason="no recorded study")
def test_intro_box_matches_the_records() -> None:
    page = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    long = ROOT / "results" / "ablations-long"
    block = findings.summary_markdown(
        claims.load_results(RESULTS),
        "results/ablations",
        claims.load_results(long) if long.is_dir() else None,
    )
    assert findings.replace_block(page, block) == page, (
        "book/intro.md's findings box is not the records' summary: run `python -m cbp.book.findings book/intro.md`"
    )
    folder = "results/ablations-v2-endpoints"
    new = findings.endpoint_markdown(claims.load_results(ROOT / folder), folder)
    assert findings.replace_block(page, new, findings.ENDPOINTS_START, findings.ENDPOINTS_END) == page, (
        "book/intro.md's end-point box is not the records' summary: run `python -m cbp.book.findings book/intro.md`"
    )
    folder = "results/ablations-v2-hard150"
    new = findings.hard150_markdown(claims.load_results(ROOT / folder), folder)
    assert findings.replace_block(page, new, findings.HARD_START, findings.HARD_END) == page, (
        "book/intro.md's 150-class box is not the records' summary: run `python -m cbp.book.findings book/intro.md`"
    )


def test_readme_first_screen_numbers_are_the_records() -> None:
    """The five lines of the README and of the intro quote the second study: its four Table 3 mIoU claims unresolved on the
    final models, and the 150-class reversal, each as the records give it."""
    page = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())  # as a reader reads it
    final = endpoints.final_verdict_rows(claims.load_results(ROOT / "results/ablations-v2-endpoints"))
    table3_miou = [r for r in final if "(mAcc)" not in r["claim"]]
    assert len(table3_miou) == 4 and all(r["verdict"] == "not resolved" for r in table3_miou)
    assert "none of Table 3's four mIoU claims was resolved on its final models (3 seeds)" in page
    hard = claims.load_results(ROOT / "results/ablations-v2-hard150")
    (row,) = claims.paired_verdict_rows(hard, claim_keys=("t3_both",))
    lo, hi = row["ci95"]
    quoted = f"{row['mean']:+.2f} mIoU [{lo:+.2f}, {hi:+.2f}]".replace("-", "\u2212")
    assert row["n"] == 3 and row["mean"] < 0 and quoted in page, quoted
    intro = " ".join((ROOT / "book" / "intro.md").read_text(encoding="utf-8").split())
    # the current study's calibration, as far as it is recorded (cbp.book.benchmark reads the same records)
    from cbp.book import benchmark

    table = benchmark.calibration_table(ROOT / "results")
    done = table[table.recorded]
    assert len(done) == 5 and not done.meets.any()
    span = f"five candidate sets put the baseline at {round(done.mIoU.min())}-{round(done.mIoU.max())} mIoU"
    f1 = f"(F1 {round(done.f1_rarest_group.min())}-{round(done.f1_rarest_group.max())})"
    for text in (page, intro):
        assert span in text and f1 in text, (span, f1)
    premise = endpoints.premise_rows(claims.load_results(ROOT / "results/ablations-v2-endpoints"))[0]
    assert "norm vs log pixel count" in premise["measured (final runs)"]
    norm = premise["ours"].replace("-", "\u2212")
    assert quoted in intro and f"correlated *negatively* with class frequency ({norm};" in intro, norm


def test_pages_tables_blocks_match_the_records() -> None:
    folder = "results/ablations-v2-tables"
    new = findings.tables_markdown(claims.load_results(ROOT / folder), folder)
    for page, (start, end) in (("book/intro.md", (findings.TABLES_START, findings.TABLES_END)),):
        text = (ROOT / page).read_text(encoding="utf-8")
        assert findings.replace_block(text, new, start, end) == text, (
            f"{page}'s block of the other tables is not the records' summary: run `python -m cbp.book.findings {page}`"
        )


def test_tables_box_reads_each_table_with_its_own_rule(tmp_path: Path) -> None:
    assert "No run of the other tables" in findings.tables_markdown(claims.load_results(tmp_path), "x")

    def rec(arm: str, seed: int, miou: float, cs: float) -> dict:
        return {
            "kind": "train",
            "regime": "pretrained",
            "arm": arm,
            "seed": seed,
            "recorded": f"2026-11-30 0{seed}:00:00",
            "config": {"train": {"iters": 2000, "eval_every": 0}, "model": {"backbone": "cnn_tiny"}},
            "data": {"num_classes": 50, "generator_version": 2, "fingerprint": {"sha256": "ef" * 32}},
            "metrics": {"mIoU": miou, "mAcc": miou + 10},
            "analysis": {"class_separability": cs},
        }

    def write(arm: str, seed: int, miou: float, cs: float = 1.0) -> None:
        (tmp_path / f"pretrained-{arm}-s{seed}.json").write_text(json.dumps(rec(arm, seed, miou, cs)))

    # T = 1 about 2 points below T = 2 on every seed (diffs -1.9, -2.1, -1.95): "lower" after Holm;
    # orthogonal only 3 points below CBP + OCCL (Table 5, a directional claim): "holds"; Table 8's
    # CS order (baseline 70 > equal only 5 > CBP + OCCL 0) on every seed: "holds"
    for s, (ref, t1, ortho) in enumerate([(80.0, 78.1, 77.0), (81.0, 78.9, 78.1), (79.5, 77.55, 76.4)]):
        write("cbp_occl", s, ref, cs=0.0)
        write("length1", s, t1)
        write("orthogonal", s, ortho)
        write("equal", s, ref, cs=5.0 + s)
        write("linear", s, ref, cs=70.0 + s)
    text = findings.tables_markdown(claims.load_results(tmp_path), "x")
    assert (
        "15 of 66 runs recorded at 2000 iterations" in text and "Provisional while runs are missing" in text
    )
    assert "fingerprint efefefefefef" in text
    lines = text.splitlines()
    t1 = next(line for line in lines if line.startswith("| 9 | T = 1 vs T = 2 |"))
    d = np.array([-1.9, -2.1, -1.95])
    half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert t1.endswith(
        f"| {d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}], 3 seeds: **lower** |"
    )
    assert next(line for line in lines if line.startswith("| 9 | T = 3")).endswith("| not recorded yet |")
    # a "|" inside a cell (penalty with |cos|) is escaped, so every row has the header's 5 cells
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| table")]
    assert all(len(re.split(r"(?<!\\)\|", line)) == 7 for line in rows)
    assert any("\\|cos\\|" in line for line in rows)
    eq = next(line for line in lines if line.startswith("| 5 | equalisation matters |"))
    d = np.array([3.0, 2.9, 3.1])
    half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert eq.endswith(
        f"| {d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}], 3 seeds: **holds** |"
    )
    assert lines[-1].startswith("| 8 | CS: ") and lines[-1].endswith(
        "| 71.0 ± 1.0 > 6.0 ± 1.0 > 0.000 ± 0.000: **holds** |"
    )


def test_hard150_box_reads_the_final_models(tmp_path: Path) -> None:
    assert "No run of the 150-class regime" in findings.hard150_markdown(claims.load_results(tmp_path), "x")

    def rec(arm: str, seed: int, miou: float, f1: float) -> dict:
        return {
            "kind": "train",
            "regime": "pretrained",
            "arm": arm,
            "seed": seed,
            "recorded": f"2026-11-30 0{seed}:00:00",
            "config": {"train": {"iters": 4000, "eval_every": 0}, "model": {"backbone": "cnn_tiny"}},
            "data": {"num_classes": 150, "generator_version": 2, "fingerprint": {"sha256": "cd" * 32}},
            "metrics": {"mIoU": miou, "mAcc": miou + 10},
            "analysis": {"f1_groups": [f1, 90.0]},
        }

    # CBP + OCCL 2 points above the baseline on each of 3 seeds (spread 0.1): holds after Holm
    for s, (base, both) in enumerate([(40.0, 42.0), (41.0, 43.1), (40.5, 42.4)]):
        (tmp_path / f"pretrained-linear-s{s}.json").write_text(json.dumps(rec("linear", s, base, 10.0 + s)))
        (tmp_path / f"pretrained-cbp_occl-s{s}.json").write_text(json.dumps(rec("cbp_occl", s, both, 20.0)))
    text = findings.hard150_markdown(claims.load_results(tmp_path), "x")
    assert "6 of 12 runs recorded" in text and "Provisional while runs are missing" in text
    assert "150 classes, generator 2, fingerprint cdcdcdcdcdcd" in text and "4000 iterations" in text
    both = next(
        line for line in text.splitlines() if line.startswith("| CBP + OCCL beats baseline (Table 3, mIoU)")
    )
    assert both.endswith("+2.00 [+1.75, +2.25], 3 seeds: **holds** |")
    cbp = next(line for line in text.splitlines() if line.startswith("| +CBP alone"))
    assert cbp.endswith("| not run yet |")
    assert "baseline 11.0 ± 1.0" in text and "CBP + OCCL 20.0 ± 0.0" in text and "+CBP –" in text


def test_endpoint_box_says_what_is_not_run(tmp_path: Path) -> None:
    assert "No end-point run" in findings.endpoint_markdown(claims.load_results(tmp_path), "x")
    rec = {
        "kind": "train",
        "regime": "pretrained",
        "arm": "linear",
        "seed": 0,
        "recorded": "2026-11-29 10:00:00",
        "config": {"train": {"iters": 1000, "eval_every": 500}, "model": {"backbone": "cnn_tiny"}},
        "data": {"num_classes": 50, "generator_version": 2, "fingerprint": {"sha256": "ab" * 32}},
        "metrics": {"mIoU": 50.0, "mAcc": 55.0},
        "curve": [{"iter": 500, "mIoU": 40.0, "mAcc": 45.0}, {"iter": 1000, "mIoU": 50.0, "mAcc": 55.0}],
    }
    (tmp_path / "pretrained-linear-s0.json").write_text(json.dumps(rec))
    text = findings.endpoint_markdown(claims.load_results(tmp_path), "x")
    assert "1 of 21 end-point runs recorded" in text and "an evaluation every 500" in text
    assert "50 classes, generator 2, fingerprint abababababab" in text
    both = next(
        line for line in text.splitlines() if line.startswith("| CBP + OCCL beats baseline (Table 3, mIoU)")
    )
    assert both.endswith("| not run yet | not run yet |")


def test_replace_block_needs_its_markers() -> None:
    text = f"a\n{findings.START}\nold\n{findings.END}\nb\n"
    assert findings.replace_block(text, "new") == f"a\n{findings.START}\nnew\n{findings.END}\nb\n"
    with pytest.raises(ValueError, match="findings:start"):
        findings.replace_block("no markers", "new")
