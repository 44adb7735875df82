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
# # The Online Centroid Contrastive Loss on a real batch
#
# **What you will learn here.** What OCCL (Section 3.3, Eq. 3-6) computes on one batch of a
# segmentation training run: how the batch's labels are split into two *views*, what the *view
# centroids* $v_{l,x}$ and *category centroids* $s_l$ are, the two losses built on them (centroid
# loss, Eq. 4; category loss, Eq. 5), the direction in which each one pushes the pixel features,
# and why the centroids must be L2-normalised before the dot products when $\tau = 0.07$.
#
# The batch comes from the project's **synthetic** long-tailed scene-parsing set
# (`cbp.data.synthetic`, 64x64 images in the ADE20K layout), the features from the `cnn_tiny`
# segmentation model (`cbp.models.create_model`) at initialisation. One CPU core, seconds.

# %% tags=["parameters"]
seed = 0
classes = 50  # synthetic set with 50 of ADE20K's classes (wall ... rare ones)
batch_size = 8  # B: the figures' "batch" views = images [0, B/2) vs [B/2, B)
backbone = "cnn_tiny"
tau = 0.07
lam, phi = 1.0, 0.3  # the paper's ablation weights (Section 4.3)
data_root = ""  # "" -> generate a small set in a temporary folder
feature_steps = 60  # gradient steps of Section 4.4
feature_lr = 0.02  # Adam on the free features of Section 4.4

# %% tags=["hide-input"]
# the parameters' types (Papermill's -p passes a mistyped value as a string)
from cbp.book.parameters import check_parameters

check_parameters(
    globals(),
    {
        "seed": int,
        "classes": int,
        "batch_size": int,
        "backbone": str,
        "tau": float,
        "lam": float,
        "phi": float,
        "data_root": str,
        "feature_steps": int,
        "feature_lr": float,
    },
)

# %%
import tempfile
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto without ipywidgets

import numpy as np
import pandas as pd
import torch
from IPython.display import display

import cbp
from cbp.book import occl_figures
from cbp.book.occl_geometry import batch_views, descent_directions, follow
from cbp.book.plotting import finish, use_style
from cbp.data import ADE20K
from cbp.data.synthetic import ensure_synthetic, read_meta
from cbp.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from cbp.models import create_model

use_style()
torch.manual_seed(seed)
torch.set_num_threads(1)

# %% [markdown]
# ## A batch and its two views
#
# The paper splits the batch's labels $y$ into $y_1$ and $y_2$, "two different views of $y$
# where [each] contains the same number of categories as $y$ while the number of objects is
# half", and treats different objects of one class as augmentations of each other. The library's
# default reads this literally, `views="objects"`: each class's objects in the batch (its connected
# regions) are split at random between the two views, so each view has every class and half of
# its objects. The figures of this page use the simplest reading to draw, `views="batch"`, which
# the project's first study used: the first half of the images is view 1, the second half view 2
# (see "Reading the paper" for all the options, `"objects"`, `"batch"`, `"random"` and
# `"global"`; the table further down computes the loss with three of them). Each
# {term}`view centroid` is the mean feature of one class in one view.

# %%
root = Path(data_root) if data_root else Path(tempfile.mkdtemp(prefix="cbp_nb04_")) / "synthetic"
root = ensure_synthetic(
    root, classes=classes, train=batch_size, val=classes, min_val_images=1, seed=seed, progress=False
)
dataset = ADE20K(root, split="training")
images, labels = map(torch.stack, zip(*(dataset[i] for i in range(batch_size))))  # (B, 3, H, W), (B, H, W)
palette = np.asarray(read_meta(root)["palette"]) / 255.0  # (N, 3)
names = dataset.class_names
print(
    f"{len(dataset)} images of {images.shape[-1]}x{images.shape[-2]}, {dataset.num_classes} classes (synthetic)"
)

# %% mystnb={"image": {"alt": "The eight synthetic training images of the batch, four a row, each above its label map; images 0 to 3 form view 1 and images 4 to 7 view 2."}}
finish(occl_figures.plot_batch(images, labels, palette))

