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
# # The ambiguity of a learned classifier
#
# Section 3.1 of the paper argues that a learned classifier is *ambiguous* in two ways:
#
# - {term}`prior ambiguity`: the logit of class $l$ is $f^\top w_l = \|f\|\,\|w_l\|\cos(f, w_l)$ (Eq. 2),
#   so a prototype with a larger norm wins pixels it should not; norms follow class frequency;
# - {term}`correlation ambiguity`: prototypes of classes that look alike become similar
#   ($\cos(w_i, w_j) > 0$), although the one-hot labels they are trained against are orthogonal.
#
# **What you will learn here.** How Eq. 1-2 turn a norm into a prior (a two-class picture), then,
# from real small training runs on a long-tailed toy problem, that a learnable classifier's
# prototype norms do follow class frequency and that confusable classes end up with similar
# prototypes, while the frozen Category-Basis Prototypes (CBP) keep equal norms and zero cosines
# by construction. Everything runs on one CPU core in seconds; the data are synthetic.

# %% tags=["parameters"]
seed = 0  # base seed; run r uses seed + r
n_seeds = 5  # independent training runs (data, encoder and classifier draws)
num_classes = 12  # N
channels = 32  # C, width of the feature the classifier reads (C >= N so CBP exists)
input_dim = 16  # dimension of the toy inputs
n_max = 3000  # training samples of the most frequent class
imbalance = 200.0  # n_max / n_min (long tail)
epochs = 30
batch_size = 256
lr = 0.05  # SGD with momentum 0.9, as mmsegmentation trains convolutional models
adam_lr = 3e-3  # the same learnable runs with Adam, for comparison (Section 1.3)

# %% tags=["hide-input"]
# the parameters' types (Papermill's -p passes a mistyped value as a string)
from cbp.book.parameters import check_parameters

check_parameters(
    globals(),
    {
        "seed": int,
        "n_seeds": int,
        "num_classes": int,
        "channels": int,
        "input_dim": int,
        "n_max": int,
        "imbalance": float,
        "epochs": int,
        "batch_size": int,
        "lr": float,
        "adam_lr": float,
    },
)

# %%
from functools import partial

import torch
from IPython.display import display

import cbp
from cbp.book import toy, toy_figures
from cbp.book.plotting import CLASSIFIER_COLORS, finish, use_style
from cbp.book.toy import CONFUSABLE  # (frequent, rare) class pairs with nearby means
from cbp.paper import PAPER_NORM_CORRELATION

use_style()
torch.set_num_threads(1)
print(f"cbp {cbp.__version__}, torch {torch.__version__}")

# %% [markdown]
# ## A norm is a prior (Eq. 1-2)
#
# Take two prototypes at right angles, $w_a$ and $w_b$, and a pixel feature $f$ of norm 1 at an
# angle $\theta$ from $w_a$ (so $90^\circ - \theta$ from $w_b$). With equal norms the decision
# boundary is the bisector, $\theta = 45^\circ$. Make $\|w_b\|$ larger and the boundary moves
# towards $w_a$: class $b$ takes pixels that point closer to $a$. Nothing about the pixel changed,
# only a norm.

# %% mystnb={"image": {"alt": "Line plot of the probability of class a against the angle between the feature and prototype a, for four ratios of prototype norms. With equal norms the curve crosses one half at 45 degrees; the larger the norm of prototype b, the smaller the angle where it crosses."}}
finish(toy_figures.plot_norm_prior([1.0, 1.5, 2.0, 3.0]))  # |w_b| / |w_a|; |w_a| = 2

