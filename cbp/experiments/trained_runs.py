"""What the study computes from a trained run's directory (``config.json`` + ``ckpt_last.pt``).

* :func:`posthoc_equalisation`: the run's learnable classifier evaluated as it is and after
  :func:`cbp.analysis.equalize_linear_classifier` (bias dropped, rows rescaled to one norm);
* :func:`similarity_snapshot`: prediction and pixel-prototype cosines on one validation image
  (Fig. 6 and a pixel-level view of it);
* :func:`load_meta` / :func:`meta_groups`: the synthetic set's metadata (pixel counts, confusable groups).

The metrics themselves are pure functions of :mod:`cbp.analysis`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cbp.analysis import equalize_linear_classifier, pixel_prototype_similarity, rare_third_iou
from cbp.data.synthetic import META_FILE, read_meta
from cbp.engine import checkpoint
from cbp.engine.build import build_split, read_run_config, restore_model, test_transform
from cbp.engine.evaluate import evaluate


def _scores(cm: Any, pixel_counts: np.ndarray | None) -> dict[str, float]:
    s = cm.compute()
    out = {"mIoU": float(s["mIoU"]), "mAcc": float(s["mAcc"])}
    if pixel_counts is not None:
        out["rare_third_IoU"] = rare_third_iou(s["IoU"], pixel_counts)
    return out


def posthoc_equalisation(run_dir: str | Path, ckpt: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a trained linear-classifier run as it is and after :func:`cbp.analysis.equalize_linear_classifier`.

    Args:
        run_dir: a ``python -m cbp.train`` run directory (``config.json`` + ``ckpt_last.pt``).
        ckpt: checkpoint path (default ``run_dir/ckpt_last.pt``).

    Returns:
        ``{"raw": {mIoU, mAcc, rare_third_IoU}, "equalised": {...}, "delta": {...}}``.
    """
    cfg = read_run_config(run_dir)
    cfg.train.num_workers = 0
    dataset = build_split(cfg, "val", test_transform(cfg))
    model, _ = restore_model(cfg, dataset.num_classes, ckpt or Path(run_dir) / checkpoint.CKPT_NAME)
    counts = getattr(dataset, "pixel_counts", None)
    counts = None if counts is None else np.asarray(counts, dtype=np.float64)
    device = torch.device("cpu")
    raw = _scores(evaluate(model, dataset, cfg, device), counts)
    eq = _scores(evaluate(equalize_linear_classifier(model), dataset, cfg, device), counts)
    return {"raw": raw, "equalised": eq, "delta": {k: eq[k] - raw[k] for k in raw}}


def load_meta(root: str | Path) -> dict[str, Any]:
    """The synthetic set's ``cbp_meta.json`` (class names, pixel counts, confusable groups)."""
    meta = read_meta(root)
    if meta is None:
        raise FileNotFoundError(
            f"{Path(root) / META_FILE} not found: generate the set with `python -m cbp.data.synthetic --out {root}`"
        )
    return meta


def meta_groups(meta: dict[str, Any]) -> list[list[int]]:
    """Confusable groups (lists of class indices) of a synthetic set's metadata."""
    for key in ("confusable_groups", "groups"):
        if key in meta:
            return [[int(c) for c in (g["classes"] if isinstance(g, dict) else g)] for g in meta[key]]
    return []


# --------------------------------------------------------------------------------------------
# Similarity maps of one validation image (Fig. 6 and a pixel-level view of it)


@torch.no_grad()
def similarity_snapshot(
    run_dir: str | Path, index: int | None = None, *, search: int = 300
) -> dict[str, np.ndarray]:
    """What one trained run sees on one validation image: prediction and pixel-prototype cosines.

    Args:
        run_dir: a ``python -m cbp.train`` run directory (``config.json`` + ``ckpt_last.pt``).
        index: validation image; None picks, among the first ``search`` images, the one with the
            most classes that belong to confusable groups (ties: the lowest index).
        search: how many images to scan when ``index`` is None.

    Returns:
        ``image`` uint8 (3, H, W), ``label`` int64 (H, W), ``pred`` int64 (H, W), ``similarity``
        float16 (N, h, w) cosine of every pixel embedding with every prototype (decoder
        resolution), ``index`` int64 ().
    """
    cfg = read_run_config(run_dir)
    raw = build_split(cfg, "val", None)
    dataset = build_split(cfg, "val", test_transform(cfg))
    if index is None:  # the image with most group members; max() keeps the lowest index of a tie
        groups = meta_groups(load_meta(cfg.data.root))
        members = torch.tensor(sorted({c for g in groups for c in g}), dtype=torch.long)
        n = [int(torch.isin(torch.unique(raw[i][1]), members).sum()) for i in range(min(search, len(raw)))]
        index = max(range(len(n)), key=n.__getitem__, default=0)
    model, _ = restore_model(cfg, dataset.num_classes, Path(run_dir) / checkpoint.CKPT_NAME)
    model.eval()
    image, label = dataset[index]
    out = model(image[None], upsample=True)
    protos = model.classifier.prototypes.detach().float()  # (N, C)
    sim = pixel_prototype_similarity(out.embedding[0], protos)  # (N, h, w)
    return {
        "image": raw[index][0].numpy().astype(np.uint8),
        "label": label.numpy(),
        "pred": out.logits[0].argmax(0).numpy(),
        "similarity": sim.numpy().astype(np.float16),
        "index": np.array(index),
    }
