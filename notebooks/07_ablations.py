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
# # The ablations of Section 4.3: the third study
#
# **What you will learn here.** Which of the paper's ablation claims (Tables 3, 4 and 5, and the
# mechanism the paper gives for them) hold on a synthetic benchmark calibrated to the paper's regime;
# how large each effect is beside the seed-to-seed noise; and, before any verdict, how small an effect
# the design could resolve, so that "not resolved" tells "no effect" from "too few seeds".
#
# This page reads the **third study** (amendment 6 of `experiments/protocol.md`, begun 2026-12-06),
# the project's current one: its verdicts first, then its learning curves and mechanism. Everything it
# shows is computed from its records when the book is built. What was fixed before the verdicts (the
# claims, the benchmark's calibration, the tuning, the schedule and the power statement) is on
# {doc}`The third study's set-up <../study_setup>`; the two earlier studies, and why they could not
# answer the paper's question, are in the appendix {doc}`History of the study <../history>`.

# %% tags=["parameters"]
study = "ablations"
profile = "a6-tune"  # the phase to run with rerun=True: a calibration profile (calib-c7), a6-tune, a6-schedule or a6
rerun = False  # True: run `python -m cbp.experiments run ablations --profile PROFILE --jobs JOBS` first
jobs = 2

# %% tags=["hide-input"]
# the parameters' types (Papermill's -p passes a mistyped value as a string)
from cbp.book.parameters import check_parameters

check_parameters(globals(), {"study": str, "profile": str, "rerun": bool, "jobs": int})

# %% tags=["hide-input"]

from IPython.display import Markdown, display

from cbp.book import current_study, plotting, verdict_figures
from cbp.book.launch import repo_root, run_experiments

plotting.use_style()
ROOT = repo_root()
if rerun:
    run_experiments("run", study, "--profile", profile, "--jobs", str(jobs), root=ROOT)

# %% [markdown]
# ## Where the study stands
#
# The study runs in four phases, each fixed by a commit before the next starts: calibrate the
# benchmark on a *tuning set* (the verdict set's class appearances with other images), give both
# sides the same tuning budget there, check there that the schedule is long enough and measure the
# seed spread (which fixes the smallest effect the verdicts can resolve), then run the verdicts on
# the verdict set. The runner resumes after any stop, so the phases run in the background over days;
# {doc}`the set-up page <../study_setup>` shows the first three.

# %%
display(plotting.table(current_study.phase_rows(ROOT), hours="{:.1f}"))

# %% [markdown]
# ## The verdicts
#
# Thirteen claims of the paper in four {term}`Holm <Holm's correction>` families (Tables 3, 4 and 5, and
# the mechanism), each a comparison of two arms paired by seed (same seed: same data order, initial
# weights and prototype draw). A **diff** claim holds when the first arm is significantly higher after
# Holm's correction within its family; a **tie** holds when the whole 95 % interval of the difference lies
# within ±0.5 points. Table 3 runs 8 seeds, the others 5; every arm runs at the baseline's tuned
# classifier learning rate, and since CBP + OCCL's own tuned rate is higher, Table 3 also runs at it
# with 5 seeds (the lr-swap control, a fifth family).
#
# First the reading, in a few bullets computed from the records (each interval the one its verdict
# uses; while pairs are missing the verdicts are provisional). Then the same drawn: each claim's mean
# paired difference, the interval its verdict uses and the verdict's colour: for a
# diff claim the {term}`Holm-adjusted <Holm's correction>` interval, which excludes zero exactly when
# the claim is significant; for a tie, the unadjusted 95 % interval (thick) that must lie inside the
# shaded ±0.5 band. The ticks mark ± the smallest effect the design resolves with 80 % power, computed
# from the schedule check's seed spread before the verdict runs: a "not resolved" whose interval sits
# well inside the ticks says "too few seeds", not "no effect".

# %% mystnb={"image": {"alt": "Forest plot of the third study's claims, one row each in their Holm families (Tables 3, 4 and 5, the mechanism, the lr-swap control): a dot at the mean paired difference, the interval the verdict uses, coloured by the verdict, ticks at plus and minus the smallest effect the design resolves, and a shaded band of plus or minus 0.5 points around zero."}}
runs = current_study.verdict_records(ROOT)  # read once: the verdicts, curves and mechanism below
out = current_study.verdict_frame(runs, current_study.schedule_records(ROOT))
if out.empty:
    display(Markdown(current_study.pending_line("a6", ROOT)))