# %% [markdown]
# The feature norm matters too: $\|f\|$ multiplies every logit of a pixel, so it acts as an
# inverse temperature, but it cannot change which class wins. The prototype norms can. With
# equal norms $\|w_l\| = T$ for every class, $\arg\max_l f^\top w_l = \arg\max_l \cos(f, w_l)$:
# the prediction depends on the angle only (Section 3.2).
#
# ## A long-tailed toy problem with confusable classes
#
# Twelve classes in a 16-dimensional input space, Gaussian clusters (`cbp.book.toy.long_tailed_clusters`),
# class $l$ with $n_l = n_{\max}\,\rho^{-l/(N-1)}$ training samples (a geometric long tail,
# $\rho$ = `imbalance`).
# Three pairs of classes are *confusable*: their means are close (one frequent and one rare class
# in each pair, as sofa / chair or flag / banner in ADE20K). The model is what a segmentation
# network is at its last two layers: an encoder with a post-ReLU $C$-dim embedding, then the
# classifier. The classifier is either the learnable baseline `cbp.LinearHead` (a $1\times1$
# convolution with bias, mmsegmentation's `conv_seg`) or the frozen `cbp.CBPHead`. The optimizer
# is SGD with momentum (the paper's choice for convolutional models); Section 1.3 repeats the
# learnable runs with Adam, because the optimizer turns out to matter. Features are fed
# as $(B, C, 1, 1)$ maps, so the heads are the very modules the segmentation models use.

# %%
make_data = partial(  # run_seed -> {"x", "y", "x_test", "y_test", "counts"}
    toy.long_tailed_clusters, num_classes=num_classes, input_dim=input_dim, n_max=n_max, imbalance=imbalance
)
data = make_data(seed)
print("training samples per class:", data["counts"].tolist())
print("confusable pairs (frequent, rare):", CONFUSABLE)

# %% [markdown]
# The training loop is the whole experiment, and it is short: `cbp.book.toy.train_minibatch` builds the
# encoder and a head from the library, shuffles the training set into mini-batches, minimises the
# cross-entropy (the pixel loss $\mathcal{L}_p$ of Eq. 7) with SGD with momentum (or Adam), and
# after every epoch records what the head's prototypes look like: their norms and their cosines.

# %%
train = partial(  # (head_kind, data, run_seed, lr=..., optimizer=...) -> history, recall, bias, ...
    toy.train_minibatch, num_classes=num_classes, channels=channels, epochs=epochs, batch_size=batch_size
)
runs = {
    kind: [train(kind, make_data(seed + r), seed + r, lr=lr) for r in range(n_seeds)]
    for kind in ["learnable", "cbp"]
}
runs_adam = [
    train("learnable", make_data(seed + r), seed + r, lr=adam_lr, optimizer="adam") for r in range(n_seeds)
]
print("done:", {k: len(v) for k, v in runs.items()}, "runs")

# %% [markdown]
# ## Prior ambiguity: learned norms follow class frequency
#
# For each run, the final norm $\|w_l\|$ of every learned prototype against $\log n_l$, with
# Pearson and Spearman correlations. The paper reports a correlation of 0.27 between training
# pixel count and learnable-prototype norm on ADE20K (Section 4.3).

# %% mystnb={"image": {"alt": "Scatter plot of the final prototype norm of each of 12 classes against the log of its training samples: the learnable runs' norms rise with class frequency, the frozen CBP norms all sit at 2."}}
counts = data["counts"]  # the same long tail for every seed
finish(toy_figures.plot_against_frequency(runs["learnable"], counts, "norms", cbp_run=runs["cbp"][0]))

# %% mystnb={"image": {"alt": "Scatter plot of the learned bias of each class against the log of its training samples, for the learnable runs: the bias tends to rise with class frequency, with a wide scatter (from about -0.6 to 1.1)."}}
finish(toy_figures.plot_against_frequency(runs["learnable"], counts, "bias"))

# %%
corr = toy_figures.norm_correlations(runs["learnable"], counts, first_seed=seed)
summary = corr.drop(columns="run (seed)").agg(["mean", "std"])
display(corr.round(2))
display(summary.round(2))
n_positive = int((corr["Pearson(norm, log n)"] > 0).sum())
cbp_norms = runs["cbp"][0]["history"][-1]["norms"]
print(
    f"SGD: Pearson(norm, log n) > 0 on {n_positive} of {n_seeds} runs, "
    f"mean {summary.loc['mean', 'Pearson(norm, log n)']:.2f}; "
    f"CBP norms: min {cbp_norms.min():.4f}, max {cbp_norms.max():.4f}"
)

