"""cbp.analysis against hand computations, scipy and per-class loop references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from cbp import analysis
from cbp.models import create_model


def test_correlations_hand_computed() -> None:
    """Pearson from its definition; Spearman on average ranks written out by hand (a tie included)."""
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 4.0, 10.0])
    xc, yc = x - x.mean(), y - y.mean()
    pearson = (xc * yc).sum() / math.sqrt((xc**2).sum() * (yc**2).sum())
    ry = np.array([2.0, 1.0, 3.5, 3.5, 5.0])  # the tie at 4.0 shares ranks 3 and 4
    rxc, ryc = x - x.mean(), ry - ry.mean()
    spearman = (rxc * ryc).sum() / math.sqrt((rxc**2).sum() * (ryc**2).sum())
    got = analysis.correlations(x, y)
    assert got["pearson"] == pytest.approx(pearson, abs=1e-12)
    assert got["spearman"] == pytest.approx(spearman, abs=1e-12)


def test_correlations_ignore_nan_and_constant() -> None:
    got = analysis.correlations([1.0, 2.0, None, 4.0, 5.0], [2.0, 4.0, 100.0, 8.0, 10.0])
    assert got["pearson"] == pytest.approx(1.0)
    assert math.isnan(analysis.correlations([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])


def test_norm_frequency_correlation_hand_case() -> None:
    counts = np.array([10.0, 100.0, 1000.0])
    weight = np.stack([np.array([1.0, 0]), np.array([0, 2.0]), np.array([3.0, 0])])  # norms 1, 2, 3
    got = analysis.norm_frequency_correlation(weight, counts)
    assert got["pearson_log"] == pytest.approx(1.0)  # norms linear in log10 count
    assert got["spearman_raw"] == pytest.approx(1.0)
    assert got["pearson_raw"] == pytest.approx(stats.pearsonr([1, 2, 3], counts).statistic)
    # a (N, C, 1, 1) conv weight gives the same
    conv = torch.tensor(weight)[:, :, None, None]
    assert analysis.norm_frequency_correlation(conv, counts) == pytest.approx(got)


def test_bias_frequency_correlation() -> None:
    counts = np.array([1.0, 10.0, 100.0, 1000.0])
    got = analysis.bias_frequency_correlation([-3.0, -1.0, 1.0, 3.0], counts)
    assert got["pearson"] == pytest.approx(1.0)


def test_frequency_parts_and_rare_third() -> None:
    counts = np.array([50, 10, 40, 20, 30, 60])  # ascending order: 1, 3, 4, 2, 0, 5
    parts = analysis.frequency_parts(counts, 3)
    assert [p.tolist() for p in parts] == [[1, 3], [4, 2], [0, 5]]
    iou = [90.0, 10.0, 70.0, None, 50.0, 80.0]  # class 3 absent: ignored
    assert analysis.rare_third_iou(iou, counts) == pytest.approx(10.0)


def test_confusable_iou() -> None:
    iou = np.array([10.0, 20.0, 30.0, 40.0, 50.0, np.nan])
    assert analysis.confusable_iou(iou, [[0, 2], [4, 5]]) == pytest.approx((10 + 30 + 50) / 3)
    assert math.isnan(analysis.confusable_iou(iou, []))


def test_f1_by_frequency_group_accepts_json_nulls() -> None:
    f1 = [10.0, None, 30.0, 40.0]
    counts = [4.0, 3.0, 2.0, 1.0]
    got = analysis.f1_by_frequency_group(f1, counts, 2)  # rarest first: classes 3, 2 | 1, 0
    assert got == pytest.approx([35.0, 10.0])


def test_group_cosines_hand_case() -> None:
    w = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [0, 0, 1.0], [0, 0, 2.0]])
    got = analysis.group_cosines(w, [[0, 1], [2, 3]])
    assert got["within"] == pytest.approx((1 / math.sqrt(2) + 1.0) / 2)
    # between pairs: (0,2) (0,3) (1,2) (1,3) all 0
    assert got["between"] == pytest.approx(0.0)


def test_similarity_matrix_is_cosine() -> None:
    w = torch.randn(5, 7)
    ref = torch.nn.functional.cosine_similarity(w[:, None], w[None], dim=-1).double().numpy()
    np.testing.assert_allclose(analysis.similarity_matrix(w), ref, atol=1e-6)


def test_pixel_prototype_similarity_matches_loop() -> None:
    emb = torch.randn(2, 4, 3, 5)
    protos = torch.randn(6, 4)
    got = analysis.pixel_prototype_similarity(emb, protos)
    assert got.shape == (2, 6, 3, 5)
    ref = torch.empty(2, 6, 3, 5)
    for b in range(2):
        for n in range(6):
            for i in range(3):
                for j in range(5):
                    ref[b, n, i, j] = torch.nn.functional.cosine_similarity(emb[b, :, i, j], protos[n], dim=0)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        analysis.pixel_prototype_similarity(emb[0], protos), ref[0], atol=1e-5, rtol=1e-5
    )


def test_equalize_linear_classifier() -> None:
    model = create_model("cnn_tiny", 5, classifier="linear").eval()
    with torch.no_grad():
        model.classifier.conv.weight.mul_(torch.arange(1, 6, dtype=torch.float32).view(-1, 1, 1, 1))
        model.classifier.conv.bias.copy_(torch.arange(5, dtype=torch.float32))
    eq = analysis.equalize_linear_classifier(model)
    w = eq.classifier.conv.weight.flatten(1)  # (N, C)
    norms = w.norm(dim=1)
    torch.testing.assert_close(
        norms,
        torch.full_like(norms, float(model.classifier.conv.weight.detach().flatten(1).norm(dim=1).mean())),
    )
    assert float(eq.classifier.conv.bias.detach().abs().max()) == 0.0
    assert float(model.classifier.conv.bias.detach()[4]) == 4.0  # the original is untouched
    # prediction = argmax of the cosine between the embedding and the original rows
    x = torch.randn(1, 3, 32, 32)
    out = eq(x, upsample=False)
    ref = torch.einsum(
        "bchw,nc->bnhw",
        out.embedding,
        torch.nn.functional.normalize(model.classifier.conv.weight.flatten(1), dim=1),
    )
    assert torch.equal(out.logits.argmax(1), ref.argmax(1))


def test_equalize_rejects_cbp() -> None:
    with pytest.raises(ValueError, match="learnable linear classifier"):
        analysis.equalize_linear_classifier(create_model("cnn_tiny", 5, classifier="cbp"))


class _TwoScale(nn.Module):
    """A fake encoder: the image itself at full and half resolution (finest first)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, torch.nn.functional.avg_pool2d(x, 2)]


