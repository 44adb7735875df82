"""Evaluation: whole-image and sliding-window inference, dataset-level metrics, ``metrics.json``.

``python -m cbp.evaluate RUN_DIR [--ckpt PATH] [--out FILE] [--config FILE] [--data.root=DIR] [--eval.mode=slide ...]``
evaluates a checkpoint of a run (default ``RUN_DIR/ckpt_last.pt``) on the validation split with the
run's ``config.json`` (or ``--config FILE``; overridable) and writes a record with the same fields
as the run's ``metrics.json`` to ``RUN_DIR/eval-<mode>-<iter>.json`` (or ``--out FILE``). It never
writes over a run's files (see :func:`check_out`). Under ``torchrun`` every rank
scores a disjoint shard (no padding duplicates, unlike ``DistributedSampler``) and the confusion
matrices are summed, so the counts are exactly mmseg's. Errors are one line with an exit code
(2 usage or config, 4 data or file; see :mod:`cbp.engine.errors`).

Inference follows mmseg's ``EncoderDecoder``:

* ``whole``: logits of the resized test image, upsampled (bilinear) to the image, then to the label's
  original size, argmax.
* ``slide``: crops of ``eval.crop_size`` every ``eval.stride`` pixels (the last crop flush with the
  border), the crops' upsampled logits summed and divided by the number of crops covering each pixel,
  then resized to the label's size.
"""

from __future__ import annotations

import math
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributed.elastic.multiprocessing.errors import record as record_errors
from torch.utils.data import DataLoader

from cbp.distributed import get_rank, get_world_size, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import build_split, check_inputs, ensure_data, restore_model, test_transform
from cbp.engine.config import Config, ConfigError, apply_overrides, read_config_file, to_dict
from cbp.engine.errors import DataError, OneLineParser, out_folder, run_cli
from cbp.engine.process import setup_distributed
from cbp.engine.run_dir import is_run
from cbp.engine.sampler import ShardSampler
from cbp.io import read_json, write_json
from cbp.metrics import ConfusionMatrix
from cbp.prototypes import class_separability


def _logits(model: nn.Module, images: Tensor) -> Tensor:
    """Logits at the input resolution, (B, N, H, W)."""
    return model(images, upsample=True).logits


@torch.no_grad()
def slide_logits(
    model: nn.Module, images: Tensor, num_classes: int, crop: tuple[int, int], stride: tuple[int, int]
) -> Tensor:
    """mmseg ``slide_inference``: average of overlapping crop logits, (B, 3, H, W) -> (B, N, H, W)."""
    batch, _, h_img, w_img = images.shape
    h_crop, w_crop = crop
    h_stride, w_stride = stride
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds = images.new_zeros(batch, num_classes, h_img, w_img, dtype=torch.float32)  # (B, N, H, W)
    count = images.new_zeros(batch, 1, h_img, w_img, dtype=torch.float32)  # (B, 1, H, W)
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            crop_logits = _logits(model, images[:, :, y1:y2, x1:x2]).float()  # (B, N, h, w)
            preds[:, :, y1:y2, x1:x2] += crop_logits
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


@torch.no_grad()
def predict(
    model: nn.Module, images: Tensor, label_size: tuple[int, int], cfg: Config, num_classes: int
) -> Tensor:
    """Class indices (B, H_label, W_label) for a batch of test images (B, 3, h, w)."""
    if cfg.eval.mode == "slide":
        logits = slide_logits(model, images, num_classes, cfg.eval.crop_size, cfg.eval.stride)
    else:
        logits = _logits(model, images).float()  # (B, N, h, w)
    if tuple(logits.shape[-2:]) != tuple(label_size):
        logits = F.interpolate(logits, size=label_size, mode="bilinear", align_corners=False)
    return logits.argmax(dim=1)  # (B, H, W)


def _autocast(device: torch.device, amp: str) -> Any:
    if device.type == "cuda" and amp != "none":
        return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Any, cfg: Config, device: torch.device, *, progress: bool = False
) -> ConfusionMatrix:
    """Confusion matrix over the whole validation set, summed over all ranks.

    Every rank scores images ``rank, rank + world, ...`` one at a time (test images differ in size).
    """
    was_training = model.training
    model.eval()
    num_classes = dataset.num_classes
    cm = ConfusionMatrix(num_classes, ignore_index=cfg.loss.ignore_index, device=device)
    sampler = ShardSampler(len(dataset), world_size=get_world_size(), rank=get_rank())
    loader = DataLoader(
        dataset,
        batch_size=1,
        sampler=sampler,
        num_workers=cfg.train.num_workers,
        generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
    )
    it = loader
    if progress and is_main_process():
        from tqdm import tqdm

        it = tqdm(loader, desc="eval", dynamic_ncols=True, leave=False)
    for image, label in it:
        image, label = image.to(device, non_blocking=True), label.to(device, non_blocking=True)
        with _autocast(device, cfg.train.amp):
            pred = predict(model, image, tuple(label.shape[-2:]), cfg, num_classes)  # (1, H, W)
        cm.update(pred, label)
    cm.all_reduce()
    model.train(was_training)
    return cm