# %% [markdown]
# With SGD, the learnable head's norms grow with the class's share of the data, and its bias, a
# second channel for the same prior, does too. The frozen CBP norms are all exactly $T = 2$:
# a rare class competes on angle alone.
#
# **The optimizer matters.** The same correlation, computed after every epoch, for the SGD runs
# and for the same runs trained with Adam. Adam normalises each parameter's step, so frequent
# classes no longer get larger steps; their norms still lead early on, then the rare classes
# catch up and the correlation can change sign. The paper trains transformers with AdamW and
# reports 0.27 overall, a weak relation: the norm-frequency coupling is real but depends on how
# the classifier is optimised.

# %% mystnb={"image": {"alt": "Line plot of the Pearson correlation between prototype norm and log class frequency after every epoch: the five SGD runs reach about 0.9 within three epochs and stay there; the five Adam runs peak between 0.5 and 0.8 early, then fall and end below zero; a dotted line marks the paper's 0.27."}}
groups = {"SGD": (runs["learnable"], CLASSIFIER_COLORS["learnable"]), "Adam": (runs_adam, "#333333")}
finish(toy_figures.plot_norm_correlation_over_epochs(groups, counts, paper=PAPER_NORM_CORRELATION))

# %% [markdown]
#
# ## Correlation ambiguity: confusable classes get similar prototypes
#
# Cosine similarity between learned prototypes, averaged over the three confusable pairs and
# over all other pairs, after every epoch, and the class separability of Eq. 8,
# $\mathrm{CS} = \tfrac12\sum_i\sum_{j\ne i}\cos(w_i, w_j)$ (`cbp.class_separability`).

# %% mystnb={"image": {"alt": "Line plot of the mean cosine between prototypes after every epoch: for the learnable head the confusable pairs rise to about 0.8 within five epochs and end near 0.7, while the other pairs settle near -0.1; the CBP lines stay at zero."}}
finish(toy_figures.plot_pair_cosines(runs, CONFUSABLE))

# %% mystnb={"image": {"alt": "Line plot of the class separability CS after every epoch: the learnable runs fall to about -5.7 within ten epochs, the CBP runs stay at exactly zero."}}
finish(toy_figures.plot_separability(runs))
display(toy_figures.final_geometry(runs, CONFUSABLE))

# %% [markdown]
# The learned prototypes of confusable classes become clearly similar (the correlation
# ambiguity of Fig. 6(a): oven / microwave there, our confusable pairs here), while the other
# pairs drift slightly *negative*. That is what cross-entropy does to prototypes it can move
# freely: for balanced, well-separated classes its optimum is a "simplex" with
# $\cos(w_i, w_j) = -1/(N-1)$ ($-0.09$ for $N = 12$), not orthogonality. So CS (Eq. 8) can be small
# or negative for a learned classifier on a toy even when the confusable pairs are strongly
# correlated; the paper's 75.8 for ADE20K (Table 8) sums 11 175 pairs of 150 classes, many of
# them related. The frozen prototypes stay at cosine 0 (CS = 0, Table 8's CBP row) because
# nothing updates them; for large $N$ orthogonal and simplex directions are nearly the same
# ($-1/149$ for ADE20K).
#
# A side-by-side cosine map of one run (classes ordered by frequency, confusable pairs marked):

# %% mystnb={"image": {"alt": "Two 12 by 12 heatmaps of prototype cosines. Left, learnable: red cells off the diagonal for the confusable pairs, faint blue or red elsewhere. Right, CBP: white off the diagonal, all cosines zero."}}
finish(toy_figures.plot_cosine_maps({kind: runs[kind][0] for kind in runs}, CONFUSABLE))

# %% [markdown]
# ## Does it cost the rare classes?
#
# Per-class recall on a *balanced* test set (400 samples per class; `cbp.metrics.ConfusionMatrix`,
# the same arithmetic as mmsegmentation's mAcc), against the class's training frequency. This is
# one toy and a few runs, not the paper's claim: read it as an illustration of where the two
# heads differ, with the spread over runs. Each class is one marker per head, side by side; look
# at the grey bands, the rare member of each confusable pair.

# %% mystnb={"image": {"alt": "Per-class recall on the balanced test set against log training samples, mean and spread over runs, one marker per class: open circles for the learnable head, filled squares for CBP, side by side. The rare members of the three confusable pairs, marked by grey bands, get a recall near 0 percent under both heads; every other class is near 100 percent under both."}}
finish(toy_figures.plot_recall_vs_frequency(runs, counts, CONFUSABLE))
display(toy_figures.recall_summary(runs).round(2))

