"""The training engine: ``python -m cbp.train`` or ``torchrun --nproc_per_node=K -m cbp.train``.

::

    python -m cbp.train --preset synthetic --out runs/syn [--section.key=value ...]
    torchrun --nproc_per_node=2 -m cbp.train --preset synthetic --out runs/syn2
    python -m cbp.train --config runs/syn/config.json --out runs/syn-b --seed=1   # a run's config as the base
    python -m cbp.train --list-presets | --help-keys [--preset NAME] | --print-config ...

A user's mistake is one line on stderr and an exit code: 2 usage or config, 3 diverged, 4 data or
file, 1 a bug (see :mod:`cbp.engine.errors`; ``CBP_DEBUG=1`` shows the traceback).

One iteration (:func:`train_step`): ``train.grad_accum`` forward / backward passes of the loss
(Eq. 7, :func:`cbp.engine.loss.compute_loss`), one all-reduce of the loss terms and flags, the
optimiser step, then the classifier's own update, ``classifier.after_step()`` (the EMA of the
category centroids the loss recorded, averaged over ranks, or the penalty's re-equalisation).

Run directory (``--out``), which only one process uses at a time (the lock, and which config
changes a resume accepts: :mod:`cbp.engine.run_dir`):

* ``config.json``: the resolved config, written once the set-up (data, model, pretrained weights,
  checkpoint, optimiser) has succeeded, so a failed set-up writes nothing and never blocks the
  corrected command. Running again in the same directory resumes from the checkpoint.
* ``log.jsonl``: one JSON object per logged step (loss terms averaged over ranks, lr, timing, memory).
* ``ckpt_last.pt``: written atomically (mode 0644) every ``train.ckpt_every`` iterations, on SIGTERM /
  SIGINT and at the end: model, optimizer, AMP scaler, iteration, every rank's RNG states, sampler
  position, config; only a finite state is written (:func:`cbp.engine.checkpoint.nonfinite`). The
  checkpoint it replaces stays as ``ckpt_prev.pt``; an unreadable or non-finite ``ckpt_last.pt``
  falls back to it with a warning.
* ``metrics.json``: validation metrics at the end (see :mod:`cbp.engine.evaluate`); ``eval.jsonl`` for
  ``train.eval_every``.

Exact resume: the learning rate is a function of the iteration; the data order is an endless
stream of ``(seed, epoch)`` permutations indexed by the iteration (:mod:`cbp.engine.sampler`); augmentation
randomness is seeded per sample; the RNG states of every rank are restored (:mod:`cbp.engine.state`).
On CPU a resumed run ends with the same weights, bit for bit, as an uninterrupted one.

A non-finite loss stops the run with a message naming the iteration and the loss terms; no step is
taken. A state to be saved that holds a NaN or an infinity in a parameter, a buffer (BatchNorm's
running statistics) or the optimiser's state stops it the same way, unsaved. Either way
``ckpt_last.pt`` keeps the last good state (or, before the first checkpoint, there is none, and the
message says so), and the advised re-run resumes from it (exit code 3).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from cbp.data.transforms import collate_pad
from cbp.distributed import all_reduce_sum_, get_rank, get_world_size, is_distributed, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import check_inputs
from cbp.engine.command import parse_args
from cbp.engine.config import Config, to_dict
from cbp.engine.errors import EXIT_DIVERGED, out_folder, run_cli
from cbp.engine.evaluate import evaluate, metrics_record
from cbp.engine.loss import LOSS_TERMS, compute_loss
from cbp.engine.optim import set_lr
from cbp.engine.process import StopFlag, setup_distributed
from cbp.engine.run_dir import check_resume_config, open_run_dir, run_dir_lock
from cbp.engine.sampler import SeededSamples, StreamSampler
from cbp.engine.state import TrainState, build_state, resume, wrap_ddp
from cbp.io import append_jsonl, read_jsonl, write_json


class TrainingDiverged(RuntimeError):
    """The loss or the state to be saved became NaN / inf; the last good checkpoint is kept."""


# --------------------------------------------------------------------------------------------
# The run


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) the run described by ``argv``; returns the run directory."""
    cfg, out = parse_args(argv)
    device = setup_distributed(cfg)
    try:
        return train(cfg, out, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def train(cfg: Config, out: Path, device: torch.device) -> Path:
    """Set up (or resume) the run in ``out``, train to ``train.iters``, evaluate; returns ``out``.

    Nothing is written into ``out`` before the set-up (data, model, pretrained weights, optimiser,
    checkpoint) has succeeded, so a failed set-up never blocks the corrected command.
    """
    check_inputs(cfg)
    with run_dir_lock(out):
        changed = check_resume_config(cfg, out)
        state = build_state(cfg, out, device)
        resume(state)
        open_run_dir(out, cfg, state.iteration, changed)
        if is_distributed():
            dist.barrier()
        state.ddp_model = wrap_ddp(state.model, device)
        if state.iteration >= cfg.train.iters:
            if is_main_process():
                print(
                    f"[cbp.train] {out} is already trained to {state.iteration} >= train.iters={cfg.train.iters}",
                    flush=True,
                )
            if (out / "metrics.json").is_file():
                return out
        else:
            run_loop(state)
        final_evaluate(state)
    return out


def run_loop(state: TrainState) -> None:
    """Iterate from ``state.iteration`` to ``train.iters``: step, log, checkpoint, evaluate, stop on a signal."""
    cfg = state.cfg
    bar = _progress_bar(state)
    window = LogWindow()
    data = batches(state)
    maybe_evaluate(state, only_if_missing=True)  # the checkpoint's own evaluation, if a kill lost it
    state.model.train()
    if state.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(state.device)
    try:
        with StopFlag() as stop:
            while state.iteration < cfg.train.iters:
                t_iter = time.perf_counter()
                step = train_step(state, data, stop)
                state.iteration += 1
                window.add(step, time.perf_counter() - t_iter)
                if bar is not None:
                    bar.update(1)
                    if state.iteration % max(1, cfg.train.log_every // 5) == 0:
                        bar.set_postfix(
                            loss=f"{float(step.terms[0]):.3f}", lr=f"{step.lr:.2e}", refresh=False
                        )
                done = state.iteration
                if done % cfg.train.log_every == 0 or done == cfg.train.iters:
                    window = log_window(state, window, lr=step.lr)
                if done % cfg.train.ckpt_every == 0 or done == cfg.train.iters or step.stopping:
                    save(state)
                maybe_evaluate(state)
                if step.stopping:
                    exit_on_signal(state, stop.signum)
    finally:
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------------------------
# One iteration


def train_step(state: TrainState, data: Iterator[tuple[Tensor, Tensor]], stop: StopFlag) -> StepResult:
    """One iteration: ``accum`` micro-batches, one all-reduce of the flags, the optimiser step, the
    classifier's update. Raises :class:`TrainingDiverged` (no step taken) on a non-finite loss."""
    cfg, device = state.cfg, state.device
    lr = set_lr(state.optimizer, state.iteration, cfg.train.iters, cfg.optim)
    state.optimizer.zero_grad(set_to_none=True)
    terms = torch.zeros(len(LOSS_TERMS), dtype=torch.float64, device=device)
    data_time = 0.0
    for k in range(state.accum):
        t_data = time.perf_counter()
        images, labels = next(data)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        data_time += time.perf_counter() - t_data
        terms += forward_backward(state, images, labels, sync=k == state.accum - 1) / state.accum
    mean_terms, nonfinite, stopping = reduce_step(terms, stop=stop, device=device)
    if nonfinite:
        desc = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(LOSS_TERMS, mean_terms))
        raise diverged(
            state, f"non-finite loss at iteration {state.iteration + 1} ({desc}); no step was taken"
        )
    optimizer_step(state)
    state.model.classifier.after_step(all_reduce=all_reduce_sum_ if is_distributed() else None)
    return StepResult(lr=lr, terms=mean_terms, data_time=data_time, stopping=stopping)


def forward_backward(state: TrainState, images: Tensor, labels: Tensor, *, sync: bool) -> Tensor:
    """Forward, loss (Eq. 7) and backward of one micro-batch, the loss scaled by 1 / accum.

    Args:
        images: (B, 3, H, W); labels: (B, H, W) int64.
        sync: False skips DDP's gradient all-reduce (all accumulation steps but the last).

    Returns:
        The detached loss terms, (len(LOSS_TERMS),) float64.
    """
    cfg, model = state.cfg, state.model
    no_sync = isinstance(state.ddp_model, DDP) and not sync
    with state.ddp_model.no_sync() if no_sync else contextlib.nullcontext():
        with _autocast(state.amp, state.device.type):
            out = state.ddp_model(images, upsample=cfg.loss.ce_resolution == "input")
        loss, terms = compute_loss(model, out, labels, cfg, state.occl)
        del out  # backward needs the logits' log-softmax, not the logits: free the (B, N, H, W) map first
        loss = loss / state.accum
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
        else:
            loss.backward()
    return torch.stack([terms[t] for t in LOSS_TERMS]).double()


def diverged(state: TrainState, what: str) -> TrainingDiverged:
    """The error of a divergence: ``what`` happened, which checkpoint the advised re-run resumes from."""
    cfg = state.cfg
    if state.good is None:
        kept = (
            f"no checkpoint was written yet (one every train.ckpt_every={cfg.train.ckpt_every} iterations), "
            "so a re-run starts again from iteration 0"
        )
    else:
        iteration, path = state.good
        kept = f"{path} keeps the last good state (iteration {iteration}), and a re-run resumes from it"
    return TrainingDiverged(
        f"{what}; {kept}. Re-run the same command with a lower --optim.lr (now {cfg.optim.lr:g}) or with "
        "--optim.grad_clip=1.0; on a GPU --train.amp=bf16 or none may help; if it recurs, check the data."
    )


def reduce_step(terms: Tensor, *, stop: StopFlag, device: torch.device) -> tuple[Tensor, bool, bool]:
    """One all-reduce for the loss terms, "a rank saw a non-finite loss" and "a rank got a signal".

    Returns the terms averaged over ranks (on CPU) and the two flags.
    """
    flags = torch.tensor(
        [float(not math.isfinite(float(terms[0]))), float(stop.signum != 0)],
        dtype=torch.float64,
        device=device,
    )
    packed = torch.cat([terms, flags])  # (len(LOSS_TERMS) + 2,)
    if is_distributed():
        dist.all_reduce(packed)
    nonfinite, stopping = packed[-2:].tolist()
    return (packed[: len(LOSS_TERMS)] / get_world_size()).cpu(), nonfinite > 0, stopping > 0


def optimizer_step(state: TrainState) -> None:
    """Gradient clipping (unscaled first under fp16) and the optimiser step."""
    clip = state.cfg.optim.grad_clip
    if state.scaler is not None:
        if clip > 0:
            state.scaler.unscale_(state.optimizer)
            nn.utils.clip_grad_norm_(state.model.parameters(), clip)
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        if clip > 0:
            nn.utils.clip_grad_norm_(state.model.parameters(), clip)
        state.optimizer.step()


def _autocast(amp: str, device_type: str = "cuda") -> contextlib.AbstractContextManager:
    """Autocast of the forward pass for ``bf16`` (CUDA or CPU) / ``fp16`` (CUDA), nothing for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class StepResult:
    """What one iteration reports: its lr, the loss terms averaged over ranks (CPU, float64), timings."""

    lr: float
    terms: Tensor  # (len(LOSS_TERMS),)
    data_time: float
    stopping: bool  # a rank received SIGTERM / SIGINT: save and exit after this iteration


# --------------------------------------------------------------------------------------------
# The data, logs, checkpoints, evaluation


def batches(state: TrainState) -> Iterator[tuple[Tensor, Tensor]]:
    """This rank's endless stream of (images, labels) micro-batches from ``state.iteration`` on."""
    cfg = state.cfg
    sampler = StreamSampler(
        len(state.train_set),
        cfg.train.batch_size,
        world_size=get_world_size(),
        rank=get_rank(),
        accum=state.accum,
        seed=cfg.seed,
        start_iter=state.iteration,
    )
    loader = DataLoader(
        SeededSamples(state.train_set, cfg.seed),
        batch_size=state.micro,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        collate_fn=functools.partial(collate_pad, ignore_index=cfg.loss.ignore_index),
        pin_memory=state.device.type == "cuda",
        persistent_workers=cfg.train.num_workers > 0,
        generator=torch.Generator(),  # the global RNG is not touched by the loader (exact resume)
        drop_last=False,
    )
    return iter(loader)


@dataclass
class LogWindow:
    """Loss terms and timings summed over the iterations since the last line of ``log.jsonl``."""

    sums: Tensor = field(default_factory=lambda: torch.zeros(len(LOSS_TERMS), dtype=torch.float64))
    iters: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0

    def add(self, step: StepResult, seconds: float) -> None:
        self.sums += step.terms
        self.iters += 1
        self.seconds += seconds
        self.data_seconds += step.data_time


def log_window(state: TrainState, window: LogWindow, *, lr: float) -> LogWindow:
    """Append the window's means to ``log.jsonl`` (rank 0); returns a new, empty window."""
    n = window.iters
    record: dict[str, float | int] = {"iter": state.iteration}
    record.update({name: float(v) / n for name, v in zip(LOSS_TERMS, window.sums)})
    record.update(
        {
            "lr": lr,
            "time_per_iter": window.seconds / n,
            "data_time": window.data_seconds / n,
            **memory_mb(state.device),
            "eta_s": (state.cfg.train.iters - state.iteration) * window.seconds / n,
        }
    )
    if is_main_process():
        append_jsonl(state.out / "log.jsonl", record)
    return LogWindow()


def memory_mb(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"max_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    try:
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        return {"rss_mb": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20}
    except (OSError, ValueError):
        import resource

        return {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def save(state: TrainState) -> None:
    """Write ``ckpt_last.pt`` atomically (rank 0) with every rank's RNG states; all ranks wait.

    Raises:
        TrainingDiverged: (every rank) rank 0's model or optimiser state holds a NaN or an infinity;
            nothing is written.
    """
    rng = checkpoint.rng_state(state.generators)
    rngs: list[dict[str, Any]] = [rng]
    if is_distributed():
        rngs = [{}] * get_world_size()
        dist.all_gather_object(rngs, rng)
    bad: list[str] = []
    if is_main_process():
        cfg = state.cfg
        epoch, offset = divmod(state.iteration * cfg.train.batch_size, len(state.train_set))
        ckpt = {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "iter": state.iteration,
            "rng": rngs,
            "sampler": {
                "seed": cfg.seed,
                "epoch": epoch,
                "offset": offset,
                "position": state.iteration * cfg.train.batch_size,
            },
            "world_size": get_world_size(),
            "config": to_dict(cfg),
        }
        bad = checkpoint.nonfinite(ckpt)
    if is_distributed():
        box = [bad]
        dist.broadcast_object_list(box, src=0)
        bad = box[0]
    if bad:
        names = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        what = (
            f"the state after iteration {state.iteration} holds non-finite values ({names}); it was not saved"
        )
        raise diverged(state, what)
    if is_main_process():
        checkpoint.save_run_checkpoint(ckpt, state.out)
    state.good = (state.iteration, state.ckpt_path)
    if is_distributed():
        dist.barrier()


def maybe_evaluate(state: TrainState, *, only_if_missing: bool = False) -> None:
    """Every ``train.eval_every`` iterations (but the last: the final evaluation follows), append the
    validation mIoU / mAcc / aAcc to ``eval.jsonl``.

    ``only_if_missing``: at the start of a resumed run, evaluate the checkpoint's iteration only if
    its row is not in ``eval.jsonl`` (a kill between that checkpoint and its evaluation).
    """
    every, done = state.cfg.train.eval_every, state.iteration
    if not every or not done or done % every or done == state.cfg.train.iters:
        return
    if only_if_missing:
        have = [any(r.get("iter") == done for r in read_jsonl(state.out / "eval.jsonl"))]
        if is_distributed():  # rank 0's file decides for every rank (evaluate is collective)
            dist.broadcast_object_list(have, src=0)
        if have[0]:
            return
    sync_buffers(state.model)
    scores = evaluate(state.model, state.val_set, state.cfg, state.device).compute()
    if is_main_process():
        append_jsonl(
            state.out / "eval.jsonl", {"iter": done, **{k: scores[k] for k in ("mIoU", "mAcc", "aAcc")}}
        )


def final_evaluate(state: TrainState) -> None:
    """Evaluate on the validation split and write ``metrics.json`` (rank 0)."""
    cfg = state.cfg
    t0 = time.time()
    sync_buffers(state.model)
    cm = evaluate(state.model, state.val_set, cfg, state.device, progress=cfg.train.progress)
    record = metrics_record(
        cm,
        state.model,
        state.val_set,
        cfg,
        iters=cfg.train.iters,
        seconds=time.time() - state.start_time,
        device=state.device,
    )
    record["eval_seconds"] = time.time() - t0
    if is_main_process():
        write_json(record, state.out / "metrics.json")
        print(
            f"[cbp.train] {state.out}: mIoU {record['mIoU']:.2f}  mAcc {record['mAcc']:.2f}  "
            f"aAcc {record['aAcc']:.2f}",
            flush=True,
        )


def sync_buffers(model: nn.Module) -> None:
    """Broadcast rank 0's buffers (BatchNorm statistics, EMA prototypes) to every rank.

    DDP copies rank 0's buffers at the start of each forward, so the statistics updated by the last
    forward differ per rank; before evaluating (each rank scores a shard) all ranks take rank 0's.
    """
    if is_distributed():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def _progress_bar(state: TrainState) -> tqdm | None:
    """A tqdm bar on rank 0 when ``train.progress`` is on."""
    if not (is_main_process() and state.cfg.train.progress):
        return None
    return tqdm(
        total=state.cfg.train.iters,
        initial=state.iteration,
        desc="train",
        dynamic_ncols=True,
        mininterval=1.0,
    )


def exit_on_signal(state: TrainState, signum: int) -> NoReturn:
    """After the checkpoint of a stopped iteration: say how to resume and exit with 128 + signal."""
    name = signal.Signals(signum).name if signum else "signal"
    print(
        f"[cbp.train] stopped by {name} at iteration {state.iteration}; checkpoint saved to "
        f"{state.ckpt_path}. Re-run the same command to resume.",
        file=sys.stderr,
        flush=True,
    )
    raise SystemExit(128 + (signum or signal.SIGTERM))


@record  # torchrun: the entry point; the failing rank's cause reaches torchrun's summary
def cli(argv: list[str] | None = None) -> None:
    """The command line ``python -m cbp.train`` / ``torchrun -m cbp.train`` (the entry module :mod:`cbp.train`).

    A user's mistake is one line on stderr and an exit code (2 usage or config, 3 diverged, 4 data or
    file; see :mod:`cbp.engine.errors`); ``CBP_DEBUG=1`` adds the traceback.
    """
    argv = sys.argv[1:] if argv is None else argv
    run_cli("cbp.train", main, argv, codes={TrainingDiverged: EXIT_DIVERGED}, folder=out_folder(argv))


if __name__ == "__main__":
    cli()
