"""The training engine: ``python -m cbp.train`` or ``torchrun --nproc_per_node=K -m cbp.train``.

::

    python -m cbp.train --preset synthetic --out runs/syn [--section.key=value ...]
    torchrun --nproc_per_node=2 -m cbp.train --preset synthetic --out runs/syn2
    python -m cbp.train --config runs/syn/config.json --out runs/syn-b --seed=1   # a run's config as the base
    python -m cbp.train --list-presets | --help-keys [--preset NAME] | --print-config ...

A user's mistake is one line on stderr and an exit code: 2 usage or config, 3 diverged, 4 data or
file, 1 a bug (see :mod:`cbp.engine.errors`; ``CBP_DEBUG=1`` shows the traceback).

Loss (Eq. 7): ``CE(logits, y) + aux_weight CE(aux_logits, y) + OCCL (Eq. 6) + classifier.penalty()``,
each term switchable (``loss.ce``, ``model.aux_head``, ``loss.occl``, ``model.update=penalty``).
OCCL reads ``SegOutput.embedding`` and the classifier's prototypes; after every optimizer step
``classifier.after_step(category_centroids, present)`` applies the EMA / penalty prototype updates.

Run directory (``--out``), which only one process uses at a time (``.lock``, an ``flock`` the kernel
releases when the process ends; a second process stops at once, exit code 2, naming the holder's PID):

* ``config.json``: the resolved config, written once the set-up (data, model, pretrained weights,
  checkpoint, optimiser) has succeeded, so a failed set-up writes nothing and never blocks the
  corrected command. Running again in the same directory resumes from the checkpoint with the same
  config, except for run-time keys that cannot change the weights (:data:`RUN_TIME_KEYS`: data.root,
  num_workers, progress, log/ckpt/eval intervals, device) and :data:`RECOVERY_KEYS`: ``train.iters``
  may grow (the poly schedule is then recomputed for the new length from the resumed iteration on),
  never below the checkpoint; ``optim.lr``, ``optim.grad_clip`` and ``train.amp`` may change to
  recover from a divergence. Each change is printed and appended to ``changes.jsonl``.
* ``log.jsonl``: one JSON object per logged step (loss terms averaged over ranks, lr, timing, memory).
* ``ckpt_last.pt``: written atomically (mode 0644) every ``train.ckpt_every`` iterations, on SIGTERM /
  SIGINT and at the end: model, optimizer, AMP scaler, iteration, every rank's RNG states, sampler
  position, config; only a finite state is written (:func:`cbp.engine.checkpoint.nonfinite`). The
  checkpoint it replaces stays as ``ckpt_prev.pt``; an unreadable or non-finite ``ckpt_last.pt``
  falls back to it with a warning.
* ``metrics.json``: validation metrics at the end (see :mod:`cbp.engine.evaluate`); ``eval.jsonl`` for
  ``train.eval_every``.

Every start cuts ``log.jsonl`` and ``eval.jsonl`` back to the checkpoint's iteration (to empty
without one; a partial last line is dropped with a warning) and removes the temporary files a
killed process left, so that after any kill each iteration appears once in each log.

Exact resume: the learning rate is a function of the iteration; the data order is an endless
stream of ``(seed, epoch)`` permutations indexed by the iteration (:mod:`cbp.engine.sampler`); augmentation
randomness is seeded per sample; the RNG states of every rank are restored. On CPU a resumed run
ends with the same weights, bit for bit, as an uninterrupted one.

A non-finite loss stops the run with a message naming the iteration and the loss terms; no step is
taken. A state to be saved that holds a NaN or an infinity in a parameter, a buffer (BatchNorm's
running statistics) or the optimiser's state stops it the same way, unsaved. Either way
``ckpt_last.pt`` keeps the last good state (or, before the first checkpoint, there is none, and the
message says so), and the advised re-run resumes from it (exit code 3).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import math
import os
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cbp.data.transforms import collate_pad
from cbp.distributed import get_rank, get_world_size, is_distributed, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import (
    build_model,
    build_occl,
    build_split,
    check_inputs,
    ensure_data,
    test_transform,
    train_transform,
)
from cbp.engine.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    diff,
    format_keys,
    from_dict,
    get_preset,
    read_config_file,
    to_dict,
)
from cbp.engine.errors import EXIT_DIVERGED, OneLineParser, out_folder, run_cli
from cbp.engine.evaluate import evaluate, metrics_record
from cbp.engine.optim import build_optimizer, set_lr
from cbp.engine.process import rank_seed, seed_everything, setup_distributed
from cbp.engine.run_files import LOCK_NAME
from cbp.engine.sampler import SeededSamples, StreamSampler
from cbp.io import append_jsonl, read_json, read_jsonl, write_json
from cbp.losses import OCCL, assign_views, centroids_from_sums, resize_labels, view_centroids
from cbp.models import SegOutput

LOSS_TERMS = ("loss", "ce", "aux", "centroid", "category", "penalty")


class TrainingDiverged(RuntimeError):
    """The loss or the state to be saved became NaN / inf; the last good checkpoint is kept."""


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> tuple[Config, Path]:
    """``--preset NAME | --config FILE, --out RUN_DIR [--section.key=value ...]`` -> (config, run directory).

    Raises:
        ConfigError: an unknown preset or key, a bad value (the message names the key and a fix).
        FileNotFoundError: ``--config FILE`` does not exist.
        SystemExit: ``--help``, ``--list-presets``, ``--help-keys``, ``--print-config`` (0) or a bad
            option (2, one line).
    """
    parser = OneLineParser(
        prog="python -m cbp.train",
        description="Train a segmentation model with CBP / OCCL. Any config key is an override: "
        "--section.key=value (see --help-keys). Exit codes: 0 done, 1 bug, 2 usage or config, 3 diverged, "
        "4 data or file, 5 (torchrun) a rank lost its peer process.",
    )
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--preset", default=None, help="preset name (see --list-presets); default synthetic")
    base.add_argument(
        "--config",
        type=Path,
        default=None,
        help="base config from a file instead of a preset, e.g. a run's config.json; overrides apply on top",
    )
    parser.add_argument("--out", type=Path, help="run directory (created; re-running resumes)")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument(
        "--help-keys", action="store_true", help="print every config key of the preset and exit"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON and exit (checks the command line; reads no data)",
    )
    args, overrides = parser.parse_known_args(argv)
    if args.list_presets:
        print("\n".join(f"{k:32s} {v.__doc__ or ''}" for k, v in PRESETS.items()))
        raise SystemExit(0)
    if args.config is not None:
        cfg = read_config_file(args.config)
    else:
        try:
            cfg = get_preset(args.preset or "synthetic")
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
    if args.help_keys:
        print(format_keys(cfg))
        raise SystemExit(0)
    apply_overrides(cfg, overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=1))
        raise SystemExit(0)
    if args.out is None:
        parser.error("--out RUN_DIR is required (the run directory for config.json, logs and checkpoints)")
    return cfg, args.out


# --------------------------------------------------------------------------------------------
# Set-up


def batch_split(cfg: Config, world: int) -> tuple[int, int]:
    """(images per device and forward pass, accumulation steps) that keep ``train.batch_size`` in total."""
    total = cfg.train.batch_size
    if cfg.train.grad_accum > 0:
        accum = cfg.train.grad_accum
    elif cfg.train.device_batch > 0 and world * cfg.train.device_batch < total:
        if total % (world * cfg.train.device_batch):
            raise ConfigError(
                f"train.batch_size={total} is not a multiple of world_size x train.device_batch = "
                f"{world} x {cfg.train.device_batch}; set --train.grad_accum or --train.device_batch"
            )
        accum = total // (world * cfg.train.device_batch)
    else:
        accum = 1
    if total % (world * accum):
        raise ConfigError(
            f"train.batch_size={total} is not divisible by world_size x grad_accum = {world} x {accum}; "
            "change --train.batch_size, --train.grad_accum or the number of processes"
        )
    micro = total // (world * accum)
    if cfg.loss.occl and cfg.loss.views in ("batch", "global") and (micro < 2 or micro % 2):
        raise ConfigError(
            f"OCCL views={cfg.loss.views!r} splits each forward batch in two halves, but each device gets "
            f"{micro} image(s) per forward pass (batch {total} / world {world} / accum {accum}); use an "
            "even per-device batch >= 2 (--train.grad_accum / --train.device_batch) or --loss.views=random"
        )
    return micro, accum


class RunLocked(ConfigError):
    """Another process is training in the run directory (exit code 2, like any usage error)."""


@contextlib.contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``out/.lock`` (rank 0) while this process uses the run directory.

    The kernel releases the lock when the process ends, however it ends, so the file left by a
    crashed run never blocks the next one. When another process holds it, every rank raises
    :class:`RunLocked` naming the holder's PID, before anything is built. When this process created
    ``out`` and fails before writing anything into it (a failed set-up), ``out`` is removed again.
    """
    created = not out.exists()
    fd, holder = try_lock_run_dir(out) if is_main_process() else (None, "")
    if is_distributed():
        box = [holder]
        dist.broadcast_object_list(box, src=0)
        holder = box[0]
    if holder:
        raise RunLocked(
            f"{out} is in use: process {holder} is training this run. Wait for it to finish, or stop it "
            f"(kill {holder}: it saves a checkpoint, and the same command resumes), or use another --out"
        )
    try:
        yield
    except BaseException:
        if created and fd is not None and {p.name for p in out.iterdir()} == {LOCK_NAME}:
            with contextlib.suppress(OSError):  # the set-up's error is the one to report, not this
                (out / LOCK_NAME).unlink()
                out.rmdir()
        raise
    finally:
        if fd is not None:
            os.close(fd)


