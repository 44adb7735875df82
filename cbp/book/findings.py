"""What the reproduction found: the study's verdicts in words, for the top of the intro and chapter 7.

Reads the dict of :func:`cbp.experiments.claims.load_results` and turns
:func:`cbp.experiments.claims.evaluate_claim` into what a reader needs: a verdict per claim with the
claim beside it, in words rather than code names, at most six columns, and a count in which a tie
the paper reports counts as a tie.

Scoring is the study's (:func:`cbp.experiments.claims.evaluate_claim`): "holds" when ``d > 2s``;
for a claim that two arms *tie* (the paper's +0.1, 0.0), "within noise" holds and a clear
difference either way does not.

The intro page carries the same summary between two comment lines
(``% findings:start`` / ``% findings:end``), and the summary of amendment 5's end points
(:func:`endpoint_markdown`, read out by :mod:`cbp.experiments.endpoints`) between
``% endpoints:start`` / ``% endpoints:end``, of the 150-class regime (:func:`hard150_markdown`,
``% hard150:...``) and of the other tables (:func:`tables_markdown`, ``% tables:...``);
``python -m cbp.book.findings PAGE`` rewrites them all
from the records, and a test fails when a page and the records disagree.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from cbp.experiments import claims, endpoints, other_tables, tables

#: The four scores a claim can get (a tie is scored against the paper's tie, see the module doc).
HOLDS, FAILS, NOISE, NOT_RUN = "holds", "does not hold", "within noise", "not run"

#: What each metric of :data:`cbp.experiments.claims.CLAIMS` is, in words.
METRIC_WORDS: dict[str, str] = {
    "mIoU": "mIoU",
    "mAcc": "mAcc",
    "f1_rarest_group": "F1 of the rarest frequency group",
    "rare_third_IoU": "IoU of the rare third of the classes",
    "confusable_IoU": "IoU of the confusable groups",
    "norm_correlation.pearson_log": "Pearson r of row norm and log pixel count",
    "posthoc.delta.mIoU": "mIoU change",
}

#: Metric of the claims whose kind fixes it (the Claim's own field keeps its "mIoU" default there).
KIND_METRIC: dict[str, str] = {"order": "class separability (Eq. 8)", "std": "std of mIoU over seeds"}

#: The claims the summary box spells out, in this order (keys of :data:`claims.CLAIMS`).
KEY_CLAIMS: tuple[str, ...] = ("t3_both", "t3_cbp", "t3_occl", "t4_gradient", "t4_ema", "t5_equal", "t7_rare")

START, END = "% findings:start", "% findings:end"

# Markers (MyST comments in the book's pages) of the blocks of amendment 5's end points, its harder
# regime (Table 3 on 150 classes) and its other tables (Tables 5, 9, R and 8 at 2000 iterations)
ENDPOINTS_START, ENDPOINTS_END = "% endpoints:start", "% endpoints:end"
HARD_START, HARD_END = "% hard150:start", "% hard150:end"
TABLES_START, TABLES_END = "% tables:start", "% tables:end"


def _claim(key: str) -> claims.Claim:
    return next(c for c in claims.CLAIMS if c.key == key)


def metric_words(claim: claims.Claim) -> str:
    """The metric a claim is judged on, in words (``"class separability (Eq. 8)"`` for Table 8)."""
    return KIND_METRIC.get(claim.kind, METRIC_WORDS.get(claim.metric, claim.metric))


def score(claim: claims.Claim, verdict: str) -> str:
    """One of :data:`HOLDS`, :data:`FAILS`, :data:`NOISE`, :data:`NOT_RUN` for a study verdict
    (ties are already scored by the study; a missing result counts as not run)."""
    base = verdict.split(" (")[0].split(":")[0]
    if base in (claims.NOT_RUN, claims.MISSING):
        return NOT_RUN
    return {claims.HOLDS: HOLDS, claims.FAILS: FAILS}.get(base, NOISE)


def verdict_words(claim: claims.Claim, result: dict[str, Any]) -> str:
    """The verdict cell: the score, and for a tie that fails, which way ours went."""
    s = score(claim, result["verdict"])
    if claim.kind == "tie" and s == FAILS:
        return f"does not hold (clear {'gain' if result['d'] > 0 else 'loss'}; the paper: a tie)"
    if s == NOT_RUN and claim.kind == "not_run":
        return "not run (no offline text encoder)"
    return s


def ours_words(claim: claims.Claim, result: dict[str, Any]) -> str:
    """Ours as the paper states it: a difference ``+11.9 (2s 2.5)`` for comparisons, else the text."""
    if claim.kind in ("diff", "tie") and not math.isnan(result["d"]):
        two_s = "" if math.isnan(result["s"]) else f" (2s = {2 * result['s']:.1f})"
        return f"{result['d']:+.1f}{two_s}"
    return result["ours"].replace("0.000 ± 0.000", "0")


def verdict_table(
    results: dict[str, Any], regimes: tuple[str, ...] = ("pretrained", "scratch"), *, paper_only: bool = False
) -> pd.DataFrame:
    """One row per claim: claim (source, metric), the verdict of each regime, the paper, ours.

    Args:
        results: :func:`cbp.experiments.claims.load_results` of a study.
        regimes: the regimes shown, first one first (two regimes give six columns).
        paper_only: leave out the claims the paper does not make (the feasibility study's).
    """
    rows = []
    for c in claims.CLAIMS:
        if paper_only and not _from_paper(c):
            continue
        res = {r: claims.evaluate_claim(c, results, r) for r in regimes}
        row: dict[str, str] = {"claim": claim_label(c)}
        row |= {f"verdict, {r}": verdict_words(c, res[r]) for r in regimes}
        row["paper"] = c.paper
        row |= {f"ours, {r}": ours_words(c, res[r]) for r in regimes}
        rows.append(row)
    return pd.DataFrame(rows)


def _from_paper(c: claims.Claim) -> bool:
    return "not in paper" not in c.paper


def counts(results: dict[str, Any], regimes: tuple[str, ...] = ("pretrained", "scratch")) -> pd.DataFrame:
    """How many of the paper's claims hold / do not hold / are within noise / were not run, per regime."""
    paper_claims = [c for c in claims.CLAIMS if _from_paper(c)]
    data = {
        r: pd.Series([score(c, claims.evaluate_claim(c, results, r)["verdict"]) for c in paper_claims])
        .value_counts()
        .reindex([HOLDS, FAILS, NOISE, NOT_RUN], fill_value=0)
        for r in regimes
    }
    return pd.DataFrame(data).rename_axis("the paper's claims")


def date_span(recs: list[dict[str, Any]]) -> str:
    """``"2026-11-29"`` or ``"2026-11-25 to 2026-11-29"``: the days the records were made ("?" if none says)."""
    dates = sorted(r["recorded"][:10] for r in recs if r.get("recorded"))
    if not dates:
        return "?"
    return dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"


def records_line(results: dict[str, Any], folder: str) -> str:
    """Which records a summary is computed from: folder, number of runs, dates, generator version."""
    recs = tables.train_records(results)
    data = results["runs"].get("data", {})
    version = (data.get("data") or {}).get("version", 1)
    span = date_span(recs)
    return (
        f"{len(recs)} training runs recorded in `{folder}` ({span}), on data made by version "
        f"{version} of the synthetic generator"
    )


def _claim_text(c: claims.Claim) -> str:
    return re.sub(r" \(.*\)$", "", c.text)


def claim_label(c: claims.Claim) -> str:
    """A claim as the tables name it: ``"CBP + OCCL beats baseline (Table 3, mAcc)"``."""
    return f"{_claim_text(c)} ({c.source}, {metric_words(c)})"


def summary_line(results: dict[str, Any], folder: str) -> str:
    """What the summary reads and how many of the paper's claims hold, per regime (Markdown)."""
    n = counts(results)
    plural = {HOLDS: "hold", FAILS: "do not hold", NOISE: "within noise", NOT_RUN: "not run"}

    def tally(r: str) -> str:
        return ", ".join(f"{int(n.loc[k, r])} {plural[k]}" for k in n.index if n.loc[k, r])

    label = tables.ours_label(results).removeprefix("ours (").removesuffix(")")
    return (
        f"Computed from {records_line(results, folder)} ({label}). Of the paper's "
        f"{int(n['pretrained'].sum())} claims tested, **pretrained**: {tally('pretrained')}; "
        f"**from scratch**: {tally('scratch')} (a tie the paper reports counts as a tie)."
    )


def key_claims(results: dict[str, Any]) -> pd.DataFrame:
    """The claims of :data:`KEY_CLAIMS`: claim, paper, and ours with its verdict per regime."""
    rows = []
    for key in KEY_CLAIMS:
        c = _claim(key)
        row = {"the paper's claim": claim_label(c), "paper": c.paper}
        for r, name in (("pretrained", "ours, pretrained"), ("scratch", "ours, from scratch")):
            res = claims.evaluate_claim(c, results, r)
            row[name] = f"{ours_words(c, res)}: {verdict_words(c, res)}"
        rows.append(row)
    return pd.DataFrame(rows)


def schedule_line(long_results: dict[str, Any] | None) -> str:
    """CBP + OCCL against the baseline after the long schedule (amendment 3), or "" if not recorded."""
    if not long_results or not long_results.get("runs"):
        return ""
    c = _claim("t3_both")
    a, b = (claims.values(long_results, "pretrained", arm, c.metric) for arm in (c.a, c.b))
    verdict, d, s = claims.decide(a, b)
    if math.isnan(d):
        return ""
    return (
        f"After 2000 iterations instead of 500 (pretrained, {a.size} seeds), CBP + OCCL against the "
        f"baseline is {d:+.1f} mIoU (2s = {2 * s:.1f}): **{score(c, verdict)}**. Gains and differences "
        "are in points of the metric named; 2s is twice the pooled seed standard deviation."
    )


def summary_markdown(results: dict[str, Any], folder: str, long_results: dict[str, Any] | None = None) -> str:
    """The "What the reproduction found" box, as Markdown: what it reads, counts, key claims."""
    table = key_claims(results)
    lines = [summary_line(results, folder), "", "| " + " | ".join(table.columns) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    for row in table.itertuples(index=False):
        cells = list(row)
        cells[2:] = [re.sub(r": (.*)$", r": **\1**", x) for x in cells[2:]]
        lines.append("| " + " | ".join(cells) + " |")
    if line := schedule_line(long_results):
        lines += ["", line]
    return "\n".join(lines)


def replace_block(text: str, block: str, start: str = START, end: str = END) -> str:
    """``text`` with the lines between ``start`` and ``end`` (default :data:`START` / :data:`END`)
    replaced by ``block``."""
    pattern = re.compile(rf"^{re.escape(start)}\n.*?^{re.escape(end)}$", re.S | re.M)
    if not pattern.search(text):
        raise ValueError(f"no '{start}' ... '{end}' block in the page")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text)


def _setup_words(recs: list[dict[str, Any]], folder: str) -> str:
    """``"SYNTHETIC data (50 classes, generator 2, fingerprint ...), `cnn_tiny`, pretrained regime, 8000
    iterations with an evaluation every 500, CPU"``: what defines a study's records (they must share
    one data set)."""
    data = {
        (d.get("num_classes"), d.get("generator_version"), d.get("fingerprint", {}).get("sha256", "?"))
        for d in (r.get("data") or {} for r in recs)
    }
    if len(data) != 1:
        raise ValueError(
            f"{folder}: the records were trained on {len(data)} different data sets: {sorted(map(str, data))}"
        )
    classes, generator, fp = data.pop()
    iters = sorted({r["config"]["train"]["iters"] for r in recs})
    every = sorted({r["config"]["train"].get("eval_every") or 0 for r in recs})
    evals = "no periodic evaluation" if every == [0] else f"an evaluation every {'/'.join(map(str, every))}"
    regimes = ", ".join(sorted({r["regime"] for r in recs}))
    backbones = ", ".join(sorted({f"`{r['config']['model']['backbone']}`" for r in recs}))
    gpu = any((r.get("hardware") or {}).get("gpu") for r in recs)
    return (
        f"SYNTHETIC data ({classes} classes, generator {generator}, fingerprint {fp[:12]}...), {backbones}, "
        f"{regimes} regime, {'/'.join(map(str, iters))} iterations with {evals}, {'GPU' if gpu else 'CPU'}"
    )


def endpoint_markdown(results: dict[str, Any], folder: str) -> str:
    """The intro's box for amendment 5's end points, as Markdown: what it reads, how much of it is
    recorded, and each end-point claim at 500 iterations and at the plateau
    (:func:`cbp.experiments.endpoints.verdict_rows`)."""
    recs = tables.train_records(results)
    if not recs:
        return f"No end-point run is recorded in `{folder}` yet."
    lines = [
        f"Computed from the runs recorded in `{folder}` ({date_span(recs)}): {endpoints.count_line(results)}. "
        f"{_setup_words(recs, folder)}. "
        "Each cell: our mean paired difference in the paper's direction (points of mIoU or mAcc), its 95% "
        "interval and the number of seeds, and the verdict of amendment 5's rule (paired t-test, Holm's "
        "correction per end point; a tie holds when the whole interval is within ±0.5). A verdict needs 2 "
        "seeds that both arms have.",
        "",
        "| the paper's claim | paper | ours at 500 iterations | ours at the plateau |",
        "|---|---|---|---|",
    ]
    by_text = {c.text: c for c in claims.CLAIMS}
    for row in endpoints.verdict_rows(results):
        c = by_text[row["claim"]]
        claim = claim_label(c)
        if row["verdict at 500"] == endpoints.NOT_RUN_YET:
            early = late = endpoints.NOT_RUN_YET
        else:
            early = f"{row['d at 500 [95% CI]']}: **{row['verdict at 500']}**"
            if row["plateau iteration"] == "–":
                late = row["verdict at plateau"]
            else:
                late = f"{row['d at plateau [95% CI]']}: **{row['verdict at plateau']}**"
        lines.append(f"| {claim} | {row['paper']} | {early} | {late} |")
    return "\n".join(lines)


def hard150_markdown(results: dict[str, Any], folder: str) -> str:
    """The box for amendment 5's harder regime (Table 3 on the 150-class set), as Markdown: what it
    reads, how much is recorded, Table 3's claims on the final models
    (:func:`cbp.experiments.endpoints.final_verdict_rows`, one Holm family) and the rarest frequency
    group's F1 per arm (Fig. 5)."""
    recs = tables.train_records(results)
    have, todo = endpoints.profile_runs(results, "hard150")
    if not recs:
        return f"No run of the 150-class regime is recorded in `{folder}` yet ({len(todo)} planned)."
    lines = [
        f"Computed from the runs recorded in `{folder}` ({date_span(recs)}): {len(have)} of "
        f"{len(have) + len(todo)} runs recorded. {_setup_words(recs, folder)}. Each cell: our mean paired "
        "difference in the paper's direction on the final models, its 95% interval and the number of "
        "seeds, and the verdict of amendment 5's rule (Holm's correction over these claims)."
        + (" Provisional while runs are missing." if todo else ""),
        "",
        "| the paper's claim | paper | ours, 150 classes |",
        "|---|---|---|",
    ]
    by_text = {c.text: c for c in claims.CLAIMS}
    for row in endpoints.final_verdict_rows(results):
        c = by_text[row["claim"]]
        ours = (
            row["verdict"]
            if row["verdict"] == endpoints.NOT_RUN_YET
            else f"{row['d [95% CI]']}: **{row['verdict']}**"
        )
        lines.append(f"| {claim_label(c)} | {row['paper']} | {ours} |")
    f1 = [
        f"{tables.short_label(arm)} {claims.fmt(claims.values(results, 'pretrained', arm, 'f1_rarest_group'), 1)}"
        for arm in endpoints.TABLE3_ARMS
    ]
    lines += [
        "",
        f"F1 of the rarest of the 15 frequency groups (Fig. 5; mean ± std over seeds): {', '.join(f1)}.",
    ]
    return "\n".join(lines)


def _table_row(cells: tuple[str, ...]) -> str:
    """One Markdown table row; a "|" inside a cell (e.g. "penalty with |cos|") is escaped."""
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def tables_markdown(results: dict[str, Any], folder: str) -> str:
    """The box for amendment 5's other tables (profile ``tables``), as Markdown: what it reads, how
    much is recorded, and one row per claim of Tables 5, 9 and R
    (:func:`cbp.experiments.other_tables.verdict_rows`, one Holm family per table) and Table 8's
    order rule (:func:`~cbp.experiments.other_tables.cs_order_row`)."""
    recs = tables.train_records(results)
    have, todo = endpoints.profile_runs(results, "tables")
    if not recs:
        return f"No run of the other tables is recorded in `{folder}` yet ({len(todo)} planned)."
    lines = [
        f"Computed from the runs recorded in `{folder}` ({date_span(recs)}): {other_tables.count_line(results)}. "
        f"{_setup_words(recs, folder)}. Each row: our mean paired difference on the final models (first arm "
        "minus second), its 95% interval and the number of seeds, and the verdict of amendment 5's rule "
        "(Holm's correction per table); Tables 9 and R read as ties: **higher** / **lower** when "
        "significant, **same** when the whole interval is within ±0.5, **not resolved** otherwise."
        + (" Provisional while runs are missing." if todo else ""),
        "",
        "| table | claim | arms | paper | ours |",
        "|---|---|---|---|---|",
    ]
    for table in ("5", "9", "R"):
        for row in other_tables.verdict_rows(results, table):
            ours = (
                row["verdict"]
                if row["verdict"] == other_tables.NOT_RECORDED
                else f"{row['d [95% CI]']}: **{row['verdict']}**"
            )
            lines.append(_table_row((table, row["claim"], row["arms"], row["paper"], ours)))
    cs = other_tables.cs_order_row(results)
    ours = (
        cs["verdict"] if cs["verdict"] == other_tables.NOT_RECORDED else f"{cs['ours']}: **{cs['verdict']}**"
    )
    lines.append(_table_row(("8", cs["claim"], "baseline, equal only, CBP + OCCL", cs["paper"], ours)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m cbp.book.findings PAGE``: rewrite the page's findings blocks (those it has of the
    first study's, the end points', the 150-class regime's and the other tables') from results/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--results", default="results/ablations")
    parser.add_argument("--long", default="results/ablations-long")
    parser.add_argument("--endpoints", default="results/ablations-v2-endpoints")
    parser.add_argument("--hard150", default="results/ablations-v2-hard150")
    parser.add_argument("--tables", default="results/ablations-v2-tables")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    done = []
    if START in text:
        results = claims.load_results(args.results)
        long_results = claims.load_results(args.long) if Path(args.long).is_dir() else None
        text = replace_block(text, summary_markdown(results, args.results, long_results))
        done.append(args.results)
    blocks = (
        (ENDPOINTS_START, ENDPOINTS_END, endpoint_markdown, args.endpoints),
        (HARD_START, HARD_END, hard150_markdown, args.hard150),
        (TABLES_START, TABLES_END, tables_markdown, args.tables),
    )
    for start, end, markdown, folder in blocks:
        if start in text:
            text = replace_block(text, markdown(claims.load_results(folder), folder), start, end)
            done.append(folder)
    if not done:
        raise SystemExit(
            f"{args.page}: no findings block to rewrite (none of the markers '{START}', '{ENDPOINTS_START}', "
            f"'{HARD_START}', '{TABLES_START}')"
        )
    args.page.write_text(text)
    print(f"{args.page}: findings blocks rewritten from {' and '.join(done)}")


if __name__ == "__main__":
    main()