def _clean(x: Any) -> Any:
    """JSON-safe: tensors to lists, NaN / inf to None."""
    if isinstance(x, Tensor):
        x = x.tolist()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def metrics_record(
    cm: ConfusionMatrix,
    model: nn.Module,
    dataset: Any,
    cfg: Config,
    *,
    iters: int,
    seconds: float,
    device: torch.device,
) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    scores = cm.compute()
    classifier = model.classifier
    prototypes = classifier.prototypes.detach().float().cpu()  # (N, C)
    record = {
        "mIoU": scores["mIoU"],
        "mAcc": scores["mAcc"],
        "aAcc": scores["aAcc"],
        "class_names": list(getattr(dataset, "class_names", [str(i) for i in range(dataset.num_classes)])),
        "IoU": scores["IoU"],
        "Acc": scores["Acc"],
        "F1": scores["F1"],
        "class_separability": class_separability(prototypes),
        "prototype_norms": prototypes.norm(dim=1),
        "classifier": cfg.model.classifier,
        "iters": iters,
        "world_size": get_world_size(),
        "device": _device_name(device),
        "eval_mode": cfg.eval.mode,
        "seconds": seconds,
        "pixel_counts": getattr(dataset, "pixel_counts", None),
        "config": to_dict(cfg),
    }
    if record["pixel_counts"] is not None:
        record["pixel_counts"] = [float(v) for v in record["pixel_counts"]]
    return _clean(record)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} x{get_world_size()}"
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads) x{get_world_size()}"


def is_record(path: Path) -> bool:
    """Whether ``path`` is a record this command wrote: a JSON object with ``mIoU``, ``config`` and
    ``checkpoint`` (a ``metrics.json`` has no ``checkpoint``)."""
    if not path.is_file() or path.stat().st_size > 2**24:  # a record is kilobytes
        return False
    try:
        data = read_json(path)
    except (OSError, ValueError):  # unreadable, not text, not JSON
        return False
    return isinstance(data, dict) and {"mIoU", "config", "checkpoint"} <= data.keys()


def check_out(out: Path, *, given: bool, run_dir: Path | None = None) -> None:
    """Refuse an output path that would write over a file this command should not replace.

    The rule, whichever way the run was given (RUN_DIR, or ``--config`` and ``--ckpt``): in a run
    folder (RUN_DIR, or any folder :func:`cbp.engine.run_dir.is_run` recognises; links resolved)
    ``--out`` may only name a new ``eval-*.json``, never a checkpoint, ``config.json``, a log,
    ``metrics.json`` or any other file; the default ``eval-<mode>-<iter>.json`` may replace an
    earlier record of this command. Anywhere else the output may be a new file or an earlier record
    of this command (:func:`is_record`); any other existing path is refused, never overwritten.

    Args:
        out: the output file.
        given: it was given as ``--out`` (else it is the default name).
        run_dir: the RUN_DIR of the command line, if one was given.

    Raises:
        ConfigError: (exit code 2) the path is refused; the message says why and what to do.
    """
    target = Path(out).resolve()
    flag = f"--out {out}" if given else f"the output {out}"
    if is_run(target.parent) or (run_dir is not None and target.parent == Path(run_dir).resolve()):
        if target.exists() and (given or not is_record(target)):
            what = f"would write over {target.name} of the run in {target.parent}"
        elif not fnmatchcase(target.name, "eval-*.json"):
            what = f"is not an eval-*.json file, in the run folder {target.parent}"
        else:
            return
        raise ConfigError(
            f"{flag} {what}: cbp.evaluate never writes over a run's files; inside a run, --out may only "
            "name a new eval-*.json (or leave --out out: RUN_DIR/eval-<mode>-<iter>.json), or a file "
            "outside the run"
        )
    if target.exists() and not is_record(target):
        raise ConfigError(
            f"{flag} exists and is not a record of cbp.evaluate: cbp.evaluate never writes over it; "
            "choose a new file, or move that one away first"
        )


