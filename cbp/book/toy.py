"""The toy problems of chapters 1 and 2: synthetic Gaussian data, small MLP encoders, the heads, and
the training loops that show the prior and correlation ambiguity of a learned classifier (Section 3.1).

Two problems, each with its own loop (they answer different questions, so they train differently):

* chapter 1, **long-tailed clusters**: N Gaussian classes in D dimensions with a geometric long tail
  and confusable (frequent, rare) pairs, :func:`long_tailed_clusters`; an encoder with a post-ReLU
  C-dim embedding and a head, trained by mini-batch SGD (or Adam) for some epochs while the head's
  prototype norms and cosines are recorded after every epoch, :func:`train_minibatch`;
* chapter 2, **2-D toy**: three Gaussian classes in the plane (one large, two confusable), balanced
  or long-tailed, :func:`toy_2d_dataset`; an encoder to a 3-D feature and one of three heads
  (learnable, CBP, equal-norm only), trained full-batch while the prototypes are recorded every few
  steps, :func:`train_full_batch`.

Features reach the head as (B, C, 1, 1) maps, so the heads are the very modules
(:class:`cbp.heads.LinearHead`, :class:`cbp.heads.CBPHead`) that the segmentation models use. Every
random draw comes from an explicit seed: the data from a private ``torch.Generator``, the encoder and
the learnable head from ``torch.manual_seed(seed)``, the frozen prototypes from ``CBPHead(seed=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cbp.heads import CBPHead, LinearHead
from cbp.metrics import ConfusionMatrix
from cbp.prototypes import cosine_similarity_matrix

__all__ = [
    "CONFUSABLE",
    "HEAD_INITS",
    "TOY_2D_COUNTS",
    "TOY_2D_MEANS",
    "TOY_2D_STDS",
    "long_tailed_clusters",
    "long_tailed_counts",
    "make_head",
    "mlp_encoder",
    "sample_2d",
    "toy_2d_dataset",
    "train_full_batch",
    "train_minibatch",
]

# Chapter 1: (frequent, rare) class pairs whose cluster means are close.
CONFUSABLE: list[tuple[int, int]] = [(0, 7), (2, 9), (4, 11)]

# Chapter 2: class means (3, 2) and standard deviations (3,) of the three Gaussians in the plane.
TOY_2D_MEANS = torch.tensor([[0.0, 2.2], [-0.9, -0.6], [0.5, -0.9]])
TOY_2D_STDS = torch.tensor([0.7, 0.55, 0.55])
# Chapter 2: training points per class of the two training sets.
TOY_2D_COUNTS: dict[str, list[int]] = {"balanced": [600, 600, 600], "long-tailed": [2000, 400, 40]}

# Frozen heads by kind: the prototype init of :func:`cbp.prototypes.category_basis_prototypes`.
HEAD_INITS = {"cbp": "orthogonal+equal", "equal": "equal"}


def long_tailed_counts(num_classes: int, n_max: int, imbalance: float) -> np.ndarray:
    """Geometric long tail ``n_l = round(n_max * imbalance^(-l / (N - 1)))``, class 0 the most frequent.

    Returns:
        (N,) int numpy array of training samples per class; ``n_0 = n_max``, ``n_{N-1} = n_max / imbalance``.
    """
    return np.round(n_max * imbalance ** (-np.arange(num_classes) / (num_classes - 1))).astype(int)


def long_tailed_clusters(
    seed: int,
    *,
    num_classes: int,
    input_dim: int,
    n_max: int,
    imbalance: float,
    confusable: Sequence[tuple[int, int]] = CONFUSABLE,
    test_per_class: int = 400,
    spread: float = 1.6,
    pair_offset: float = 0.9,
) -> dict[str, Any]:
    """Chapter 1's data: long-tailed Gaussian clusters with confusable pairs, and a balanced test set.

    Class means are ``spread * N(0, I)``; for each pair ``(a, b)`` of ``confusable`` the mean of b is
    moved next to a's, ``m_b = m_a + pair_offset * N(0, I) / sqrt(D)``. Samples are ``m_y + N(0, I)``.
    Draw order (one generator seeded with ``seed``): means, pair offsets, training set, test set.

    Args:
        seed: seed of the private generator (the data of one run).
        num_classes: N, the number of classes.
        input_dim: D, dimension of the inputs.
        n_max: training samples of class 0, the most frequent.
        imbalance: ``n_max / n_min`` (see :func:`long_tailed_counts`).
        confusable: (frequent, rare) class pairs with nearby means.
        test_per_class: samples per class of the balanced test set.
        spread: standard deviation of the class means.
        pair_offset: distance scale between the means of a confusable pair.

    Returns:
        dict with ``"x"`` (M, D) float32 and ``"y"`` (M,) int64 (the training set, sorted by class),
        ``"x_test"`` (N * test_per_class, D) and ``"y_test"``, and ``"counts"`` (N,) int numpy array.
    """
    bad = [pair for pair in confusable if not all(0 <= c < num_classes for c in pair)]
    if bad:
        raise ValueError(
            f"confusable pairs {bad} name classes outside [0, {num_classes}): pass pairs of valid classes "
            "(the default CONFUSABLE needs num_classes >= 12)"
        )
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, input_dim, generator=g) * spread  # (N, D)
    for a, b in confusable:  # b sits next to a
        means[b] = means[a] + pair_offset * torch.randn(input_dim, generator=g) / input_dim**0.5
    counts = long_tailed_counts(num_classes, n_max, imbalance)

    def sample(n_per_class: np.ndarray) -> tuple[Tensor, Tensor]:
        y = torch.repeat_interleave(torch.arange(num_classes), torch.as_tensor(n_per_class))  # (M,)
        x = means[y] + torch.randn(len(y), input_dim, generator=g)  # (M, D)
        return x, y

    x_train, y_train = sample(counts)
    x_test, y_test = sample(np.full(num_classes, test_per_class))  # balanced test set
    return {"x": x_train, "y": y_train, "x_test": x_test, "y_test": y_test, "counts": counts}


def sample_2d(counts: Sequence[int], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Draw ``counts[c]`` points of each class c of chapter 2's Gaussians (``TOY_2D_MEANS``, ``TOY_2D_STDS``).

    Returns:
        ``x`` (M, 2) float32 and ``y`` (M,) int64, sorted by class.
    """
    y = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))  # (M,)
    x = TOY_2D_MEANS[y] + TOY_2D_STDS[y, None] * torch.randn(len(y), 2, generator=generator)  # (M, 2)
    return x, y


