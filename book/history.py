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
# # History of the study: the first and second studies
#
# ```{admonition} History, not this project's answer
# :class: important
# This appendix keeps the two studies that the **third study** (amendment 6, {doc}`chapter 7
# <notebooks/07_ablations>`) superseded: every arm of their recorded runs, per seed, and their claims
# re-read with the third study's rule, so that their results stay checkable beside the reasons for
# the third study (the protocol's amendment 6). Their benchmarks were not in
# the paper's regime: the 50-class set is saturated (the second study's baseline ends at about 81
# mIoU, its rarest frequency group near F1 89, where the paper's is near 30), and both used too few
# seeds for their Holm families. No other page quotes their arms' results (a test checks it).
# ```
#
# Both studies were fixed in advance in `experiments/protocol.md` (every change to it is dated there,
# with its reason, and says what had been seen when it was written):
#
# * **The first study** (amendments 1-4, generator 1): every ablation table in the pretrained regime
#   and Tables 3-5 and 9 from scratch too, 500 iterations, 3 seeds; Table 3 again at 2000 iterations
#   (amendment 3). Its baseline trained the new classifier at the encoder's learning rate, its
#   {term}`views <view>` were image halves, and its data set depended on the CPU that made it.
# * **The second study** (amendment 5, generator 2): Table 3's four arms and Table 4's three update
#   strategies, pretrained regime, 3 seeds, 8000 iterations; Table 3 again on 150 classes (4000
#   iterations); Tables 5, 9 and R at 2000 iterations. The baseline got the paper's recipe (its
#   classifier at 10x the encoder's learning rate) and a tuning budget; OCCL's views took half of
#   each class's objects. CBP + OCCL and +CBP ran at a head learning rate 3x the other arms' (the
#   third study removes that confound).
#
# Both train the project's engine on a **synthetic** 50-class long-tailed set (64 x 64 images,
# confusable groups of classes that differ only in texture orientation) with the small CPU model
# `cnn_tiny`, on a 2-core CPU. In the **pretrained** regime the encoder is first trained on a
# disjoint synthetic task, then every arm fine-tunes from it.
#
# **How this page reads them.** For each profile of a study: every arm's final mIoU and mAcc (mean ±
# std over seeds, and each seed), then the third study's claims whose two arms the profile ran,
# judged by the third study's rule on the final models: differences paired by seed, the unadjusted
# 95 % t interval, Holm's correction within each table and regime, a tie held when its interval lies
# within ±0.5. These are re-readings. At the time, the first study judged with "d > 2s" on arm means
# and the second at 500 iterations and at a plateau; the protocol describes both, and the third study
# gives the reasons they were dropped. Numbers labelled **paper** are the paper's (ADE20K,
# SegFormer-B0, 40K iterations); the tables and the figure are computed from the records when the
# book is built.

# %% tags=["hide-input"]
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets

import pandas as pd
from IPython.display import Markdown, display

from cbp.book import past_studies, plotting, verdict_figures
from cbp.book.current_study import verdict_table
from cbp.book.launch import repo_root
from cbp.experiments import verdicts

plotting.use_style()
ROOT = repo_root()

#: (study, profile, what it is), in the order of this page
PROFILES = (
    ("second", "tune", "the tuning budget: 4 runs a side on a held-out tuning set, 2000 iterations, seed 0"),
    ("second", "endpoints", "Tables 3 and 4, 50 classes, 8000 iterations"),
    ("second", "hard150", "Table 3, 150 classes, 4000 iterations"),
    ("second", "tables", "Tables 5, 9 and R with the arms they change, 50 classes, 2000 iterations"),
    ("first", "default", "every table, two regimes, 50 classes (generator 1), 500 iterations"),
    ("first", "long", "Table 3, 50 classes (generator 1), 2000 iterations"),
)
records = {(s, p): past_studies.profile_records(s, p, ROOT) for s, p, _ in PROFILES}
judged = {key: verdicts.judge_recorded(df) for key, df in records.items()}


