"""Category-basis prototypes (Algorithm 1) and class separability (Eq. 8) against independent references."""

from __future__ import annotations

import math

import pytest
import torch

import cbp


def _cosine_matrix(w: torch.Tensor) -> torch.Tensor:
    u = w.double() / w.double().norm(dim=1, keepdim=True)
    return u @ u.T  # (N, N)


def _qr_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Q^T (N, C) and diag(R) (N,) of the QR of W^T, signs fixed so that diag(R) > 0."""
    q, r = torch.linalg.qr(w.double().T)  # q (C, N), r (N, N)
    signs = torch.sign(torch.diagonal(r))
    return (q * signs).T, torch.diagonal(r) * signs


@pytest.mark.parametrize("n,c", [(7, 16), (16, 16), (150, 256), (1, 4)])
def test_gram_schmidt_equals_qr_of_w_transpose(n: int, c: int) -> None:
    """Classical Gram-Schmidt on the rows of W = Q factor of QR(W^T) with diag(R) > 0 ("Reading the paper")."""
    raw = cbp.category_basis_prototypes(n, c, seed=3, init="random")  # the Kaiming draw, untouched
    q_rows, r_diag = _qr_rows(raw)
    cbp_w = cbp.category_basis_prototypes(n, c, length=2.0, seed=3)
    torch.testing.assert_close(cbp_w.double() / 2.0, q_rows, atol=1e-5, rtol=0)
    # "orthogonal" = GS without the rescale: row l has norm |R_ll| and the direction of Q's column l.
    orth = cbp.category_basis_prototypes(n, c, seed=3, init="orthogonal")
    torch.testing.assert_close(orth.double(), q_rows * r_diag[:, None], atol=1e-5, rtol=1e-5)


def test_gram_schmidt_first_row_is_kept() -> None:
    raw = cbp.category_basis_prototypes(10, 32, seed=5, init="random")
    orth = cbp.category_basis_prototypes(10, 32, seed=5, init="orthogonal")
    torch.testing.assert_close(orth[0], raw[0], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("length", [0.3, 1.0, 2.0, 3.0])
def test_rows_orthogonal_and_equal_norm(length: float) -> None:
    n, c = 150, 256
    w = cbp.category_basis_prototypes(n, c, length=length, seed=1)
    assert w.shape == (n, c) and w.dtype == torch.float32
    assert not w.requires_grad
    gram = w.double() @ w.double().T  # (N, N)
    torch.testing.assert_close(
        gram, length**2 * torch.eye(n, dtype=torch.float64), atol=1e-5 * length**2, rtol=0
    )
    torch.testing.assert_close(w.double().norm(dim=1), torch.full((n,), length, dtype=torch.float64))


def test_default_length_is_two() -> None:
    w = cbp.category_basis_prototypes(5, 8)
    torch.testing.assert_close(w.norm(dim=1), torch.full((5,), 2.0))


def test_seeds() -> None:
    a = cbp.category_basis_prototypes(20, 64, seed=0)
    b = cbp.category_basis_prototypes(20, 64, seed=0)
    c = cbp.category_basis_prototypes(20, 64, seed=1)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # The seed is a private generator: the global RNG is neither used nor advanced.
    torch.manual_seed(123)
    state = torch.get_rng_state()
    d = cbp.category_basis_prototypes(20, 64, seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, d)


@pytest.mark.parametrize("init", ["random", "equal"])
def test_kaiming_fan_in_statistics(init: str) -> None:
    n, c = 150, 512
    w = cbp.category_basis_prototypes(n, c, seed=0, init=init)
    if init == "random":
        std = w.double().std().item()
        assert std == pytest.approx(math.sqrt(2.0 / c), rel=0.02)  # kaiming_normal_, fan_in = C
        assert w.double().mean().item() == pytest.approx(0.0, abs=4 * std / math.sqrt(n * c))
    else:
        # "equal" = the same Kaiming rows rescaled: same directions as "random", norms = length.
        raw = cbp.category_basis_prototypes(n, c, seed=0, init="random")
        u = raw.double() / raw.double().norm(dim=1, keepdim=True)
        torch.testing.assert_close(w.double(), 2.0 * u, atol=1e-6, rtol=1e-6)


def test_equal_rows_equal_norm_but_not_orthogonal() -> None:
    w = cbp.category_basis_prototypes(30, 64, length=1.5, seed=2, init="equal")
    torch.testing.assert_close(w.norm(dim=1), torch.full((30,), 1.5))
    off = _cosine_matrix(w) - torch.eye(30, dtype=torch.float64)
    assert off.abs().max() > 0.2  # random directions in 64-d: clearly not orthogonal
    assert cbp.class_separability(w) != pytest.approx(0.0, abs=1e-3)


def test_orthogonal_rows_orthogonal_but_unequal_norm() -> None:
    w = cbp.category_basis_prototypes(30, 64, seed=2, init="orthogonal")
    off = _cosine_matrix(w) - torch.eye(30, dtype=torch.float64)
    assert off.abs().max() < 1e-5
    norms = w.norm(dim=1)
    assert norms.max() - norms.min() > 0.1


def test_random_rows_neither() -> None:
    w = cbp.category_basis_prototypes(30, 64, seed=2, init="random")
    norms = w.norm(dim=1)
    assert norms.max() - norms.min() > 0.1
    assert (_cosine_matrix(w) - torch.eye(30, dtype=torch.float64)).abs().max() > 0.2


def test_channels_less_than_classes_names_both_numbers() -> None:
    with pytest.raises(ValueError) as err:
        cbp.category_basis_prototypes(300, 256)
    assert "300" in str(err.value) and "256" in str(err.value)


@pytest.mark.parametrize("length", [0.0, -1.0])
def test_bad_length(length: float) -> None:
    with pytest.raises(ValueError, match="length"):
        cbp.category_basis_prototypes(5, 8, length=length)


@pytest.mark.parametrize("n", [0, -3])
def test_bad_num_classes(n: int) -> None:
    with pytest.raises(ValueError):
        cbp.category_basis_prototypes(n, 8)


def test_unknown_init_name() -> None:
    with pytest.raises((ValueError, KeyError)) as err:
        cbp.category_basis_prototypes(5, 8, init="orthonormal")
    assert "orthogonal+equal" in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# Embedding inits (Table 5: text / masked / masked+orthogonal).


def _embeddings(n: int = 12, d: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    base = torch.randn(1, d, generator=g)
    return base + 0.8 * torch.randn(n, d, generator=g)  # correlated rows, like class-mean features


@pytest.mark.parametrize("mode", ["masked", "text"])
def test_embedding_init_projected_and_equalised(mode: str) -> None:
    emb = _embeddings()
    w = cbp.category_basis_prototypes(12, 64, length=1.5, init=mode, embeddings=emb)
    assert w.shape == (12, 64) and w.dtype == torch.float32
    torch.testing.assert_close(w.norm(dim=1), torch.full((12,), 1.5))
    # A projection from D = 40 to C = 64 should keep the geometry of the embeddings (cosines).
    torch.testing.assert_close(_cosine_matrix(w), _cosine_matrix(emb), atol=0.35, rtol=0)
    assert cbp.class_separability(w) > 5  # correlated embeddings stay correlated: not orthogonal
    again = cbp.category_basis_prototypes(12, 64, length=1.5, init=mode, embeddings=emb)
    assert torch.equal(w, again)


def test_embedding_tensor_shorthand_is_masked() -> None:
    emb = _embeddings()
    a = cbp.category_basis_prototypes(12, 64, init=emb)
    b = cbp.category_basis_prototypes(12, 64, init="masked", embeddings=emb)
    assert torch.equal(a, b)
    assert torch.equal(cbp.category_basis_prototypes(12, 64, init="text", embeddings=emb), b)


@pytest.mark.parametrize("mode", ["masked+orthogonal", "text+orthogonal"])
def test_embedding_init_orthogonalised(mode: str) -> None:
    emb = _embeddings()
    projected = cbp.category_basis_prototypes(12, 64, init=mode.split("+")[0], embeddings=emb)
    w = cbp.category_basis_prototypes(12, 64, length=2.0, init=mode, embeddings=emb)
    torch.testing.assert_close(
        w.double() @ w.double().T, 4 * torch.eye(12, dtype=torch.float64), atol=1e-5, rtol=0
    )
    # Gram-Schmidt (in order) of the projected embeddings = Q of QR(projected^T).
    q_rows, _ = _qr_rows(projected)
    torch.testing.assert_close(w.double() / 2.0, q_rows, atol=1e-5, rtol=0)


def test_embedding_errors() -> None:
    emb = _embeddings()
    bad = emb.clone()
    bad[3, 5] = float("nan")
    with pytest.raises(ValueError, match="(?i)nan|finite"):
        cbp.category_basis_prototypes(12, 64, init="masked", embeddings=bad)
    with pytest.raises(ValueError):
        cbp.category_basis_prototypes(12, 64, init=bad)
    with pytest.raises(ValueError):  # wrong number of rows
        cbp.category_basis_prototypes(10, 64, init="masked", embeddings=emb)
    with pytest.raises(ValueError):  # embeddings missing
        cbp.category_basis_prototypes(12, 64, init="text")
    with pytest.raises(ValueError):  # C < N with orthogonalisation
        cbp.category_basis_prototypes(12, 8, init="masked+orthogonal", embeddings=emb)


# ----------------------------------------------------------------------------------------------------------
# Class separability, Eq. 8: 0.5 x sum of the off-diagonal cosines.


def test_class_separability_cbp_is_zero() -> None:
    w = cbp.category_basis_prototypes(150, 256, seed=0)
    assert isinstance(cbp.class_separability(w), float)
    assert cbp.class_separability(w) == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_class_separability_all_rows_equal(n: int) -> None:
    w = torch.tensor([[1.0, 2.0, -0.5]]).repeat(n, 1)
    assert cbp.class_separability(w) == pytest.approx(0.5 * n * (n - 1), rel=1e-5)


def test_class_separability_hand_matrices() -> None:
    sixty = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])  # 60 degrees apart: cos = 0.5
    assert cbp.class_separability(sixty) == pytest.approx(0.5 * 2 * 0.5, rel=1e-5)
    opposite = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # cosines -1, 0, 0
    assert cbp.class_separability(opposite) == pytest.approx(-1.0, rel=1e-5)
    # Three rows: cos(r0, r1) = 0.6, cos(r0, r2) = 0, cos(r1, r2) = 0.8 -> 0.5 * 2 * 1.4 = 1.4.
    three = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert cbp.class_separability(three) == pytest.approx(1.4, rel=1e-5)


def test_class_separability_scale_invariant_per_row() -> None:
    w = torch.randn(12, 20)
    scales = torch.rand(12, 1) * 10 + 0.1
    a = cbp.class_separability(w)
    b = cbp.class_separability(w * scales)
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    ref = 0.5 * (_cosine_matrix(w).sum() - 12).item()
    assert a == pytest.approx(ref, rel=1e-4, abs=1e-5)
