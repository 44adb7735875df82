"""Gradient accumulation through the engine's own step (``cbp.engine.train.train_step``).

``train.grad_accum = k`` with ``b`` images per forward pass runs ``forward_backward`` k times, each
micro-batch's loss (Eq. 7) scaled by ``1 / k``, then one optimiser step. The reference is the same
engine step on the whole batch of ``k * b`` images at once (``accum = 1``).

Set-up, so that the two can be equal at all: float64 model and images; the model in training mode
(so that the auxiliary head runs) with every BatchNorm in eval mode, normalising with its running
statistics (batch statistics would differ per micro-batch), and dropout 0; SGD (momentum 0.9, first
step, so the step is ``lr x`` the gradient: AdamW's first step, about ``lr x sign(gradient)``, would
hide a wrongly scaled gradient); no warm-up. The equal case agrees to float64 rounding (relative
1e-10). The other reference, for points 2 and 3, is autograd of the mean over the micro-batches of
each one's loss (``compute_loss``), without the engine's accumulation.

What the engine's accumulation is (all three asserted below):

1. with OCCL off and the same number of labelled pixels in every micro-batch, the update equals
   the update of one batch of ``k * b`` images (gradients, parameters after the step, logged terms);
2. each micro-batch's cross-entropy is the mean over *its own* labelled pixels, and the k means are
   averaged with equal weights. When the micro-batches hold different numbers of labelled pixels
   (ignored pixels, 255) the update is therefore not the one of the pooled batch (whose mean weighs
   every labelled pixel alike): it equals the mean of the k micro-batches' own updates. This is how
   the engine's DDP combines ranks too (each rank's mean loss, gradients averaged), so k
   accumulation steps of b images = k devices of b images, not one device of k * b;
3. OCCL's views and centroids are per micro-batch (each forward pass sees only its b images), so
   with OCCL on the update is again the mean of the micro-batches' own updates and differs from the
   pooled batch even with no ignored pixel: inherent to accumulation (``loss.views=global`` shares
   centroids over ranks, not over accumulation steps).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cbp.engine.train as train
from cbp.engine.build import build_model_and_optimizer, build_occl
from cbp.engine.config import Config, get_preset
from cbp.engine.loss import LOSS_TERMS, compute_loss
from cbp.engine.process import StopFlag
from cbp.engine.state import TrainState

N = 5  # classes
SIZE = 32  # image side


def _cfg(*, classifier: str = "cbp", update: str = "frozen", ce_resolution: str = "feature") -> Config:
    cfg = get_preset("synthetic")
    cfg.model.classifier, cfg.model.update, cfg.model.aux_head, cfg.model.dropout = (
        classifier,
        update,
        True,
        0.0,
    )
    cfg.loss.occl, cfg.loss.ce_resolution = False, ce_resolution
    cfg.optim.name, cfg.optim.lr, cfg.optim.warmup_iters, cfg.optim.weight_decay = "sgd", 0.1, 0, 0.01
    cfg.train.iters = 10
    return cfg


def _eval_norms(model: nn.Module) -> None:
    """float64, training mode (the auxiliary head runs in training mode only), BatchNorm in eval mode."""
    model.double().train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()  # running statistics, the same for every micro-batch


def _step(cfg: Config, images: torch.Tensor, labels: torch.Tensor, accum: int) -> dict:
    """One engine iteration from the seed's initial model on ``accum`` equal micro-batches of the batch.

    Returns the gradients after the step, the parameters after the step and the logged terms.
    """
    device = torch.device("cpu")
    model, optimizer = build_model_and_optimizer(cfg, device, N)  # seeded: the same start each call
    _eval_norms(model)
    micro = images.shape[0] // accum
    state = TrainState(
        cfg=cfg,
        out=None,  # type: ignore[arg-type]  (the step writes nothing)
        device=device,
        model=model,
        ddp_model=model,
        optimizer=optimizer,
        scaler=None,
        occl=build_occl(cfg, seed=0),
        generators={},
        train_set=None,  # type: ignore[arg-type]
        val_set=None,  # type: ignore[arg-type]
        micro=micro,
        accum=accum,
        amp="none",
    )
    chunks = [
        (images[i * micro : (i + 1) * micro], labels[i * micro : (i + 1) * micro]) for i in range(accum)
    ]
    data = iter(chunks)
    result = train.train_step(state, data, StopFlag())
    assert next(data, None) is None  # the step took exactly `accum` micro-batches
    return {
        "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None},
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "terms": result.terms,
    }


def _batch(size: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    labels = torch.randint(N, (size, SIZE, SIZE), generator=g)  # no ignored pixel
    return images, labels


def _max_rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest |a - b| of a tensor over that tensor's largest |b|."""
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp(min=1e-30)) for k in a)