def toy_2d_dataset(name: str, seed: int, *, test_per_class: int = 1000) -> dict[str, Tensor]:
    """Chapter 2's data: a training set (``name`` in :data:`TOY_2D_COUNTS`) and a balanced test set.

    Args:
        name: ``"balanced"`` or ``"long-tailed"``.
        seed: seed of the private generator; the training set is drawn first, then the test set.
        test_per_class: test points per class.

    Returns:
        dict with ``"x"`` (M, 2), ``"y"`` (M,), ``"x_test"`` (3 * test_per_class, 2), ``"y_test"``.
    """
    if name not in TOY_2D_COUNTS:
        raise KeyError(f"unknown toy data set {name!r}: expected one of {list(TOY_2D_COUNTS)}")
    gen = torch.Generator().manual_seed(seed)
    x, y = sample_2d(TOY_2D_COUNTS[name], gen)
    x_test, y_test = sample_2d([test_per_class] * len(TOY_2D_COUNTS[name]), gen)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def mlp_encoder(widths: Sequence[int], *, relu_out: bool) -> nn.Sequential:
    """``Linear -> ReLU -> ... -> Linear`` through ``widths`` (input, hidden..., channels).

    Args:
        widths: layer widths, at least two: ``[in, hidden, ..., C]``.
        relu_out: end with a ReLU too (a post-ReLU embedding, as a segmentation decoder's).

    Returns:
        The encoder, (B, widths[0]) -> (B, widths[-1]); its layers are created (and their weights
        drawn from the global torch generator) in order.
    """
    if len(widths) < 2:
        raise ValueError(f"an MLP needs at least an input and an output width, got {list(widths)}")
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(w_in, w_out))
        if relu_out or i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def make_head(kind: str, channels: int, num_classes: int, *, length: float, seed: int) -> nn.Module:
    """The classifier head of a toy run.

    Args:
        kind: ``"learnable"`` (:class:`cbp.heads.LinearHead`, a 1x1 convolution with bias), ``"cbp"``
            (frozen orthogonal prototypes of norm ``length``, Algorithm 1) or ``"equal"`` (frozen
            random prototypes rescaled to norm ``length``, not orthogonalised).
        channels: C, width of the feature the head reads.
        num_classes: N, the number of classes.
        length: T, the prototype norm of the frozen heads (unused by ``"learnable"``).
        seed: seed of the frozen prototypes (the learnable head draws from the global generator).

    Returns:
        A head mapping (B, C, H, W) features to (B, N, H, W) logits.
    """
    if kind == "learnable":
        return LinearHead(channels, num_classes)
    if kind not in HEAD_INITS:
        raise KeyError(f"unknown head kind {kind!r}: expected 'learnable' or one of {list(HEAD_INITS)}")
    return CBPHead(channels, num_classes, length=length, init=HEAD_INITS[kind], seed=seed)  # frozen buffer