# %% [markdown]
# ## Features, view centroids and category centroids (Eq. 3)
#
# OCCL reads the decoder's embedding, the $C$-dim feature the classifier sees, at its own
# resolution ($1/4$ of the image here, $16\times16$), so the labels are resized to it by nearest
# neighbour. The view centroid of class $l$ in view $x$ is the mean feature of its pixels,
# $v_{l,x} = \sum \mathbf{F}[y_x = l] / \sum \mathbb{1}(y_x = l)$, and the category centroid is
# $s_l = (v_{l,1} + v_{l,2})/2$ for a class in both views (else the one view's centroid). All
# classes are reduced at once by one `scatter_add` (`cbp.losses.view_centroids`).

# %%
model = create_model(backbone, classes, classifier="cbp", length=2.0, proto_seed=seed).eval()
x = torch.stack([normalize(im, IMAGENET_MEAN, IMAGENET_STD) for im in images])  # (B, 3, H, W)
with torch.no_grad():
    features = model(x).embedding  # (B, C, h, w)
prototypes = model.classifier.prototypes  # (N, C), frozen
# labels at (h, w), "batch" views (B, h, w) in {0, 1}, centroids, the K classes in both views
small, view, cent, idx = batch_views(features, labels, classes)
print(
    f"features {tuple(features.shape)}, prototypes {tuple(prototypes.shape)}, labels resized to {tuple(small.shape)}"
)
display(occl_figures.view_table(cent, names))
print(
    f"{int(cent.present.sum())} classes in the batch, {int(cent.in_both_views.sum())} in both views "
    "(only these get a centroid-loss term; every present class gets category-loss terms)"
)

# %% [markdown]
# How similar are these centroids to each other? For the classes in both views, the cosine
# between every view-1 centroid and every view-2 centroid. The encoder is untrained, and its
# embedding is post-ReLU (non-negative), so *all* centroids point roughly the same way: the
# diagonal (same class, two views) barely stands out. Shaping this is OCCL's job.

# %% mystnb={"image": {"alt": "Heatmap of the cosines between the view-1 and view-2 centroids of the classes present in both views, untrained encoder: every cell is close to 1, the diagonal hardly stands out."}}
finish(occl_figures.plot_view_cosines(cent, idx, names))

# %% [markdown]
# ## The two losses (Eq. 4-6)
#
# **Centroid loss** (Eq. 4, read as {term}`InfoNCE`; the printed equation lacks the $-\log$ and has a
# broken bracket): for every class $i$ in both views and each view $x$,
#
# $$\mathcal{L}_v = -\log\frac{e^{v_{i1}^\top v_{i2}/\tau}}{e^{v_{i1}^\top v_{i2}/\tau} + \sum_{j\ne i} e^{v_{ix}^\top \mathrm{sg}(s_j)/\tau}},$$
#
# the two views of a class are the positive pair, the other classes'
# {term}`category centroids <category centroid>` (with {term}`stop-gradient`) the negatives. **Category loss** (Eq. 5, its denominator read as a typo): for
# every class $i$ present in view $x$, the cross-entropy of the logits $v_{ix}^\top w_j/\tau$ over
# all $N$ prototypes with target $i$. Every vector is L2-normalised before the dot product.
# OCCL $= \lambda\,\tfrac12(\mathcal{L}_{v,1} + \mathcal{L}_{v,2}) + \phi\,\tfrac12(\mathcal{L}_{c,1} + \mathcal{L}_{c,2})$ (Eq. 6),
# added to the pixel cross-entropy (Eq. 7).

# %%
rows = []
for views in ["objects", "batch", "random"]:
    occl = cbp.OCCL(tau=tau, lam=lam, phi=phi, views=views, seed=seed)
    res = occl(features, labels, prototypes)
    rows.append(
        {
            "views": views,
            "centroid loss": res["centroid"].item(),
            "category loss": res["category"].item(),
            f"OCCL (lam={lam:g}, phi={phi:g})": res["loss"].item(),
            "classes present": int(res["present"].sum()),
        }
    )
display(pd.DataFrame(rows).set_index("views").round(3))
print(f"chance level of the category loss: log N = {np.log(classes):.3f}")