else:
    display(Markdown(current_study.reading(out)))  # the reading, computed from the verdicts below
    plotting.finish(verdict_figures.plot_forest(out, "Third study: SYNTHETIC 150 classes, cnn_tiny, CPU"))
    display(plotting.table(current_study.verdict_table(out)))
    display(Markdown(current_study.cpu_line(runs, out)))

# %% [markdown]
# ## The learning curves and the mechanism
#
# Seeds 0-2 of every arm evaluate every 10 % of training (the others only at the end). Beside the
# verdicts, the mechanism the paper gives for them, per arm: the rare and frequent thirds' IoU, the
# rarest frequency group's F1, and the row norms' correlation with the log pixel count (the paper's
# premise: positive for a learnable classifier, zero by construction for frozen CBP).

# %% mystnb={"image": {"alt": "Learning curves of Table 3's four arms on the third study's verdict set: validation mIoU against training iteration, every 10 % of 8000 iterations, the seed mean of seeds 0-2 with a band of one seed standard deviation."}}
if runs.empty:
    display(Markdown(current_study.pending_line("a6", ROOT)))
else:
    title = "Third study, Table 3: SYNTHETIC 150 classes, cnn_tiny, CPU"
    plotting.finish(verdict_figures.plot_curves(runs, ("linear", "linear_occl", "cbp", "cbp_occl"), title))
    display(plotting.table(current_study.mechanism_frame(runs)))

# %% [markdown]
# ## Earlier studies
#
# The first study (500 iterations, an untuned baseline, a data set that depended on the CPU) and the
# second (a tuned baseline on a saturated 50-class set, 3 seeds, a learning rate that differed between
# arms) are kept in the appendix {doc}`History of the study <../history>`, every arm per seed and re-read
# with this study's claims and rule; the protocol's amendment 6 says what each got wrong. Two of their findings shaped this study: on 150 classes the frozen
# classifier lost to the learnable one, most on the rare classes, and the learnable classifier's norms
# did not follow class frequency; the third study tests both on a benchmark in the paper's regime.

# %% [markdown]
# ## Exercises
#
# Write your prediction down first (a number, a sign or a shape, and one line of why), then run
# what the exercise says. Each worked answer is folded under its question: open it after your run.
#
# **1. How many seeds does half a point need?** A claim's paired differences have a seed-to-seed sd
# of 0.6 mIoU, and its Holm family has 4 claims. Predict the smallest mean difference a paired t-test
# detects with 80 % power at Holm's first step with 3 seeds, and with 8. Then compute both with
# `cbp.experiments.verdicts.smallest_effect(0.6, k, 4)`.
#
# <details><summary>Worked answer</summary>
#
# With 3 seeds the t quantiles have 2 degrees of freedom and are huge (the 0.99375 quantile alone
# is above 8), so only effects of a few points can be resolved: the second study's design could not
# see the paper's +0.1 to +1.7. With 8 seeds (7 degrees of freedom) the smallest effect falls to
# about a point at this sd; it scales with the sd, which is why the third study measures the sd on
# the tuning set before fixing its seeds' reading.
#
# </details>
#
# **2. The premise on a new set.** Predict the sign of the correlation between a trained learnable
# classifier's row norms and the log pixel count of its class, on a set where every rare class has a
# frequent look-alike. Then read the premise table of {doc}`the set-up page <../study_setup>`.
#
# <details><summary>Worked answer</summary>
#
# The paper's premise is a positive correlation (frequent classes get longer rows). On these sets the
# baseline's classifier has a bias, and the bias carries the frequency (positive correlation), while
# the row norms correlate negatively: rare classes get longer rows, which offsets the bias. A frozen
# equal-norm classifier without bias removes both, so on such a set it has no norm prior to remove,
# and may take away a compensation the rare classes relied on. The appendix's 150-class regime shows
# what that costs: exercise 1 of {doc}`History of the study <../history>`.
#
# </details>