def _model(
    kind: str, widths: Sequence[int], num_classes: int, *, relu_out: bool, length: float, seed: int
) -> tuple[nn.Sequential, nn.Sequential, nn.Module]:
    """``torch.manual_seed(seed)``, then an :func:`mlp_encoder` through ``widths`` and a :func:`make_head`.

    Returns:
        ``(model, encoder, head)``: the model maps (B, widths[0]) inputs through (B, C, 1, 1) feature maps
        (the form the segmentation heads read) to (B, N) logits.
    """
    torch.manual_seed(seed)
    encoder = mlp_encoder(widths, relu_out=relu_out)
    head = make_head(kind, widths[-1], num_classes, length=length, seed=seed)
    model = nn.Sequential(encoder, nn.Unflatten(1, (widths[-1], 1, 1)), head, nn.Flatten(1))
    return model, encoder, head


def _recall(model: nn.Module, x: Tensor, target: Tensor, num_classes: int) -> tuple[ConfusionMatrix, dict]:
    """Confusion matrix of the model's predictions on ``x`` (M, D) against ``target`` (M,) and its
    metrics (recall = ``"Acc"``, in %)."""
    with torch.no_grad():
        pred = model(x).argmax(1)  # (M,)
    cm = ConfusionMatrix(num_classes)
    cm.update(pred, target)
    return cm, cm.compute()