def test_class_mean_features_matches_loop() -> None:
    torch.manual_seed(0)
    images = torch.randn(5, 3, 4, 4)
    labels = torch.randint(0, 3, (5, 4, 4))
    labels[0, 0, 0] = 255
    dataset = list(zip(images, labels))
    got = analysis.class_mean_features(_TwoScale(), dataset, 4, batch_size=2)  # class 3 never occurs
    assert got.shape == (4, 6)
    feats = torch.cat(
        [
            images,
            torch.nn.functional.interpolate(
                torch.nn.functional.avg_pool2d(images, 2), size=(4, 4), mode="bilinear", align_corners=False
            ),
        ],
        1,
    )
    for c in range(3):
        mask = labels == c  # (B, H, W)
        ref = feats.permute(0, 2, 3, 1)[mask].double().mean(0)
        torch.testing.assert_close(got[c].double(), ref, atol=1e-5, rtol=1e-5)
    assert float(got[3].abs().max()) == 0.0


def test_run_analysis_record() -> None:
    n = 6
    rng = np.random.default_rng(1)
    metrics = {"IoU": list(rng.uniform(0, 100, n)), "F1": list(rng.uniform(0, 100, n))}
    counts = np.array([600.0, 500, 400, 300, 200, 100])
    w = torch.randn(n, 8)
    rec = analysis.run_analysis(
        metrics, weight=w, bias=torch.zeros(n), pixel_counts=counts, groups=[[0, 3, 5]], keep_cosine=True
    )
    assert rec["rare_third_IoU"] == pytest.approx(np.mean(np.array(metrics["IoU"])[[5, 4]]))
    assert rec["frequent_third_IoU"] == pytest.approx(np.mean(np.array(metrics["IoU"])[[1, 0]]))
    assert rec["confusable_IoU"] == pytest.approx(np.mean(np.array(metrics["IoU"])[[0, 3, 5]]))
    assert len(rec["f1_groups"]) == n  # min(15, N) groups
    assert np.array(rec["prototype_cosine"]).shape == (n, n)
    assert "bias_correlation" in rec


def test_run_analysis_small_class_count_groups() -> None:
    """With fewer classes than 15 groups the F1 grouping fails loudly (cbp.metrics' check)."""
    with pytest.raises(ValueError, match="groups"):
        analysis.f1_by_frequency_group([1.0] * 4, [1.0, 2.0, 3.0, 4.0], 15)