def _assert_grads_close(got: dict, want: dict) -> None:
    """Every parameter's gradient equal to float64 rounding (relative to its largest entry)."""
    assert got["grads"].keys() == want["grads"].keys() and len(got["grads"]) > 0
    for name, g in got["grads"].items():
        scale = float(want["grads"][name].abs().max())
        torch.testing.assert_close(g, want["grads"][name], rtol=1e-10, atol=1e-10 * scale, msg=name)


def _mean_of_micro_losses(cfg: Config, images: torch.Tensor, labels: torch.Tensor, accum: int) -> dict:
    """Reference without the engine's accumulation: the gradient of the mean over the k micro-batches
    of each one's own loss (Eq. 7 by ``compute_loss``), by autograd, from the same initial model."""
    model, _ = build_model_and_optimizer(cfg, torch.device("cpu"), N)
    _eval_norms(model)
    occl = build_occl(cfg, seed=0)
    micro = images.shape[0] // accum
    total = 0.0
    for i in range(accum):
        out = model(images[i * micro : (i + 1) * micro], upsample=cfg.loss.ce_resolution == "input")
        loss, _ = compute_loss(model, out, labels[i * micro : (i + 1) * micro], cfg, occl)
        total = total + loss
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(total / accum, [p for _, p in named], allow_unused=True)
    return {"grads": {n: g for (n, _), g in zip(named, grads) if g is not None}}


@pytest.mark.parametrize(
    "accum, micro, kw",
    [
        (2, 2, {}),  # CBP frozen, aux head, CE at the decoder's resolution
        (4, 1, {"classifier": "linear", "ce_resolution": "input"}),  # the baseline, CE at input size
        (2, 2, {"update": "penalty"}),  # a loss term (the penalty) that is the same in every micro-batch
    ],
)
def test_accumulation_equals_one_big_batch(accum: int, micro: int, kw: dict) -> None:
    cfg = _cfg(**kw)
    images, labels = _batch(accum * micro)
    got, ref = _step(cfg, images, labels, accum), _step(cfg, images, labels, 1)
    _assert_grads_close(got, ref)
    for name, p in got["params"].items():  # SGD step 1: lr x (gradient + weight decay)
        torch.testing.assert_close(p, ref["params"][name], rtol=1e-12, atol=1e-12, msg=name)
    _assert_grads_close(ref, _mean_of_micro_losses(cfg, images, labels, 1))  # the engine = autograd of Eq. 7
    # the logged terms are float32 (compute_loss detaches them as float32)
    torch.testing.assert_close(got["terms"], ref["terms"], rtol=1e-6, atol=1e-7)
    assert got["terms"][LOSS_TERMS.index("aux")] > 0  # the auxiliary head's CE is in the update
    start, _ = build_model_and_optimizer(cfg, torch.device("cpu"), N)
    before = {n: p.detach().double() for n, p in start.named_parameters()}
    assert _max_rel_diff(got["params"], before) > 1e-4  # the step moved the parameters


def _uneven(labels: torch.Tensor) -> torch.Tensor:
    """Labels with 90 % of the first micro-batch's pixels ignored and none of the second's."""
    labels = labels.clone()
    g = torch.Generator().manual_seed(1)
    first = labels[:2]
    first[torch.rand(first.shape, generator=g) < 0.9] = 255
    return labels


def test_accumulation_weighs_micro_batches_equally_not_pixels() -> None:
    """Point 2 of the module docstring: uneven ignored pixels -> the mean of the micro-batch updates."""
    cfg = _cfg()
    images, labels = _batch(4)
    labels = _uneven(labels)
    got = _step(cfg, images, labels, 2)
    per_micro = _mean_of_micro_losses(cfg, images, labels, 2)
    _assert_grads_close(got, per_micro)
    pooled = _step(cfg, images, labels, 1)
    # the pooled batch weighs each labelled pixel alike: a different gradient, far beyond rounding
    assert _max_rel_diff(got["grads"], pooled["grads"]) > 0.05


def test_accumulation_with_occl_has_per_micro_batch_centroids() -> None:
    """Point 3 of the module docstring: OCCL on (image-halves views, so that the views are a fixed
    function of the images), no ignored pixel: the update is the mean of the micro-batches' own
    updates, each with its own views and centroids, and not the pooled batch's."""
    cfg = _cfg()
    cfg.loss.occl, cfg.loss.views = True, "batch"
    images, labels = _batch(4)
    got = _step(cfg, images, labels, 2)
    per_micro = _mean_of_micro_losses(cfg, images, labels, 2)
    _assert_grads_close(got, per_micro)
    pooled = _step(cfg, images, labels, 1)
    assert _max_rel_diff(got["grads"], pooled["grads"]) > 0.05