# %% [markdown]
# With `"random"` views each class's pixels are split in two at random, so every present class
# is in both views and the two halves of a class are very alike (same images): the positive pair
# is easy and the centroid loss lower. With `"batch"` views, the two views of a class come from
# different images, and a class seen in one half of the batch only has no positive pair. The
# default `"objects"` keeps every class in both views (a class with a single object has that
# object's pixels split) while the two views of a class are mostly different objects: the
# paper's "same number of categories, half the objects".
#
# ## Which way does each loss push the pixels?
#
# Take the gradient of each loss with respect to the feature map and sum it over the pixels of
# class $i$ in view 1: that is the direction in which one step moves the class's view centroid
# $v_{i1}$. Because every vector is normalised before the dot products, only the *direction* of
# $v_{i1}$ matters, and the step is tangent to the sphere at $v_{i1}$. So we compare it with the
# tangent directions from $v_{i1}$ towards three targets: the class's frozen prototype $w_i$, the
# same class in the other view $v_{i2}$, and the other classes' category centroids $s_j$
# (+1 = straight towards, -1 = straight away; mean over the classes in both views;
# `cbp.book.occl_geometry.descent_directions`).


# %%
DIRECTIONS = {  # cbp.book.occl_geometry.descent_directions keys -> table columns
    "own_prototype": "towards own prototype w_i",
    "other_view": "towards own other view v_i2",
    "other_classes": "towards other classes s_j",
}
directions = {  # each loss alone: (lam, phi) = (1, 0) and (0, 1)
    which: descent_directions(
        features, labels, prototypes, tau=tau, lam=float(which == "centroid"), phi=float(which == "category")
    )
    for which in ["centroid", "category"]
}
display(pd.DataFrame(directions).T.rename(columns=DIRECTIONS).round(3))

# %% [markdown]
# The category loss moves class $i$'s centroid almost straight towards its own frozen prototype
# $w_i$ and is indifferent to the other classes' centroids. The centroid loss moves it towards the
# same class in the other view and is blind to the prototypes. Its descent direction is
# $\sum_j p_j\,(v_{i2} - s_j)$ (with $p_j$ the softmax weight of negative $j$): towards $v_{i2}$ and
# away from the negatives *relative to it*. Because the untrained encoder's centroids all sit in
# a narrow cone (cosines above 0.9, Section 4.2), moving towards $v_{i2}$ also moves slightly towards
# the others, hence the small positive number in the last column; the separation shows up over
# many steps, below. To see the effect of many such steps, we now
# treat the feature map itself as the thing being optimised (no encoder: the features are free
# parameters) and follow the geometry under each loss alone (`cbp.book.occl_geometry.follow`).


# %%
COSINES = {  # cbp.book.occl_geometry.follow keys -> plot titles
    "cos_views": "cos(v_i1, v_i2)",
    "cos_classes": "cos(s_i, s_j), i != j",
    "cos_prototype": "cos(s_i, w_i)",
}
weights = {
    "centroid loss only": (1.0, 0.0),
    "category loss only": (0.0, 1.0),
    f"OCCL (λ={lam:g}, φ={phi:g})": (lam, phi),
}
runs = {
    name: pd.DataFrame(
        follow(features, labels, prototypes, tau=tau, lam=l_, phi=p_, steps=feature_steps, lr=feature_lr)
    )
    .set_index("step")
    .rename(columns=COSINES)
    for name, (l_, p_) in weights.items()
}

# %% mystnb={"image": {"alt": "Three stacked panels of mean cosines over Adam steps on free features, one line per loss. The centroid loss alone raises cos(v_i1, v_i2) from 0.95 to about 0.98, lowers the cosine between classes from 0.9 to about 0 and leaves cos(s_i, w_i) near 0. The category loss alone raises cos(s_i, w_i) to about 0.78. OCCL lowers the cosine between classes to near 0 and raises cos(s_i, w_i) to about 0.6, while its view cosine, after a brief rise, ends near its start of 0.95."}}
finish(occl_figures.plot_follow(runs))

# %% [markdown]
# - The **centroid loss** makes the two views of a class agree ($\cos(v_{i1}, v_{i2}) \to 1$) and
#   pushes the classes' centroids apart (their mutual cosine falls from the untrained encoder's
#   high value), but it ignores the prototypes: $\cos(s_i, w_i)$ barely moves.
# - The **category loss** turns each class's centroid towards its frozen prototype
#   ($\cos(s_i, w_i)$ rises towards 1); since the prototypes are orthogonal, this also makes the
#   centroids nearly orthogonal to each other, and it aligns the two views indirectly (both turn
#   to the same $w_i$). It is what ties OCCL to CBP.
# - Together (OCCL) they separate the classes and turn each towards its prototype; on this batch
#   the two views of a class, already at cosine 0.95, end about where they started. In training
#   these gradients flow into the encoder, not into free features, and are added to the pixel
#   cross-entropy.
#
# ## Why normalise (and what $\tau = 0.07$ does without it)
#
# With L2-normalised vectors every dot product is a cosine in $[-1, 1]$ and the logits lie in
# $[-1/\tau, 1/\tau] = [-14.3, 14.3]$. Without normalisation the logits are
# $\|v\|\,\|w\|\cos/\tau$: with centroid norms of a few units and $\|w\| = T$, they reach hundreds,
# the softmax saturates, and the loss value depends on the feature scale. Below, the same
# batch with the features scaled by 0.1, 1 and 10 (`normalize=True` is the default).

