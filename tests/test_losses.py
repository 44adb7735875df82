"""OCCL (Eq. 3-6) against an independent float64 per-class loop (tests/reference_occl.py) and by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from reference_occl import reference_occl, resize_labels_nearest

import cbp

N, C = 7, 16


def batch_occl(**kwargs) -> cbp.OCCL:
    """``cbp.OCCL`` with the reference's views, first half of the images vs the second half
    (``views="batch"``; OCCL's default is ``"objects"``), unless a test names other views."""
    return cbp.OCCL(**{"views": "batch", **kwargs})


def _batch(
    seed: int, B: int, *, scale: float = 1.0, ignore_frac: float = 0.2, absent: tuple[int, ...] = (5,)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random features (B, C, 8, 8), labels (B, 16, 16) with 255s and absent classes, prototypes (N, C)."""
    g = torch.Generator().manual_seed(seed)
    features = scale * torch.randn(B, C, 8, 8, generator=g, dtype=torch.float64)
    keep = [c for c in range(N) if c not in absent]
    labels = torch.tensor(keep)[torch.randint(len(keep), (B, 16, 16), generator=g)]
    labels[torch.rand(B, 16, 16, generator=g) < ignore_frac] = 255
    # Classes 4 and 6 only in the first view, class 0 only in the second view: one-view classes, and
    # the views hold different numbers of classes (5 vs 4), which tells (L_c1 + L_c2) / 2 from a pooled mean.
    labels[B // 2 :][labels[B // 2 :] == 6] = 1
    labels[B // 2 :][labels[B // 2 :] == 4] = 3
    labels[: B // 2][labels[: B // 2] == 0] = 2
    prototypes = cbp.category_basis_prototypes(N, C, seed=seed)
    return features, labels, prototypes


def _compare(features, labels, prototypes, *, normalize, tau=0.07, lam=1.0, phi=0.3, atol=1e-5, **readings):
    f_impl = features.detach().float().requires_grad_(True)
    f_ref = features.detach().clone().requires_grad_(True)
    out = batch_occl(tau=tau, lam=lam, phi=phi, normalize=normalize, **readings)(f_impl, labels, prototypes)
    ref = reference_occl(
        f_ref, labels, prototypes, tau=tau, lam=lam, phi=phi, normalize=normalize, **readings
    )
    for key in ("loss", "centroid", "category"):
        assert out[key].dim() == 0, key
        torch.testing.assert_close(out[key].double(), ref[key].detach(), atol=atol, rtol=1e-4, msg=key)
    torch.testing.assert_close(out["present"], ref["present"])
    p = ref["present"]
    assert out["category_centroids"].dtype == torch.float32
    assert out["category_centroids"].shape == (N, C)
    assert not out["category_centroids"].requires_grad
    torch.testing.assert_close(
        out["category_centroids"][p].double(), ref["category_centroids"][p], atol=1e-5, rtol=1e-5
    )
    (g_impl,) = torch.autograd.grad(out["loss"], f_impl)
    (g_ref,) = torch.autograd.grad(ref["loss"], f_ref)
    torch.testing.assert_close(g_impl.double(), g_ref, atol=1e-6, rtol=1e-3)
    return out, ref


@pytest.mark.parametrize("B", [2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_occl_matches_reference_normalized(seed: int, B: int) -> None:
    features, labels, prototypes = _batch(seed, B)
    out, ref = _compare(features, labels, prototypes, normalize=True)
    # The batch has absent classes, one-view classes and a non-trivial centroid term.
    assert not ref["present"][5] and ref["present"][0] and ref["present"][6]
    assert ref["centroid"].item() > 0


@pytest.mark.parametrize("B", [2, 4])
@pytest.mark.parametrize("seed", [3, 4])
def test_occl_matches_reference_unnormalized(seed: int, B: int) -> None:
    # Unnormalised dot products with tau = 0.07 overflow at unit scale: keep features small.
    features, labels, prototypes = _batch(seed, B, scale=0.05)
    _compare(features, labels, prototypes * 0.2, normalize=False, atol=1e-4)


@pytest.mark.parametrize("lam,phi", [(1.0, 0.3), (0.4, 0.1), (0.0, 1.0), (2.0, 0.0)])
def test_loss_is_lam_centroid_plus_phi_category(lam: float, phi: float) -> None:
    features, labels, prototypes = _batch(7, 4)
    out, _ = _compare(features, labels, prototypes, normalize=True, lam=lam, phi=phi)
    torch.testing.assert_close(out["loss"], lam * out["centroid"] + phi * out["category"])


def test_category_loss_keys_are_detached_for_learnable_prototypes() -> None:
    """Amendment 5: the keys of Eq. 5 are frozen, so a learnable classifier (baseline, "gradient",
    "penalty") gets no gradient from OCCL, while the features get the reference's gradient."""
    features, labels, prototypes = _batch(12, 4)
    p_impl = prototypes.clone().requires_grad_(True)
    f_impl = features.float().requires_grad_(True)
    out = batch_occl()(f_impl, labels, p_impl)
    assert out["category"].item() > 0
    g_f, g_p = torch.autograd.grad(out["loss"], [f_impl, p_impl], allow_unused=True)
    assert g_p is None or torch.count_nonzero(g_p) == 0
    # Without the detach the prototypes would get a gradient: the category loss depends on them.
    f_ref = features.clone().requires_grad_(True)
    ref = reference_occl(f_ref, labels, prototypes.double())
    (g_ref,) = torch.autograd.grad(ref["loss"], f_ref)
    torch.testing.assert_close(g_f.double(), g_ref, atol=1e-6, rtol=1e-3)
    moved = batch_occl()(features.float(), labels, prototypes + 0.3 * torch.randn(N, C))
    assert moved["category"].item() != out["category"].item()


@pytest.mark.parametrize("category_form", ["prototypes", "printed"])
@pytest.mark.parametrize("class_reduction", ["mean", "sum"])
@pytest.mark.parametrize("seed", [0, 1])
def test_alternative_readings_match_reference(seed: int, class_reduction: str, category_form: str) -> None:
    """The Eq. 4 / Eq. 5 readings compared on the "Reading the paper" page, against the float64 loop."""
    features, labels, prototypes = _batch(seed, 4)
    _compare(
        features,
        labels,
        prototypes,
        normalize=True,
        class_reduction=class_reduction,
        category_form=category_form,
    )


def test_sum_reduction_is_mean_times_class_count_per_view() -> None:
    """Sum over classes = mean x the number of classes counted, per view (the views differ, see _batch)."""
    features, labels, prototypes = _batch(3, 4)
    mean = batch_occl(class_reduction="mean")(features.float(), labels, prototypes)
    total = batch_occl(class_reduction="sum")(features.float(), labels, prototypes)
    small = resize_labels_nearest(labels, (8, 8))
    in_view = [set(small[:2].unique().tolist()) - {255}, set(small[2:].unique().tolist()) - {255}]
    both = len(in_view[0] & in_view[1])
    assert len(in_view[0]) != len(in_view[1]) and both > 1
    torch.testing.assert_close(total["centroid"], both * mean["centroid"])
    # category: (n1 L1 + n2 L2) / 2 against (L1 + L2) / 2, so check against the one-view losses
    per_view = []
    for x in (0, 1):
        only_x = labels.clone()
        only_x[(2 - 2 * x) : (4 - 2 * x)] = 255  # blank the other view
        per_view.append(2 * batch_occl()(features.float(), only_x, prototypes)["category"])
    expected = (len(in_view[0]) * per_view[0] + len(in_view[1]) * per_view[1]) / 2
    torch.testing.assert_close(total["category"], expected)


def test_printed_category_form_ignores_other_prototypes() -> None:
    """Eq. 5 as printed scores each centroid against its own prototype only: moving the prototype of
    a class absent from the batch leaves it unchanged, while the cross-entropy reading changes."""
    features, labels, prototypes = _batch(4, 4)
    printed = batch_occl(category_form="printed")(features.float(), labels, prototypes)["category"]
    crossed = batch_occl()(features.float(), labels, prototypes)["category"]
    moved = prototypes.clone()
    moved[5] = prototypes[0]  # class 5 is absent; now it points where class 0's prototype does
    assert torch.allclose(
        batch_occl(category_form="printed")(features.float(), labels, moved)["category"], printed
    )
    assert not torch.allclose(batch_occl()(features.float(), labels, moved)["category"], crossed)


@pytest.mark.filterwarnings("ignore:Anomaly Detection")
@pytest.mark.parametrize("category_form", ["prototypes", "printed"])
def test_one_view_without_labelled_pixels_finite_for_every_form(category_form: str) -> None:
    features, labels, prototypes = _batch(13, 4)
    labels[2:] = 255
    out, _ = _compare(features, labels, prototypes, normalize=True, category_form=category_form)
    assert torch.isfinite(out["loss"])
    # no NaN anywhere in the backward graph either (anomaly mode checks every node's gradient)
    f = features.float().requires_grad_(True)
    w = prototypes.clone().requires_grad_(True)
    with torch.autograd.detect_anomaly():
        batch_occl(category_form=category_form)(f, labels, w)["loss"].backward()
    assert torch.isfinite(f.grad).all() and w.grad is None  # the keys get no gradient (amendment 5)


def test_one_view_without_labelled_pixels_matches_reference() -> None:
    """View 2 fully ignored: no centroid term, category = (L_c1 + 0) / 2 in this reading."""
    features, labels, prototypes = _batch(13, 4)
    labels[2:] = 255
    out, ref = _compare(features, labels, prototypes, normalize=True)
    assert out["centroid"].item() == 0.0 and out["category"].item() > 0


@pytest.mark.parametrize("size", [(4, 4), (12, 20), (8, 8)])
def test_other_label_sizes_match_reference(size: tuple[int, int]) -> None:
    """Labels smaller than, non-integer multiples of, or equal to the feature size (nearest resize)."""
    features, labels, prototypes = _batch(14, 2)
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(N, (2, *size), generator=g)
    labels[torch.rand(2, *size, generator=g) < 0.2] = 255
    _compare(features, labels, prototypes, normalize=True)


def test_other_tau_matches_reference() -> None:
    features, labels, prototypes = _batch(8, 4)
    _compare(features, labels, prototypes, normalize=True, tau=0.5)


def test_labels_resized_by_nearest() -> None:
    labels = torch.arange(16 * 16).reshape(1, 16, 16)
    torch.testing.assert_close(resize_labels_nearest(labels, (8, 8)), labels[:, ::2, ::2])
    expected = F.interpolate(labels[:, None].float(), size=(8, 8), mode="nearest")[:, 0].long()
    torch.testing.assert_close(resize_labels_nearest(labels, (8, 8)), expected)
    # An image whose odd rows/columns are a class that nearest-resizing drops: it must be absent.
    lab = torch.zeros(2, 16, 16, dtype=torch.long)
    lab[:, 1::2, :] = 3
    lab[:, :, 1::2] = 3
    out = batch_occl()(torch.randn(2, C, 8, 8), lab, cbp.category_basis_prototypes(N, C))
    assert out["present"].tolist() == [True] + [False] * (N - 1)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_hand_computed_three_pixel_case() -> None:
    """B=2 images of 1x3 pixels; 3 labelled pixels: class 0 in both views, class 1 in view 1 only."""
    tau = 0.5
    a, b, c = [1.0, 0.0, 1.0], [0.0, 2.0, 0.5], [2.0, 1.0, 0.0]  # pixel features, C = 3
    w = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # N = 3 prototypes (class 2 absent)
    features = torch.zeros(2, 3, 1, 3)
    features[0, :, 0, 0] = torch.tensor(a)
    features[0, :, 0, 1] = torch.tensor(b)
    features[0, :, 0, 2] = torch.tensor([9.0, -9.0, 9.0])  # ignored pixel
    features[1, :, 0, 0] = torch.tensor(c)
    features[1, :, 0, 1:] = 7.0  # ignored pixels
    labels = torch.tensor([[[0, 1, 255]], [[0, 255, 255]]])
    # View centroids: v01 = a, v11 = b (view 1); v02 = c (view 2). Category centroids s0 = (a+c)/2, s1 = b.
    s0 = [(x + y) / 2 for x, y in zip(a, c)]
    pos = _cos(a, c) / tau
    lv1 = -pos + math.log(math.exp(pos) + math.exp(_cos(a, b) / tau))  # view 1: negative s1 = b
    lv2 = -pos + math.log(math.exp(pos) + math.exp(_cos(c, b) / tau))  # view 2: negative s1 = b
    centroid = (lv1 + lv2) / 2

    def ce(v: list[float], target: int) -> float:
        logits = [_cos(v, wj) / tau for wj in w]
        return -logits[target] + math.log(sum(math.exp(z) for z in logits))

    lc1 = (ce(a, 0) + ce(b, 1)) / 2
    lc2 = ce(c, 0)
    category = (lc1 + lc2) / 2
    out = batch_occl(tau=tau, lam=0.7, phi=0.3)(features, labels, torch.tensor(w))
    assert out["centroid"].item() == pytest.approx(centroid, rel=1e-5)
    assert out["category"].item() == pytest.approx(category, rel=1e-5)
    assert out["loss"].item() == pytest.approx(0.7 * centroid + 0.3 * category, rel=1e-5)
    expected_cc = torch.tensor([s0, b, [0.0, 0.0, 0.0]])
    torch.testing.assert_close(out["category_centroids"][:2], expected_cc[:2])
    assert out["present"].tolist() == [True, True, False]


def test_no_shared_class_gives_exact_zero_centroid_and_zero_gradient() -> None:
    features = torch.randn(2, C, 8, 8, requires_grad=True)
    labels = torch.full((2, 8, 8), 255)
    labels[0, :4] = 1
    labels[0, 4:] = 2
    labels[1, :, :5] = 3  # no class in both views
    prototypes = cbp.category_basis_prototypes(N, C)
    out = batch_occl(lam=1.0, phi=0.0)(features, labels, prototypes)
    assert out["centroid"].item() == 0.0
    assert out["loss"].item() == 0.0
    (grad,) = torch.autograd.grad(out["loss"], features, allow_unused=True)
    assert grad is None or (torch.isfinite(grad).all() and (grad == 0).all())
    out = batch_occl(lam=1.0, phi=0.3)(features, labels, prototypes)
    assert out["centroid"].item() == 0.0 and out["category"].item() > 0
    out["loss"].backward()
    assert torch.isfinite(features.grad).all()
    assert out["present"].tolist() == [False, True, True, True, False, False, False]


def test_all_pixels_ignored_gives_zero_loss_finite_grads() -> None:
    features = torch.randn(4, C, 8, 8, requires_grad=True)
    labels = torch.full((4, 16, 16), 255)
    out = batch_occl()(features, labels, cbp.category_basis_prototypes(N, C))
    for key in ("loss", "centroid", "category"):
        assert out[key].item() == 0.0, key
    assert not out["present"].any()
    assert torch.isfinite(out["category_centroids"]).all()
    out["loss"].backward()
    assert features.grad is None or torch.isfinite(features.grad).all()


def test_feature_scale_invariance_when_normalized() -> None:
    features, labels, prototypes = _batch(11, 4)
    occl = batch_occl()
    a = occl(features.float(), labels, prototypes)
    b = occl(3.0 * features.float(), labels, 5.0 * prototypes)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda f, y, w: (f, y[:3], w), "B|batch|even|odd|shape"),  # odd batch
        (lambda f, y, w: (f[0], y, w), "feature|shape|dim"),  # 3-D features
        (lambda f, y, w: (f, y[:, None], w), "label|shape|dim"),  # 4-D labels
        (lambda f, y, w: (f, y[:2], w), "batch|shape|B"),  # batch mismatch
        (lambda f, y, w: (f, y, w[:, :8]), "channel|C|shape|prototype"),  # C mismatch
        (lambda f, y, w: (f, y.float(), w), "dtype|int|label"),  # float labels
        (lambda f, y, w: (f, torch.where(y == 3, N, y), w), "label|range|N|num"),  # label == N
        (lambda f, y, w: (f, torch.where(y == 3, 100, y), w), "label|range|N|num"),  # label 100
        (lambda f, y, w: (f, torch.where(y == 3, -1, y), w), "label|range|N|num"),  # label -1
        (lambda f, y, w: (f, y, w[None]), "prototype|shape|dim"),  # 3-D prototypes
    ],
)
def test_errors(make, match: str) -> None:
    features, labels, prototypes = _batch(0, 4)
    f, y, w = make(features.float(), labels, prototypes)
    with pytest.raises(ValueError, match=match):
        batch_occl()(f, y, w)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"class_reduction": "max"}, "class_reduction"), ({"category_form": "literal"}, "category_form")],
)
def test_unknown_reading_names_the_option(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cbp.OCCL(**kwargs)


def test_odd_batch_error_message_says_what_and_how() -> None:
    features, labels, prototypes = _batch(0, 4)
    with pytest.raises(ValueError) as err:
        cbp.OCCL(views="batch")(features[:3].float(), labels[:3], prototypes)
    assert "3" in str(err.value)


def test_global_views_single_process_equal_batch() -> None:
    features, labels, prototypes = _batch(5, 4)
    a = cbp.OCCL(views="batch")(features.float(), labels, prototypes)
    b = cbp.OCCL(views="global")(features.float(), labels, prototypes)
    for key in ("loss", "centroid", "category", "category_centroids"):
        torch.testing.assert_close(a[key], b[key])


def test_random_views_deterministic_given_seed() -> None:
    features, labels, prototypes = _batch(6, 4)
    f = features.float()
    a = cbp.OCCL(views="random", seed=1)(f, labels, prototypes)
    b = cbp.OCCL(views="random", seed=1)(f, labels, prototypes)
    c = cbp.OCCL(views="random", seed=2)(f, labels, prototypes)
    assert a["loss"].item() == b["loss"].item()
    assert a["loss"].item() != c["loss"].item()
    assert torch.isfinite(a["loss"]) and a["centroid"].item() > 0
    # Random views split each class's pixels, so they do not need an even batch.
    d = cbp.OCCL(views="random", seed=1)(f[:1], labels[:1], prototypes)
    assert torch.isfinite(d["loss"])
    assert d["present"].sum().item() >= 2


def test_random_views_value_is_one_of_the_reference_splits() -> None:
    """One image of 4 labelled pixels (2 classes): the loss equals the reference for some pixel split."""
    import itertools

    features = torch.randn(1, C, 1, 4, dtype=torch.float64)
    labels = torch.tensor([[[1, 1, 4, 4]]])
    prototypes = cbp.category_basis_prototypes(N, C)
    out = cbp.OCCL(views="random", seed=0)(features.float(), labels, prototypes)
    # Reference: each pixel as its own 1x1 "image", views assigned explicitly; try every split.
    pixels = features[0].permute(2, 0, 1)[:, :, :, None]  # (4, C, 1, 1)
    pixel_labels = labels[0, 0][:, None, None]  # (4, 1, 1)
    candidates = {}
    for split in itertools.product((0, 1), repeat=4):
        ref = reference_occl(pixels, pixel_labels, prototypes, view_of_image=list(split))
        candidates[split] = ref["loss"].item()
    best = min(candidates, key=lambda s: abs(candidates[s] - out["loss"].item()))
    assert abs(candidates[best] - out["loss"].item()) < 1e-4, (out["loss"].item(), candidates)
    # "each class's pixels split at random into two halves": one pixel of each class per view.
    assert best[0] != best[1] and best[2] != best[3], best


def test_autocast_bf16_cpu_close_to_fp32() -> None:
    features, labels, prototypes = _batch(9, 4)
    f32 = features.float().requires_grad_(True)
    ref = batch_occl()(f32, labels, prototypes)
    fbf = features.float().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = batch_occl()(fbf, labels, prototypes)
    assert out["category_centroids"].dtype == torch.float32
    for key in ("loss", "centroid", "category"):
        assert torch.isfinite(out[key])
        torch.testing.assert_close(out[key].float(), ref[key], rtol=0.05, atol=0.05, msg=key)
    out["loss"].backward()
    assert torch.isfinite(fbf.grad).all()
    # bf16 features (as a bf16 decoder would give) also work and stay close.
    out16 = batch_occl()(features.bfloat16(), labels, prototypes)
    torch.testing.assert_close(out16["loss"].float(), ref["loss"], rtol=0.05, atol=0.05)
    assert out16["category_centroids"].dtype == torch.float32


def test_reference_agrees_with_itself_under_view_reordering() -> None:
    """Sanity check of the reference: swapping the two views leaves every loss unchanged."""
    features, labels, prototypes = _batch(10, 4)
    a = reference_occl(features, labels, prototypes)
    b = reference_occl(features[[2, 3, 0, 1]], labels[[2, 3, 0, 1]], prototypes)
    for key in ("loss", "centroid", "category"):
        torch.testing.assert_close(a[key], b[key])


# ---------------------------------------------------------------------------------------------
# Object views (protocol amendment 5): half of each class's objects per view


def _loop_objects(labels: torch.Tensor) -> list[tuple[int, int, torch.Tensor]]:
    """Reference objects: scipy.ndimage.label (4-connectivity) per image and per class, in loops.

    Returns:
        (image, class, (H, W) bool mask) for every object.
    """
    from scipy import ndimage

    out = []
    for b in range(labels.shape[0]):
        for c in torch.unique(labels[b]).tolist():
            regions, n = ndimage.label((labels[b] == c).numpy())  # default structure: 4-connected
            for k in range(1, n + 1):
                out.append((b, c, torch.from_numpy(regions == k)))
    return out


def _cells(seed: int, B: int = 4, size: int = 12) -> torch.Tensor:
    """Labels made of Voronoi cells (as the synthetic set's scenes), with ignored pixels and a class
    that has one object in the whole batch (class 6) and one with a single pixel (class 5)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.empty(B, size, size, dtype=torch.long)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for b in range(B):
        centres = torch.randint(size, (6, 2), generator=g)
        cls = torch.randint(4, (6,), generator=g)
        d = (ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2
        labels[b] = cls[d.argmin(dim=0)]
    labels[torch.rand(B, size, size, generator=g) < 0.05] = 255
    labels[0, :3, :3] = 6
    labels[1, 5, 5] = 5
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_object_ids_are_the_connected_regions_of_a_loop_reference(seed: int) -> None:
    labels = _cells(seed)
    ids = cbp.losses.object_ids(labels)
    ref = _loop_objects(labels)
    assert len(torch.unique(ids)) == len(ref)
    for b, _c, mask in ref:  # every reference object is exactly one object id and nothing else
        inside = torch.unique(ids[b][mask])
        assert len(inside) == 1
        full = torch.zeros_like(labels, dtype=torch.bool)
        full[b] = mask
        assert torch.equal(ids == inside, full)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_object_views_split_each_class_objects_in_half(seed: int) -> None:
    labels = _cells(seed)
    g = torch.Generator().manual_seed(seed)
    view = cbp.losses.assign_views(labels, "objects", generator=g)
    objects: dict[int, list[tuple[int, torch.Tensor]]] = {}
    for b, c, mask in _loop_objects(labels):
        objects.setdefault(c, []).append((b, mask))
    assert objects[6] == [(0, objects[6][0][1])] and len(objects[5]) == 1  # single-object classes
    for c, objs in objects.items():
        if c == 255:
            continue
        if len(objs) == 1:  # its pixels split at random: floor(n/2) in view 0, the rest in view 1
            b, mask = objs[0]
            n = int(mask.sum())
            assert int((view[b][mask] == 0).sum()) == n // 2, c
            continue
        per_object = []
        for b, mask in objs:
            v = torch.unique(view[b][mask])
            assert len(v) == 1, f"class {c}: an object is split between the views"
            per_object.append(int(v))
        assert per_object.count(0) == len(objs) // 2 and per_object.count(1) == len(objs) - len(objs) // 2, c
    # Every class of the batch is in both views (class 5 has a single pixel, so one view only).
    for c in objects:
        if c not in (5, 255):
            assert {0, 1} <= set(view[labels == c].tolist()), c


def test_object_views_are_random_and_reproducible() -> None:
    labels = _cells(0)
    a = cbp.losses.assign_views(labels, "objects", generator=torch.Generator().manual_seed(3))
    b = cbp.losses.assign_views(labels, "objects", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    seen = {
        tuple(
            cbp.losses.assign_views(labels, "objects", generator=torch.Generator().manual_seed(s))
            .flatten()
            .tolist()
        )
        for s in range(8)
    }
    assert len(seen) > 4  # the split is drawn, not fixed


def test_random_views_split_each_class_pixels_in_half() -> None:
    """``"random"`` (which shares its splitting code with ``"objects"``): floor(n/2) pixels in view 0."""
    labels = torch.tensor([[[1, 1, 4, 4, 1, 255]]])
    view = cbp.losses.assign_views(labels, "random", generator=torch.Generator().manual_seed(0))
    ones, fours = view[labels == 1], view[labels == 4]
    assert int(ones.sum()) == 2 and int(fours.sum()) == 1  # 3 pixels of class 1: 1 in view 0, 2 in view 1


def test_occl_with_object_views_matches_reference_on_its_split() -> None:
    """OCCL(views="objects") = the float64 loop reference with the same per-pixel views."""
    labels = _cells(1, B=2, size=8)  # at feature size: no resize
    features = torch.randn(2, C, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    prototypes = cbp.category_basis_prototypes(N, C)
    view = cbp.losses.assign_views(labels, "objects", generator=torch.Generator().manual_seed(4))
    out = cbp.OCCL(views="objects", seed=4)(features.float(), labels, prototypes)
    pixels = features.permute(0, 2, 3, 1).reshape(-1, C)[:, :, None, None]  # (P, C, 1, 1)
    ref = reference_occl(pixels, labels.reshape(-1, 1, 1), prototypes, view_of_image=view.flatten().tolist())
    for key in ("loss", "centroid", "category"):
        torch.testing.assert_close(out[key].double(), ref[key], atol=1e-5, rtol=1e-4, msg=key)
    assert out["centroid"].item() > 0 and bool(out["present"][:4].all())
