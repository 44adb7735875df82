"""The training engine: ``python -m cbp.train`` or ``torchrun --nproc_per_node=K -m cbp.train``.

::

    python -m cbp.train --preset synthetic --out runs/syn [--section.key=value ...]
    torchrun --nproc_per_node=2 -m cbp.train --preset synthetic --out runs/syn2
    python -m cbp.train --list-presets | --help-keys [--preset NAME]

Loss (Eq. 7): ``CE(logits, y) + aux_weight CE(aux_logits, y) + OCCL (Eq. 6) + classifier.penalty()``,
each term switchable (``loss.ce``, ``model.aux_head``, ``loss.occl``, ``model.update=penalty``).
OCCL reads ``SegOutput.embedding`` and the classifier's prototypes; after every optimizer step
``classifier.after_step(category_centroids, present)`` applies the EMA / penalty prototype updates.

Run directory:

* ``config.json``: the resolved config. Running again in the same directory resumes from
  ``ckpt_last.pt`` and must use the same config; only ``train.iters`` may change (to extend a run;
  the poly schedule is then recomputed for the new length from the resumed iteration on).
* ``log.jsonl``: one JSON object per logged step (loss terms averaged over ranks, lr, timing, memory).
* ``ckpt_last.pt``: written atomically every ``train.ckpt_every`` iterations, on SIGTERM / SIGINT and at
  the end: model, optimizer, AMP scaler, iteration, every rank's RNG states, sampler position, config.
* ``metrics.json``: validation metrics at the end (see :mod:`cbp.engine.evaluate`); ``eval.jsonl`` for
  ``train.eval_every``.

Exact resume: the learning rate is a function of the iteration; the data order is an endless
stream of ``(seed, epoch)`` permutations indexed by the iteration (:mod:`cbp.engine.sampler`); augmentation
randomness is seeded per sample; the RNG states of every rank are restored. On CPU a resumed run
ends with the same weights, bit for bit, as an uninterrupted one.

A non-finite loss stops the run with a message naming the iteration and the loss terms; no step is
taken and ``ckpt_last.pt`` keeps the last good state.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from cbp.data.transforms import collate_pad
from cbp.distributed import get_rank, get_world_size, is_distributed, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import (
    build_model,
    build_occl,
    build_split,
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
    to_dict,
)
from cbp.engine.evaluate import evaluate, metrics_record, write_json
from cbp.engine.optim import build_optimizer, set_lr
from cbp.engine.process import rank_seed, seed_everything, setup_distributed
from cbp.engine.sampler import SeededSamples, StreamSampler
from cbp.losses import OCCL, assign_views, centroids_from_sums, resize_labels, view_centroids

LOSS_TERMS = ("loss", "ce", "aux", "centroid", "category", "penalty")


class TrainingDiverged(RuntimeError):
    """The loss became NaN / inf; the last good checkpoint is kept."""


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None) -> tuple[Config, Path]:
    """``--preset NAME --out RUN_DIR [--section.key=value ...]`` -> (config, run directory)."""
    parser = argparse.ArgumentParser(
        prog="python -m cbp.train",
        description="Train a segmentation model with CBP / OCCL. Any config key is an override: "
        "--section.key=value (see --help-keys).",
    )
    parser.add_argument(
        "--preset", default="synthetic", help="preset name (see --list-presets); default synthetic"
    )
    parser.add_argument("--out", type=Path, help="run directory (created; re-running resumes)")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument(
        "--help-keys", action="store_true", help="print every config key of the preset and exit"
    )
    args, overrides = parser.parse_known_args(argv)
    if args.list_presets:
        print("\n".join(f"{k:32s} {v.__doc__ or ''}" for k, v in PRESETS.items()))
        raise SystemExit(0)
    try:
        cfg = get_preset(args.preset)
    except KeyError as e:
        parser.error(e.args[0])
    if args.help_keys:
        print(format_keys(cfg))
        raise SystemExit(0)
    try:
        apply_overrides(cfg, overrides)
    except ConfigError as e:
        parser.error(str(e))
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


def prepare_run_dir(cfg: Config, out: Path) -> bool:
    """Create ``out`` and write ``config.json``; on an existing run check it is the same config.

    Returns:
        True when the run directory already had a config (a resume).
    """
    path = out / "config.json"
    resuming = path.is_file()
    if resuming:
        old = from_dict(json.loads(path.read_text()))
        changed = diff(old, cfg)
        if set(changed) - {"train.iters"}:
            lines = "\n".join(
                f"  {k}: {a!r} (in config.json) -> {b!r} (now)"
                for k, a, b in ((k, *v) for k, v in changed.items())
            )
            raise ConfigError(
                f"{out} holds a run with a different config; re-running there resumes it, so the config must "
                f"be the same (only --train.iters may change, to extend the run). Differences:\n{lines}\n"
                "Use a new --out directory for a different experiment."
            )
        if "train.iters" in changed and is_main_process():
            print(
                f"[cbp.train] extending the run: train.iters {changed['train.iters'][0]} -> {cfg.train.iters} "
                "(the poly schedule is recomputed for the new length)",
                flush=True,
            )
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        write_json(to_dict(cfg), path)
    return resuming


# --------------------------------------------------------------------------------------------
# Loss (Eq. 7)


def compute_loss(
    model: nn.Module, out: Any, labels: Tensor, cfg: Config, occl: OCCL | None
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


def truncate_log(path: Path, last_iter: int) -> None:
    """Drop log lines past ``last_iter`` (written after the checkpoint a resume starts from)."""
    if not path.is_file():
        return
    keep = [
        line
        for line in path.read_text().splitlines()
        if line.strip() and json.loads(line).get("iter", 0) <= last_iter
    ]
    path.write_text("".join(line + "\n" for line in keep))


# --------------------------------------------------------------------------------------------
# The loop


def main(argv: list[str] | None = None) -> Path:
    """Train (or resume) the run described by ``argv``; returns the run directory."""
    cfg, out = parse_args(argv)
    device = setup_distributed(cfg)
    try:
        return _train(cfg, out, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: Config, out: Path, device: torch.device) -> Path:

    rank, world = get_rank(), get_world_size()
    main_proc = is_main_process()
    micro, accum = batch_split(cfg, world)
    prepare_run_dir(cfg, out)
    if is_distributed():
        dist.barrier()
    if device.type == "cpu" and cfg.train.amp != "none":
        warnings.warn(f"train.amp={cfg.train.amp} is for CUDA; training in float32 on CPU", stacklevel=1)
    amp = cfg.train.amp if device.type == "cuda" else "none"
    if cfg.train.deterministic:
        torch.backends.cudnn.benchmark = False
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True

    # data
    ensure_data(cfg)
    train_set = build_split(cfg, "train", train_transform(cfg))
    val_set = build_split(cfg, "val", test_transform(cfg))
    num_classes = train_set.num_classes

    # model (same init on every rank; DDP also broadcasts rank 0's)
    seed_everything(cfg.seed)
    model = build_model(cfg, num_classes).to(device)
    if cfg.train.sync_bn and is_distributed():
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif main_proc:
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
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    occl = build_occl(cfg, seed=rank_seed(cfg.seed, rank))
    generators = {"occl": occl.generator} if occl is not None else {}

    # resume
    start_iter = 0
    ckpt_path = out / checkpoint.CKPT_NAME
    resumed_rng = None
    if ckpt_path.is_file():
        ckpt = checkpoint.load(ckpt_path, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_iter = int(ckpt["iter"])
        if ckpt.get("world_size") == world and len(ckpt.get("rng", [])) == world:
            resumed_rng = ckpt["rng"][rank]
        elif main_proc:
            warnings.warn(
                f"resuming with world_size {world} from a checkpoint of world_size {ckpt.get('world_size')}: the data "
                "stream continues exactly but the per-rank RNG states are re-seeded (not bit-exact)",
                stacklevel=1,
            )
        if main_proc:
            print(f"[cbp.train] resuming {out} from iteration {start_iter}", flush=True)
            truncate_log(out / "log.jsonl", start_iter)
        del ckpt
    model.to(device)

    ddp_model: nn.Module = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if is_distributed()
        else model
    )

    sampler = StreamSampler(
        len(train_set),
        cfg.train.batch_size,
        world_size=world,
        rank=rank,
        accum=accum,
        seed=cfg.seed,
        start_iter=start_iter,
    )

    loader = DataLoader(
        SeededSamples(train_set, cfg.seed),
        batch_size=micro,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        collate_fn=functools.partial(collate_pad, ignore_index=cfg.loss.ignore_index),
        pin_memory=device.type == "cuda",
        persistent_workers=cfg.train.num_workers > 0,
        generator=torch.Generator(),  # the global RNG is not touched by the loader (exact resume)
        drop_last=False,
    )

    def save(iteration: int) -> None:
        rng = checkpoint.rng_state(generators)
        rngs: list[Any] = [None] * world
        if is_distributed():
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        if main_proc:
            epoch, offset = sampler.position(iteration)
            checkpoint.save_atomic(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "iter": iteration,
                    "rng": rngs,
                    "sampler": {
                        "seed": cfg.seed,
                        "epoch": epoch,
                        "offset": offset,
                        "position": iteration * cfg.train.batch_size,
                    },
                    "world_size": world,
                    "config": to_dict(cfg),
                },
                ckpt_path,
            )
        if is_distributed():
            dist.barrier()

    total_iters = cfg.train.iters
    # RNG: per-rank seeds, or the states saved in the checkpoint
    if resumed_rng is not None:
        checkpoint.set_rng_state(resumed_rng, generators)
    else:
        seed_everything(rank_seed(cfg.seed, rank) + start_iter)

    log_path = out / "log.jsonl"
    start_time = time.time()
    if start_iter >= total_iters:
        if main_proc:
            print(
                f"[cbp.train] {out} is already trained to {start_iter} >= train.iters={total_iters}",
                flush=True,
            )
    else:
        _loop(
            cfg,
            out,
            device,
            ddp_model,
            model,
            optimizer,
            scaler,
            occl,
            loader,
            save,
            start_iter,
            total_iters,
            accum,
            amp,
            val_set,
            log_path,
        )

    # final evaluation
    metrics_path = out / "metrics.json"
    if start_iter >= total_iters and metrics_path.is_file():
        return out
    t0 = time.time()
    sync_buffers(model)
    cm = evaluate(model, val_set, cfg, device, progress=cfg.train.progress)
    record = metrics_record(
        cm, model, val_set, cfg, iters=total_iters, seconds=time.time() - start_time, device=device
    )
    record["eval_seconds"] = time.time() - t0
    if main_proc:
        write_json(record, metrics_path)
        print(
            f"[cbp.train] {out}: mIoU {record['mIoU']:.2f}  mAcc {record['mAcc']:.2f}  aAcc {record['aAcc']:.2f}",
            flush=True,
        )
    return out


def _loop(
    cfg: Config,
    out: Path,
    device: torch.device,
    ddp_model: nn.Module,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    occl: OCCL | None,
    loader: DataLoader,
    save: Any,
    start_iter: int,
    total_iters: int,
    accum: int,
    amp: str,
    val_set: Any,
    log_path: Path,
) -> None:
    main_proc = is_main_process()
    world = get_world_size()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
        if amp != "none"
        else contextlib.nullcontext()
    )
    upsample = cfg.loss.ce_resolution == "input"
    need_centroids = cfg.model.classifier == "cbp" and cfg.model.update == "ema"
    num_classes = val_set.num_classes
    bar = None
    if main_proc and cfg.train.progress:
        from tqdm import tqdm

        bar = tqdm(total=total_iters, initial=start_iter, desc="train", dynamic_ncols=True, mininterval=1.0)
    data_iter = iter(loader)
    model.train()
    sums = torch.zeros(len(LOSS_TERMS), dtype=torch.float64)
    window_iters, window_time, window_data = 0, 0.0, 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    with StopFlag() as stop:
        for it in range(start_iter, total_iters):
            t_iter = time.perf_counter()
            lr = set_lr(optimizer, it, total_iters, cfg.optim)
            optimizer.zero_grad(set_to_none=True)
            terms_acc = torch.zeros(len(LOSS_TERMS), dtype=torch.float64, device=device)
            data_time = 0.0
            centroid_acc: list[tuple[Tensor, Tensor]] = []
            for k in range(accum):
                t_data = time.perf_counter()
                images, labels = next(data_iter)
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                data_time += time.perf_counter() - t_data
                sync = (
                    contextlib.nullcontext()
                    if (k == accum - 1 or not isinstance(ddp_model, DDP))
                    else ddp_model.no_sync()
                )
                with sync:
                    with autocast:
                        out_k = ddp_model(images, upsample=upsample)
                    loss, terms, occl_out = compute_loss(model, out_k, labels, cfg, occl)
                    loss = loss / accum
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                terms_acc += torch.stack([terms[t] for t in LOSS_TERMS]).double() / accum
                if need_centroids:
                    if occl_out is not None:
                        centroid_acc.append((occl_out["category_centroids"], occl_out["present"]))
                    else:
                        centroid_acc.append(
                            batch_centroids(out_k.embedding.float(), labels, num_classes, cfg)
                        )
            # one all-reduce: mean loss terms, any non-finite loss, any stop signal
            flags = torch.tensor(
                [float(not math.isfinite(float(terms_acc[0]))), float(stop.signum != 0)],
                dtype=torch.float64,
                device=device,
            )
            packed = torch.cat([terms_acc, flags])
            if is_distributed():
                dist.all_reduce(packed)
            mean_terms = (packed[: len(LOSS_TERMS)] / world).cpu()
            nonfinite, stopping = bool(packed[-2] > 0), bool(packed[-1] > 0)
            if nonfinite:
                desc = ", ".join(f"{n}={float(v):.4g}" for n, v in zip(LOSS_TERMS, mean_terms))
                if bar is not None:
                    bar.close()
                raise TrainingDiverged(
                    f"non-finite loss at iteration {it + 1} ({desc}); no step was taken and "
                    f"{out / checkpoint.CKPT_NAME} keeps the last good state. Lower optim.lr, check the data, "
                    "or try --train.amp=none / bf16."
                )
            if scaler is not None:
                if cfg.optim.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                if cfg.optim.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
            if need_centroids:
                cc = torch.stack([c for c, _ in centroid_acc]).float()  # (A, N, C)
                pr = torch.stack([p for _, p in centroid_acc]).float()  # (A, N)
                mean_cc = (cc * pr[..., None]).sum(0) / pr.sum(0).clamp(min=1)[:, None]  # (N, C)
                mean_cc, present = average_centroids(mean_cc, pr.sum(0) > 0)
                model.classifier.after_step(mean_cc, present)
            else:
                model.classifier.after_step()
            done = it + 1

            # logging
            dt = time.perf_counter() - t_iter
            sums += mean_terms
            window_iters += 1
            window_time += dt
            window_data += data_time
            if bar is not None:
                bar.update(1)
                if done % max(1, cfg.train.log_every // 5) == 0:
                    bar.set_postfix(loss=f"{float(mean_terms[0]):.3f}", lr=f"{lr:.2e}", refresh=False)
            if done % cfg.train.log_every == 0 or done == total_iters:
                record: dict[str, Any] = {"iter": done}
                record.update({n: float(v) / window_iters for n, v in zip(LOSS_TERMS, sums)})
                record.update(
                    {
                        "lr": lr,
                        "time_per_iter": window_time / window_iters,
                        "data_time": window_data / window_iters,
                        **memory_mb(device),
                        "eta_s": (total_iters - done) * window_time / window_iters,
                    }
                )
                if main_proc:
                    with open(log_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                sums.zero_()
                window_iters, window_time, window_data = 0, 0.0, 0.0

            if done % cfg.train.ckpt_every == 0 or done == total_iters or stopping:
                save(done)
            if cfg.train.eval_every and done % cfg.train.eval_every == 0 and done != total_iters:
                sync_buffers(model)
                cm = evaluate(model, val_set, cfg, device)
                scores = cm.compute()
                if main_proc:
                    with open(out / "eval.jsonl", "a") as f:
                        f.write(
                            json.dumps({"iter": done, **{k: scores[k] for k in ("mIoU", "mAcc", "aAcc")}})
                            + "\n"
                        )
            if stopping:
                if bar is not None:
                    bar.close()
                name = signal.Signals(stop.signum).name if stop.signum else "signal"
                msg = f"[cbp.train] stopped by {name} at iteration {done}; checkpoint saved to {out / checkpoint.CKPT_NAME}. Re-run the same command to resume."
                print(msg, file=sys.stderr, flush=True)
                raise SystemExit(128 + (stop.signum or signal.SIGTERM))
    if bar is not None:
        bar.close()


def cli(argv: list[str] | None = None) -> None:
    """The command line ``python -m cbp.train`` / ``torchrun -m cbp.train`` (see :mod:`cbp.train`)."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except (TrainingDiverged, ConfigError) as e:
        print(f"[cbp.train] error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(3 if isinstance(e, TrainingDiverged) else 2) from None


if __name__ == "__main__":
    cli()
