"""The training engine: run directory, exact resume, signals, NaN stop, DDP, sampler and schedule.

Runs are tiny: cnn_tiny on a 12-class synthetic set of 32x32 images, a handful of iterations.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from tiny_run import make_tiny_synthetic, tiny_args
from torch.utils.data import DistributedSampler

import cbp.engine.train as train
from cbp.engine import checkpoint
from cbp.engine.build import batch_split
from cbp.engine.config import ConfigError, OptimConfig, get_preset
from cbp.engine.optim import build_optimizer, param_groups, poly_lr
from cbp.engine.sampler import StreamSampler, epoch_permutation

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_synthetic(tmp_path_factory.mktemp("data") / "syn12")


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------------------------
# Run directory and outputs


def test_run_writes_config_log_ckpt_metrics(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train.main(tiny_args(synth, run, "--train.iters=4")) == run
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["iters"] == 4 and cfg["data"]["root"] == str(synth) and cfg["preset"] == "synthetic"
    log = read_log(run)
    assert [r["iter"] for r in log] == [2, 4]
    for key in (
        "loss",
        "ce",
        "aux",
        "centroid",
        "category",
        "penalty",
        "lr",
        "time_per_iter",
        "data_time",
        "eta_s",
    ):
        assert key in log[0]
    assert "rss_mb" in log[0] and log[-1]["eta_s"] == 0.0
    # Eq. 7 with aux 0 and no penalty: loss = ce + lam * centroid + phi * category
    r = log[0]
    assert r["loss"] == pytest.approx(r["ce"] + 1.0 * r["centroid"] + 0.3 * r["category"], rel=1e-5)
    ckpt = checkpoint.load(run / "ckpt_last.pt")
    assert ckpt["iter"] == 4 and ckpt["world_size"] == 1 and len(ckpt["rng"]) == 1
    assert "classifier.prototypes" in ckpt["model"]
    m = json.loads((run / "metrics.json").read_text())
    assert len(m["IoU"]) == len(m["class_names"]) == len(m["F1"]) == 12
    assert 0 <= m["mIoU"] <= 100 and m["iters"] == 4 and m["world_size"] == 1
    assert m["class_separability"] == pytest.approx(0.0, abs=1e-3)  # frozen CBP: orthogonal (Eq. 8)
    assert m["prototype_norms"] == pytest.approx([2.0] * 12, abs=1e-5)
    assert not list(run.glob("*.tmp")), "atomic writes left a temporary file"


def test_frozen_prototypes_unchanged_and_not_optimised(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=2"))
    from cbp.engine.build import build_model
    from cbp.engine.config import from_dict

    cfg = from_dict(json.loads((run / "config.json").read_text()))
    fresh = build_model(cfg, 12)
    trained = checkpoint.load(run / "ckpt_last.pt")["model"]
    torch.testing.assert_close(trained["classifier.prototypes"], fresh.classifier.prototypes, rtol=0, atol=0)
    opt = build_optimizer(fresh, cfg.optim)
    assert all(p is not fresh.classifier.prototypes for g in opt.param_groups for p in g["params"])


def test_rerun_with_other_config_is_an_error_but_iters_extends(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train.main(tiny_args(synth, run, "--train.iters=2"))
    with pytest.raises(ConfigError, match=r"(?s)only run-time keys.*loss.tau: 0.07"):
        train.main(tiny_args(synth, run, "--train.iters=2", "--loss.tau=0.5"))
    train.main(tiny_args(synth, run, "--train.iters=4"))  # extending is allowed
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 4
    assert [r["iter"] for r in read_log(run)] == [2, 4]


# --------------------------------------------------------------------------------------------
# Exact resume


def _sigterm_then_resume(
    synth: Path, run: Path, extra: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> int:
    """Train ``run`` until SIGTERM arrives during iteration 3 (its checkpoint must be at 3), then run the
    same command again to resume it to the end; returns the exit code of the interrupted run."""
    real_set_lr = train.set_lr

    def set_lr_then_signal(optimizer, it, total, cfg):
        if it == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_set_lr(optimizer, it, total, cfg)

    monkeypatch.setattr(train, "set_lr", set_lr_then_signal)
    with pytest.raises(SystemExit) as exc:
        train.main(tiny_args(synth, run, *extra))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 3
    monkeypatch.setattr(train, "set_lr", real_set_lr)
    train.main(tiny_args(synth, run, *extra))
    return exc.value.code


def test_resume_is_bit_exact(synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # random resize / flip / photometric on, so per-sample augmentation seeding is exercised
    extra = ("--train.iters=6", "--data.ratio_range=0.5,2.0", "--data.flip=true", "--data.photometric=true")
    straight = tmp_path / "straight"
    train.main(tiny_args(synth, straight, *extra))

    interrupted = tmp_path / "interrupted"
    assert _sigterm_then_resume(synth, interrupted, extra, monkeypatch) == 128 + signal.SIGTERM

    a = checkpoint.load(straight / "ckpt_last.pt")
    b = checkpoint.load(interrupted / "ckpt_last.pt")
    assert a["iter"] == b["iter"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0, msg=f"{k} differs")
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sa["exp_avg_sq"], sb["exp_avg_sq"], rtol=0, atol=0)
    log_a, log_b = read_log(straight), read_log(interrupted)
    assert [r["iter"] for r in log_b] == [r["iter"] for r in log_a] == [2, 4, 6]
    assert log_a[-1]["loss"] == log_b[-1]["loss"]


# --------------------------------------------------------------------------------------------
# NaN loss, SIGTERM in a subprocess


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    real = train.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # iteration 3
            loss = loss * float("nan")
            terms = {**terms, "loss": terms["loss"] * float("nan")}
        return loss, terms

    monkeypatch.setattr(train, "compute_loss", poisoned)
    with pytest.raises(train.TrainingDiverged, match=r"iteration 3 \(loss=nan, ce="):
        train.main(tiny_args(synth, run, "--train.iters=6"))
    assert checkpoint.load(run / "ckpt_last.pt")["iter"] == 2
    assert not (run / "metrics.json").exists()


@pytest.mark.slow
def test_sigterm_saves_checkpoint_and_exits_nonzero(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = tiny_args(synth, run, "--train.iters=100000", "--train.ckpt_every=100000", "--train.log_every=1")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cbp.train", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (run / "log.jsonl").is_file() and len((run / "log.jsonl").read_text().splitlines()) >= 3:
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Re-run the same command to resume" in err
    it = checkpoint.load(run / "ckpt_last.pt")["iter"]
    assert 3 <= it < 100000


# --------------------------------------------------------------------------------------------
# Two processes (gloo)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, args: list[str], dump: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    import cbp.engine.train as tr

    real = tr.metrics_record

    def record_and_dump(cm, model, *a, **kw):  # every rank reaches the final evaluation
        torch.save(model.state_dict(), f"{dump}/rank{rank}.pt")
        return real(cm, model, *a, **kw)

    tr.metrics_record = record_and_dump
    tr.main(args)


@pytest.mark.dist
@pytest.mark.slow
def test_two_process_gloo_ranks_agree(synth: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = tiny_args(synth, run, "--train.iters=4", "--train.batch_size=8")
    mp.spawn(_ddp_worker, args=(2, _free_port(), args, str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=f"ranks disagree on {k}")
    m = json.loads((run / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["iters"] == 4
    ckpt = checkpoint.load(run / "ckpt_last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])  # per-rank seeds


# --------------------------------------------------------------------------------------------
# Sampler, schedule, parameter groups


def test_stream_sampler_matches_distributed_sampler_permutations() -> None:
    n = 10
    for epoch in range(3):
        ds = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=7)
        ds.set_epoch(epoch)
        assert list(ds) == epoch_permutation(n, 7, epoch).tolist()


def _take(sampler: StreamSampler, count: int) -> list[tuple[int, int]]:
    it = iter(sampler)
    return [next(it) for _ in range(count)]


def test_stream_sampler_split_and_resume() -> None:
    n, batch, iters = 10, 8, 4
    single = _take(StreamSampler(n, batch, seed=3), batch * iters)
    assert [p for _, p in single] == list(range(batch * iters))
    assert sorted(i for i, _ in single[:n]) == list(range(n))  # the first epoch is a permutation
    # 2 ranks x 2 accumulation steps: the same global batches, split
    parts = [
        _take(StreamSampler(n, batch, world_size=2, rank=r, accum=2, seed=3), 4 * iters) for r in range(2)
    ]
    for t in range(iters):
        global_batch = {p for r in range(2) for _, p in parts[r][4 * t : 4 * t + 4]}
        assert global_batch == set(range(t * batch, (t + 1) * batch))
    # resume at iteration 2 continues the stream
    assert _take(StreamSampler(n, batch, seed=3, start_iter=2), batch) == single[2 * batch : 3 * batch]


def test_poly_schedule_with_warmup() -> None:
    cfg = OptimConfig(lr=6e-5, power=1.0, min_lr=0.0, warmup_iters=1500, warmup_ratio=1e-6)
    assert poly_lr(6e-5, 0, 160_000, cfg) == pytest.approx(6e-5 * 1e-6)
    assert poly_lr(6e-5, 750, 160_000, cfg) == pytest.approx(
        6e-5 * (1 - 750 / 160_000) * (1 - 0.5 * (1 - 1e-6))
    )
    assert poly_lr(6e-5, 1500, 160_000, cfg) == pytest.approx(6e-5 * (1 - 1500 / 160_000))
    sgd = OptimConfig(lr=0.01, power=0.9, min_lr=1e-4, warmup_iters=0)
    assert poly_lr(0.01, 0, 100, sgd) == pytest.approx(0.01)
    assert poly_lr(0.01, 50, 100, sgd) == pytest.approx((0.01 - 1e-4) * 0.5**0.9 + 1e-4)
    assert poly_lr(0.01, 100, 100, sgd) == pytest.approx(1e-4)


def test_param_groups_head_lr_and_no_decay() -> None:
    from cbp.engine.build import build_model

    cfg = get_preset("ade20k_segformer_b0")
    cfg.model.backbone = "cnn_tiny"
    model = build_model(cfg, 12)
    groups = param_groups(model, cfg.optim)
    for g in groups:
        for name in g["names"]:
            assert g["base_lr"] == pytest.approx(6e-5 * (1 if name.startswith("encoder.") else 10))
            assert g["weight_decay"] == (0.0 if "norm" in name else 0.01)
    assert sum(len(g["params"]) for g in groups) == sum(p.requires_grad for p in model.parameters())


def test_batch_split_accumulates_to_total() -> None:
    cfg = get_preset("ade20k_segformer_b0")  # batch 16, 2 per device
    assert batch_split(cfg, 1) == (2, 8)
    assert batch_split(cfg, 8) == (2, 1)
    cfg.train.grad_accum = 2
    assert batch_split(cfg, 2) == (4, 2)
    cfg.train.grad_accum = 0
    cfg.train.device_batch = 1
    assert batch_split(cfg, 1) == (1, 16)  # the default object views split any batch
    cfg.loss.views = "batch"  # image halves need two images per forward pass
    with pytest.raises(ConfigError, match="even per-device batch"):
        batch_split(cfg, 1)


def test_bf16_autocast_on_cpu_trains_and_resumes_exactly(
    synth: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--train.amp=bf16` on the CPU: the forward pass runs under bfloat16 autocast (the weights differ
    from a float32 run's), the loss falls, and a run stopped by SIGTERM and resumed ends bit for bit
    where an uninterrupted one does."""
    extra = ("--train.iters=6", "--train.amp=bf16", "--train.log_every=1")
    straight = tmp_path / "straight"
    train.main(tiny_args(synth, straight, *extra))
    fp32 = tmp_path / "fp32"
    train.main(tiny_args(synth, fp32, "--train.iters=6"))
    interrupted = tmp_path / "interrupted"
    _sigterm_then_resume(synth, interrupted, extra, monkeypatch)
    a, b, c = (checkpoint.load(r / "ckpt_last.pt")["model"] for r in (straight, interrupted, fp32))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after the resume")
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point()), "bf16 changed nothing"
    losses = [r["loss"] for r in read_log(straight)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert json.loads((straight / "config.json").read_text())["train"]["amp"] == "bf16"
