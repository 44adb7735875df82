"""Read what a training run wrote: ``log.jsonl`` / ``eval.jsonl`` / ``metrics.json`` into pandas, and
predictions of its checkpoint on a few validation images."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbp.engine import checkpoint
from cbp.engine.build import build_split, read_run_config, restore_model, test_transform
from cbp.engine.evaluate import predict
from cbp.io import read_json, read_jsonl


def read_log(run_dir: str | Path, name: str = "log.jsonl") -> pd.DataFrame:
    """``log.jsonl`` (or ``eval.jsonl``) of a run as a DataFrame indexed by ``iter``.

    Raises:
        FileNotFoundError: the run has no such file (it has not logged yet, or ``run_dir`` is wrong).
    """
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: has the run in {run_dir} started?")
    records = read_jsonl(path)
    if not records:
        return pd.DataFrame(columns=["iter"]).set_index("iter")
    return pd.DataFrame.from_records(records).set_index("iter").sort_index()


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """``metrics.json`` of a finished run (mIoU, mAcc, aAcc, per-class lists, device, config...)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished")
    return read_json(path)


def validations(run_dir: str | Path, metrics: dict[str, Any]) -> pd.Series:
    """iteration -> validation mIoU (%) of a run: its intermediate validations (``eval.jsonl``, if any) and
    the final one of its ``metrics``."""
    points = {metrics["iters"]: metrics["mIoU"]}
    if (Path(run_dir) / "eval.jsonl").is_file():
        points = {**read_log(run_dir, "eval.jsonl")["mIoU"].to_dict(), **points}
    return pd.Series(points)


def per_class_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: name, IoU, Acc, F1 (percent; NaN when absent from validation), training pixel
    count and prototype norm, sorted from the most to the least frequent class (by index if counts are unknown).
    """
    n = len(metrics["class_names"])

    def col(key: str) -> np.ndarray:
        values = metrics.get(key)
        if values is None:
            return np.full(n, np.nan)
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    table = pd.DataFrame(
        {
            "class": metrics["class_names"],
            "IoU": col("IoU"),
            "Acc": col("Acc"),
            "F1": col("F1"),
            "pixel_count": col("pixel_counts"),
            "prototype_norm": col("prototype_norms"),
        }
    )
    table.index.name = "class_id"
    table.attrs["order"] = "class index (no pixel counts for this dataset)"
    if table["pixel_count"].notna().all():
        table = table.sort_values("pixel_count", ascending=False, kind="stable")
        table.attrs["order"] = "most to least frequent in training"
    return table


def summary_row(metrics: dict[str, Any], label: str) -> dict[str, Any]:
    """A row for a results table: label, mIoU, mAcc, aAcc, iterations, device, training time."""
    return {
        "run": label,
        "mIoU": round(metrics["mIoU"], 2),
        "mAcc": round(metrics["mAcc"], 2),
        "aAcc": round(metrics["aAcc"], 2),
        "iters": metrics["iters"],
        "device": metrics.get("device", "?"),
        "minutes": round(metrics.get("seconds", float("nan")) / 60, 1),
    }


def predict_examples(run_dir: str | Path, indices: Sequence[int], *, device: str = "cpu") -> dict[str, Any]:
    """Segment some validation images with a run's ``ckpt_last.pt``.

    Returns:
        dict with "images" list of uint8 (H, W, 3), "labels" / "preds" lists of int64 (H, W)
        (255 = ignore in labels), "palette" uint8 (N, 3), "class_names".
    """
    cfg = read_run_config(run_dir)
    raw = build_split(cfg, "val")
    test = build_split(cfg, "val", test_transform(cfg))
    model, _ = restore_model(cfg, test.num_classes, Path(run_dir) / checkpoint.CKPT_NAME)
    model.to(device).eval()
    images, labels, preds = [], [], []
    for i in indices:
        image, label = raw[i]  # (3, H, W) uint8, (H, W) int64
        x, _ = test[i]  # (3, h, w) float, normalised
        pred = predict(model, x[None].to(device), tuple(label.shape), cfg, test.num_classes)  # (1, H, W)
        images.append(image.permute(1, 2, 0).numpy())
        labels.append(label.numpy())
        preds.append(pred[0].cpu().numpy())
    palette = getattr(raw, "palette", None)
    if palette is None:
        palette = np.random.default_rng(0).integers(0, 256, size=(test.num_classes, 3), dtype=np.uint8)
    return {
        "images": images,
        "labels": labels,
        "preds": preds,
        "palette": np.asarray(palette, dtype=np.uint8),
        "class_names": list(raw.class_names),
    }
