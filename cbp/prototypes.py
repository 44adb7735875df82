"""Category-Basis Prototypes: Algorithm 1 of the paper, and the class separability of Eq. 8.

Algorithm 1 draws ``W`` (N x C) with Kaiming initialisation, orthogonalises its rows by
Gram-Schmidt and rescales every row to the same L2 norm ``T`` (the "length"). The prototypes are
then frozen (see :class:`cbp.heads.CBPHead`). This module holds the pure functions; it has no state.

How this project reads Algorithm 1 (the book's "Reading the paper" page, ``book/reading_the_paper.md``):

* Kaiming-normal, fan-in (``std = sqrt(2 / C)``), from a seeded generator, so a prototype set is
  a function of ``(N, C, length, seed, init)`` alone.
* Classical Gram-Schmidt on the rows, in order, in float64: row 1 kept, each next row minus its
  projections on the rows already kept (Algorithm 1, lines 4-10). This equals the Q factor of
  ``QR(W^T)`` with the signs fixed so that ``diag(R) > 0`` (a test checks it).
* Line 12 of Algorithm 1 is printed as ``beta * T / sqrt(beta^T beta)``; it is read as "each row
  rescaled to norm T".
* ``C < N`` cannot give N mutually orthogonal vectors (the paper's stated limitation): an error,
  never a silent fallback.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from cbp.paper import PAPER_ABLATION

KAIMING_INITS = ("orthogonal+equal", "orthogonal", "equal", "random")
EMBEDDING_INITS = ("text", "masked", "text+orthogonal", "masked+orthogonal")
INITS = KAIMING_INITS + EMBEDDING_INITS


def kaiming_rows(num_classes: int, channels: int, *, seed: int = 0) -> Tensor:
    """Draw the random prototypes of Algorithm 1, line 1.

    Args:
        num_classes: N, the number of rows.
        channels: C, the feature width.
        seed: seed of the private generator (the global RNG is not touched).

    Returns:
        float64 tensor (N, C), Kaiming-normal with fan-in C: ``std = sqrt(2 / C)``.
    """
    generator = torch.Generator().manual_seed(seed)
    weight = torch.empty(num_classes, channels, dtype=torch.float64)  # (N, C)
    torch.nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu", generator=generator)
    return weight


def gram_schmidt(weight: Tensor) -> Tensor:
    """Classical Gram-Schmidt on the rows of ``weight`` (Algorithm 1, lines 2-11), in float64.

    Row 1 is kept; each next row has its projections on all rows kept so far subtracted. The rows
    are orthogonal but not normalised (their norms are what is left after the projections).

    Args:
        weight: (N, C) with N <= C and linearly independent rows.

    Returns:
        float64 tensor (N, C) with mutually orthogonal rows, spanning the same nested subspaces.

    Raises:
        ValueError: if N > C, or a row is (numerically) in the span of the rows before it.
    """
    num_classes, channels = weight.shape
    _check_orthogonal_possible(num_classes, channels)
    rows = weight.to(torch.float64)
    basis = torch.empty_like(rows)  # (N, C)
    # A loop over rows is inherent to Gram-Schmidt; it runs once, at initialisation.
    for i in range(num_classes):
        kept = basis[:i]  # (i, C)
        coeff = (kept @ rows[i]) / (kept * kept).sum(dim=1)  # (i,)  a_i . b_j / b_j . b_j
        basis[i] = rows[i] - coeff @ kept  # (C,)
        if basis[i].norm() <= 1e-10 * rows[i].norm():
            raise ValueError(
                f"Gram-Schmidt: row {i} of the prototype matrix is linearly dependent on the rows "
                "before it; draw another seed or use init='equal'"
            )
    return basis


def equalize(weight: Tensor, length: float) -> Tensor:
    """Rescale every row to the same L2 norm ``length`` (Algorithm 1, line 12; "equalisation").

    Args:
        weight: (N, C), any float dtype.
        length: T > 0, the common row norm.

    Returns:
        Tensor (N, C) of the same dtype with ``weight[i].norm() == length`` for every row.
    """
    _check_length(length)
    norms = weight.norm(dim=1, keepdim=True)  # (N, 1)
    if bool((norms == 0).any()):
        raise ValueError("equalize: a prototype row has zero norm and has no direction to keep")
    return weight * (length / norms)


def project_embeddings(embeddings: Tensor, channels: int, *, seed: int = 0) -> Tensor:
    """Map class embeddings (N, D) to the feature width C (text / masked variants of Table 5).

    When ``D == C`` the embeddings are used as they are (masked prototypes already live in the
    feature space). Otherwise a fixed Gaussian map ``P`` (D, C), ``std = 1/sqrt(D)``, drawn from
    ``seed``, gives ``E @ P``; it preserves inner products in expectation, so similar class names
    stay similar (which is what makes the text variant interesting).

    Returns:
        float64 tensor (N, C).
    """
    if embeddings.dim() != 2:
        raise ValueError(f"class embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError("class embeddings contain NaN or inf values: check how they were computed")
    emb = embeddings.detach().to(torch.float64).cpu()  # (N, D)
    dim = emb.shape[1]
    if dim == channels:
        return emb
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(dim, channels, generator=generator, dtype=torch.float64) / math.sqrt(dim)
    return emb @ projection  # (N, C)


def category_basis_prototypes(
    num_classes: int,
    channels: int,
    length: float = PAPER_ABLATION.length,
    *,
    seed: int = 0,
    init: str | Tensor = "orthogonal+equal",
    embeddings: Tensor | None = None,
) -> Tensor:
    """Build the prototypes of Algorithm 1 (CBP) or one of the initialisations of Table 5.

    Args:
        num_classes: N >= 1.
        channels: C, the width of the features the classifier reads; C >= N whenever the init
            orthogonalises.
        length: T > 0, the common L2 norm of the rows (paper default 2).
        seed: seed of the Kaiming draw (and of the embedding projection).
        init: how to build the rows:

            * ``"orthogonal+equal"`` (CBP, default): Kaiming -> Gram-Schmidt -> norm T.
            * ``"orthogonal"``: Kaiming -> Gram-Schmidt, norms left as they come (Table 5, row 2).
            * ``"equal"``: Kaiming rows rescaled to norm T, not orthogonalised (Table 5, row 3).
            * ``"random"``: plain Kaiming rows (what a learnable classifier starts from).
            * ``"text"`` / ``"masked"``: ``embeddings`` projected to C, rescaled to norm T.
            * ``"text+orthogonal"`` / ``"masked+orthogonal"``: the same, Gram-Schmidt first.
            * a Tensor (N, D): shorthand for ``init="masked", embeddings=tensor``.
        embeddings: (N, D) class embeddings for the text / masked variants.

    Returns:
        float32 tensor (N, C).

    Raises:
        ValueError: N < 1, C < 1, length <= 0, C < N with an orthogonalising init, an unknown
            init name, missing or malformed embeddings.
    """
    if isinstance(init, Tensor):
        init, embeddings = "masked", init
    if init not in INITS:
        raise ValueError(f"unknown prototype init {init!r}: expected one of {list(INITS)} or a (N, D) tensor")
    if num_classes < 1:
        raise ValueError(f"need at least one class, got num_classes={num_classes}")
    if channels < 1:
        raise ValueError(f"need at least one channel, got channels={channels}")
    _check_length(length)
    orthogonal = init.startswith("orthogonal") or init.endswith("+orthogonal")
    if orthogonal:
        _check_orthogonal_possible(num_classes, channels)
    weight = _initial_rows(init, num_classes, channels, seed, embeddings)  # (N, C) float64
    if orthogonal:
        weight = gram_schmidt(weight)
    if init != "orthogonal" and init != "random":
        weight = equalize(weight, length)
    return weight.to(torch.float32).contiguous()


def _initial_rows(init: str, num_classes: int, channels: int, seed: int, embeddings: Tensor | None) -> Tensor:
    """The rows an init starts from, float64 (N, C): the Kaiming draw of Algorithm 1, line 1, or (text
    and masked inits) the class embeddings projected to C."""
    if init not in EMBEDDING_INITS:
        if embeddings is not None:
            raise ValueError(
                f"embeddings were given but init={init!r} ignores them; use init='masked' or 'text'"
            )
        return kaiming_rows(num_classes, channels, seed=seed)
    if embeddings is None:
        raise ValueError(f"init={init!r} needs class embeddings: pass embeddings=Tensor (N, D)")
    if embeddings.dim() != 2 or embeddings.shape[0] != num_classes:
        raise ValueError(
            f"class embeddings must be (N={num_classes}, D), got shape {tuple(embeddings.shape)}"
        )
    return project_embeddings(embeddings, channels, seed=seed)


def cosine_similarity_matrix(weight: Tensor) -> Tensor:
    """Pairwise cosine similarities of the rows of ``weight`` (N, C) -> (N, N), in float64."""
    unit = torch.nn.functional.normalize(weight.detach().to(torch.float64), dim=1)  # (N, C)
    return unit @ unit.T


def class_separability(weight: Tensor) -> float:
    """Class separability of Eq. 8: ``CS = 0.5 * sum_i sum_{j != i} cos(w_i, w_j)``.

    0 for mutually orthogonal prototypes (CBP); large and positive when prototypes point the same
    way (the paper's Table 8: 75.8 for a learnable classifier on ADE20K).

    Args:
        weight: prototypes or classifier weights (N, C); a (N, C, 1, 1) conv weight is accepted.

    Returns:
        CS as a Python float.
    """
    weight = weight.reshape(weight.shape[0], -1)
    cos = cosine_similarity_matrix(weight)  # (N, N)
    return float(0.5 * (cos.sum() - cos.diagonal().sum()))


def _check_length(length: float) -> None:
    if not (isinstance(length, (int, float)) and math.isfinite(length) and length > 0):
        raise ValueError(f"prototype length T must be a finite number > 0, got {length!r}")


def _check_orthogonal_possible(num_classes: int, channels: int) -> None:
    if channels < num_classes:
        raise ValueError(
            f"CBP needs channels >= num_classes to make {num_classes} mutually orthogonal prototypes "
            f"(got channels={channels} < num_classes={num_classes}): use a wider decoder, fewer "
            "classes, or init='equal'"
        )
