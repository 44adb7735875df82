"""Online Centroid Contrastive Loss (OCCL): view centroids (Eq. 3), centroid loss (Eq. 4),
category loss (Eq. 5) and their weighted sum (Eq. 6). Eq. 7 adds it to the pixel cross-entropy.

How this project reads the equations (the book's "Reading the paper" page, ``book/reading_the_paper.md``; the printed ones have typos):

* Features are the decoder's C-dim embedding (B, C, H, W). Labels are resized to (H, W) by
  nearest; ignored pixels (255) count nowhere.
* Two views split the batch's labels: ``"objects"`` (the paper's literal reading, the default of
  :class:`OCCL` and of the engine: each view "contains the same number of categories as y while the
  number of objects is half") = each class's objects, the 4-connected regions of its label in each
  image, split at random into two halves, and the pixels of a class with a single object split at
  random; ``"batch"`` (the default before protocol amendment 5) = first half of the images vs the
  second half; ``"random"`` = each class's pixels split at random into two halves; ``"global"`` = ``"batch"`` on every rank, then centroid sums and
  counts are summed over all ranks.
* View centroid ``v_{l,x}`` = mean unnormalised feature of class l in view x (Eq. 3). Category
  centroid ``s_l = (v_{l,1} + v_{l,2}) / 2`` for a class in both views, else that one view's centroid.
* Vectors are L2-normalised just before every dot product (``normalize=True``, default).
* Centroid loss, Eq. 4 read as InfoNCE (the print drops the log and breaks the denominator): for
  each class i in both views and each view x,
  ``-log( e^{v_i1.v_i2/tau} / (e^{v_i1.v_i2/tau} + sum_{j != i} e^{v_ix.sg(s_j)/tau}) )``,
  j over the classes present in the batch, sg = stop-gradient; mean over such classes.
* Category loss, Eq. 5 (its denominator ``sum_{j != i} e^{v_j1.w_j/tau}`` is read as a typo): for each
  class i present in view x, cross-entropy of ``v_ix . w_j / tau`` over all N prototypes with
  target i; mean over the present classes. The prototypes are its keys and are detached ("frozen"
  in the paper), also for a learnable classifier (protocol amendment 5).
* Alternative readings, kept as options for the book's comparisons ("Reading the paper"):
  ``class_reduction="sum"`` sums the per-class terms of Eq. 4 and Eq. 5 as printed (``Sigma_i``)
  instead of averaging them; ``category_form="printed"`` keeps Eq. 5's printed denominator, a
  softmax over the present classes of the own-prototype scores ``v_jx . w_j / tau`` (with the log
  and minus sign that Eq. 4's InfoNCE reading also adds).
* ``centroid = (L_v1 + L_v2) / 2``, ``category = (L_c1 + L_c2) / 2``,
  ``loss = lam * centroid + phi * category`` (Eq. 6).

All classes are reduced at once: one ``scatter_add`` builds the per-(view, class) sums; there is
no Python loop over classes or pixels. The object views find the batch's regions with one call of
``scipy.sparse.csgraph.connected_components`` on the CPU (a graph of the same-label 4-neighbours of
the whole batch, no loop over images or classes); ``benchmarks/object_views.py`` prints its cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cbp.distributed import all_reduce_sum_, get_world_size
from cbp.paper import PAPER_ABLATION, PAPER_TAU

Views = Literal["batch", "random", "global", "objects"]
VIEWS = ("batch", "random", "global", "objects")
ClassReduction = Literal["mean", "sum"]
CLASS_REDUCTIONS = ("mean", "sum")
CategoryForm = Literal["prototypes", "printed"]
CATEGORY_FORMS = ("prototypes", "printed")


@dataclass
class ViewCentroids:
    """Per-view class centroids of one batch (Eq. 3).

    Attributes:
        view_centroids: (2, N, C) float32, mean feature of class l in view x; zero where absent.
        counts: (2, N) pixel counts per view and class.
        category_centroids: (N, C) float32, ``s_l`` (mean of the views it is present in).
    """

    view_centroids: Tensor
    counts: Tensor
    category_centroids: Tensor

    @property
    def present_in_view(self) -> Tensor:
        """(2, N) bool: class l has pixels in view x."""
        return self.counts > 0

    @property
    def present(self) -> Tensor:
        """(N,) bool: class l has pixels in either view."""
        return self.present_in_view.any(dim=0)

    @property
    def in_both_views(self) -> Tensor:
        """(N,) bool: class l has pixels in both views."""
        return self.present_in_view.all(dim=0)


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of integer labels (B, h, w) -> (B, H, W)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    # float32 holds every label value (< 2^24) exactly.
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


def _random_halves(groups: Tensor, generator: torch.Generator | None) -> Tensor:
    """Split the members of every group at random into two halves: (M,) int64 group ids -> (M,) 0/1.

    Members are ranked by a random key within their group; the first ``floor(n / 2)`` of a group of n
    get 0 and the rest 1 (so the extra member of an odd group goes to 1). No loop over groups.
    """
    keys = torch.rand(groups.shape, generator=generator, device="cpu").to(groups.device)  # (M,)
    # Sort by (group, random key): each group becomes one contiguous run in random order.
    order = torch.argsort(groups.double() + keys.double())  # (M,)
    _, counts = torch.unique_consecutive(groups[order], return_counts=True)  # (K,)
    starts = torch.cumsum(counts, 0) - counts  # (K,)
    run = torch.repeat_interleave(torch.arange(len(counts), device=groups.device), counts)  # (M,)
    rank_in_group = torch.arange(groups.numel(), device=groups.device) - starts[run]  # (M,)
    half = torch.empty_like(groups)
    half[order] = (rank_in_group >= counts[run] // 2).long()
    return half


def object_ids(labels: Tensor) -> Tensor:
    """The objects of a batch: 4-connected regions of equal label in each image.

    Two pixels are in one object when a path of horizontal / vertical steps inside one image joins
    them through pixels of their label. Ignored pixels form objects too (callers drop them).
    Computed on the CPU by one ``scipy.sparse.csgraph.connected_components`` over the whole batch.

    Args:
        labels: (B, H, W) integer labels.

    Returns:
        (B, H, W) int64 object index in ``[0, K)`` (numbered in raster order of the batch), on
        ``labels``' device.
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    y = labels.detach().cpu().numpy()
    batch, height, width = y.shape
    index = np.arange(y.size).reshape(batch, height, width)
    same_row = y[:, :, 1:] == y[:, :, :-1]  # (B, H, W-1) right neighbour has the same label
    same_col = y[:, 1:, :] == y[:, :-1, :]  # (B, H-1, W) lower neighbour has the same label
    src = np.concatenate([index[:, :, :-1][same_row], index[:, :-1, :][same_col]])
    dst = np.concatenate([index[:, :, 1:][same_row], index[:, 1:, :][same_col]])
    graph = coo_matrix((np.ones(src.size, dtype=np.int8), (src, dst)), shape=(y.size, y.size))
    _, component = connected_components(graph, directed=False)
    return torch.from_numpy(component.astype(np.int64)).view(batch, height, width).to(labels.device)


