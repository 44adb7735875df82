"""The book's study tables (chapters 7 and 8) built from recorded results, as lists of dict rows.

Every function reads the dict of :func:`cbp.experiments.claims.load_results` and returns plain rows
(the notebooks turn them into pandas frames), so the numbers a page shows come from library code
that the tests exercise. No function here trains or reads anything but the result JSONs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from cbp.experiments import claims
from cbp.experiments.study import PROFILES, PROTOCOL_COMMIT, TRAIN, arm_label, reading_arms
from cbp.paper import PAPER_ARMS

#: Verdict words of table "R", amendment 4; the paper claims nothing there, so the rule reads as a direction.
HIGHER, LOWER = "higher", "lower"


def train_records(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs of a study (not the data / pretraining / embedding steps)."""
    return [r for r in results["runs"].values() if r.get("kind") == "train"]


def _iters(results: dict[str, Any]) -> list[int]:
    return sorted({r["config"]["train"]["iters"] for r in train_records(results)})


def _iters_text(results: dict[str, Any]) -> str:
    """``"500 iters"`` (or ``"500/2000 iters"`` when the runs differ)."""
    return "/".join(map(str, _iters(results))) + " iters"


def short_label(arm: str) -> str:
    """An arm's label without its parenthesis: ``"CBP + OCCL"`` (table "R" arms: their reading)."""
    return arm_label(arm).split(" (")[0]


def _seeds(results: dict[str, Any]) -> list[int]:
    return sorted({r["seed"] for r in train_records(results)})


def ours_label(results: dict[str, Any]) -> str:
    """``"ours (synthetic, cnn_tiny, 500 iters, CPU, 3 seeds)"``: what every "ours" column is."""
    recs = train_records(results)
    iters = _iters(results)
    backbone = recs[0]["config"]["model"]["backbone"] if recs else "?"
    gpu = any((r.get("hardware") or {}).get("gpu") for r in recs)
    n_iters = iters[0] if len(iters) == 1 else iters
    return f"ours (synthetic, {backbone}, {n_iters} iters, {'GPU' if gpu else 'CPU'}, {len(_seeds(results))} seeds)"


def study_facts(results: dict[str, Any], profile: str) -> dict[str, str]:
    """What defines the measurement (data, model, iterations, seeds, hardware, time, commits), read
    from the recorded runs."""
    runs = results["runs"]
    recs = train_records(results)
    first = recs[0] if recs else {}
    hw = first.get("hardware", {})
    data = first.get("data", {})
    params = data.get("params", {})
    commits = sorted({r["commit"] for r in runs.values() if "commit" in r})
    wall = sum(r.get("seconds", 0) for r in runs.values())
    pre_iters = runs.get("pretrain", {}).get("config", {}).get("train", {}).get("iters")
    facts = {
        "data": f"SYNTHETIC ({data.get('num_classes')} classes, {params.get('size')} px, "
        f"{params.get('train')} train / {params.get('val')} val images, data seed {params.get('seed')})",
        "model": f"{first.get('config', {}).get('model', {}).get('backbone')} "
        "(CPU model; the paper: SegFormer-B0)",
        "iterations": f"{_iters(results)} per arm (batch 8); pretraining {pre_iters}",
        "seeds": f"{_seeds(results)}",
        "hardware": f"{hw.get('cpu')}, {hw.get('cpu_count')} cores, {hw.get('threads_per_run')} thread a run, "
        f"torch {hw.get('torch')}, GPU: {hw.get('gpu')}",
        "total run time": f"{wall / 3600:.2f} h of runs (the sum of the runs' times)",
        "protocol": f"experiments/protocol.md, first commit {PROTOCOL_COMMIT}",
        "code commits of the results": f"{len(commits)} commit{'s' * (len(commits) != 1)} of the tree while the study ran "
        f"(each JSON records its own){', e.g. ' + commits[0][:12] if commits else ''}",
        "profile": f"{profile}: {PROFILES[profile].description}" if profile in PROFILES else profile,
    }
    repro = runs.get("reproduction-check")
    if repro:
        facts["reproduction check"] = (
            f"{repro['run']} re-run from its recorded command: mIoU {repro['rerun']['mIoU']:.4f} vs "
            f"{repro['recorded']['mIoU']:.4f} recorded (|Δ| = {repro['abs_diff']['mIoU']:.1e}; tolerance 0.1)"
        )
    return facts