def try_lock_run_dir(out: Path) -> tuple[int | None, str]:
    """Take the run folder's exclusive lock without waiting (creating the folder if needed).

    Returns (open locked file descriptor, "") or (None, the holder's PID as its lock file says); the
    lock lasts until the descriptor is closed or the process ends.
    """
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        for _ in range(20):  # the holder writes its PID just after taking the lock
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            if holder:
                break
            time.sleep(0.05)
        os.close(fd)
        return None, holder or "(unknown PID)"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, ""


RUN_TIME_KEYS = frozenset(
    {
        "data.root",
        "train.num_workers",
        "train.progress",
        "train.log_every",
        "train.ckpt_every",
        "train.eval_every",
        "train.device",
    }
)
"""Keys that a resume may change because they cannot change the trained weights (where the data are
staged, how fast and how verbosely the run goes)."""

RECOVERY_KEYS = frozenset({"train.iters", "optim.lr", "optim.grad_clip", "train.amp"})
"""Keys that a resume may change although they change the run from the resumed iteration on. They are a
longer run (``train.iters`` may grow, never below the checkpoint) and the remedies for a divergence
that the non-finite-loss message advises (a lower lr, clipping, another AMP mode)."""


def check_resume_config(cfg: Config, out: Path) -> dict[str, tuple[Any, Any]]:
    """Compare ``cfg`` with the ``config.json`` of a run in ``out``; the differences, key -> (old, new).

    Raises:
        ConfigError: a key outside :data:`RUN_TIME_KEYS` and :data:`RECOVERY_KEYS` differs (resuming
            would mix two experiments).
    """
    path = out / "config.json"
    if not path.is_file():
        return {}
    changed = diff(from_dict(read_json(path)), cfg)
    refused = {k: v for k, v in changed.items() if k not in RUN_TIME_KEYS | RECOVERY_KEYS}
    if refused:
        lines = "\n".join(f"  {k}: {a!r} (in config.json) -> {b!r} (now)" for k, (a, b) in refused.items())
        raise ConfigError(
            f"{out} holds a run with a different config; re-running there resumes it, so only run-time keys "
            f"({', '.join(sorted(RUN_TIME_KEYS))}) and {', '.join(sorted(RECOVERY_KEYS))} may change. "
            f"Differences:\n{lines}\nUse a new --out directory for a different experiment."
        )
    return changed