def assign_views(
    labels: Tensor, views: Views, *, ignore_index: int = 255, generator: torch.Generator | None = None
) -> Tensor:
    """Split the pixels of a batch into two views.

    Args:
        labels: (B, H, W) int64 labels.
        views: ``"batch"`` / ``"global"``: images ``[0, B/2)`` are view 0 and ``[B/2, B)`` view 1
            (B must be even and >= 2). ``"random"``: each class's pixels are split at random into
            two halves (the extra pixel of an odd count goes to view 1), drawn from ``generator``.
            ``"objects"`` (protocol amendment 5): the objects of each class (:func:`object_ids`, over
            all images of the batch) are split at random into two halves (the extra object of an
            odd count goes to view 1), so a class with k >= 2 objects has floor(k/2) objects in view
            0 and the rest in view 1; a class with a single object has that object's pixels split
            as ``"random"`` splits them (so it is in both views unless it has one pixel).
        ignore_index: label of ignored pixels (their view does not matter).
        generator: random generator of the ``"random"`` and ``"objects"`` splits.

    Returns:
        (B, H, W) int64 view index in {0, 1}.
    """
    batch = labels.shape[0]
    if views in ("batch", "global"):
        if batch < 2 or batch % 2:
            raise ValueError(
                f"OCCL views='{views}' splits the batch into two halves and needs an even batch size >= 2 "
                f"per process (got {batch}); use an even batch or views='random' or 'objects'"
            )
        view = torch.zeros(batch, dtype=torch.long, device=labels.device)
        view[batch // 2 :] = 1
        return view[:, None, None].expand_as(labels)
    if views == "random":
        return _random_halves(labels.reshape(-1).long(), generator).view_as(labels)
    if views != "objects":
        raise ValueError(f"unknown OCCL views {views!r}: expected one of {list(VIEWS)}")
    flat = labels.reshape(-1).long()  # (P,)
    obj = object_ids(labels).reshape(-1)  # (P,) in [0, K)
    num_objects = int(obj.max()) + 1 if obj.numel() else 0
    obj_class = torch.zeros(num_objects, dtype=torch.long, device=flat.device).scatter_(0, obj, flat)  # (K,)
    objects_of_class = torch.bincount(obj_class)  # (max label + 1,)
    obj_view = _random_halves(obj_class, generator)  # (K,) halves of each class's objects
    pixel_view = _random_halves(flat, generator)  # (P,) halves of each class's pixels
    single = objects_of_class[flat] == 1  # (P,) pixel of a class with one object
    view = torch.where(single, pixel_view, obj_view[obj])  # (P,)
    return view.view_as(labels)


def view_centroids(
    features: Tensor, labels: Tensor, view: Tensor, num_classes: int, *, ignore_index: int = 255
) -> tuple[Tensor, Tensor]:
    """Per-(view, class) feature sums and pixel counts, in one segmented reduction (Eq. 3's sums).

    Args:
        features: (B, C, H, W), any float dtype; summed in float32.
        labels: (B, H, W) int64 at the features' resolution.
        view: (B, H, W) int64 in {0, 1}.
        num_classes: N, the number of classes.
        ignore_index: pixels with this label are dropped.

    Returns:
        ``sums`` (2, N, C) float32 and ``counts`` (2, N) float32.
    """
    batch, channels, height, width = features.shape
    valid = labels != ignore_index  # (B, H, W)
    # Segment index view * N + class; ignored pixels go to an extra bucket 2N that is dropped.
    segment = torch.where(valid, view * num_classes + labels, torch.full_like(labels, 2 * num_classes))
    segment = segment.reshape(batch, 1, height * width)  # (B, 1, HW)
    feats = features.float().reshape(batch, channels, height * width)  # (B, C, HW)
    sums = feats.new_zeros(batch, channels, 2 * num_classes + 1)  # (B, C, 2N+1)
    sums = sums.scatter_add(2, segment.expand(-1, channels, -1), feats)
    sums = sums.sum(dim=0)[:, : 2 * num_classes]  # (C, 2N)
    sums = sums.T.reshape(2, num_classes, channels)  # (2, N, C)
    counts = torch.bincount(segment.reshape(-1), minlength=2 * num_classes + 1)[: 2 * num_classes]
    return sums, counts.to(torch.float32).reshape(2, num_classes)  # (2, N, C), (2, N)


def centroids_from_sums(sums: Tensor, counts: Tensor) -> ViewCentroids:
    """View centroids (Eq. 3) and category centroids from per-view sums (2, N, C) and counts (2, N)."""
    present = (counts > 0).to(sums.dtype)  # (2, N)
    v = sums / counts.clamp(min=1.0)[..., None]  # (2, N, C)
    s = (v * present[..., None]).sum(dim=0) / present.sum(dim=0).clamp(min=1.0)[:, None]  # (N, C)
    return ViewCentroids(view_centroids=v, counts=counts, category_centroids=s)


def _reduce_classes(per_class: Tensor, weight: Tensor, reduction: ClassReduction) -> Tensor:
    """Per-view reduction over classes: (2, N) terms, (2, N) or (N,) 0/1 weights -> (2,)."""
    total = (per_class * weight).sum(dim=1)  # (2,)
    if reduction == "sum":
        return total
    count = weight.sum(dim=-1) if weight.dim() == 2 else weight.sum()  # (2,) or ()
    return total / count.clamp(min=1.0)


def centroid_loss(
    centroids: ViewCentroids, *, tau: float, normalize: bool = True, class_reduction: ClassReduction = "mean"
) -> Tensor:
    """Centroid loss (Eq. 4 read as InfoNCE): ``(L_v1 + L_v2) / 2``.

    For each class i in both views and each view x, the positive is ``v_i1 . v_i2 / tau`` and the
    negatives ``v_ix . sg(s_j) / tau`` for the other classes j present in the batch. ``L_vx`` is the
    mean of these terms over the classes (``class_reduction="sum"``: their sum, as printed).

    Returns:
        Scalar tensor; exactly 0 (with zero gradient) when no class is in both views.
    """
    v = centroids.view_centroids  # (2, N, C)
    s = centroids.category_centroids.detach()  # (N, C) stop-gradient
    if normalize:
        v, s = F.normalize(v, dim=-1), F.normalize(s, dim=-1)
    num_classes = v.shape[1]
    both = centroids.in_both_views  # (N,)
    positive = (v[0] * v[1]).sum(dim=-1) / tau  # (N,)
    negatives = torch.einsum("xnc,mc->xnm", v, s) / tau  # (2, N, N)
    is_negative = centroids.present[None, :] & ~torch.eye(
        num_classes, dtype=torch.bool, device=v.device
    )  # (N, N)
    negatives = negatives.masked_fill(~is_negative, float("-inf"))  # (2, N, N)
    logits = torch.cat([positive[None, :, None].expand(2, -1, 1), negatives], dim=2)  # (2, N, 1+N)
    per_class = torch.logsumexp(logits, dim=2) - positive[None]  # (2, N): -log softmax of the positive
    weight = both.to(per_class.dtype)  # (N,)
    return _reduce_classes(per_class, weight, class_reduction).mean()


def category_loss(
    centroids: ViewCentroids,
    prototypes: Tensor,
    *,
    tau: float,
    normalize: bool = True,
    class_reduction: ClassReduction = "mean",
    form: CategoryForm = "prototypes",
) -> Tensor:
    """Category loss (Eq. 5 read as cross-entropy over all prototypes): ``(L_c1 + L_c2) / 2``.

    For each class i present in view x: ``CE(v_ix . w_j / tau over j = 1..N, target i)``, averaged over
    the classes present in that view (0 for a view with no class; ``class_reduction="sum"``: summed).

    ``form="printed"`` is Eq. 5's printed denominator instead: with the own-prototype scores
    ``a_j = v_jx . w_j / tau`` of the classes j present in view x, the term of class i is
    ``-log(e^{a_i} / sum_j e^{a_j})``. It never compares a centroid with another class's prototype.

    The prototypes are detached (keys): no gradient reaches them, whatever the classifier.

    Returns:
        Scalar tensor.
    """
    v = centroids.view_centroids  # (2, N, C)
    # The keys are frozen (the paper; protocol amendment 5): for a learnable classifier (the baseline,
    # update=gradient / penalty) the category loss moves the features only, never the prototypes.
    w = prototypes.detach().float()  # (N, C)
    if normalize:
        v, w = F.normalize(v, dim=-1), F.normalize(w, dim=-1)
    present = centroids.present_in_view  # (2, N)
    if form == "printed":
        own = (v * w[None]).sum(dim=-1) / tau  # (2, N): a_jx = v_jx . w_j / tau
        # Absent classes drop out of the softmax; a view with no class at all keeps finite scores
        # (its terms get weight 0), so logsumexp never sees an all -inf row (NaN in its backward).
        scores = torch.where(
            present.any(dim=1, keepdim=True), own.masked_fill(~present, float("-inf")), torch.zeros_like(own)
        )  # (2, N)
        per_class = torch.logsumexp(scores, dim=1, keepdim=True) - own  # (2, N)
    elif form == "prototypes":
        logits = torch.einsum("xnc,mc->xnm", v, w) / tau  # (2, N, N)
        per_class = torch.logsumexp(logits, dim=2) - torch.diagonal(logits, dim1=1, dim2=2)  # (2, N)
    else:
        raise ValueError(f"unknown category-loss form {form!r}: expected one of {list(CATEGORY_FORMS)}")
    weight = present.to(per_class.dtype)  # (2, N)
    return _reduce_classes(per_class, weight, class_reduction).mean()


class OCCL(nn.Module):
    """Online Centroid Contrastive Loss (Eq. 3-6).

    The defaults are the engine's (:class:`cbp.engine.config.LossConfig`): the paper's tau and the
    lambda, phi of its ablations (:mod:`cbp.paper`), and the object views of protocol amendment 5.

    Args:
        tau: temperature of every dot product (paper: 0.07).
        lam: weight lambda of the centroid loss (default 1.0).
        phi: weight phi of the category loss (default 0.3).
        views: ``"objects"`` (default), ``"batch"``, ``"random"`` or ``"global"`` (see
            :func:`assign_views`). With ``"global"`` under DDP, centroid sums and counts are summed
            over all ranks before the loss, so every rank computes the loss of the whole global
            batch: global view 0 is the union of every rank's first half of images. The gradient of
            the local contribution is scaled by the world size so that DDP's gradient averaging
            yields the gradient of the global loss. In one process ``"global"`` equals ``"batch"``.
        normalize: L2-normalise centroids and prototypes before every dot product.
        class_reduction: ``"mean"`` (default) or ``"sum"`` of the per-class terms of Eq. 4-5 (the
            print's ``Sigma_i``; scales the loss with the number of classes in the batch).
        category_form: ``"prototypes"`` (default, cross-entropy over all prototypes) or
            ``"printed"`` (Eq. 5's printed denominator; see :func:`category_loss`).
        ignore_index: label of ignored pixels.
        seed: seed of the ``"random"`` and ``"objects"`` view splits (a private generator, advanced every
            call).

    Shapes:
        forward: features (B, C, H, W) float, labels (B, h, w) int64 (resized to (H, W) by nearest),
        prototypes (N, C).

    Returns:
        dict with scalar tensors ``"loss"`` (lam * centroid + phi * category), ``"centroid"``,
        ``"category"``, and the detached ``"category_centroids"`` (N, C) float32 and
        ``"present"`` (N,) bool of the batch (what the EMA prototype update needs).
    """

    def __init__(
        self,
        *,
        tau: float = PAPER_TAU,
        lam: float = PAPER_ABLATION.lam,
        phi: float = PAPER_ABLATION.phi,
        views: Views = "objects",
        normalize: bool = True,
        class_reduction: ClassReduction = "mean",
        category_form: CategoryForm = "prototypes",
        ignore_index: int = 255,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if views not in VIEWS:
            raise ValueError(f"unknown OCCL views {views!r}: expected one of {list(VIEWS)}")
        if class_reduction not in CLASS_REDUCTIONS:
            raise ValueError(
                f"unknown OCCL class_reduction {class_reduction!r}: expected one of {list(CLASS_REDUCTIONS)}"
            )
        if category_form not in CATEGORY_FORMS:
            raise ValueError(
                f"unknown OCCL category_form {category_form!r}: expected one of {list(CATEGORY_FORMS)}"
            )
        if not tau > 0:
            raise ValueError(f"OCCL temperature tau must be > 0, got {tau}")
        self.tau, self.lam, self.phi = float(tau), float(lam), float(phi)
        self.views: Views = views
        self.normalize = normalize
        self.class_reduction: ClassReduction = class_reduction
        self.category_form: CategoryForm = category_form
        self.ignore_index = ignore_index
        self.generator = torch.Generator().manual_seed(seed)

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:g}, lam={self.lam:g}, phi={self.phi:g}, views={self.views!r}, "
            f"normalize={self.normalize}, class_reduction={self.class_reduction!r}, "
            f"category_form={self.category_form!r}, ignore_index={self.ignore_index}"
        )

    def forward(self, features: Tensor, labels: Tensor, prototypes: Tensor) -> dict[str, Tensor]:
        """Compute OCCL on one batch; see the class docstring for shapes and outputs."""
        self._check_inputs(features, labels, prototypes)
        num_classes = prototypes.shape[0]
        labels = resize_labels(labels.long(), tuple(features.shape[-2:]))  # (B, H, W)
        self._check_label_values(labels, num_classes)
        view = assign_views(labels, self.views, ignore_index=self.ignore_index, generator=self.generator)
        # Centroid arithmetic in float32 even under autocast (fp16 sums of many pixels overflow).
        with torch.autocast(device_type=features.device.type, enabled=False):
            sums, counts = view_centroids(features, labels, view, num_classes, ignore_index=self.ignore_index)
            if self.views == "global" and get_world_size() > 1:
                world = get_world_size()
                total_sums = all_reduce_sum_(sums.detach().clone())
                counts = all_reduce_sum_(counts.clone())
                # Value: the global sums. Gradient: world x the local path (DDP averages it back).
                sums = total_sums + world * (sums - sums.detach())
            centroids = centroids_from_sums(sums, counts)
            reduction = self.class_reduction
            centroid = centroid_loss(
                centroids, tau=self.tau, normalize=self.normalize, class_reduction=reduction
            )
            category = category_loss(
                centroids,
                prototypes,
                tau=self.tau,
                normalize=self.normalize,
                class_reduction=reduction,
                form=self.category_form,
            )
        return {
            "loss": self.lam * centroid + self.phi * category,
            "centroid": centroid,
            "category": category,
            "category_centroids": centroids.category_centroids.detach(),
            "present": centroids.present,
        }

    def _check_inputs(self, features: Tensor, labels: Tensor, prototypes: Tensor) -> None:
        if features.dim() != 4 or not features.is_floating_point():
            raise ValueError(
                f"OCCL features must be a float tensor (B, C, H, W), got {features.dtype} {tuple(features.shape)}"
            )
        if labels.dim() != 3 or labels.dtype not in (torch.int64, torch.int32, torch.uint8):
            raise ValueError(
                f"OCCL labels must be an integer tensor (B, h, w) (int64), got {labels.dtype} {tuple(labels.shape)}"
            )
        if labels.shape[0] != features.shape[0]:
            raise ValueError(
                f"OCCL features and labels disagree on the batch size: {features.shape[0]} vs {labels.shape[0]}"
            )
        if prototypes.dim() != 2 or prototypes.shape[1] != features.shape[1]:
            raise ValueError(
                f"OCCL prototypes must be (N, C={features.shape[1]}) to match the features, "
                f"got {tuple(prototypes.shape)}"
            )

    def _check_label_values(self, labels: Tensor, num_classes: int) -> None:
        bad = (labels != self.ignore_index) & ((labels < 0) | (labels >= num_classes))  # (B, H, W)
        if bool(bad.any()):
            values = torch.unique(labels[bad]).tolist()[:10]
            raise ValueError(
                f"OCCL labels must be in [0, {num_classes}) or ignore_index={self.ignore_index}; "
                f"found {values}: check the dataset's label mapping or num_classes"
            )