def ablation_rows(results: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """One of the paper's ablation tables (3, 4, 5, 9): per arm the paper's mIoU / mAcc and ours
    (mean ± std over seeds) per regime, with the number of seeds."""
    rows = []
    by_metric = {m: claims.arm_rows(results, table, m) for m in ("mIoU", "mAcc")}
    for miou, macc in zip(by_metric["mIoU"], by_metric["mAcc"]):
        rows.append(
            {
                "arm": miou["arm"],
                "paper mIoU": miou["paper"],
                "ours mIoU, scratch": miou["scratch"],
                "ours mIoU, pretrained": miou["pretrained"],
                "paper mAcc": macc["paper"],
                "ours mAcc, scratch": macc["scratch"],
                "ours mAcc, pretrained": macc["pretrained"],
                "seeds (scratch / pretrained)": f"{miou['n scratch']} / {miou['n pretrained']}",
            }
        )
    return rows


def schedule_rows(
    results: dict[str, Any], long_results: dict[str, Any], regime: str = "pretrained"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Amendment 3: Table 3 at the default and the long schedule.

    Returns:
        (arm rows: paper mIoU and ours at both schedules; claim rows: verdict and d at both), both
        empty when the long profile has no recorded run.
    """
    if not _iters(long_results):
        return [], []
    short, longer = _iters_text(results), _iters_text(long_results)
    arms = [
        {
            "arm": arm_label(arm),
            "paper mIoU": PAPER_ARMS[arm][0],
            f"ours {regime}, {short}": claims.fmt(claims.values(results, regime, arm, "mIoU")),
            f"ours {regime}, {longer}": claims.fmt(claims.values(long_results, regime, arm, "mIoU")),
            f"seeds, {longer}": int(np.isfinite(claims.values(long_results, regime, arm, "mIoU")).sum()),
        }
        for arm in claims.TABLE_ARMS["3"]
    ]
    verdicts = []
    for c in (c for c in claims.CLAIMS if c.source == "Table 3"):
        a, b = claims.evaluate_claim(c, results, regime), claims.evaluate_claim(c, long_results, regime)
        verdicts.append(
            {
                "claim": c.text,
                "paper": c.paper,
                f"verdict, {short}": a["verdict"],
                f"d, {short}": a["d"],
                f"verdict, {longer}": b["verdict"],
                f"d, {longer}": b["d"],
            }
        )
    return arms, verdicts


def reading_rows(
    results: dict[str, Any], metric: str = "mIoU", regime: str = "pretrained"
) -> list[dict[str, Any]]:
    """Amendment 4 (table "R"): each other reading against the arm it changes.

    Returns:
        One row per reading arm: the reading, its override(s), ours and the reference arm's
        (mean ± std), ``d`` = mean(reading) - mean(reference), ``2s`` and the verdict ("higher" /
        "lower" / "within noise" / "missing"), the seeds and whether any seed diverged.
    """
    rows = []
    for arm in reading_arms():
        a = claims.values(results, regime, arm.name, metric)
        b = claims.values(results, regime, arm.reference, metric)
        verdict, d, s = claims.decide(a, b)
        verdict = {claims.HOLDS: HIGHER, claims.FAILS: LOWER}.get(verdict, verdict)
        diverged = sum(
            1 for r in results["by_arm"].get(regime, {}).get(arm.name, []) if r.get("status") == "diverged"
        )
        rows.append(
            {
                "reading": arm.label,
                "override": " ".join(o.lstrip("-") for o in arm.overrides) or "(same config)",
                "ours": claims.fmt(a),
                "compared with": short_label(arm.reference)
                + (", 1 process" if arm.reference == "cbp_occl" and arm.launcher != TRAIN else ""),
                "reference": claims.fmt(b),
                "d": d,
                "2s": 2 * s if not math.isnan(s) else float("nan"),
                "verdict": verdict,
                "seeds": int(np.isfinite(a).sum()),
                "diverged": diverged,
            }
        )
    return rows


def seed_rows(
    results: dict[str, Any], arms: tuple[str, ...] = ("cbp_occl", "linear")
) -> list[dict[str, Any]]:
    """Table 10: one row per (regime, arm, seed) with its mIoU and mAcc."""
    return [
        {
            "regime": regime,
            "arm": short_label(arm),
            "seed": rec["seed"],
            "mIoU": rec["metrics"]["mIoU"],
            "mAcc": rec["metrics"]["mAcc"],
        }
        for regime in ("scratch", "pretrained")
        for arm in arms
        for rec in results["by_arm"].get(regime, {}).get(arm, [])
    ]


def occl_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Does OCCL help? With and without OCCL, for each classifier and regime.

    Returns:
        One row per (regime, classifier) with runs: the differences of the seeds that both arms
        have, paired by seed (same seed = same data order and initial weights), and the study's
        rule on the two arms (unpaired, as everywhere): mean difference ``d``, ``2s`` and the
        verdict of "OCCL helps".
    """
    rows = []
    for regime in ("scratch", "pretrained"):
        for with_occl, without, name in (
            ("linear_occl", "linear", "learnable"),
            ("cbp_occl", "cbp", "frozen CBP"),
        ):
            by_seed = [
                {r["seed"]: r["metrics"]["mIoU"] for r in results["by_arm"].get(regime, {}).get(arm, [])}
                for arm in (with_occl, without)
            ]
            seeds = sorted(set(by_seed[0]) & set(by_seed[1]))
            if not seeds:
                continue
            a = claims.values(results, regime, with_occl, "mIoU")
            b = claims.values(results, regime, without, "mIoU")
            verdict, d, s = claims.decide(a, b)
            rows.append(
                {
                    "regime": regime,
                    "classifier": name,
                    "OCCL − no OCCL, per seed (mIoU)": ", ".join(
                        f"s{k}: {by_seed[0][k] - by_seed[1][k]:+.2f}" for k in seeds
                    ),
                    "mean d": d,
                    "2s": 2 * s if not math.isnan(s) else float("nan"),
                    "verdict (OCCL helps)": verdict,
                }
            )
    return rows


def per_seed(results: dict[str, Any], regime: str, arm: str, key: str) -> np.ndarray:
    """(seeds, ...) float array of one analysis or metrics entry of an arm (``None`` -> NaN).

    ``key`` is looked up in each record's ``analysis`` first, then in its ``metrics`` (e.g.
    ``"IoU"``: (seeds, N) per-class IoU); empty (size 0) when the arm has no run.
    """
    out = []
    for r in results["by_arm"].get(regime, {}).get(arm, []):
        v = r["analysis"][key] if key in r.get("analysis", {}) else r["metrics"].get(key)
        out.append([np.nan if x is None else x for x in v] if isinstance(v, list) else v)
    return np.array(out, dtype=float)


def class_mean(results: dict[str, Any], regime: str, arm: str, key: str, num_classes: int) -> np.ndarray:
    """(N,) mean over seeds of a per-class entry (``"IoU"``, ``"F1"``...); NaN when the arm has no run."""
    x = per_seed(results, regime, arm, key)
    if x.size == 0:
        return np.full(num_classes, np.nan)
    with warnings.catch_warnings():  # a class without any finite value stays NaN, silently
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=0)
