"""cbp.book.occl_geometry (chapter 4) against the float64 loop reference of OCCL and hand-made cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from reference_occl import reference_occl, resize_labels_nearest

import cbp
from cbp.book.occl_geometry import batch_views, descent_directions, follow, tangent_cosine

N, C, B = 6, 12, 4
TAU = 0.07


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post-ReLU features (B, C, 6, 6), labels (B, 12, 12) with 255s, CBP prototypes (N, C).

    Class 5 only in view 1, class 0 only in view 2; classes 1-4 in both views.
    """
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, C, 6, 6, generator=g).relu() + 0.1 * torch.rand(B, C, 1, 1, generator=g)
    labels = torch.randint(N, (B, 12, 12), generator=g)
    labels[torch.rand(B, 12, 12, generator=g) < 0.1] = 255
    labels[: B // 2][labels[: B // 2] == 0] = 1
    labels[B // 2 :][labels[B // 2 :] == 5] = 2
    prototypes = cbp.category_basis_prototypes(N, C, 2.0, seed=seed)
    return features, labels, prototypes


def _class_means(
    features: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[tuple[int, int], torch.Tensor], list[int], list[int], dict[int, torch.Tensor]]:
    """float64 view centroids by pixel masks: {(view, class): (C,)}, classes in both views, present
    classes, and category centroids {class: (C,)}."""
    small = resize_labels_nearest(labels, tuple(features.shape[-2:]))  # (B, h, w)
    feats = features.detach().double().permute(0, 2, 3, 1)  # (B, h, w, C)
    mean = {}
    for x, images in ((0, slice(0, B // 2)), (1, slice(B // 2, B))):
        for c in range(N):
            mask = small[images] == c
            if mask.any():
                mean[x, c] = feats[images][mask].mean(0)
    both = [c for c in range(N) if (0, c) in mean and (1, c) in mean]
    present = sorted({c for _, c in mean})
    s = {
        c: sum(mean[x, c] for x in (0, 1) if (x, c) in mean) / sum((x, c) in mean for x in (0, 1))
        for c in present
    }
    return mean, both, present, s


def _reference_directions(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, *, lam: float, phi: float
) -> dict[str, float]:
    """descent_directions by float64 autograd through the loop reference and per-class pixel loops."""
    f64 = features.double().requires_grad_(True)
    reference_occl(f64, labels, prototypes, tau=TAU, lam=lam, phi=phi)["loss"].backward()
    small = resize_labels_nearest(labels, tuple(features.shape[-2:]))  # (B, h, w)
    half = B // 2
    grads = -f64.grad.permute(0, 2, 3, 1)  # (B, h, w, C) descent direction per pixel
    mean, both, present, s = _class_means(features, labels)

    def towards(d: torch.Tensor, u: torch.Tensor, t: torch.Tensor) -> float:
        t = t / t.norm()
        tangent = t - torch.dot(t, u) * u
        return float(torch.dot(d, tangent / tangent.norm()))

    own, view, other = [], [], []
    for i in both:
        d = grads[:half][small[:half] == i].sum(0)
        d = d / d.norm()
        u = mean[0, i] / mean[0, i].norm()
        own.append(towards(d, u, prototypes[i].double()))
        view.append(towards(d, u, mean[1, i]))
        other += [towards(d, u, s[j]) for j in present if j != i]
    return {
        "own_prototype": sum(own) / len(own),
        "other_view": sum(view) / len(view),
        "other_classes": sum(other) / len(other),
    }


def test_batch_views_finds_the_classes_of_both_halves() -> None:
    features, labels, _ = _batch()
    small, view, cent, idx = batch_views(features, labels, N)
    assert small.shape == (B, 6, 6)
    assert view[: B // 2].eq(0).all() and view[B // 2 :].eq(1).all()
    ref_small = resize_labels_nearest(labels, (6, 6))
    torch.testing.assert_close(small, ref_small)
    in_first = set(ref_small[: B // 2].unique().tolist()) - {255}
    in_second = set(ref_small[B // 2 :].unique().tolist()) - {255}
    assert idx.tolist() == sorted(in_first & in_second)
    assert 0 not in idx.tolist() and 5 not in idx.tolist()
    assert cent.view_centroids.shape == (2, N, C)


def test_tangent_cosine_hand_cases() -> None:
    e = torch.eye(3)
    d, u = e[1:2], e[0:1]  # step along e2 at the point e1
    for target, expected in [(e[1], 1.0), (-e[1], -1.0), (e[2], 0.0), (e[0] + 3 * e[1], 1.0)]:
        torch.testing.assert_close(tangent_cosine(d, u, target[None]), torch.tensor([expected]))
    # (K, M, C) targets give the (K,) answer of each target separately.
    g = torch.Generator().manual_seed(1)
    d = F.normalize(torch.randn(4, 5, generator=g), dim=1)
    u = F.normalize(torch.randn(4, 5, generator=g), dim=1)
    targets = torch.randn(4, 3, 5, generator=g)  # (K, M, C)
    many = tangent_cosine(d, u, targets)  # (K, M)
    assert many.shape == (4, 3)
    for m in range(3):
        torch.testing.assert_close(many[:, m], tangent_cosine(d, u, targets[:, m]))


@pytest.mark.parametrize(("lam", "phi"), [(0.0, 1.0), (1.0, 0.0), (1.0, 0.3)])
def test_descent_directions_match_float64_reference(lam: float, phi: float) -> None:
    features, labels, prototypes = _batch()
    got = descent_directions(features, labels, prototypes, tau=TAU, lam=lam, phi=phi)
    ref = _reference_directions(features, labels, prototypes, lam=lam, phi=phi)
    assert set(got) == set(ref)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-4), key


def test_category_loss_descends_towards_own_prototype() -> None:
    features, labels, prototypes = _batch()
    before = features.clone()
    got = descent_directions(features, labels, prototypes, tau=TAU, lam=0.0, phi=1.0)
    assert got["own_prototype"] > 0.5
    centroid = descent_directions(features, labels, prototypes, tau=TAU, lam=1.0, phi=0.0)
    assert centroid["other_view"] > 0.5  # the centroid loss pulls the two views together
    torch.testing.assert_close(features, before, rtol=0, atol=0)  # the input is not modified


def test_follow_without_loss_leaves_features_unchanged() -> None:
    features, labels, prototypes = _batch()
    log = follow(features, labels, prototypes, tau=TAU, lam=0.0, phi=0.0, steps=3, lr=0.1)
    assert [row["step"] for row in log] == [0, 1, 2, 3]
    assert all(row == {**log[0], "step": row["step"]} for row in log)
    # Step 0 against cosines of float64 class means computed pixel by pixel.
    mean, both, _, s = _class_means(features, labels)
    w = {i: prototypes[i].double() / prototypes[i].double().norm() for i in both}
    unit = {key: vec / vec.norm() for key, vec in list(mean.items()) + [(("s", i), s[i]) for i in both]}
    cos_views = sum(float(unit[0, i] @ unit[1, i]) for i in both) / len(both)
    pairs = [(i, j) for i in both for j in both if i != j]
    cos_classes = sum(float(unit["s", i] @ unit["s", j]) for i, j in pairs) / len(pairs)
    cos_prototype = sum(float(unit["s", i] @ w[i]) for i in both) / len(both)
    assert log[0]["cos_views"] == pytest.approx(cos_views, abs=1e-6)
    assert log[0]["cos_classes"] == pytest.approx(cos_classes, abs=1e-6)
    assert log[0]["cos_prototype"] == pytest.approx(cos_prototype, abs=1e-6)


def test_follow_category_loss_turns_centroids_to_prototypes() -> None:
    features, labels, prototypes = _batch()
    cat = follow(features, labels, prototypes, tau=TAU, lam=0.0, phi=1.0, steps=20, lr=0.05)
    assert cat[-1]["cos_prototype"] > cat[0]["cos_prototype"] + 0.2
    cen = follow(features, labels, prototypes, tau=TAU, lam=1.0, phi=0.0, steps=20, lr=0.05)
    assert cen[-1]["cos_views"] > cen[0]["cos_views"]
    assert cen[-1]["cos_classes"] < cen[0]["cos_classes"]
