"""Segmentation metrics with mmsegmentation's arithmetic, and the frequency groups of Fig. 5.

All metrics come from one dataset-level confusion matrix (sums over every pixel of every image,
not means of per-image scores), as mmseg's ``IoUMetric`` computes them:

* ``IoU_l = TP / (GT + Pred - TP)``; NaN for a class absent from both ground truth and prediction.
* ``Acc_l = TP / GT`` (per-class recall); NaN for a class absent from the ground truth.
* ``F1_l = 2 TP / (GT + Pred)``; NaN when absent from both (a class predicted but never present
  gets F1 = 0 here, where mmseg's precision/recall formula would give NaN).
* ``mIoU``, ``mAcc``: NaN-ignoring means; ``aAcc = sum TP / sum GT``. All in percent.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from cbp.distributed import all_reduce_sum_


class ConfusionMatrix:
    """Accumulates an (N, N) confusion matrix: rows are ground truth, columns predictions.

    Args:
        num_classes: N, the number of classes.
        ignore_index: ground-truth label of pixels that count nowhere.
        device: where the matrix starts; it follows the device of the first ``update``.
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix needs num_classes >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)  # (N, N)

    def reset(self) -> None:
        """Zero the counts."""
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of predictions.

        Args:
            pred: integer class indices, any shape (e.g. (B, H, W)), values in [0, N).
            target: integer labels of the same shape, values in [0, N) or ``ignore_index``.
        """
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}; "
                "resize the logits to the label's size before argmax"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("ConfusionMatrix.update takes class indices (argmax of the logits), not floats")
        if self.matrix.device != pred.device:
            self.matrix = self.matrix.to(pred.device)
        n = self.num_classes
        valid = target != self.ignore_index
        t = target[valid].long()
        p = pred[valid].long()
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
            raise ValueError(
                f"target labels must be in [0, {n}) or {self.ignore_index}; found {torch.unique(t).tolist()[:10]}"
            )
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= n):
            raise ValueError(f"predictions must be in [0, {n}); found {torch.unique(p).tolist()[:10]}")
        self.matrix += torch.bincount(t * n + p, minlength=n * n).view(n, n)

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrices of all DDP ranks in place (no-op in one process); returns self."""
        all_reduce_sum_(self.matrix)
        return self

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from a second evaluation pass); returns self."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class counts into {self.num_classes} classes")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def compute(self) -> dict[str, float | Tensor]:
        """The metrics of the counts so far.

        Returns:
            ``"mIoU"``, ``"mAcc"``, ``"aAcc"`` (floats, percent) and per-class ``"IoU"``, ``"Acc"``,
            ``"F1"`` (float64 tensors (N,), percent, NaN where undefined; see the module docstring).
        """
        m = self.matrix.double().cpu()  # (N, N)
        tp = m.diagonal()  # (N,)
        gt = m.sum(dim=1)  # (N,)
        pred = m.sum(dim=0)  # (N,)
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        iou = torch.where(gt + pred - tp > 0, tp / (gt + pred - tp), nan) * 100
        acc = torch.where(gt > 0, tp / gt, nan) * 100
        f1 = torch.where(gt + pred > 0, 2 * tp / (gt + pred), nan) * 100
        total = float(gt.sum())
        return {
            "mIoU": _nanmean(iou),
            "mAcc": _nanmean(acc),
            "aAcc": float(tp.sum()) / total * 100 if total > 0 else float("nan"),
            "IoU": iou,
            "Acc": acc,
            "F1": f1,
        }


def _nanmean(values: Tensor) -> float:
    finite = values[~torch.isnan(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


def frequency_group_f1(
    f1: Tensor | np.ndarray, pixel_counts: Tensor | np.ndarray, groups: int = 15
) -> Tensor:
    """Mean F1 of classes grouped by training pixel count (the paper's Fig. 5).

    Classes are sorted by pixel count, ascending (ties keep class order), and split into ``groups``
    contiguous groups (``numpy.array_split``: with N = 150 and 15 groups, 10 classes each). Each
    group's value is the NaN-ignoring mean F1 of its classes.

    Args:
        f1: (N,) per-class F1.
        pixel_counts: (N,) training pixel counts (or ratios).
        groups: number of groups.

    Returns:
        float64 tensor (groups,), rarest group first.
    """
    f1_np = np.asarray(torch.as_tensor(f1).double().cpu())
    counts = np.asarray(torch.as_tensor(pixel_counts).double().cpu())
    if f1_np.shape != counts.shape or f1_np.ndim != 1:
        raise ValueError(f"f1 and pixel_counts must both be (N,), got {f1_np.shape} and {counts.shape}")
    if not 1 <= groups <= len(f1_np):
        raise ValueError(f"groups must be in [1, N={len(f1_np)}], got {groups}")
    order = np.argsort(counts, kind="stable")
    means = []
    for chunk in np.array_split(f1_np[order], groups):  # loop over groups (15), not classes
        finite = chunk[~np.isnan(chunk)]
        means.append(finite.mean() if finite.size else np.nan)
    return torch.tensor(means, dtype=torch.float64)