def train_minibatch(
    head_kind: str,
    data: dict[str, Any],
    seed: int,
    *,
    num_classes: int,
    channels: int,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: Literal["sgd", "adam"] = "sgd",
    hidden: int = 64,
    length: float = 2.0,
) -> dict[str, Any]:
    """Chapter 1's loop: encoder + head trained by mini-batch cross-entropy, prototype stats per epoch.

    The encoder is ``D -> hidden -> C`` with a ReLU after each layer (a post-ReLU embedding); the loss
    is the pixel cross-entropy of Eq. 7. ``torch.manual_seed(seed)`` draws the encoder and a learnable
    head, a generator seeded with ``seed`` the batch order. ``"sgd"`` has momentum 0.9 and weight decay
    1e-4 (mmsegmentation's), ``"adam"`` torch's defaults. ``data`` is a :func:`long_tailed_clusters`
    dict; ``head_kind``, ``channels`` and ``length`` are those of :func:`make_head`; the last batch of
    an epoch may be smaller than ``batch_size``.

    Returns:
        dict with ``"history"`` (one dict per epoch with ``"epoch"``, ``"norms"`` (N,) float32 and ``"cos"``
        (N, N) float64 numpy arrays of the prototypes), test ``"recall"`` (N,) and ``"mAcc"`` in %,
        the head's ``"bias"`` (N,) (zeros for a frozen head), the final prototypes ``"W"`` (N, C) and the
        test ``"confusion"`` matrix (N, N).
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}: expected 'sgd' or 'adam'")
    widths = [data["x"].shape[1], hidden, channels]
    model, _, head = _model(head_kind, widths, num_classes, relu_out=True, length=length, seed=seed)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        for idx in torch.randperm(len(data["y"]), generator=g).split(batch_size):  # (B,) each
            loss = F.cross_entropy(model(data["x"][idx]), data["y"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        W = head.prototypes.detach()  # (N, C)
        cos = cosine_similarity_matrix(W).numpy()  # (N, N)
        history.append({"epoch": epoch + 1, "norms": W.norm(dim=1).numpy().copy(), "cos": cos})
    cm, result = _recall(model, data["x_test"], data["y_test"], num_classes)
    bias = head.bias.detach().numpy().copy() if head_kind == "learnable" else np.zeros(num_classes)
    return {
        "history": history,
        "recall": result["Acc"].numpy(),
        "mAcc": result["mAcc"],
        "bias": bias,
        "W": head.prototypes.detach().clone(),
        "confusion": cm.matrix.numpy(),
    }


def train_full_batch(
    kind: str,
    data: dict[str, Tensor],
    seed: int,
    *,
    num_classes: int,
    channels: int,
    hidden: int,
    steps: int,
    lr: float,
    length: float,
    record_every: int = 10,
) -> dict[str, Any]:
    """Chapter 2's loop: encoder + head trained by full-batch SGD (momentum 0.9), recorded every few steps.

    The encoder is ``2 -> hidden -> hidden -> C`` with ReLUs between the layers and none on the output.
    ``torch.manual_seed(seed)`` draws the encoder and a learnable head; the frozen prototypes come from
    ``seed``. ``data`` is a :func:`toy_2d_dataset` dict; ``kind``, ``channels`` and ``length`` are those
    of :func:`make_head`. At steps 0, ``record_every``, ... up to ``steps`` the prototypes and the test
    recall are recorded: the model after 50 steps is the one a run of ``steps=50`` returns.

    Returns:
        dict with the trained ``"model"`` ((B, 2) -> (B, N) logits), ``"encoder"`` and ``"head"``; the
        recorded ``"steps"`` (S,), prototypes ``"trajectory"`` (S, N, C) and test recall
        ``"recall_path"`` (S, N) in %; the final test ``"recall"`` (N,) and ``"mAcc"`` in %, the last
        training ``"loss"`` (of the batch before the last update; NaN for ``steps=0``) and
        ``"feat_norm"``, the mean test feature norm.
    """
    widths = [data["x"].shape[1], hidden, hidden, channels]
    model, encoder, head = _model(kind, widths, num_classes, relu_out=False, length=length, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    recorded, trajectory, recall_path = [], [], []
    loss = torch.tensor(float("nan"))  # no step taken yet
    for step in range(steps + 1):
        if step % record_every == 0:
            recorded.append(step)
            trajectory.append(head.prototypes.detach().clone())  # (N, C)
            recall_path.append(_recall(model, data["x_test"], data["y_test"], num_classes)[1]["Acc"])
        if step == steps:
            break
        loss = F.cross_entropy(model(data["x"]), data["y"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, res = _recall(model, data["x_test"], data["y_test"], num_classes)
    with torch.no_grad():
        feat_norm = encoder(data["x_test"]).norm(dim=1).mean().item()
    return {
        "model": model,
        "encoder": encoder,
        "head": head,
        "steps": np.array(recorded),
        "trajectory": torch.stack(trajectory),  # (S, N, C)
        "recall_path": torch.stack(recall_path).numpy(),  # (S, N)
        "recall": res["Acc"].numpy(),
        "mAcc": res["mAcc"],
        "loss": loss.item(),
        "feat_norm": feat_norm,
    }
