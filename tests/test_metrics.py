"""ConfusionMatrix (mmseg arithmetic) against torchmetrics and hand cases; frequency-group F1 (Fig. 5)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex, MulticlassRecall

from cbp.metrics import ConfusionMatrix, frequency_group_f1


def _batches(num_classes: int, n_batches: int = 3, absent: tuple[int, ...] = ()) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n_batches):
        target = torch.randint(num_classes, (2, 12, 10), generator=g)
        pred = target.clone()
        noise = torch.rand(target.shape, generator=g) < 0.4
        pred[noise] = torch.randint(num_classes, (int(noise.sum()),), generator=g)
        target[torch.rand(target.shape, generator=g) < 0.15] = 255
        for a in absent:  # absent from both GT and prediction
            target[target == a] = (a + 1) % num_classes
            pred[pred == a] = (a + 1) % num_classes
        out.append((pred, target))
    return out


def test_matrix_counts_by_hand() -> None:
    cm = ConfusionMatrix(3)
    target = torch.tensor([0, 0, 1, 2, 255, 2])
    pred = torch.tensor([0, 1, 1, 2, 0, 0])
    cm.update(pred, target)
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 1]])  # rows = GT, columns = prediction
    assert cm.matrix.dtype == torch.int64 and torch.equal(cm.matrix, expected)


def test_against_torchmetrics_all_classes_present() -> None:
    n = 6
    cm = ConfusionMatrix(n)
    iou_tm = MulticlassJaccardIndex(n, ignore_index=255, average=None)
    miou_tm = MulticlassJaccardIndex(n, ignore_index=255, average="macro")
    f1_tm = MulticlassF1Score(n, ignore_index=255, average=None)
    rec_tm = MulticlassRecall(n, ignore_index=255, average=None)
    all_pred, all_target = [], []
    for pred, target in _batches(n):
        cm.update(pred, target)
        for m in (iou_tm, miou_tm, f1_tm, rec_tm):
            m.update(pred, target)
        all_pred.append(pred.flatten())
        all_target.append(target.flatten())
    res = cm.compute()
    torch.testing.assert_close(res["IoU"].double(), 100 * iou_tm.compute().double(), atol=1e-4, rtol=0)
    assert res["mIoU"] == pytest.approx(100 * miou_tm.compute().item(), abs=1e-4)
    torch.testing.assert_close(res["F1"].double(), 100 * f1_tm.compute().double(), atol=1e-4, rtol=0)
    torch.testing.assert_close(res["Acc"].double(), 100 * rec_tm.compute().double(), atol=1e-4, rtol=0)
    assert res["mAcc"] == pytest.approx(100 * rec_tm.compute().mean().item(), abs=1e-4)
    p, t = torch.cat(all_pred), torch.cat(all_target)
    valid = t != 255
    assert res["aAcc"] == pytest.approx(100 * (p[valid] == t[valid]).double().mean().item(), abs=1e-6)
    for key in ("mIoU", "mAcc", "aAcc"):
        assert isinstance(res[key], float)


def test_against_torchmetrics_with_absent_classes() -> None:
    n = 8
    absent = (2, 5)
    cm = ConfusionMatrix(n)
    iou_tm = MulticlassJaccardIndex(n, ignore_index=255, average=None)
    miou_tm = MulticlassJaccardIndex(n, ignore_index=255, average="macro")
    f1_tm = MulticlassF1Score(n, ignore_index=255, average=None)
    for pred, target in _batches(n, absent=absent):
        cm.update(pred, target)
        for m in (iou_tm, miou_tm, f1_tm):
            m.update(pred, target)
    res = cm.compute()
    present = torch.tensor([c not in absent for c in range(n)])
    torch.testing.assert_close(
        res["IoU"][present].double(), 100 * iou_tm.compute()[present].double(), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(
        res["F1"][present].double(), 100 * f1_tm.compute()[present].double(), atol=1e-4, rtol=0
    )
    for key in ("IoU", "Acc", "F1"):
        assert torch.isnan(res[key][~present]).all(), key
    # torchmetrics' macro average also drops classes absent from both GT and prediction.
    assert res["mIoU"] == pytest.approx(100 * miou_tm.compute().item(), abs=1e-4)
    assert res["mIoU"] == pytest.approx(res["IoU"][present].double().mean().item(), abs=1e-6)


def test_hand_case_with_absent_class() -> None:
    """3 classes; class 2 never appears; class 1 appears in GT but is never predicted."""
    cm = ConfusionMatrix(3)
    target = torch.tensor([[0, 0], [1, 255]])
    pred = torch.tensor([[0, 0], [0, 1]])
    cm.update(pred, target)
    res = cm.compute()
    # matrix: GT 0 -> pred 0 twice; GT 1 -> pred 0 once; the 255 pixel is ignored.
    assert torch.equal(cm.matrix, torch.tensor([[2, 0, 0], [1, 0, 0], [0, 0, 0]]))
    # IoU0 = 2 / (2 + 1) ; IoU1 = 0 / 1 ; IoU2 = 0/0 -> NaN, excluded from the mean.
    assert res["IoU"][0].item() == pytest.approx(100 * 2 / 3, rel=1e-6)
    assert res["IoU"][1].item() == 0.0
    assert math.isnan(res["IoU"][2].item())
    assert res["mIoU"] == pytest.approx(100 * (2 / 3 + 0) / 2, rel=1e-6)
    # Acc = recall: 2/2, 0/1, NaN.
    assert res["Acc"][0].item() == pytest.approx(100.0)
    assert res["Acc"][1].item() == 0.0
    assert math.isnan(res["Acc"][2].item())
    assert res["mAcc"] == pytest.approx(50.0)
    assert res["aAcc"] == pytest.approx(100 * 2 / 3)
    # F1 = 2TP / (2TP + FP + FN): class 0: 4 / (4 + 1) = 0.8; class 1: 0 (in GT, never predicted).
    assert res["F1"][0].item() == pytest.approx(80.0, rel=1e-6)
    assert res["F1"][1].item() == 0.0
    assert math.isnan(res["F1"][2].item())


def test_predicted_but_absent_from_ground_truth() -> None:
    """mmseg: IoU = 0 (counted in mIoU), Acc = NaN (no GT pixel, excluded from mAcc)."""
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]))
    res = cm.compute()
    assert res["IoU"][2].item() == 0.0
    assert math.isnan(res["Acc"][2].item())
    assert res["mIoU"] == pytest.approx(100 * (1 / 2 + 1 + 0) / 3, rel=1e-6)
    assert res["mAcc"] == pytest.approx(100 * (1 / 2 + 1) / 2, rel=1e-6)
    assert res["F1"][2].item() == 0.0


def test_update_across_batches_equals_one_update() -> None:
    n = 5
    batches = _batches(n, n_batches=4)
    a, b = ConfusionMatrix(n), ConfusionMatrix(n)
    for pred, target in batches:
        a.update(pred, target)
    b.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert torch.equal(a.matrix, b.matrix)
    ra, rb = a.compute(), b.compute()
    assert ra["mIoU"] == rb["mIoU"] and ra["aAcc"] == rb["aAcc"]
    a.reset()
    assert a.matrix.sum().item() == 0 and a.matrix.shape == (n, n)


def test_ignore_index_argument() -> None:
    cm = ConfusionMatrix(3, ignore_index=0)
    cm.update(torch.tensor([1, 2, 1]), torch.tensor([0, 2, 1]))
    assert cm.matrix.sum().item() == 2


def test_frequency_group_f1_by_hand() -> None:
    n, groups = 150, 15
    rng = np.random.default_rng(0)
    f1 = torch.tensor(rng.uniform(0, 100, n))
    counts = torch.tensor(rng.permutation(n) * 1000 + rng.integers(0, 999, n))  # distinct counts
    out = frequency_group_f1(f1, counts, groups=groups)
    assert out.shape == (groups,)
    order = np.argsort(counts.numpy(), kind="stable")  # rarest first
    expected = f1.numpy()[order].reshape(groups, n // groups).mean(axis=1)
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-6)
    assert frequency_group_f1(f1, counts).shape == (15,)  # default 15 groups


def test_frequency_group_f1_rarest_group_first() -> None:
    f1 = torch.arange(30, dtype=torch.float32)  # F1 rises with the class index
    counts = torch.arange(30, 0, -1)  # class 0 is the most frequent
    out = frequency_group_f1(f1, counts, groups=3)
    torch.testing.assert_close(out.float(), torch.tensor([24.5, 14.5, 4.5]))


def test_frequency_group_f1_ignores_nan_and_uneven_groups() -> None:
    f1 = torch.tensor([10.0, float("nan"), 30.0, 40.0, 50.0, 60.0, 70.0])
    counts = torch.tensor([1, 2, 3, 4, 5, 6, 7])
    out = frequency_group_f1(f1, counts, groups=3)  # numpy.array_split: groups of 3, 2, 2
    expected = [np.nanmean(part) for part in np.array_split(f1.numpy(), 3)]
    np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-6)


def test_empty_matrix_gives_nan_and_ignored_predictions_are_free() -> None:
    res = ConfusionMatrix(3).compute()
    assert math.isnan(res["mIoU"]) and math.isnan(res["aAcc"]) and torch.isnan(res["IoU"]).all()
    cm = ConfusionMatrix(3)
    cm.update(
        torch.tensor([0, 255, 7]), torch.tensor([0, 255, 255])
    )  # predictions on ignored pixels: anything
    assert cm.matrix.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    "pred, target",
    [
        (torch.tensor([0, 5]), torch.tensor([0, 1])),  # prediction out of range
        (torch.tensor([0, 1]), torch.tensor([0, 7])),  # label out of range, not ignore_index
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1])),  # shapes differ
        (torch.tensor([0.0, 1.0]), torch.tensor([0, 1])),  # logits / floats instead of indices
    ],
)
def test_update_errors(pred: torch.Tensor, target: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        ConfusionMatrix(3).update(pred, target)