def open_run_dir(state: TrainState, changed: dict[str, tuple[Any, Any]]) -> None:
    """After a successful set-up (rank 0): remove stale temporary files, cut ``log.jsonl`` and
    ``eval.jsonl`` back to the resumed iteration, write ``config.json``, report config changes."""
    if not is_main_process():
        return
    out = state.out
    for tmp in out.glob(".*.tmp"):  # left by a process killed while writing (we hold the lock)
        tmp.unlink(missing_ok=True)
    for name in RUN_LOGS:  # to the checkpoint's iteration, to empty without one
        cut_log(out / name, state.iteration)
    if changed:
        what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
        print(f"[cbp.train] resuming at iteration {state.iteration} with changed keys: {what}", flush=True)
        append_jsonl(out / "changes.jsonl", {"iter": state.iteration, "changed": changed})
    write_json(to_dict(state.cfg), out / "config.json")


# --------------------------------------------------------------------------------------------
# Loss (Eq. 7)


def compute_loss(
    model: nn.Module, out: SegOutput, labels: Tensor, cfg: Config, occl: OCCL | None
) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor] | None]:
    """Total loss and its detached terms for one forward pass.

    Args:
        model: the unwrapped Segmentor (for ``.classifier``).
        out: ``SegOutput`` with ``logits`` (B, N, H, W) (input or decoder resolution), ``embedding``
            (B, C, h, w), ``aux_logits`` (B, N, h', w') or None.
        labels: (B, H, W) int64 at input resolution.
    """
    lc = cfg.loss
    zero = out.embedding.new_zeros((), dtype=torch.float32)
    terms = {k: zero for k in LOSS_TERMS}
    total = zero
    if lc.ce_resolution == "feature":
        target = resize_labels(labels, tuple(out.logits.shape[-2:]))  # (B, h, w), nearest
    else:
        target = labels
    if lc.ce:
        logits = out.logits
        if tuple(logits.shape[-2:]) != tuple(target.shape[-2:]):
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        ce = F.cross_entropy(logits.float(), target, ignore_index=lc.ignore_index)
        terms["ce"] = ce
        total = total + ce
        if out.aux_logits is not None:
            aux_logits = F.interpolate(
                out.aux_logits, size=target.shape[-2:], mode="bilinear", align_corners=False
            )
            aux = F.cross_entropy(aux_logits.float(), target, ignore_index=lc.ignore_index)
            terms["aux"] = aux
            total = total + lc.aux_weight * aux
    occl_out = None
    if occl is not None:
        occl_out = occl(out.embedding, labels, model.classifier.prototypes)
        terms["centroid"], terms["category"] = occl_out["centroid"], occl_out["category"]
        total = total + occl_out["loss"]
    penalty = model.classifier.penalty()
    if penalty.requires_grad:
        terms["penalty"] = penalty
        total = total + penalty
    terms["loss"] = total
    return total, {k: v.detach().float() for k, v in terms.items()}, occl_out