# %% [markdown]
# ## What this notebook showed
#
# - Eq. 1-2: with unequal prototype norms the decision boundary between two classes moves
#   towards the class with the smaller norm; with equal norms only the angle decides.
# - On a long-tailed toy problem (12 Gaussian classes, 200:1 imbalance, three confusable pairs,
#   synthetic data), a learnable $1\times1$ classifier trained with SGD and cross-entropy ended
#   with prototype norms and biases correlated with class frequency (tables in Section 1.3), and
#   with prototypes of confusable classes more similar than the others (Section 1.4): the two
#   ambiguities of Section 3.1, measured rather than assumed. Trained with Adam, the norm
#   correlation is positive early and fades or flips later: how strong the prior ambiguity is
#   depends on the optimizer.
# - The frozen CBP head has equal norms and zero cosines throughout, by construction.
# - Removing the ambiguity did **not** help on this toy: both heads reached the same mAcc on the
#   balanced test set and the same recall on the four rarest classes, within a seed's spread
#   (table of Section 1.5); both lose the rare member of every confusable pair to its frequent
#   twin. The encoder adapts to whichever head it has; an ambiguity in the classifier is not by
#   itself a loss of accuracy.
#
# Data: synthetic Gaussian clusters generated above; hardware: one CPU core; runs: `n_seeds`
# seeds of data, encoder and classifier. Whether removing the ambiguity improves segmentation is
# the subject of the training notebooks (which report what the project's runs measured).

# %% [markdown]
# ## Exercises
#
# Write your prediction down first (a number, a sign or a shape, and one line of why), then change the
# parameter in the parameters cell and run the notebook again (in JupyterLab: *Run All*; or
# `papermill notebooks/01_ambiguity.ipynb out.ipynb -p NAME VALUE`). Each worked answer is folded
# under its question: open it after your run.
#
# **1. Fewer channels than classes.** Predict what happens to the learnable runs, and to the CBP
# runs, with `channels = 8` (and `num_classes = 12`); then set it and run.
#
# <details><summary>Worked answer</summary>
#
# The learnable head does not care: 12 prototypes in 8 dimensions are just a $12\times 8$
# matrix. CBP cannot exist: 12 mutually orthogonal vectors need at least 12 dimensions, so the
# training cell stops with `ValueError: CBP needs channels >= num_classes to make 12 mutually
# orthogonal prototypes (got channels=8 < num_classes=12): use a wider decoder, fewer classes, or
# init='equal'`. This is the limitation of the paper's Section 5.
#
# </details>
#
# **2. A milder long tail.** Predict, for `imbalance = 10` (instead of 200): will the learnable
# prototype norms follow class frequency more or less closely, and will CBP now beat the learnable
# head in mAcc? Then set it and run.
#
# <details><summary>Worked answer</summary>
#
# Less closely. With the SGD runs of this page, the mean Pearson correlation between the final
# norm and $\log n_l$ over the 5 seeds was 0.90 at `imbalance = 200` and 0.52 at `imbalance = 10`
# (measured when this exercise was written, seeds 0-4): a milder tail gives the norms less
# frequency to encode. The two heads stay level in mAcc (77.3 % learnable, 77.6 % CBP at
# `imbalance = 10`; 74.1 % and 74.1 % at 200): on this toy the encoder compensates either way.
#
# </details>
#
# **3. Optimizer.** The Adam runs of Section 1.3 use `adam_lr`. Predict the shape of the Adam curve
# in the norm-correlation figure when it is multiplied by 10 (`adam_lr = 3e-2`); then set it and run.
#
# <details><summary>Worked answer</summary>
#
# There is no single right prediction here; the point is to say one before running. What the page
# shows is that the coupling of norms and frequency depends on the optimizer: SGD steps are
# proportional to the gradient, which frequent classes dominate, while Adam normalises each
# parameter's step. A larger Adam step makes the early phase, where frequent classes lead, shorter;
# read the curve against the SGD one rather than against a number.
#
# </details>
