"""The figure and table helpers of chapters 1-4 and 7 (cbp.book.toy_figures, prototype_figures,
occl_figures, figures) compute what their pages say, checked against hand-computed values."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from cbp.book import occl_figures, plotting, toy_figures  # noqa: E402
from cbp.book import prototype_figures as pf  # noqa: E402
from cbp.losses import ViewCentroids  # noqa: E402


def _run(norms, bias, cos, recall, macc, W=None):
    history = [{"epoch": 1, "norms": np.asarray(norms, float), "cos": np.asarray(cos, float)}]
    return {
        "history": history,
        "bias": np.asarray(bias, float),
        "recall": np.asarray(recall, float),
        "mAcc": macc,
        "W": W,
    }


def test_norm_correlations_are_one_for_norms_that_follow_log_frequency() -> None:
    counts = np.array([1000, 100, 10])
    cos = np.eye(3)
    runs = [_run(np.log(counts), -np.log(counts), cos, [1, 1, 1], 1.0)]  # norm = log n, bias = -log n
    table = toy_figures.norm_correlations(runs, counts, first_seed=7)
    assert table["run (seed)"].tolist() == [7]
    assert table["Pearson(norm, log n)"].iloc[0] == pytest.approx(1.0)
    assert table["Spearman(norm, n)"].iloc[0] == pytest.approx(1.0)
    assert table["Pearson(bias, log n)"].iloc[0] == pytest.approx(-1.0)


def test_pair_masks_and_final_geometry_average_the_right_cells() -> None:
    pair, other = toy_figures.pair_masks(3, [(0, 2)])
    assert pair.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert other.sum() == 4 and not (pair & other).any() and not np.diag(other).any()
    cos = np.array([[1.0, 0.1, 0.8], [0.1, 1.0, -0.3], [0.8, -0.3, 1.0]])
    W = torch.eye(3)  # CS of orthonormal rows: 0
    table = toy_figures.final_geometry(
        {"learnable": [_run([1, 1, 1], [0, 0, 0], cos, [1, 1, 1], 1.0, W)]}, [(0, 2)]
    )
    assert table.loc["learnable", ("cos confusable", "mean")] == pytest.approx(0.8)
    assert table.loc["learnable", ("cos other", "mean")] == pytest.approx((0.1 + 0.1 - 0.3 - 0.3) / 4)
    assert table.loc["learnable", ("CS (Eq. 8)", "mean")] == pytest.approx(0.0, abs=1e-6)


def test_recall_summary_splits_rarest_and_most_frequent() -> None:
    runs = {
        "cbp": [
            _run([2] * 4, [0] * 4, np.eye(4), [90, 80, 20, 10], 50.0),
            _run([2] * 4, [0] * 4, np.eye(4), [100, 60, 30, 0], 47.5),
        ]
    }
    row = toy_figures.recall_summary(runs, tail=2).iloc[0]
    assert row["mAcc (%)"] == pytest.approx(48.75) and row["mAcc std"] == pytest.approx(1.25)
    assert row["recall, 2 rarest (%)"] == pytest.approx(15.0)
    assert row["recall, 2 most frequent (%)"] == pytest.approx(82.5)


def test_summary_2d_means_over_seeds() -> None:
    runs = {
        ("balanced", "cbp", 0): {"mAcc": 80.0, "recall": np.array([90.0, 80.0, 70.0])},
        ("balanced", "cbp", 1): {"mAcc": 90.0, "recall": np.array([100.0, 80.0, 90.0])},
    }
    table = toy_figures.summary_2d(runs)
    assert table.loc[("balanced", "cbp"), ("mAcc (%)", "mean")] == pytest.approx(85.0)
    assert table.loc[("balanced", "cbp"), ("recall class 2 (rare)", "mean")] == pytest.approx(80.0)
    assert table.loc[("balanced", "cbp"), ("mAcc (%)", "std")] == pytest.approx(np.std([80.0, 90.0], ddof=1))


def test_norm_prior_boundaries_match_eq_2() -> None:
    # p(a) = 1/2 where T cos(theta) = T r sin(theta), i.e. theta = atan(1 / r)
    plotting.use_style()
    fig = toy_figures.plot_norm_prior([1.0, 2.0])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend, below the axes
    for ratio, label in zip([1.0, 2.0], labels):
        assert label.endswith(f"{np.degrees(np.arctan(1 / ratio)):.0f}°")
    plt.close(fig)


def test_separability_of_cbp_is_zero_and_of_equal_rows_matches_the_pair_sum() -> None:
    cs = pf.separability_draws(12, 16, 2.0, ["orthogonal+equal", "equal"], draws=3)
    assert np.abs(cs["orthogonal+equal"]).max() < 1e-4
    from cbp.prototypes import category_basis_prototypes

    W = category_basis_prototypes(12, 16, 2.0, seed=1, init="equal").double().numpy()
    U = W / np.linalg.norm(W, axis=1, keepdims=True)
    pairs = sum(U[i] @ U[j] for i in range(12) for j in range(i + 1, 12))  # each pair once
    assert cs["equal"][1] == pytest.approx(pairs, abs=1e-4)
    table = pf.separability_table(cs, {"orthogonal+equal": "CBP", "equal": "eq"})
    assert table.loc["eq", "CS std"] == pytest.approx(np.std(cs["equal"]), abs=0.005)
    assert pf.abs_separability(12, 16, 2.0, ["orthogonal+equal"], draws=2)["orthogonal+equal"] < 1e-4


def test_stage_norms_and_embedding_inits() -> None:
    W = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert pf.stage_norms({"a": W}).loc["a"].tolist() == [5.0, 2.0]
    emb, groups = pf.grouped_embeddings(20, 32, seed=0, group_size=5)
    assert emb.shape == (20, 32) and groups.tolist() == [k // 5 for k in range(20)]
    table = pf.embedding_inits(
        emb, groups, length=2.0, seed=0, inits=["masked", "masked+orthogonal"], decimals=6
    )
    assert table.loc["masked", "mean cos, related"] > 0.5  # related classes keep their correlation
    assert abs(table.loc["masked+orthogonal", "CS (Eq. 8)"]) < 1e-3
    assert table.loc["masked+orthogonal", ["norm min", "norm max"]].tolist() == pytest.approx([2.0, 2.0])


def test_view_table_counts_pixels_per_view() -> None:
    counts = torch.tensor([[4.0, 0.0, 2.0], [1.0, 3.0, 0.0]])  # (2, N)
    cent = ViewCentroids(torch.zeros(2, 3, 4), counts, torch.zeros(3, 4))
    table = occl_figures.view_table(cent, ["a", "b", "c"])
    assert table["in"].to_dict() == {"a": "both views", "b": "view 2 only", "c": "view 1 only"}
    assert table["pixels view 1"].tolist() == [4, 0, 2]


def test_normalised_occl_does_not_depend_on_the_feature_scale() -> None:
    from cbp.book.occl_geometry import batch_views

    g = torch.Generator().manual_seed(0)
    features = torch.rand(4, 8, 4, 4, generator=g)  # (B, C, h, w)
    labels = torch.randint(0, 3, (4, 4, 4), generator=g)  # (B, H, W)
    prototypes = torch.eye(3, 8) * 2.0
    *_, cent, _ = batch_views(features, labels, 3)
    table = occl_figures.normalisation_table(features, labels, prototypes, cent, tau=0.07, lam=1.0, phi=0.3)
    normed = table.loc[True]
    assert normed["centroid loss"].tolist() == pytest.approx([normed["centroid loss"].iloc[1]] * 3, rel=1e-4)
    assert normed["grad norm"].iloc[0] == pytest.approx(
        100 * normed["grad norm"].iloc[2], rel=1e-3
    )  # 1 / scale
    assert table.loc[False, "category loss"].iloc[2] > table.loc[False, "category loss"].iloc[0]


def test_chapter8_tables_read_the_records(tmp_path) -> None:
    from records import train_record, write_records

    from cbp.book import analysis_tables

    def rec(seed, f1, posthoc=None):
        extra = {}
        if posthoc is not None:
            raw, eq = posthoc
            extra["posthoc_equalisation"] = {
                "raw": {"mIoU": raw},
                "equalised": {"mIoU": eq},
                "delta": {"mIoU": eq - raw, "mAcc": 0.0, "rare_third_IoU": 0.0},
            }
        return train_record("linear", seed, 50.0, regime="scratch", analysis={"f1_groups": f1}, **extra)

    results = analysis_tables.load_results(
        write_records(tmp_path, [rec(1, [3.0, 60.0]), rec(0, [1.0, 50.0], (10.0, 12.0))])
    )
    f1 = analysis_tables.rarest_group_f1(
        results, [("linear", "learnable", "learnable"), ("cbp", "CBP", "cbp")]
    ).reset_index()
    assert f1.to_dict("records") == [
        {"regime": "scratch", "classifier": "learnable", "rarest group F1": "2.00 ± 1.41"}
    ]
    post = analysis_tables.posthoc_table(results)
    assert post[["seed", "mIoU raw", "mIoU equalised", "Δ mIoU"]].values.tolist() == [[0, 10.0, 12.0, 2.0]]
    groups = pd.DataFrame({"group": [0, 0, 1], "CBP + OCCL": [1.0, 2.0, np.nan]})
    groups["Δ without orthogonalisation"] = [0.5, -1.0, np.nan]
    groups["Δ learnable"] = [1.0, 1.0, 2.0]
    sums = analysis_tables.group_sums(groups)
    assert sums.loc[0].tolist() == [3.0, -0.5, 2.0]
    assert np.isnan(sums.loc[1, "CBP + OCCL"]) and sums.loc[1, "Δ learnable"] == 2.0  # no IoU: NaN, not 0


def test_snapshot_titles_name_runs_in_words() -> None:
    from cbp.book.figures import _run_words

    assert _run_words("pretrained-cbp_occl-s2") == "CBP + OCCL, seed 2"
    assert _run_words("not-a-run") == "not-a-run"


def test_chapter8_reader_groups_records_by_regime_and_arm_in_seed_order(tmp_path) -> None:
    """analysis_tables.load_results against a hand-written folder: verdicts' typed records with their JSON,
    seed order, the dotted analysis paths, per-class means over seeds with a missing class left NaN, and the
    label of what "ours" is."""
    import json
    import math

    from records import train_record, write_records

    from cbp.book import analysis_tables as at

    def rec(seed, iou, r):
        return train_record(
            "linear", seed, 50.0 + seed, iters=500, metrics={"mIoU": 50.0 + seed, "mAcc": 60.0, "IoU": iou},
            analysis={"norm_correlation": {"pearson_log": r}, "class_separability": 10.0 * seed},
            config={"train": {"iters": 500}, "model": {"backbone": "cnn_tiny"}}, hardware={"cpu_model": "x"},
        )  # fmt: skip

    write_records(tmp_path, [rec(2, [1.0, None], 0.3), rec(0, [3.0, None], 0.1), rec(1, [2.0, 4.0], 0.2)])
    (tmp_path / "data.json").write_text(json.dumps({"kind": "data"}))
    results = at.load_results(tmp_path)  # the data record is not a training run
    assert results.run.tolist() == ["pretrained-linear-s2", "pretrained-linear-s0", "pretrained-linear-s1"]
    assert [r["seed"] for r in at.arm_records(results, "pretrained", "linear")] == [0, 1, 2]
    assert results.raw[0]["config"]["model"]["backbone"] == "cnn_tiny"  # the JSON beside the typed columns
    assert at.values(results, "pretrained", "linear", "norm_correlation.pearson_log").tolist() == [
        0.1,
        0.2,
        0.3,
    ]
    assert at.values(results, "pretrained", "linear", "cs").tolist() == [0.0, 10.0, 20.0]
    assert math.isnan(
        at.value(at.arm_records(results, "pretrained", "linear")[0], "bias_correlation.pearson")
    )
    assert at.values(results, "scratch", "linear", "mIoU").size == 0
    iou = at.per_seed(results, "pretrained", "linear", "IoU")  # (seeds, classes), None -> NaN
    assert iou.shape == (3, 2) and np.isnan(iou[0, 1])
    assert at.class_mean(results, "pretrained", "linear", "IoU", 2).tolist() == [2.0, 4.0]
    assert np.isnan(at.class_mean(results, "scratch", "linear", "IoU", 2)).all()
    assert at.fmt(np.array([1.0, 3.0, np.nan])) == f"2.00 ± {np.std([1, 3], ddof=1):.2f}"
    assert at.fmt(np.array([])) == "–"
    assert at.ours_label(results) == "ours (synthetic, cnn_tiny, 500 iters, CPU, 3 seeds)"
