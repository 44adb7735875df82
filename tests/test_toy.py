"""cbp.book.toy (chapters 1 and 2): data generators, encoders, heads and the two training loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cbp
from cbp.book import toy, toy_figures

SMALL = {"num_classes": 8, "input_dim": 16, "n_max": 500, "imbalance": 50.0, "confusable": [(0, 5), (1, 7)]}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def _minibatch(kind: str, data: dict, seed: int, **kw) -> dict:
    args = {"num_classes": 8, "channels": 16, "epochs": 4, "batch_size": 128, "lr": 0.05} | kw
    return toy.train_minibatch(kind, data, seed, **args)


def test_long_tailed_counts_are_a_geometric_tail() -> None:
    counts = toy.long_tailed_counts(12, 3000, 200.0)
    assert counts[0] == 3000 and counts[-1] == 15
    assert (np.diff(counts) < 0).all()
    ratios = counts[:-1] / counts[1:]  # constant ratio 200^(1/11), up to rounding
    np.testing.assert_allclose(ratios, 200.0 ** (1 / 11), rtol=0.05)


def test_long_tailed_clusters_class_counts_and_determinism() -> None:
    data = toy.long_tailed_clusters(3, **SMALL, test_per_class=50)
    counts = toy.long_tailed_counts(8, 500, 50.0)
    np.testing.assert_array_equal(data["counts"], counts)
    np.testing.assert_array_equal(np.bincount(data["y"].numpy(), minlength=8), counts)
    np.testing.assert_array_equal(np.bincount(data["y_test"].numpy(), minlength=8), np.full(8, 50))
    assert data["x"].shape == (counts.sum(), 16) and data["x"].dtype == torch.float32
    again = toy.long_tailed_clusters(3, **SMALL, test_per_class=50)
    other = toy.long_tailed_clusters(4, **SMALL, test_per_class=50)
    for key in ("x", "y", "x_test", "y_test"):
        torch.testing.assert_close(data[key], again[key], rtol=0, atol=0)
    assert not torch.equal(data["x"], other["x"])


def test_confusable_pairs_have_the_nearest_means() -> None:
    data = toy.long_tailed_clusters(0, **SMALL, test_per_class=400)
    means = torch.stack([data["x_test"][data["y_test"] == c].mean(0) for c in range(8)])  # (N, D)
    dist = torch.cdist(means, means) + torch.eye(8) * 1e9  # (N, N)
    for a, b in SMALL["confusable"]:
        assert int(dist[a].argmin()) == b and int(dist[b].argmin()) == a
        assert dist[a, b] < 0.5 * dist[a][torch.arange(8) != b].min()


def test_bad_confusable_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        toy.long_tailed_clusters(0, num_classes=8, input_dim=4, n_max=10, imbalance=2.0)


def test_toy_2d_dataset_counts_and_class_statistics() -> None:
    for name, counts in toy.TOY_2D_COUNTS.items():
        data = toy.toy_2d_dataset(name, 0)
        assert np.bincount(data["y"].numpy()).tolist() == counts
        assert np.bincount(data["y_test"].numpy()).tolist() == [1000, 1000, 1000]
    data = toy.toy_2d_dataset("balanced", 1)
    for c in range(3):
        x = data["x_test"][data["y_test"] == c]  # (1000, 2)
        torch.testing.assert_close(x.mean(0), toy.TOY_2D_MEANS[c], atol=0.1, rtol=0)
        torch.testing.assert_close(x.std(0), toy.TOY_2D_STDS[c].expand(2), atol=0.08, rtol=0)
    torch.testing.assert_close(
        toy.toy_2d_dataset("long-tailed", 5)["x"], toy.toy_2d_dataset("long-tailed", 5)["x"]
    )
    with pytest.raises(KeyError, match="balanced"):
        toy.toy_2d_dataset("imbalanced", 0)


def test_mlp_encoder_draws_like_a_hand_built_sequential() -> None:
    torch.manual_seed(7)
    ref = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    torch.manual_seed(7)
    enc = toy.mlp_encoder([2, 32, 32, 3], relu_out=False)
    assert [type(m) for m in enc] == [type(m) for m in ref]
    for (k1, v1), (k2, v2) in zip(enc.state_dict().items(), ref.state_dict().items()):
        assert k1 == k2
        torch.testing.assert_close(v1, v2, rtol=0, atol=0)
    post_relu = toy.mlp_encoder([16, 64, 32], relu_out=True)
    assert isinstance(post_relu[-1], nn.ReLU)
    assert (post_relu(torch.randn(5, 16)) >= 0).all()


def test_make_head_kinds() -> None:
    learnable = toy.make_head("learnable", 5, 3, length=2.0, seed=0)
    assert isinstance(learnable, cbp.LinearHead) and any(p.requires_grad for p in learnable.parameters())
    for kind in ("cbp", "equal"):
        head = toy.make_head(kind, 5, 3, length=2.5, seed=0)
        assert not any(p.requires_grad for p in head.parameters())
        torch.testing.assert_close(head.prototypes.norm(dim=1), torch.full((3,), 2.5))
    cos_cbp = cbp.prototypes.cosine_similarity_matrix(
        toy.make_head("cbp", 5, 3, length=1.0, seed=0).prototypes
    )
    torch.testing.assert_close(cos_cbp, torch.eye(3, dtype=torch.float64), atol=1e-6, rtol=0)
    cos_eq = cbp.prototypes.cosine_similarity_matrix(
        toy.make_head("equal", 5, 3, length=1.0, seed=0).prototypes
    )
    assert (cos_eq - torch.eye(3, dtype=torch.float64)).abs().max() > 1e-3  # not orthogonalised
    with pytest.raises(KeyError, match="learnable"):
        toy.make_head("frozen", 5, 3, length=1.0, seed=0)


def test_train_minibatch_is_deterministic() -> None:
    data = toy.long_tailed_clusters(0, **SMALL, test_per_class=20)
    a = _minibatch("learnable", data, 0, epochs=2)
    b = _minibatch("learnable", data, 0, epochs=2)
    c = _minibatch("learnable", data, 1, epochs=2)
    for ha, hb in zip(a["history"], b["history"]):
        np.testing.assert_array_equal(ha["norms"], hb["norms"])
        np.testing.assert_array_equal(ha["cos"], hb["cos"])
    torch.testing.assert_close(a["W"], b["W"], rtol=0, atol=0)
    assert not torch.equal(a["W"], c["W"])
    assert [h["epoch"] for h in a["history"]] == [1, 2]


def test_learnable_norms_follow_frequency_cbp_norms_do_not() -> None:
    for seed in (0, 1):
        data = toy.long_tailed_clusters(seed, **SMALL, test_per_class=50)
        log_n = np.log(data["counts"])
        learnable = _minibatch("learnable", data, seed)
        assert _pearson(learnable["history"][-1]["norms"].astype(np.float64), log_n) > 0.5
        assert _pearson(learnable["bias"].astype(np.float64), log_n) > 0.5
        frozen = _minibatch("cbp", data, seed, length=2.0)
        fresh = cbp.CBPHead(16, 8, length=2.0, seed=seed).prototypes
        torch.testing.assert_close(frozen["W"], fresh, rtol=0, atol=0)  # never updated
        for h in frozen["history"]:
            np.testing.assert_allclose(h["norms"], 2.0, rtol=1e-6)
            np.testing.assert_allclose(h["cos"], np.eye(8), atol=1e-6)
        np.testing.assert_array_equal(frozen["bias"], np.zeros(8))


def test_train_minibatch_metrics_match_its_confusion_matrix() -> None:
    data = toy.long_tailed_clusters(2, **SMALL, test_per_class=30)
    run = _minibatch("learnable", data, 2, epochs=1, optimizer="adam", lr=3e-3)
    cm = run["confusion"].astype(np.float64)  # (N, N), rows = ground truth
    np.testing.assert_array_equal(cm.sum(1), np.full(8, 30))
    np.testing.assert_allclose(run["recall"], 100 * np.diag(cm) / cm.sum(1))
    assert run["mAcc"] == pytest.approx(float(np.mean(run["recall"])))
    with pytest.raises(ValueError, match="sgd"):
        _minibatch("learnable", data, 2, epochs=1, optimizer="lbfgs")


def _full(kind: str, data: dict, seed: int, **kw) -> dict:
    args = {"num_classes": 3, "channels": 3, "hidden": 16, "steps": 40, "lr": 0.05, "length": 2.0} | kw
    return toy.train_full_batch(kind, data, seed, **args)


def test_train_full_batch_trajectory_and_model() -> None:
    data = toy.toy_2d_dataset("long-tailed", 0)
    run = _full("learnable", data, 0)
    assert run["trajectory"].shape == (5, 3, 3)  # steps 0, 10, ..., 40
    torch.testing.assert_close(run["trajectory"][-1], run["head"].prototypes.detach())
    assert run["trajectory"][-1].norm(dim=1).min() > run["trajectory"][0].norm(dim=1).max()  # they grow
    with torch.no_grad():
        logits = run["model"](data["x_test"])  # (M, 3)
        by_parts = run["head"](run["encoder"](data["x_test"])[:, :, None, None])[:, :, 0, 0]
        feat_norm = run["encoder"](data["x_test"]).norm(dim=1).mean().item()
    torch.testing.assert_close(logits, by_parts)
    assert run["feat_norm"] == pytest.approx(feat_norm)
    recall = [100 * float((logits.argmax(1)[data["y_test"] == c] == c).double().mean()) for c in range(3)]
    np.testing.assert_allclose(run["recall"], recall)
    with torch.no_grad():
        first_loss = F.cross_entropy(_full("learnable", data, 0, steps=0)["model"](data["x"]), data["y"])
    assert run["loss"] < first_loss.item()
    again = _full("learnable", data, 0)
    torch.testing.assert_close(again["trajectory"], run["trajectory"], rtol=0, atol=0)


def test_train_full_batch_frozen_heads_stay_put() -> None:
    data = toy.toy_2d_dataset("balanced", 1)
    for kind in ("cbp", "equal"):
        run = _full(kind, data, 1, steps=20, length=0.5)
        traj = run["trajectory"]  # (3, N, C)
        torch.testing.assert_close(traj, traj[:1].expand_as(traj), rtol=0, atol=0)
        torch.testing.assert_close(traj[0].norm(dim=1), torch.full((3,), 0.5))
    zero = _full("cbp", data, 1, steps=0)
    assert zero["trajectory"].shape == (1, 3, 3) and np.isnan(zero["loss"])


def test_train_full_batch_records_the_test_recall_of_the_run_it_would_stop_at() -> None:
    data = toy.toy_2d_dataset("long-tailed", 2)
    run = _full("cbp", data, 2, steps=40)
    np.testing.assert_array_equal(run["steps"], [0, 10, 20, 30, 40])
    assert run["recall_path"].shape == (5, 3)
    np.testing.assert_array_equal(run["recall_path"][-1], run["recall"])
    shorter = _full("cbp", data, 2, steps=20)  # a run is deterministic: its first 20 steps are the same
    np.testing.assert_array_equal(run["recall_path"][2], shorter["recall"])
    assert toy_figures.recall_at(run, 20) == pytest.approx((shorter["mAcc"], shorter["recall"][2]))
    with pytest.raises(KeyError, match="not recorded"):
        toy_figures.recall_at(run, 25)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_chapter_2_regime_frozen_heads_find_the_rare_class_sooner_and_all_end_level(seed: int) -> None:
    """Chapter 2's point, at its default settings: on the long-tailed set, after 100 of 500 steps the
    frozen CBP head recalls much more of the rare class than the learnable head (which starts from
    tiny prototypes and learns the prior first); after 500 steps their mAcc is level."""
    data = toy.toy_2d_dataset("long-tailed", seed)
    args = {"hidden": 32, "steps": 500}
    runs = {kind: _full(kind, data, seed, **args) for kind in ("learnable", "cbp")}
    early = {kind: toy_figures.recall_at(run, 100) for kind, run in runs.items()}
    assert early["cbp"][1] - early["learnable"][1] > 20  # rare-class recall, percentage points
    assert early["cbp"][0] - early["learnable"][0] > 5  # mAcc
    assert abs(runs["cbp"]["mAcc"] - runs["learnable"]["mAcc"]) < 2