def show(name: str, profile: str) -> None:
    """A profile's arms and its re-read verdicts."""
    df, out = records[(name, profile)], judged[(name, profile)]
    if df.empty:
        display(Markdown(f"`{profile}`: no record in this checkout."))
        return
    folder = past_studies.study(name).folders(ROOT)[profile].relative_to(ROOT)
    one = df.regime.nunique() == 1  # one regime: say it once, not on every row
    where = f"{df.regime.iloc[0]} regime, " if one else ""
    display(
        Markdown(
            f"**Every arm, final models** ({len(df)} runs, {where}`{folder}/`; SYNTHETIC, `cnn_tiny`, CPU)"
        )
    )
    display(plotting.table(past_studies.arm_table(df).drop(columns=["regime"] if one else [])))
    if len(out):
        display(Markdown("**The third study's claims, re-read on these runs** (final models)"))
        table = verdict_table(out).drop(columns=["smallest resolvable"])
        if not one:
            table.insert(0, "regime", out.regime.values)
        display(plotting.table(table))


# %% [markdown]
# ## The second study
#
# ### The tuning budget
#
# Before any end-point run each side got four runs on a held-out tuning set (2000 iterations, seed
# 0): the baseline its head learning rate, CBP + OCCL its length $T$ and head learning rate; a setting
# within 0.5 mIoU of the paper's went to the paper's. Two 3-seed checks of Table 4's gradient and
# penalty variants ran beside them.

# %% tags=["hide-input"]
show("second", "tune")

# %% [markdown]
# ### Tables 3 and 4 at 8000 iterations (50 classes)
#
# All seven arms end within about a point of each other, far closer than the swings of single
# evaluations in mid-training. Re-read on the final models, CBP + OCCL sits a little above the
# baseline on every seed, at about a fifth of the paper's size (not resolved either, after Holm's
# correction), and the other Table 3 claims are not resolved with 3 seeds. Frozen prototypes end above the EMA update on every seed. The means and
# unadjusted intervals below are those amendment 5 printed for its final models; the verdicts can
# differ, because Holm's correction here runs within each table (amendment 5 corrected over all eight
# claims at once, which left "frozen > EMA" not resolved). The mechanism rows (rarest-group F1,
# rare-third IoU) are new in this re-reading.

# %% tags=["hide-input"]
show("second", "endpoints")

# %% [markdown]
# ### Table 3 on 150 classes (4000 iterations)
#
# The strongest contrary result of the superseded studies: with three times as many classes, the
# rarest in a few images, the frozen classifier loses clearly and on every seed, and the rare classes
# lose most. On this set the learnable baseline gives the rare classes *longer* rows (row norms
# correlate negatively with the log pixel count, the opposite of the paper's premise), and frozen
# equal-norm rows take that compensation away. $T$ and the head's learning rate had been tuned on 50
# classes, not 150: one reason the third study calibrates and tunes on a 150-class set first.

# %% tags=["hide-input"]
show("second", "hard150")

# %% [markdown]
# The two end points drawn (the mIoU claims): each claim's mean paired difference and the interval its verdict uses
# (for a difference claim the Holm-adjusted interval, which excludes zero exactly when the claim is
# significant; for a tie also the unadjusted 95 % interval, thick, that must lie inside the shaded
# ±0.5 band), coloured by the verdict.

# %% mystnb={"image": {"alt": "Forest plot of the second study's claims re-read on the final models: for the 50-class end points (8000 iterations) and the 150-class regime (4000 iterations), each claim's mean paired difference with the interval its verdict uses, coloured by the verdict; on 150 classes every Table 3 claim with CBP lies well left of zero."}}
both = []
for profile, where in (("endpoints", "50 cl."), ("hard150", "150 cl.")):
    out = judged[("second", profile)]
    if len(out):
        both.append(out[out.metric == "mIoU"].assign(text=out.text + f" ({where})"))
if both:
    forest = pd.concat(both, ignore_index=True).sort_values(["family", "text"], kind="stable")
    title = "Second study, re-read: SYNTHETIC, cnn_tiny, CPU, 3 seeds"
    plotting.finish(verdict_figures.plot_forest(forest.reset_index(drop=True), title))

# %% [markdown]
# ### Tables 5, 9 and R at 2000 iterations (50 classes)
#
# Each arm took the tuned values of the arm it changes. Two rows stand out in the arm table: without
# the L2 normalisation of OCCL's features training collapses (`no_normalize`), and the masked init
# (the pretrained encoder's class-mean features, frozen, far from orthogonal) is well below CBP +
# OCCL until it is orthogonalised. The lengths $T$ = 1 to 5 lie within about a point. In 256
# dimensions 50 random rows are already nearly orthogonal, so orthogonality is barely tested here.

# %% tags=["hide-input"]
show("second", "tables")