def parse_args(argv: list[str] | None) -> tuple[Config, Path, Path | None, Path]:
    """The command line -> (config, checkpoint, ``--out`` file or None, folder of the default output).

    Raises:
        cbp.engine.errors.DataError: no ``config.json`` in RUN_DIR, or no checkpoint.
        ConfigError: a bad override, or an ``--out`` that :func:`check_out` refuses.
    """
    parser = OneLineParser(
        prog="python -m cbp.evaluate",
        description="Evaluate a cbp run's checkpoint on the validation split; writes RUN_DIR/eval-<mode>-<iter>.json "
        "(never over a run's files). Overrides: --section.key=value (e.g. --eval.mode=slide, --data.root=DIR). "
        "Exit codes: 0 done, 1 bug, 2 usage or config, 4 data or file.",
    )
    parser.add_argument(
        "run_dir", type=Path, nargs="?", help="run directory with config.json and ckpt_last.pt"
    )
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default RUN_DIR/ckpt_last.pt)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file (default RUN_DIR/eval-<mode>-<iter>.json); in a run folder only a new eval-*.json",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="base config instead of RUN_DIR/config.json (with --ckpt, RUN_DIR may be left out)",
    )
    args, overrides = parser.parse_known_args(argv)
    if args.run_dir is None and (args.config is None or args.ckpt is None):
        parser.error("give RUN_DIR (a directory written by python -m cbp.train), or both --config and --ckpt")
    if args.out is not None:
        check_out(args.out, given=True, run_dir=args.run_dir)
    if args.config is not None:
        cfg = read_config_file(args.config)
    else:
        config_path = args.run_dir / "config.json"
        if not config_path.is_file():
            what = "does not exist" if not args.run_dir.exists() else "has no config.json"
            raise DataError(
                f"{args.run_dir} {what}: RUN_DIR must be a directory written by `python -m cbp.train` "
                "(or pass --config FILE --ckpt FILE)"
            )
        cfg = read_config_file(config_path)
    apply_overrides(cfg, overrides)
    ckpt = args.ckpt or args.run_dir / checkpoint.CKPT_NAME
    if not ckpt.is_file():
        raise DataError(
            f"checkpoint {ckpt} not found: "
            + (
                "check the --ckpt path"
                if args.ckpt
                else f"{args.run_dir} has no saved checkpoint yet; train it (re-running its "
                "python -m cbp.train command resumes it) or pass --ckpt FILE"
            )
        )
    return cfg, ckpt, args.out, args.run_dir or ckpt.parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m cbp.evaluate RUN_DIR [--ckpt PATH] [--out FILE] [--config FILE] [--section.key=value ...]``.

    Returns:
        The record written (the fields of ``metrics.json`` plus ``"checkpoint"``).
    """
    cfg, ckpt_path, out, run_dir = parse_args(argv)
    check_inputs(cfg, pretrained=False)  # the checkpoint holds every weight
    device = setup_distributed(cfg)
    start = time.time()
    ensure_data(cfg)
    dataset = build_split(cfg, "val", test_transform(cfg))
    model, ckpt = restore_model(cfg, dataset.num_classes, ckpt_path)
    iters = int(ckpt["iter"])
    if out is None:  # (a given --out was checked with the command line)
        out = run_dir / f"eval-{cfg.eval.mode}-{iters}.json"
        check_out(out, given=False, run_dir=run_dir)
    model.to(device)
    cm = evaluate(model, dataset, cfg, device, progress=cfg.train.progress)
    record = metrics_record(cm, model, dataset, cfg, iters=iters, seconds=time.time() - start, device=device)
    record["checkpoint"] = str(ckpt_path)
    if is_main_process():
        write_json(record, out)
        print(f"mIoU {record['mIoU']:.2f}  mAcc {record['mAcc']:.2f}  aAcc {record['aAcc']:.2f}  -> {out}")
    return record


@record_errors  # torchrun: the failing rank's error reaches torchrun's summary
def cli(argv: list[str] | None = None) -> None:
    """The command line ``python -m cbp.evaluate`` (see :mod:`cbp.evaluate`); errors as :mod:`cbp.engine.errors`."""
    argv = sys.argv[1:] if argv is None else argv
    run_cli("cbp.evaluate", main, argv, folder=out_folder(argv))


if __name__ == "__main__":
    cli()
