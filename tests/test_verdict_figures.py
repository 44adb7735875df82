"""The current study's forest plot draws each claim in its verdict's colour, with the verdict's interval."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
from records import train_record, write_records

from cbp.book import verdict_figures
from cbp.experiments import verdicts as v


def test_forest_plot_colours_each_claim_by_its_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    recs = []
    analysis = {"f1_groups": [1.0], "rare_third_IoU": 1.0, "frequent_third_IoU": 1.0}
    for arm, shift in (("linear", 0.0), ("linear_occl", 0.2), ("cbp", 0.0), ("cbp_occl", 3.0)):
        for s in range(8):
            miou = 30 + shift + rng.normal(0, 0.3)
            recs.append(
                train_record(arm, s, miou, regime="p", iters=10, macc=miou, analysis=analysis, cpu="x")
            )
    t3 = tuple(c for c in v.CLAIMS if c.family == "T3")
    df = v.records(write_records(tmp_path, recs))
    out = v.holm_intervals(v.compare(df, t3, planned_sd={c.key: 0.5 for c in t3}))
    assert v.Verdict.HOLDS in set(out.verdict)  # the +3 claims hold: the test covers a coloured row
    fig = verdict_figures.plot_forest(out, "test")
    ax = fig.axes[0]
    segments = [c for c in ax.collections if len(c.get_segments()) == 1]
    drawn = {}
    for c in segments:
        (x0, y0), (x1, _) = c.get_segments()[0]
        drawn.setdefault(round(y0), []).append(
            (min(x0, x1), max(x0, x1), matplotlib.colors.to_hex(c.get_colors()[0]))
        )
    for y, row in zip(range(len(out) - 1, -1, -1), out.itertuples(index=False)):
        colour = verdict_figures.VERDICT_COLORS[row.verdict].lower()
        assert all(col == colour for *_, col in drawn[y])
        assert any(abs(lo - row.lo_holm) < 1e-9 and abs(hi - row.hi_holm) < 1e-9 for lo, hi, _ in drawn[y])


def _records(rng: np.random.Generator, folder: Path) -> pd.DataFrame:
    """Two arms, four seeds each; seeds 0-2 record a curve, the arms differ by ``shift``."""
    recs = []
    for arm, shift in (("linear", 0.0), ("cbp_occl", 2.0)):
        for s in range(4):
            curve = [(i, 10 + shift + i / 100 + rng.normal()) for i in (100, 200, 300)]
            analysis = {"f1_groups": [20 + s], "rare_third_IoU": 5.0 + s, "frequent_third_IoU": 50.0,
                        "norm_correlation": {"pearson_log": -0.5 + shift}}  # fmt: skip
            kw = {"regime": "p", "iters": 300, "macc": 0.0, "curve": curve if s < 3 else None, "cpu": "x"}
            recs.append(train_record(arm, s, curve[-1][1], analysis=analysis, **kw))
    return v.records(write_records(folder, recs))


def test_curves_draw_the_seed_mean_of_the_seeds_that_record_a_curve(tmp_path: Path) -> None:
    df = _records(np.random.default_rng(0), tmp_path)
    fig = verdict_figures.plot_curves(df, ("linear", "cbp_occl", "gradient"), "t")
    lines = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in lines] == [
        "baseline (3 seeds)",
        "CBP + OCCL (3 seeds)",
    ]  # no gradient runs
    for ln, arm in zip(lines, ("linear", "cbp_occl")):
        ref = np.mean([[p["mIoU"] for p in c] for c in df[df.arm == arm].curve if c], axis=0)
        np.testing.assert_allclose(ln.get_ydata(), ref)


def test_mechanism_frame_is_mean_and_std_over_seeds(tmp_path: Path) -> None:
    from cbp.book import current_study

    df = _records(np.random.default_rng(1), tmp_path)
    out = current_study.mechanism_frame(df).set_index("arm")
    assert out.loc["linear", "seeds"] == 4
    rare = df[df.arm == "linear"].rare_third_IoU
    assert out.loc["linear", "rare third IoU"] == f"{rare.mean():.2f} ± {rare.std(ddof=1):.2f}"
    assert out.loc["cbp_occl", "norm vs log pixels (r)"] == "1.50 ± 0.00"


def test_the_forest_of_every_planned_claim_lays_out_without_collapsing(recwarn) -> None:
    """With all 17 claims' labels (the lr-swap family's are the longest) the layout once collapsed to zero
    width at print time; the page then printed matplotlib's warning above the figure."""
    import io
    import warnings

    claims = (*v.CLAIMS, *v.LRSWAP_CLAIMS)
    out = v.holm_intervals(v.compare(v.frame([]), claims))
    fig = verdict_figures.plot_forest(out, "Third study: SYNTHETIC 150 classes, cnn_tiny, CPU")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    assert len(fig.axes[0].get_yticklabels()) == len(claims) == len(v.planned_claims())
