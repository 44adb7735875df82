"""The book's plot helpers draw what their data say (headless Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from cbp.book import plotting  # noqa: E402


def test_effect_plot_colours_by_the_decision_rule() -> None:
    fig, ax = plt.subplots()
    plotting.effect_plot(
        ax,
        ["up", "down", "noise", "none"],
        np.array([1.0, -1.0, 0.1, np.nan]),
        np.array([0.2, 0.2, 0.5, np.nan]),
    )
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert [tuple(p.get_xdata()) for p in points] == [(1.0,), (-1.0,), (0.1,)]
    colours = [p.get_color() for p in points]
    assert colours[0] != colours[1] and colours[2] == "#888888"  # clear gain, clear loss, within noise
    rows = {t.get_text(): y for t, y in zip(ax.get_yticklabels(), ax.get_yticks())}
    assert rows["up"] > rows["down"] > rows["noise"] > rows["none"]  # first row on top
    assert points[0].get_ydata()[0] == rows["up"]
    assert any(t.get_text() == "missing" for t in ax.texts)
    plt.close(fig)


def test_effect_plot_marks_values_outside_xlim_at_the_edge() -> None:
    fig, ax = plt.subplots()
    plotting.effect_plot(ax, ["far", "near"], np.array([-30.0, 2.0]), np.array([2.0, 1.0]), xlim=(-10, 10))
    assert ax.get_xlim() == (-10, 10)
    edge = [line for line in ax.lines if line.get_marker() == "<"]
    assert len(edge) == 1 and edge[0].get_xdata()[0] == -10
    assert any(t.get_text() == "-30.0" for t in ax.texts)
    assert [tuple(line.get_xdata()) for line in ax.lines if line.get_marker() == "o"] == [(2.0,)]
    plt.close(fig)


def test_seed_strip_bars_are_means_and_empty_arms_are_left_out() -> None:
    fig, ax = plt.subplots()
    plotting.seed_strip(ax, {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([]), "c": np.array([5.0])})
    heights = [p.get_height() for p in ax.patches]
    assert heights == [2.0, 5.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "c"]
    plt.close(fig)


def test_use_style_keeps_every_font_at_least_min_font() -> None:
    plotting.use_style(font_size=10.0)
    for key in ("font.size", "axes.labelsize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize"):
        size = matplotlib.rcParams[key]
        points = matplotlib.font_manager.FontProperties(size=size).get_size_in_points()
        assert points >= plotting.MIN_FONT, key
    assert matplotlib.rcParams["figure.dpi"] == plotting.DPI


def test_subplots_fit_the_page_and_refuse_wide_rows() -> None:
    fig, axes = plotting.subplots(2, 3)
    assert axes.shape == (2, 3)
    assert fig.get_size_inches()[0] <= plotting.PAGE_WIDTH
    plt.close(fig)
    fig, _ = plotting.subplots(width=20.0)
    assert fig.get_size_inches()[0] == plotting.PAGE_WIDTH
    plt.close(fig)
    try:
        plotting.subplots(1, 4)
    except ValueError as err:
        assert "split the figure" in str(err)
    else:
        raise AssertionError("4 panels a row were accepted")


def test_similarity_heatmap_annotates_small_matrices_only_and_legibly() -> None:
    sim = np.array([[1.0, -0.44], [-0.44, 1.0]])
    fig, axes = plotting.subplots(1, 2)
    mesh = plotting.similarity_heatmap(axes[0, 0], sim, ["a", "b"])
    texts = [t for t in axes[0, 0].texts]
    assert sorted(t.get_text() for t in texts) == ["-0.4", "-0.4", "1.0", "1.0"]
    assert min(t.get_fontsize() for t in texts) >= plotting.MIN_FONT
    assert mesh.get_clim() == (-1.0, 1.0)
    plotting.similarity_heatmap(axes[0, 1], np.eye(12))
    assert len(axes[0, 1].texts) == 0  # 144 numbers do not fit: colours only
    plt.close(fig)


def test_frequency_group_table_has_one_row_per_seed_and_group() -> None:
    from cbp.book.figures import frequency_group_table

    rec = lambda f1: {"analysis": {"f1_groups": f1}, "metrics": {}}  # noqa: E731
    results = {"by_arm": {"scratch": {"linear": [rec([1.0, 2.0]), rec([3.0, None])]}, "pretrained": {}}}
    table = frequency_group_table(results, [("linear", "learnable", "learnable"), ("cbp", "CBP", "cbp")])
    assert list(table.columns) == ["regime", "classifier", "seed", "group", "F1"]
    assert table[["seed", "group"]].values.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert table["F1"].tolist()[:3] == [1.0, 2.0, 3.0] and np.isnan(table["F1"].iloc[3])
    assert set(table["classifier"]) == {"learnable"}  # the CBP arm has no run


def test_use_style_never_cuts_a_tables_text() -> None:
    import pandas as pd

    long = "SYNTHETIC (50 classes, 64 px, 4000 train / 900 val images, layout seed 0, appearance seed 0)"
    with pd.option_context("display.max_colwidth", 50):
        plotting.use_style()
        assert long in pd.DataFrame({"": [long]}).to_html()
