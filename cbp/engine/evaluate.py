"""Evaluation: whole-image and sliding-window inference, dataset-level metrics, ``metrics.json``.

``python -m cbp.evaluate RUN_DIR [--ckpt PATH] [--out FILE] [--data.root=DIR] [--eval.mode=slide ...]``
evaluates a checkpoint of a run (default ``RUN_DIR/ckpt_last.pt``) on the validation split with the
run's ``config.json`` (overridable) and writes the same ``metrics.json`` as training does (default
``RUN_DIR/metrics.json``). Under ``torchrun`` every rank scores a disjoint shard (no padding
duplicates, unlike ``DistributedSampler``) and the confusion matrices are summed, so the counts are
exactly mmseg's.

Inference follows mmseg's ``EncoderDecoder``:

* ``whole``: logits of the resized test image, upsampled (bilinear) to the image, then to the label's
  original size, argmax.
* ``slide``: crops of ``eval.crop_size`` every ``eval.stride`` pixels (the last crop flush with the
  border), the crops' upsampled logits summed and divided by the number of crops covering each pixel,
  then resized to the label's size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from cbp.distributed import get_rank, get_world_size, is_main_process
from cbp.engine import checkpoint
from cbp.engine.build import build_split, ensure_data, restore_model, test_transform
from cbp.engine.config import Config, ConfigError, apply_overrides, from_dict, to_dict
from cbp.engine.process import setup_distributed
from cbp.engine.sampler import ShardSampler
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


def write_json(record: dict[str, Any], path: Path) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """``python -m cbp.evaluate RUN_DIR [--ckpt PATH] [--out FILE] [--section.key=value ...]``; returns the metrics."""

    parser = argparse.ArgumentParser(
        prog="python -m cbp.evaluate",
        description="Evaluate a cbp run's checkpoint on the validation split; writes metrics.json.",
    )
    parser.add_argument("run_dir", type=Path, help="run directory with config.json (and ckpt_last.pt)")
    parser.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default RUN_DIR/ckpt_last.pt)")
    parser.add_argument("--out", type=Path, default=None, help="metrics file (default RUN_DIR/metrics.json)")
    args, overrides = parser.parse_known_args(argv)
    config_path = args.run_dir / "config.json"
    if not config_path.is_file():
        parser.error(f"{config_path} not found: RUN_DIR must be a directory written by `python -m cbp.train`")
    cfg = from_dict(json.loads(config_path.read_text()))
    try:
        apply_overrides(cfg, overrides)
    except ConfigError as e:
        parser.error(str(e))

    device = setup_distributed(cfg)
    start = time.time()
    ensure_data(cfg)
    dataset = build_split(cfg, "val", test_transform(cfg))
    model, ckpt = restore_model(cfg, dataset.num_classes, args.ckpt or args.run_dir / checkpoint.CKPT_NAME)
    model.to(device)
    cm = evaluate(model, dataset, cfg, device, progress=cfg.train.progress)
    record = metrics_record(
        cm, model, dataset, cfg, iters=int(ckpt["iter"]), seconds=time.time() - start, device=device
    )
    if is_main_process():
        out = args.out or args.run_dir / "metrics.json"
        write_json(record, out)
        print(f"mIoU {record['mIoU']:.2f}  mAcc {record['mAcc']:.2f}  aAcc {record['aAcc']:.2f}  -> {out}")
    return record


def cli(argv: list[str] | None = None) -> None:
    """The command line ``python -m cbp.evaluate`` (see :mod:`cbp.evaluate`)."""
    main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    cli()
