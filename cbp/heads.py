"""Classifiers that read the decoder's C-dim embedding: the CBP head and the learnable baseline.

Both compute pixel logits ``f . w_l`` on the unnormalised feature (Eq. 1-2). With equal-norm
prototypes the prediction depends on ``cos(f, w_l)`` only, because ``|f|`` is shared by all classes
of a pixel and ``|w_l| = T`` for all l.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cbp.paper import PAPER_ABLATION
from cbp.prototypes import category_basis_prototypes, cosine_similarity_matrix, equalize

Update = Literal["frozen", "gradient", "ema", "penalty"]
UPDATES = ("frozen", "gradient", "ema", "penalty")
PenaltyForm = Literal["squared", "absolute"]
PENALTY_FORMS = ("squared", "absolute")


class CBPHead(nn.Module):
    """Category-Basis Prototype classifier: logits = f . w for N prototypes w of equal norm T.

    Args:
        channels: C, width of the embedding the head reads.
        num_classes: N, the number of classes.
        length: T, the common L2 norm of the prototypes (default 2.0, the paper's ablations).
        init: prototype initialisation, see :func:`cbp.category_basis_prototypes`.
        update: how the prototypes change during training (Table 4 of the paper):

            * ``"frozen"`` (CBP, default): a buffer; no optimizer ever sees it.
            * ``"gradient"``: the same initial prototypes as a learnable Parameter.
            * ``"ema"``: a buffer moved after every step towards the batch's category centroids
              L2-normalised and scaled to the prototypes' norm T,
              ``w_l <- m w_l + (1 - m) T s_l / |s_l|`` for the classes in the batch, then
              re-equalised (protocol amendment 5; before it the unnormalised ``s_l`` was mixed in).
            * ``"penalty"``: learnable, re-equalised after every step, plus
              ``penalty_weight * (1/N) sum_i sum_{j != i} cos(w_i, w_j)^2`` added to the loss: the
              sum over the other rows, averaged over rows (protocol amendment 5, weight 1.0;
              ``penalty_form="absolute"``: ``|cos(w_i, w_j)|``; the paper says neither). Before
              amendment 5 it was 0.01 x the mean over the pairs, i.e. this form with weight
              ``0.01 / (N - 1)``.
        seed: seed of the prototype draw.
        momentum: m of the ``"ema"`` update.
        penalty_weight: weight of the orthogonality penalty of the ``"penalty"`` update.
        penalty_form: ``"squared"`` (default) or ``"absolute"`` cosines in that penalty.
        embeddings: class embeddings (N, D) for the text / masked inits.

    Shapes:
        forward: features (B, C, H, W) -> logits (B, N, H, W).
    """

    prototypes: Tensor

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        length: float = PAPER_ABLATION.length,
        init: str | Tensor = "orthogonal+equal",
        update: Update = "frozen",
        seed: int = 0,
        momentum: float = 0.99,
        penalty_weight: float = 1.0,
        penalty_form: PenaltyForm = "squared",
        embeddings: Tensor | None = None,
    ) -> None:
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"unknown prototype update {update!r}: expected one of {list(UPDATES)}")
        if penalty_form not in PENALTY_FORMS:
            raise ValueError(f"unknown penalty_form {penalty_form!r}: expected one of {list(PENALTY_FORMS)}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in [0, 1], got {momentum}")
        weight = category_basis_prototypes(
            num_classes, channels, length, seed=seed, init=init, embeddings=embeddings
        )  # (N, C)
        self.channels = channels
        self.num_classes = num_classes
        self.length = float(length)
        self.init = init if isinstance(init, str) else "masked"
        self.update = update
        self.momentum = momentum
        self.penalty_weight = penalty_weight
        self.penalty_form: PenaltyForm = penalty_form
        if update in ("frozen", "ema"):
            # A buffer: saved in the state dict, moved by .to(), invisible to optimizers.
            self.register_buffer("prototypes", weight)
        else:
            self.prototypes = nn.Parameter(weight)
        self._observed: list[tuple[Tensor, Tensor]] = []  # (N, C), (N,) per forward pass since the step

    def forward(self, features: Tensor) -> Tensor:
        """Pixel logits ``f . w_l`` (Eq. 1-2).

        Args:
            features: (B, C, H, W) embedding.

        Returns:
            (B, N, H, W) logits.
        """
        if features.dim() != 4 or features.shape[1] != self.channels:
            raise ValueError(
                f"CBPHead expects features (B, {self.channels}, H, W), got shape {tuple(features.shape)}"
            )
        weight = self.prototypes[:, :, None, None]  # (N, C, 1, 1)
        return F.conv2d(features, weight.to(features.dtype))  # (B, N, H, W)

    @property
    def observes_centroids(self) -> bool:
        """Whether :meth:`observe` records anything: the ``"ema"`` update follows the category centroids."""
        return self.update == "ema"

    def observe(self, category_centroids: Tensor, present: Tensor) -> None:
        """Record one forward pass's category centroids for the next :meth:`after_step` (``"ema"`` only).

        The loss (:func:`cbp.engine.loss.compute_loss`) calls it once per forward pass, so with
        gradient accumulation one step records several batches; the other updates ignore it.

        Args:
            category_centroids: (N, C) category centroids s_l of the batch (OCCL's
                ``"category_centroids"``).
            present: (N,) bool, the classes present in the batch.
        """
        if self.observes_centroids:
            self._observed.append((category_centroids.detach(), present.detach()))

    @torch.no_grad()
    def after_step(
        self,
        category_centroids: Tensor | None = None,
        present: Tensor | None = None,
        *,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """Apply the prototype update after an optimizer step (``"ema"`` and ``"penalty"`` only).

        ``"ema"`` moves the prototypes towards the given centroids or, without them, towards the
        centroids recorded by :meth:`observe` since the last step: their presence-weighted mean over
        the step's forward passes, then over the ranks with ``all_reduce``, so that every rank's
        prototypes stay identical.

        Args:
            category_centroids: (N, C) category centroids s_l of the last batch, or None for the
                recorded ones.
            present: (N,) bool, the classes present in the last batch (with ``category_centroids``).
            all_reduce: sums a tensor over the ranks in place (:func:`cbp.distributed.all_reduce_sum_`);
                None in a single process.
        """
        if self.update == "ema":
            if category_centroids is None or present is None:
                category_centroids, present = self._observed_centroids(all_reduce)
            self._ema(category_centroids, present)
        elif self.update == "penalty":
            self.prototypes.copy_(equalize(self.prototypes, self.length))

    def _observed_centroids(self, all_reduce: Callable[[Tensor], Tensor] | None) -> tuple[Tensor, Tensor]:
        """The recorded centroids pooled over forward passes and ranks (N, C), and presence (N,); clears them."""
        if not self._observed:
            raise ValueError(
                "update='ema' needs the batch's category centroids: observe(category_centroids, present) "
                "in every forward pass, or after_step(category_centroids, present)"
            )
        cc = torch.stack([c for c, _ in self._observed]).float()  # (A, N, C)
        pr = torch.stack([p for _, p in self._observed]).float()  # (A, N)
        self._observed.clear()
        mean = (cc * pr[..., None]).sum(0) / pr.sum(0).clamp(min=1)[:, None]  # (N, C)
        present = pr.sum(0) > 0  # (N,)
        if all_reduce is None:
            return mean, present
        w = present.to(mean.dtype)  # (N,); each rank weighted by presence
        packed = all_reduce(torch.cat([mean * w[:, None], w[:, None]], dim=1))  # (N, C + 1)
        count = packed[:, -1]  # (N,)
        return packed[:, :-1] / count.clamp(min=1.0)[:, None], count > 0

    def _ema(self, category_centroids: Tensor, present: Tensor) -> None:
        """``w_l <- m w_l + (1 - m) T s_l / |s_l|`` for the present classes, then re-equalised.

        Args:
            category_centroids: (N, C) s_l.
            present: (N,) bool.
        """
        present = present.to(self.prototypes.device)
        centroids = category_centroids.to(self.prototypes)  # (N, C)
        # The centroids' directions at the prototypes' length T (features have norms ~5x T).
        target = self.length * F.normalize(centroids, dim=1)  # (N, C); a zero centroid stays 0
        moved = self.momentum * self.prototypes + (1.0 - self.momentum) * target  # (N, C)
        # A class with a zero centroid, or whose moved row collapsed to zero, keeps its prototype.
        ok = present & (centroids.norm(dim=1) > 0) & (moved.norm(dim=1) > 0)  # (N,)
        self.prototypes[ok] = equalize(moved[ok], self.length)

    def penalty(self) -> Tensor:
        """Orthogonality penalty of the ``"penalty"`` update:
        ``penalty_weight * (1/N) sum_i sum_{j != i} cos(w_i, w_j)^2`` (``|cos|`` with
        ``penalty_form="absolute"``).

        Returns:
            Scalar tensor; zero (and without graph) for the other updates.
        """
        if self.update != "penalty":
            return self.prototypes.new_zeros(())
        unit = F.normalize(self.prototypes, dim=1)  # (N, C)
        cos = unit @ unit.T  # (N, N)
        n = cos.shape[0]
        if n < 2:
            return self.prototypes.new_zeros(())
        off_diagonal = cos - torch.diag(torch.diagonal(cos))
        size = off_diagonal.pow(2) if self.penalty_form == "squared" else off_diagonal.abs()  # (N, N)
        return self.penalty_weight * size.sum() / n

    def extra_repr(self) -> str:
        kind = "buffer" if self.update in ("frozen", "ema") else "parameter"
        cos = cosine_similarity_matrix(self.prototypes)
        max_off = (
            float((cos - torch.eye(cos.shape[0], dtype=cos.dtype)).abs().max()) if cos.shape[0] > 1 else 0.0
        )
        return (
            f"channels={self.channels}, num_classes={self.num_classes}, length={self.length:g}, "
            f"init={self.init!r}, update={self.update!r}, prototypes={kind}{tuple(self.prototypes.shape)}, "
            f"max|cos|={max_off:.2e}"
        )


class LinearHead(nn.Module):
    """The learnable baseline: a 1x1 convolution with bias (mmseg's ``conv_seg``).

    Initialised as mmseg does: weights normal with std 0.01, bias 0.

    Shapes:
        forward: features (B, C, H, W) -> logits (B, N, H, W).
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.channels = channels
        self.num_classes = num_classes
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=1, bias=True)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    @property
    def prototypes(self) -> Tensor:
        """The class weights seen as prototypes, (N, C) (a view of the conv weight)."""
        return self.conv.weight.view(self.num_classes, self.channels)

    @property
    def bias(self) -> Tensor:
        """The class biases, (N,)."""
        return self.conv.bias

    def forward(self, features: Tensor) -> Tensor:
        """Logits ``f . w_l + b_l``: features (B, C, H, W) -> (B, N, H, W)."""
        return self.conv(features)

    #: The baseline follows no centroids: :meth:`observe` records nothing.
    observes_centroids = False

    def observe(self, category_centroids: Tensor, present: Tensor) -> None:
        """No-op: the baseline follows no centroids."""

    def after_step(
        self,
        category_centroids: Tensor | None = None,
        present: Tensor | None = None,
        *,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        """No-op: the baseline is updated by its optimizer only."""

    def penalty(self) -> Tensor:
        """No penalty: a scalar zero."""
        return self.conv.weight.new_zeros(())
