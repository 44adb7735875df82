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
