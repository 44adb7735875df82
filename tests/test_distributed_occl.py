"""Two gloo processes: OCCL(views="global"), ConfusionMatrix.all_reduce and the EMA head's centroid averaging equal the single-process result.

View assignment (``cbp.OCCL`` docstring): with ``"global"`` every rank applies ``"batch"`` views to its
own images (first half = view 1, second half = view 2), then centroid sums and counts are summed over
ranks, so global view 1 = the union of every rank's first half. A single-process batch
``X = [x0, x1, x2, x3]`` has view 1 = {x0, x1}, view 2 = {x2, x3}; rank r therefore holds
``[x_r, x_{2+r}]`` and the global loss must equal the single-process ``"batch"`` loss on X. The
documented gradient scaling (local contribution x world size) makes DDP's gradient averaging give the
single-process gradient: checked on a shared 1x1 conv in front of OCCL.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import cbp
from cbp.metrics import ConfusionMatrix

N, C_IN, C = 7, 5, 16
WORLD = 2


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs (4, C_IN, 8, 8), labels (4, 16, 16), conv weight (C, C_IN, 1, 1), predictions (4, 16, 16)."""
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(4, C_IN, 8, 8, generator=g)
    labels = torch.randint(N - 1, (4, 16, 16), generator=g)  # class N-1 absent everywhere
    labels[torch.rand(4, 16, 16, generator=g) < 0.2] = 255
    labels[1][labels[1] == 3] = 2  # class 3 absent from rank 1
    labels[0][labels[0] == 4] = 1  # class 4 only on rank 1 in view 1
    weight = torch.randn(C, C_IN, 1, 1, generator=g)
    preds = torch.randint(N, (4, 16, 16), generator=g)
    return inputs, labels, weight, preds


def _run(inputs, labels, weight, views: str) -> tuple[dict, torch.Tensor]:
    w = weight.clone().requires_grad_(True)
    features = F.conv2d(inputs, w)  # (B, C, 8, 8)
    prototypes = cbp.category_basis_prototypes(N, C, seed=0)
    out = cbp.OCCL(views=views)(features, labels, prototypes)
    out["loss"].backward()
    return {k: v.detach() for k, v in out.items()}, w.grad


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        inputs, labels, weight, preds = _data()
        mine = [rank, 2 + rank]  # [share of view 1; share of view 2]
        out, grad = _run(inputs[mine], labels[mine], weight, "global")
        dist.all_reduce(grad)  # what DDP does: average the gradients over ranks
        grad /= WORLD
        cm = ConfusionMatrix(N)
        cm.update(preds[mine], labels[mine])
        cm.all_reduce()
        torch.save({"out": out, "grad": grad, "matrix": cm.matrix.clone()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow
def test_global_views_two_ranks_equal_single_process_batch(tmp_path: Path) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    inputs, labels, weight, preds = _data()
    ref, ref_grad = _run(inputs, labels, weight, "batch")
    assert ref["present"][4] and not ref["present"][N - 1]
    single_cm = ConfusionMatrix(N)
    single_cm.update(preds, labels)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for key in ("loss", "centroid", "category", "category_centroids"):
            torch.testing.assert_close(
                got["out"][key], ref[key], atol=1e-5, rtol=1e-5, msg=f"rank {rank} {key}"
            )
        assert torch.equal(got["out"]["present"], ref["present"])
        torch.testing.assert_close(got["grad"], ref_grad, atol=1e-5, rtol=1e-4, msg=f"rank {rank} grad")
        assert torch.equal(got["matrix"], single_cm.matrix), f"rank {rank} confusion matrix"


def test_single_process_helpers_are_no_ops() -> None:
    from cbp import distributed

    assert not distributed.is_distributed()
    assert distributed.get_rank() == 0 and distributed.get_world_size() == 1
    t = torch.tensor([1.0, 2.0])
    distributed.all_reduce_sum_(t)
    assert t.tolist() == [1.0, 2.0]
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 2]))
    before = cm.matrix.clone()
    cm.all_reduce()
    assert torch.equal(cm.matrix, before)


def _ema_data() -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Each rank's category centroids (N, C) and presence (N,), and the heads' initial prototypes."""
    g = torch.Generator().manual_seed(1)
    pairs = [(torch.randn(N, C, generator=g), torch.rand(N, generator=g) < 0.6) for _ in range(WORLD)]
    pairs[0][1][0], pairs[1][1][0] = True, False  # class 0 seen by rank 0 only
    pairs[0][1][1], pairs[1][1][1] = True, True  # class 1 by both
    return pairs, cbp.CBPHead(C, N, update="ema", momentum=0.9).prototypes.clone()


def _ema_worker(rank: int, init_file: str, out_dir: str) -> None:
    from cbp.distributed import all_reduce_sum_

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        pairs, _ = _ema_data()
        head = cbp.CBPHead(C, N, update="ema", momentum=0.9)
        head.observe(*pairs[rank])
        head.after_step(all_reduce=all_reduce_sum_)
        torch.save(head.prototypes.clone(), Path(out_dir) / f"ema{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow
def test_ema_centroids_averaged_over_two_ranks_equal_one_process_global_centroids(tmp_path: Path) -> None:
    """Two gloo processes, each observing its own batch's category centroids, end with the prototypes of
    one process that observes both batches (the EMA of the global, presence-weighted centroid)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_ema_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    pairs, before = _ema_data()
    single = cbp.CBPHead(C, N, update="ema", momentum=0.9)
    for centroids, present in pairs:  # one process, both batches (two forward passes of one step)
        single.observe(centroids, present)
    single.after_step()
    ranks = [torch.load(tmp_path / f"ema{r}.pt") for r in range(WORLD)]
    assert torch.equal(ranks[0], ranks[1])  # every rank holds the same prototypes
    torch.testing.assert_close(ranks[0], single.prototypes, atol=1e-6, rtol=1e-5)
    seen = pairs[0][1] | pairs[1][1]
    assert not torch.allclose(ranks[0][seen], before[seen]) and torch.equal(ranks[0][~seen], before[~seen])