def batch_centroids(
    embedding: Tensor, labels: Tensor, num_classes: int, cfg: Config
) -> tuple[Tensor, Tensor]:
    """Category centroids (N, C) and presence (N,) of a batch, for the EMA update when OCCL is off."""
    labels = resize_labels(labels, tuple(embedding.shape[-2:]))  # (B, h, w)
    views = "random" if embedding.shape[0] < 2 or embedding.shape[0] % 2 else "batch"
    view = assign_views(labels, views, ignore_index=cfg.loss.ignore_index)
    sums, counts = view_centroids(
        embedding.detach(), labels, view, num_classes, ignore_index=cfg.loss.ignore_index
    )
    c = centroids_from_sums(sums, counts)
    return c.category_centroids, c.present


def sync_buffers(model: nn.Module) -> None:
    """Broadcast rank 0's buffers (BatchNorm statistics, EMA prototypes) to every rank.

    DDP copies rank 0's buffers at the start of each forward, so the statistics updated by the last
    forward differ per rank; before evaluating (each rank scores a shard) all ranks take rank 0's.
    """
    if is_distributed():
        for b in model.buffers():
            dist.broadcast(b, src=0)


def average_centroids(centroids: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """Average category centroids over ranks (each rank weighted by presence), so EMA prototypes stay identical."""
    if not is_distributed():
        return centroids, present
    w = present.to(centroids.dtype)  # (N,)
    packed = torch.cat([centroids * w[:, None], w[:, None]], dim=1)  # (N, C + 1)
    dist.all_reduce(packed)
    count = packed[:, -1]  # (N,)
    return packed[:, :-1] / count.clamp(min=1.0)[:, None], count > 0


# --------------------------------------------------------------------------------------------
# Signals


class StopFlag:
    """SIGTERM / SIGINT set a flag; the loop saves a checkpoint at the end of the iteration and exits.

    A second signal exits at once.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt(
                f"second signal {signal.Signals(signum).name}: exiting without a checkpoint"
            )
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------------------------
# Logging helpers


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


RUN_LOGS = ("log.jsonl", "eval.jsonl")


def cut_log(path: Path, iteration: int) -> None:
    """Keep the records of the JSON-lines log ``path`` up to ``iteration`` (rewritten atomically).

    A run killed after a log line but before its next checkpoint wrote lines the resumed run writes
    again; a run killed mid-write (or out of disk) left a partial line. Both are dropped, the
    partial one with a warning that names the file.
    """
    if not path.is_file():
        return
    text = path.read_text()
    keep, bad = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            bad.append(number)
        elif record.get("iter", 0) <= iteration:
            keep.append(line + "\n")
    if bad:
        warnings.warn(
            f"{path}: dropped {len(bad)} partial or unreadable line(s) (line {', '.join(map(str, bad))}), "
            "left by a run that was killed or ran out of disk while writing",
            stacklevel=2,
        )
    if "".join(keep) != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text("".join(keep))
        os.chmod(tmp, 0o644)
        tmp.replace(path)


# --------------------------------------------------------------------------------------------
# State and set-up


@dataclass
class TrainState:
    """What the loop reads and changes: the model (and its DDP wrapper), optimiser, scaler, iteration.

    ``iteration`` counts the optimiser steps taken; ``resumed_from`` is the iteration this process
    started at (the checkpoint's, or 0); ``good`` is the last good checkpoint, (its iteration, its
    file), which a re-run resumes from (None: none yet). The data stream is a function of the
    iteration (:class:`cbp.engine.sampler.StreamSampler`), so it needs no state of its own.
    """

    cfg: Config
    out: Path
    device: torch.device
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    occl: OCCL | None
    generators: dict[str, torch.Generator]
    train_set: Dataset
    val_set: Dataset
    micro: int
    accum: int
    amp: str
    iteration: int = 0
    resumed_from: int = 0
    good: tuple[int, Path] | None = None
    start_time: float = field(default_factory=time.time)

    @property
    def ckpt_path(self) -> Path:
        return self.out / checkpoint.CKPT_NAME


def configure_backends(cfg: Config, device: torch.device) -> str:
    """Determinism switches; returns the AMP mode actually used (``fp16`` falls back to ``none`` on CPU,
    which has no float16 autocast worth having; ``bf16`` runs on CPU as on CUDA)."""
    if device.type == "cpu" and cfg.train.amp == "fp16":
        warnings.warn(
            "train.amp=fp16 is for CUDA; training in float32 on CPU (bf16 works on CPU)", stacklevel=1
        )
    if cfg.train.deterministic:
        torch.backends.cudnn.benchmark = False
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True
    return cfg.train.amp if device.type == "cuda" or cfg.train.amp == "bf16" else "none"


def build_model_and_optimizer(
    cfg: Config, device: torch.device, num_classes: int
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model (same init on every rank; DDP also broadcasts rank 0's) and its optimiser."""
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    if cfg.train.sync_bn and is_distributed():
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif is_main_process():
            warnings.warn("train.sync_bn needs CUDA; keeping per-rank BatchNorm on CPU", stacklevel=1)
    optimizer = build_optimizer(model, cfg.optim)
    buffers = {id(b) for b in model.buffers()}
    assert not any(id(p) in buffers for g in optimizer.param_groups for p in g["params"]), (
        "a buffer (frozen prototypes) reached the optimizer"
    )
    if cfg.model.classifier == "cbp" and cfg.model.update in ("frozen", "ema"):
        proto = model.classifier.prototypes
        assert not any(p is proto for g in optimizer.param_groups for p in g["params"]), (
            "the frozen prototypes must never be optimised"
        )
    return model, optimizer


def build_state(cfg: Config, out: Path, device: torch.device) -> TrainState:
    """Data, model, optimiser, scaler and OCCL of a fresh run (iteration 0); writes nothing."""
    micro, accum = batch_split(cfg, get_world_size())
    amp = configure_backends(cfg, device)
    ensure_data(cfg)
    train_set = build_split(cfg, "train", train_transform(cfg))
    val_set = build_split(cfg, "val", test_transform(cfg))
    model, optimizer = build_model_and_optimizer(cfg, device, train_set.num_classes)
    occl = build_occl(cfg, seed=rank_seed(cfg.seed, get_rank()))
    return TrainState(
        cfg=cfg,
        out=out,
        device=device,
        model=model,
        ddp_model=model,
        optimizer=optimizer,
        scaler=torch.amp.GradScaler("cuda") if amp == "fp16" else None,
        occl=occl,
        generators={"occl": occl.generator} if occl is not None else {},
        train_set=train_set,
        val_set=val_set,
        micro=micro,
        accum=accum,
        amp=amp,
    )


def resume(state: TrainState) -> None:
    """Load the run's latest readable checkpoint (when there is one), then restore or seed the RNGs."""
    rank, world = get_rank(), get_world_size()
    resumed_rng = None
    latest = checkpoint.load_latest(state.out, map_location="cpu", set_aside=True)
    if latest is not None:
        ckpt, path = latest
        hint = (
            f"does data.root ({state.cfg.data.root}) hold the run's data set (the same classes)? Pass the "
            "run's data.root, or train this config in a new --out"
        )
        checkpoint.load_model_state(state.model, ckpt, path, hint=hint)
        load_optimizer_state(state.optimizer, ckpt["optimizer"])
        if state.scaler is not None and ckpt.get("scaler"):
            state.scaler.load_state_dict(ckpt["scaler"])
        state.iteration = state.resumed_from = int(ckpt["iter"])
        state.good = (state.iteration, path)
        if state.cfg.train.iters < state.iteration:
            raise ConfigError(
                f"train.iters={state.cfg.train.iters} is below the iteration of {path} ({state.iteration}): a run "
                f"cannot be shortened; pass --train.iters={state.iteration} or more, or use a new --out"
            )
        if ckpt.get("world_size") == world and len(ckpt.get("rng", [])) == world:
            resumed_rng = ckpt["rng"][rank]
        elif is_main_process():
            warnings.warn(
                f"resuming with world_size {world} from a checkpoint of world_size {ckpt.get('world_size')}: "
                "the data stream continues exactly but the per-rank RNG states are re-seeded (not bit-exact)",
                stacklevel=1,
            )
        if is_main_process():
            print(
                f"[cbp.train] resuming {state.out} from iteration {state.iteration} ({path.name})", flush=True
            )
    if resumed_rng is not None:
        checkpoint.set_rng_state(resumed_rng, state.generators)
    else:
        seed_everything(rank_seed(state.cfg.seed, rank) + state.iteration)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Load a checkpoint's optimiser state but keep each group's ``base_lr`` from the current config,
    so that a resume with another ``optim.lr`` trains with it (the schedule scales ``base_lr``)."""
    base_lrs = [g["base_lr"] for g in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, base_lr in zip(optimizer.param_groups, base_lrs):
        group["base_lr"] = base_lr


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel(model)`` under torchrun, else the model itself."""
    if not is_distributed():
        return model
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


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


# --------------------------------------------------------------------------------------------
# One iteration


@dataclass
class StepResult:
    """What one iteration reports: its lr, the loss terms averaged over ranks (CPU, float64), timings."""

    lr: float
    terms: Tensor  # (len(LOSS_TERMS),)
    data_time: float
    stopping: bool  # a rank received SIGTERM / SIGINT: save and exit after this iteration


def forward_backward(
    state: TrainState, images: Tensor, labels: Tensor, *, sync: bool
) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Forward, loss (Eq. 7) and backward of one micro-batch, the loss scaled by 1 / accum.

    Returns the detached loss terms (len(LOSS_TERMS),) and, for EMA prototypes, the batch's
    category centroids (N, C) and presence (N,). ``sync=False`` skips DDP's gradient all-reduce
    (all accumulation steps but the last).
    """
    cfg, model = state.cfg, state.model
    no_sync = isinstance(state.ddp_model, DDP) and not sync
    with state.ddp_model.no_sync() if no_sync else contextlib.nullcontext():
        with _autocast(state.amp, state.device.type):
            out = state.ddp_model(images, upsample=cfg.loss.ce_resolution == "input")
        loss, terms, occl_out = compute_loss(model, out, labels, cfg, state.occl)
        embedding = out.embedding if ema_prototypes(cfg) and occl_out is None else None  # (B, C, h, w)
        del out  # backward needs the logits' log-softmax, not the logits: free the (B, N, H, W) map first
        loss = loss / state.accum
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
        else:
            loss.backward()
    stacked = torch.stack([terms[t] for t in LOSS_TERMS]).double()
    if not ema_prototypes(cfg):
        return stacked, None
    if occl_out is not None:
        return stacked, (occl_out["category_centroids"], occl_out["present"])
    return stacked, batch_centroids(embedding.float(), labels, state.val_set.num_classes, cfg)


def train_step(state: TrainState, data: Iterator[tuple[Tensor, Tensor]], stop: StopFlag) -> StepResult:
    """One iteration: ``accum`` micro-batches, one all-reduce of the flags, the optimiser step, the
    prototype update. Raises :class:`TrainingDiverged` (no step taken) on a non-finite loss."""
    cfg, device = state.cfg, state.device
    lr = set_lr(state.optimizer, state.iteration, cfg.train.iters, cfg.optim)
    state.optimizer.zero_grad(set_to_none=True)
    terms = torch.zeros(len(LOSS_TERMS), dtype=torch.float64, device=device)
    centroids: list[tuple[Tensor, Tensor]] = []
    data_time = 0.0
    for k in range(state.accum):
        t_data = time.perf_counter()
        images, labels = next(data)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        data_time += time.perf_counter() - t_data
        step_terms, step_centroids = forward_backward(state, images, labels, sync=k == state.accum - 1)
        terms += step_terms / state.accum
        if step_centroids is not None:
            centroids.append(step_centroids)
    mean_terms, nonfinite, stopping = reduce_step(terms, stop=stop, device=device)
    if nonfinite:
        desc = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(LOSS_TERMS, mean_terms))
        raise diverged(
            state, f"non-finite loss at iteration {state.iteration + 1} ({desc}); no step was taken"
        )
    optimizer_step(state)
    update_prototypes(state, centroids)
    return StepResult(lr=lr, terms=mean_terms, data_time=data_time, stopping=stopping)


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


def ema_prototypes(cfg: Config) -> bool:
    """Whether the classifier's prototypes follow the category centroids (CBP with ``update=ema``)."""
    return cfg.model.classifier == "cbp" and cfg.model.update == "ema"


def accumulated_centroids(centroids: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Presence-weighted mean over accumulation steps of (centroids (N, C), present (N,)) pairs."""
    cc = torch.stack([c for c, _ in centroids]).float()  # (A, N, C)
    pr = torch.stack([p for _, p in centroids]).float()  # (A, N)
    mean = (cc * pr[..., None]).sum(0) / pr.sum(0).clamp(min=1)[:, None]  # (N, C)
    return mean, pr.sum(0) > 0


def update_prototypes(state: TrainState, centroids: list[tuple[Tensor, Tensor]]) -> None:
    """The classifier's update after the optimiser step (EMA of the centroids averaged over ranks)."""
    if not ema_prototypes(state.cfg):
        state.model.classifier.after_step()
        return
    mean, present = average_centroids(*accumulated_centroids(centroids))
    state.model.classifier.after_step(mean, present)


def _autocast(amp: str, device_type: str = "cuda") -> contextlib.AbstractContextManager:
    """Autocast of the forward pass for ``bf16`` (CUDA or CPU) / ``fp16`` (CUDA), nothing for ``none``."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


# --------------------------------------------------------------------------------------------
# Logging, checkpoints, evaluation


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


# --------------------------------------------------------------------------------------------
# The loop


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
        open_run_dir(state, changed)
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
