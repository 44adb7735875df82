"""The book's plot helpers draw what their data say (headless Agg backend)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from cbp.book import plotting  # noqa: E402


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


def test_frequency_group_table_has_one_row_per_seed_and_group(tmp_path) -> None:
    from records import train_record, write_records

    from cbp.book.analysis_tables import frequency_group_table, load_results

    rec = lambda s, f1: train_record("linear", s, 50.0, regime="scratch", analysis={"f1_groups": f1})  # noqa: E731
    results = load_results(write_records(tmp_path, [rec(1, [3.0, None]), rec(0, [1.0, 2.0])]))
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


def test_table_escapes_cells_and_names_and_formats_them() -> None:
    """One renderer: a claim's "<", a "|" or markup in a cell or a column name shows as typed, floats take
    the precision asked, a named column its own format, missing cells ``na_rep``; no index column."""
    import re

    import pandas as pd

    df = pd.DataFrame({"claim <b>": ["a < b | c", "<i>x</i>"], "hours": [1.234, 2.0], "sd": [0.12345, None]})
    html = plotting.table(df, precision=2, na_rep="–", hours="{:.1f}").to_html()
    cells = re.findall(r"<td[^>]*>(.*?)</td>", html)
    assert cells == ["a &lt; b | c", "1.2", "0.12", "&lt;i&gt;x&lt;/i&gt;", "2.0", "–"]
    assert "claim &lt;b&gt;" in html and "<b>" not in html and "<i>" not in html
    assert "row_heading" not in html  # the index is hidden


def test_book_pages_render_tables_with_the_one_renderer() -> None:
    """No page of the study (chapters 7-8, the set-up, the benchmark and the history pages) styles a
    table by hand: every table goes through :func:`cbp.book.plotting.table`."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pages = [root / "notebooks/07_ablations.py", root / "notebooks/08_analysis.py", *root.glob("book/*.py")]
    assert len(pages) >= 5
    for page in pages:
        assert ".style" not in page.read_text(encoding="utf-8"), page.name