# %% [markdown]
# ## The first study
#
# ### Every table at 500 iterations, two regimes
#
# After 500 iterations the frozen classifier was far ahead of a learnable baseline whose new
# classifier trained at the encoder's small learning rate, and OCCL cost accuracy with image-half
# views. In the arms' means Table 4 came out reversed (the moving prototypes ahead of frozen ones)
# and Table 5 went the paper's way; re-read with 3 seeds, most of those differences are not resolved.
# The first study's penalty and EMA were not today's (a penalty weight about 1/5000 of today's, an EMA of
# unnormalised centroids; {doc}`Reading the paper <reading_the_paper>`), so its Table 4 rows test other
# updates under the same names. The frozen classifier's head start over an untuned baseline and the
# short schedule are why the second study tuned the baseline and trained 16 times longer.

# %% tags=["hide-input"]
show("first", "default")

# %% [markdown]
# ### Table 3 at 2000 iterations
#
# Amendment 3 re-ran the four Table 3 arms four times longer: the frozen classifier's head start was
# gone, and CBP + OCCL ended below the baseline. On this benchmark the first study's gains were a
# faster start, not a better end point.

# %% tags=["hide-input"]
show("first", "long")

# %% [markdown]
# ## Exercises
#
# Write your prediction down first (a number, a sign or a shape, and one line of why), then run
# what the exercise says (in JupyterLab: *Run All*, or a new cell). Each worked answer is folded
# under its question: open it after your run.
#
# **1. The 150-class reversal.** Answer this one before you read the 150-class section above. On the
# second study's 50-class set the four arms of Table 3 ended within about a point of each other. Its
# 150-class regime trains the same arms on the same kind of data with three times as many classes,
# the rarest in a few images. Predict (a) the sign and rough size of CBP + OCCL's final mIoU minus
# the learnable baseline's, and (b) where that difference falls: on the rare or on the frequent
# third of the classes (by training pixels). Then open the answer and run its code in a new
# cell.
#
# <details><summary>Worked answer</summary>
#
# ```python
# df = records[("second", "hard150")]  # this page's records: one row per run
# thirds = ["mIoU", "rare_third_IoU", "frequent_third_IoU"]
# mean = df.groupby("arm")[thirds].mean()
# print((mean.loc["cbp_occl"] - mean.loc["linear"]).round(2))  # CBP + OCCL minus the baseline
# ```
#
# Negative and large, every seed below the baseline: the paper's +1.7 the other way round. The loss
# falls mostly on the rare third of the classes and hardly on the frequent third: the classes the
# paper means to help lose most. The reason, on this benchmark: the learnable baseline gives the rare
# classes *longer* rows (the `norm_r` column of `df`), the opposite of the paper's premise, and
# frozen equal-norm rows take that compensation away.
#
# </details>
#
# **2. The long schedule of the first study.** Predict which of Table 3's claims hold when the first
# study's four Table 3 arms train for 2000 instead of 500 iterations (pretrained, 3 seeds), then
# compare the last two sections.
#
# <details><summary>Worked answer</summary>
#
# Only "CBP adds to OCCL" (CBP + OCCL above +OCCL) still holds. "+CBP ≈ baseline" does not hold the
# other way round (a clear *loss*), and both "beats baseline" claims do not hold: CBP + OCCL ends
# below the baseline on every seed.
#
# </details>
#
# **3. Re-derive a record.** Predict: if you delete a record and run its command again on your
# machine, will its mIoU equal the recorded one in every printed digit, and does it matter how many
# other runs share the machine? Then delete `results/ablations-v2-tune/pretrained-cbp_occl_T2_lr10-s0.json`
# and run `python -m cbp.experiments run ablations --profile tune --only pretrained-cbp_occl_T2_lr10-s0 --jobs 1`
# (about 10 minutes on one core: it makes the data and the pretrained encoder first if they are
# missing), then compare with the tuning table above.
#
# <details><summary>Worked answer</summary>
#
# Every digit on a CPU of the recording's kind (AMD EPYC with AVX-512), whatever else shares the
# machine; on another CPU, close but not equal. The runner refuses to start unless the generated
# sets have the study's fingerprints, the tree is clean and the packages are those of
# `requirements.lock`; each run is single-threaded with fixed seeds, so the number does not depend
# on how many runs share the machine. Records re-derived from fresh clones (`results/README.md`)
# matched bit for bit; the same tuning run with torch limited to AVX2 kernels (floating-point sums
# in another order) ended 0.12 mIoU away. Expect differences of the order of the seed-to-seed spread
# on another CPU, not bit equality.
#
# </details>