# %%
table = occl_figures.normalisation_table(features, labels, prototypes, cent, tau=tau, lam=lam, phi=phi)
display(table.round(3))

# %% [markdown]
# With normalisation the loss does not depend on the feature scale (and its gradient shrinks as
# $1/\text{scale}$, as for any scale-invariant function). Without it, the losses grow with the
# scale: at the encoder's natural scale the logits are already tens of units apart, so the
# softmax is nearly one-hot and the loss is a large hinge on the worst negative. The library
# normalises by default (see "Reading the paper"), which is also how InfoNCE with $\tau = 0.07$ is used in
# the contrastive-learning work the paper builds on.
#
# ## What this notebook showed
#
# - On one batch of 8 synthetic 64x64 images with an untrained `cnn_tiny` model: the two views
#   (first vs second half of the batch), the classes that fall in both, their view and category
#   centroids (Eq. 3), and the values of the centroid loss, the category loss and OCCL (Eq. 4-6)
#   for `views="batch"` and `"random"`.
# - The descent direction of the category loss points to the class's frozen prototype; that of
#   the centroid loss to the same class in the other view (and away from the other classes
#   relative to it).
#   Followed on free features, the centroid loss aligns views and separates classes, the
#   category loss aligns each class with its prototype.
# - With $\tau = 0.07$, normalising the centroids and prototypes makes the loss independent of
#   the feature scale; without it the loss grows with the scale.
#
# Data: synthetic (`cbp.data.synthetic`, seed `seed`), one batch; model: `cnn_tiny` at
# initialisation (no training); hardware: one CPU core.

# %% [markdown]
# ## Exercises
#
# Write your prediction down first (a number, a sign or a shape, and one line of why), then change the
# parameter in the parameters cell and run the notebook again (in JupyterLab: *Run All*). Each
# worked answer is folded under its question: open it after your run.
#
# **1. Weights of the two losses.** Predict the OCCL value of Section 4.3's table with
# `lam, phi = 0.0, 0.3`, from the centroid and category losses in the same table; then set it and
# run.
#
# <details><summary>Worked answer</summary>
#
# Eq. 6 gives OCCL $= \lambda\,\tfrac12(\mathcal{L}_{v,1} + \mathcal{L}_{v,2}) + \phi\,\tfrac12(\mathcal{L}_{c,1} + \mathcal{L}_{c,2})$;
# the table's two loss columns are already the means over the two views, so with $\lambda = 0$
# the OCCL column is exactly $0.3 \times$ the category loss, whatever the centroid loss is. The
# free-feature figure of Section 4.4 changes too: its third curve now follows the category loss only.
#
# </details>
#
# **2. One image a view.** Predict, for `batch_size = 2`, how many classes are in both views, and
# what that does to the centroid loss; then set it and run.
#
# <details><summary>Worked answer</summary>
#
# With one image per view, only classes that happen to be in both images have a positive pair;
# on this set an image has 4-9 cells, so expect a handful of classes in the batch and few, often
# one or two, in both views. Classes in one view only get no centroid-loss term (they still get
# category-loss terms), and with no class in both views the centroid loss is exactly 0, with a
# zero gradient. This is the paper's setting per GPU (2 images), and the reason `views="random"`
# helped in the study (see "Reading the paper").
#
# </details>
#
# **3. Temperature.** Predict whether, with `tau = 0.5`, the category loss moves towards or away
# from its chance level $\log N$ printed under the table; then set it and run.
#
# <details><summary>Worked answer</summary>
#
# Towards it. The logits are cosines divided by $\tau$, so a larger $\tau$ squeezes them into
# $[-2, 2]$ instead of $[-14.3, 14.3]$: the softmax over the $N$ prototypes gets flatter and the
# loss closer to $\log N$ whatever the centroids are. A small $\tau$ is what lets the loss reward
# a centroid that points at its own prototype, and what makes normalisation necessary
# (Section 4.6).
#
# </details>
