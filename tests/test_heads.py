"""CBPHead (Eq. 1-2, frozen / gradient / ema / penalty) and the LinearHead baseline."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cbp

N, C = 6, 16


def _x(B: int = 2, H: int = 5, W: int = 4) -> torch.Tensor:
    return torch.randn(B, C, H, W)


def test_cbp_head_output_is_dot_product_with_prototypes() -> None:
    head = cbp.CBPHead(C, N)
    x = _x()
    out = head(x)
    assert out.shape == (2, N, 5, 4)
    expected = torch.einsum("bchw,nc->bnhw", x.double(), head.prototypes.double())  # f . w_l (Eq. 1)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    # The prototypes are the library's CBP with the same arguments (no bias anywhere).
    torch.testing.assert_close(head.prototypes, cbp.category_basis_prototypes(N, C, length=2.0, seed=0))
    torch.testing.assert_close(head(torch.zeros(1, C, 2, 2)), torch.zeros(1, N, 2, 2))


def test_cbp_head_forwards_length_seed_init() -> None:
    head = cbp.CBPHead(C, N, length=0.3, seed=4, init="equal")
    torch.testing.assert_close(
        head.prototypes, cbp.category_basis_prototypes(N, C, 0.3, seed=4, init="equal")
    )


def test_frozen_prototypes_are_a_buffer() -> None:
    head = cbp.CBPHead(C, N)
    assert list(head.parameters()) == []
    assert "prototypes" in dict(head.named_buffers())
    assert "prototypes" in head.state_dict()
    assert not head.prototypes.requires_grad
    text = repr(head)
    assert "prototypes" in text or "frozen" in text
    assert str(N) in text and str(C) in text


def test_state_dict_round_trip_bit_exact() -> None:
    a = cbp.CBPHead(C, N, seed=1)
    b = cbp.CBPHead(C, N, seed=2)
    assert not torch.equal(a.prototypes, b.prototypes)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.prototypes, b.prototypes)
    x = _x()
    assert torch.equal(a(x), b(x))


class _TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.bn = nn.BatchNorm2d(C)
        self.classifier = cbp.CBPHead(C, N)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.bn(self.conv(x))))


def test_optimizer_never_sees_frozen_prototypes_and_training_leaves_them_bit_identical() -> None:
    model = _TinyModel()
    before = model.classifier.prototypes.clone()
    ptr = model.classifier.prototypes.data_ptr()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    seen = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(model.classifier.prototypes) not in seen
    assert all(p.data_ptr() != ptr for p in model.parameters())
    x = torch.randn(2, 3, 8, 8)
    y = torch.randint(N, (2, 8, 8))
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        model.classifier.after_step()
    assert torch.equal(model.classifier.prototypes, before)
    assert model.conv.weight.grad is not None


def test_optimizer_on_head_alone_is_empty() -> None:
    head = cbp.CBPHead(C, N)
    with pytest.raises(ValueError):  # torch refuses an optimizer with no parameters at all
        torch.optim.SGD(head.parameters(), lr=0.1)


def test_init_passes_do_not_touch_prototypes() -> None:
    model = _TinyModel()
    before = model.classifier.prototypes.clone()

    def init_fn(m: nn.Module) -> None:
        for p in m.parameters(recurse=False):
            nn.init.normal_(p)
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()

    model.apply(init_fn)
    model.classifier.apply(lambda m: [nn.init.zeros_(p) for p in m.parameters(recurse=False)])
    if hasattr(model.classifier, "reset_parameters"):
        model.classifier.reset_parameters()
    assert torch.equal(model.classifier.prototypes, before)


def test_prediction_depends_on_cosine_only() -> None:
    head = cbp.CBPHead(C, N)
    x = _x(B=3, H=6, W=6)
    pred = head(x).argmax(1)  # (B, H, W)
    scale = torch.rand(3, 1, 6, 6) * 100 + 0.01  # a different positive scale for every pixel
    assert torch.equal(head(x * scale).argmax(1), pred)
    u = F.normalize(x, dim=1)
    w = F.normalize(head.prototypes, dim=1)
    cos_pred = torch.einsum("bchw,nc->bnhw", u, w).argmax(1)
    assert torch.equal(cos_pred, pred)


def test_gradient_update_makes_a_learnable_parameter() -> None:
    head = cbp.CBPHead(C, N, update="gradient", seed=3)
    assert isinstance(head.prototypes, nn.Parameter) and head.prototypes.requires_grad
    assert [p is head.prototypes for p in head.parameters()] == [True]
    torch.testing.assert_close(head.prototypes.detach(), cbp.category_basis_prototypes(N, C, seed=3))
    x = _x()
    F.cross_entropy(head(x), torch.randint(N, (2, 5, 4))).backward()
    assert head.prototypes.grad is not None and head.prototypes.grad.abs().sum() > 0
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    before = head.prototypes.detach().clone()
    opt.step()
    head.after_step()
    assert not torch.equal(head.prototypes.detach(), before)
    assert head.penalty().item() == 0.0


def test_ema_after_step_moves_toward_centroids_and_re_equalises() -> None:
    m, length = 0.9, 1.5
    head = cbp.CBPHead(C, N, update="ema", momentum=m, length=length)
    assert list(head.parameters()) == []
    assert "prototypes" in dict(head.named_buffers())
    before = head.prototypes.double().clone()
    centroids = torch.randn(N, C) * 3
    present = torch.tensor([True, False, True, True, False, True])
    head.after_step(centroids, present)
    after = head.prototypes.double()
    # Amendment 5: w <- m w + (1 - m) T s / |s|, then re-equalised (a float64 loop over the classes).
    expected = before.clone()
    for i in range(N):
        target = length * centroids[i].double() / centroids[i].double().norm()
        row = m * before[i] + (1 - m) * target
        expected[i] = length * row / row.norm()
    torch.testing.assert_close(after[present], expected[present], atol=1e-5, rtol=1e-5)
    assert torch.equal(after[~present], before[~present])  # absent classes untouched
    torch.testing.assert_close(after.norm(dim=1), torch.full((N,), length, dtype=torch.float64))
    # Moved toward the centroids: cosine with the centroid grows for every present class.
    # The step does not depend on the centroids' norms, only on their directions.
    again = cbp.CBPHead(C, N, update="ema", momentum=m, length=length)
    again.after_step(centroids * torch.rand(N, 1) * 50, present)
    torch.testing.assert_close(again.prototypes, head.prototypes, atol=1e-6, rtol=1e-5)
    cos_before = F.cosine_similarity(before, centroids.double(), dim=1)
    cos_after = F.cosine_similarity(after, centroids.double(), dim=1)
    assert (cos_after[present] > cos_before[present]).all()


def test_ema_hook_pools_observed_centroids_over_passes_and_ranks() -> None:
    """The engine's path: ``observe`` per forward pass (two accumulation steps), then ``after_step`` with
    an all-reduce (here a second rank's centroids added by hand). Reference: a float64 loop over the
    classes of the pooled centroid (presence-weighted mean over passes, then over ranks) and the update
    of amendment 5, ``w <- m w + (1 - m) T s / |s|`` re-equalised."""
    m, length = 0.9, 2.0
    g = torch.Generator().manual_seed(0)
    passes = [(torch.randn(N, C, generator=g), torch.rand(N, generator=g) < 0.6) for _ in range(2)]
    other = (torch.randn(N, C, generator=g), torch.rand(N, generator=g) < 0.6)  # the other rank's pooled pair
    head = cbp.CBPHead(C, N, update="ema", momentum=m, length=length)
    assert head.observes_centroids and not cbp.CBPHead(C, N).observes_centroids
    before = head.prototypes.double().clone()
    for centroids, present in passes:
        head.observe(centroids, present)

    def all_reduce(packed: torch.Tensor) -> torch.Tensor:  # rank 1's (centroids * w, w), summed in place
        w = other[1].float()
        return packed.add_(torch.cat([other[0] * w[:, None], w[:, None]], dim=1))

    head.after_step(all_reduce=all_reduce)
    expected = before.clone()
    for i in range(N):
        total, count = torch.zeros(C, dtype=torch.float64), 0.0
        local = [c[i].double() for c, p in passes if p[i]]
        if local:  # this rank: the mean over the passes that saw class i, then weight 1
            total, count = total + sum(local) / len(local), count + 1
        if other[1][i]:
            total, count = total + other[0][i].double(), count + 1
        if count == 0:
            continue  # absent everywhere: untouched
        s = total / count
        row = m * before[i] + (1 - m) * length * s / s.norm()
        expected[i] = length * row / row.norm()
    torch.testing.assert_close(head.prototypes.double(), expected, atol=1e-6, rtol=1e-5)
    seen = torch.stack([p for _, p in passes]).any(0) | other[1]
    assert seen.any() and not torch.equal(head.prototypes[seen], before[seen].float())
    with pytest.raises(ValueError, match="observe"):  # the observations were used up by the step
        head.after_step()
    linear = cbp.LinearHead(C, N)
    linear.observe(*passes[0])  # a no-op for the baseline
    linear.after_step(all_reduce=all_reduce)


def _penalty_reference(w: torch.Tensor, weight: float = 1.0, form: str = "squared") -> torch.Tensor:
    """Amendment 5's form: for each row, the sum over the other rows; the mean over rows (float64 loop)."""
    n = w.shape[0]
    w = w.double()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if i != j:
                cos = torch.dot(w[i], w[j]) / (w[i].norm() * w[j].norm())
                total = total + (cos**2 if form == "squared" else cos.abs())
    return weight * total / n


def test_penalty_value_and_re_equalisation() -> None:
    head = cbp.CBPHead(C, N, update="penalty", length=2.0)
    assert isinstance(head.prototypes, nn.Parameter)
    assert head.penalty().item() == pytest.approx(0.0, abs=1e-8)  # orthogonal at init
    with torch.no_grad():
        head.prototypes.add_(torch.randn(N, C))
    value = head.penalty()
    assert value.requires_grad
    assert value.item() == pytest.approx(_penalty_reference(head.prototypes.detach()).item(), rel=1e-5)
    assert value.item() > 0
    value.backward()
    assert head.prototypes.grad is not None and head.prototypes.grad.abs().sum() > 0
    direction = F.normalize(head.prototypes.detach().clone(), dim=1)
    head.after_step()
    torch.testing.assert_close(head.prototypes.detach().norm(dim=1), torch.full((N,), 2.0))
    torch.testing.assert_close(F.normalize(head.prototypes.detach(), dim=1), direction)


def test_penalty_weight_argument() -> None:
    head = cbp.CBPHead(C, N, update="penalty", penalty_weight=0.5)
    with torch.no_grad():
        head.prototypes.add_(torch.randn(N, C))
    ref = _penalty_reference(head.prototypes.detach(), weight=0.5)
    assert head.penalty().item() == pytest.approx(ref.item(), rel=1e-5)


def test_absolute_penalty_form() -> None:
    """The other reading of "forcing the cosine similarity ... to 0": |cos| instead of cos^2."""
    head = cbp.CBPHead(C, N, update="penalty", penalty_form="absolute")
    with torch.no_grad():
        head.prototypes.add_(0.3 * torch.randn(N, C, generator=torch.Generator().manual_seed(0)))
    ref = _penalty_reference(head.prototypes.detach(), form="absolute")
    assert head.penalty().item() == pytest.approx(ref.item(), rel=1e-5)
    with pytest.raises(ValueError, match="penalty_form"):
        cbp.CBPHead(C, N, update="penalty", penalty_form="cubic")  # type: ignore[arg-type]


@pytest.mark.parametrize("update", ["frozen", "ema"])
def test_penalty_is_zero_tensor_otherwise(update: str) -> None:
    p = cbp.CBPHead(C, N, update=update).penalty()
    assert torch.is_tensor(p) and p.dim() == 0 and p.item() == 0.0


def test_unknown_update_raises() -> None:
    with pytest.raises((ValueError, KeyError)) as err:
        cbp.CBPHead(C, N, update="sgd")
    assert "frozen" in str(err.value)


def test_cbp_head_too_few_channels() -> None:
    with pytest.raises(ValueError) as err:
        cbp.CBPHead(8, 20)
    assert "8" in str(err.value) and "20" in str(err.value)


def test_linear_head_matches_conv2d_with_bias() -> None:
    head = cbp.LinearHead(C, N)
    assert head.prototypes.shape == (N, C) and head.bias.shape == (N,)
    params = dict(head.named_parameters())
    assert len(params) == 2 and all(p.requires_grad for p in params.values())
    with torch.no_grad():
        head.bias.copy_(torch.randn(N))
    x = _x()
    expected = F.conv2d(x, head.prototypes.detach()[:, :, None, None], head.bias.detach())
    torch.testing.assert_close(head(x), expected)
    F.cross_entropy(head(x), torch.randint(N, (2, 5, 4))).backward()
    assert all(p.grad is not None for p in head.parameters())
