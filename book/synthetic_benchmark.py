# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The synthetic benchmark
#
# Every result this book measures on a CPU is on a generated data set, not on ADE20K or
# COCO-Stuff-10K: the project's **synthetic long-tailed scene-parsing benchmark**
# ({mod}`cbp.data.synthetic`). This page says what it is, why it is built the way it is, and how the
# current study's version of it was calibrated; the specification at the end is the module's
# docstring, rendered, so the page and the code cannot drift apart.
#
# ## Why a synthetic set
#
# The paper's argument is about two properties of scene parsing: a **long tail** (a few classes
# cover most pixels, most classes are rare) and **look-alike classes** (sofa and armchair). A CPU
# cannot train a segmentation model on ADE20K in a book's build time, and a small random subset of
# ADE20K would leave the rare classes with almost no pixels. The synthetic set keeps both
# properties, at 64 x 64 pixels, so that a 1.2 M-parameter model ({term}`cnn_tiny`) learns it in
# minutes:
#
# - class frequencies follow ADE20K's own pixel shares (all 150 classes, or every third for 50);
# - {term}`confusable groups <confusable group>` tie one frequent, one mid and one rare class
#   together: same colour and texture period, texture orientations a few degrees apart;
# - a pretraining variant redraws every class's appearance, so an encoder can be pretrained on a
#   task of the same kind without seeing the target classes (the study's {term}`pretrained regime`).
#
# ## What it is not
#
# It is not a stand-in for ADE20K's content. Its classes differ in colour and texture only, its
# images have no objects or context, and its pretraining task is much closer to the target than
# ImageNet is to ADE20K. Results on it say whether an effect of the paper *can* appear on a
# long-tailed problem with look-alike classes, and how large it is next to seed noise; they do not
# predict ADE20K numbers.
#
# ## Three versions, one per study
#
# The **first study** used generator 1, whose sets depended on the CPU. The **second study** used
# generator 2 (a pure function of its parameters, fingerprinted) on 50 classes, where the learnable
# baseline ends near 81 mIoU and its rarest frequency group near F1 89: the frequency bias the paper
# targets had almost nothing to act on. The **{term}`current study`** (amendment 6) keeps generator 2
# and turns its knobs (the orientation step inside a group, the pixel noise, the texture amplitude
# and, from candidate c6 on, the tail's steepness; their defaults give generator 2's old sets bit for
# bit), with 150 classes and every class in a confusable group, until the learnable baseline, trained
# with the study's recipe, lands in the paper's regime. The tail knob (`--tail-power` $\alpha$) draws
# the classes with probabilities proportional to ADE20K's pixel shares to the power $\alpha$: the order
# of the classes stays ADE20K's, but with $\alpha < 1$ the tail is **shorter than ADE20K's** (the rare
# classes get more pixels), which the left panel below shows beside ADE20K's own profile. The calibration used only a *tuning* set (other layouts, the same appearances);
# the verdict set is generated after the regime is fixed.

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from cbp.book import benchmark, plotting
from cbp.book.launch import repo_root
from cbp.book.plotting import finish, use_style

use_style()
RESULTS = repo_root() / "results"
table = benchmark.calibration_table(RESULTS)
display(Markdown(f"**The targets** (amendment 6): {benchmark.target_words()}."))
shown = table.rename(columns={"f1_rarest_group": "rarest-group F1", "rare_gap": "frequent − rare third IoU"})
display(plotting.table(shown.drop(columns="knobs").round(2), precision=2))
display(
    Markdown(
        "**The candidates' knobs** (options of `python -m cbp.data.synthetic`):\n\n"
        + "\n".join(f"- {c}: `{k}`" for c, k in zip(table.candidate, table.knobs))
    )
)

# %% [markdown]
# Each row is one baseline run (SYNTHETIC, `cnn_tiny`, CPU, pretrained regime, head lr x10, 4000
# iterations, seed 0) on a candidate's tuning set, recorded in `results/ablations-v2-calib-<candidate>/`.
# The candidates are judged in the listed order; the first that meets all three targets is the
# regime (`regime` is True once amendment 6 fixed it). A candidate not yet recorded shows no numbers.

# %% tags=["hide-input"] mystnb={"image": {"alt": "Two panels. Left: the share of pixels of each class, most frequent first, on a log scale, for ADE20K and for the benchmark set; the set follows ADE20K's long tail, less steeply. Right: the learnable baseline's F1 averaged over 15 frequency groups of 10 classes each, rarest first, with the paper's value for the rarest group marked; the rare groups sit well below the frequent ones."}}
fig = benchmark.plot_calibration(RESULTS)
if fig is None:
    display(Markdown("No calibration run is recorded yet."))
else:
    finish(fig)

# %% [markdown]
# Left: how the pixels are shared among the classes, most frequent first (log scale), in ADE20K and
# in the candidate's set shown (the regime once amendment 6 fixes it; until then the last candidate
# recorded): the set follows ADE20K's long tail class for class (more flatly for a candidate with
# `--tail-power` below 1). Right: the
# learnable baseline's F1 averaged over the paper's 15 frequency groups (10 classes each, rarest
# first), with the paper's value for the rarest group marked (Fig. 5, ADE20K, SegFormer-B0: the
# paper gives that group only in its text). What to notice: whether the rare groups sit well below
# the frequent ones, as on ADE20K; that gradient is what a frozen, equal-norm classifier is meant to
# flatten.
#
# ## Specification
#
# ```{eval-rst}
# .. automodule:: cbp.data.synthetic
#    :no-members:
#    :no-index:
# ```
