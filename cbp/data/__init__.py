"""Datasets, class metadata, transforms and the synthetic benchmark.

- :class:`ADE20K` (``ADEChallengeData2016`` layout; also reads synthetic sets via ``cbp_meta.json``)
- :class:`COCOStuff10K` (raw ``.mat`` release or mmseg's ``*_labelTrainIds.png`` layout)
- :mod:`cbp.data.transforms` (mmseg's train/test pipelines), :mod:`cbp.data.classes`,
  :mod:`cbp.data.synthetic` (``python -m cbp.data.synthetic --out DIR``)
- :func:`build_dataset` maps ("synthetic" | "ade20k" | "cocostuff10k", "train" | "val") to a reader.
"""

from __future__ import annotations

from pathlib import Path

from cbp.data.ade20k import ADE20K, META_FILE, SegmentationFiles, Transform
from cbp.data.cocostuff import COCOStuff10K

__all__ = ["ADE20K", "COCOStuff10K", "DATASETS", "SPLITS", "build_dataset"]

#: dataset name -> reader class.
DATASETS = {"synthetic": ADE20K, "ade20k": ADE20K, "cocostuff10k": COCOStuff10K}

#: dataset name -> {"train": its training split, "val": its evaluation split}.
SPLITS = {
    "synthetic": {"train": "training", "val": "validation"},
    "ade20k": {"train": "training", "val": "validation"},
    "cocostuff10k": {"train": "train", "val": "test"},
}


def build_dataset(
    name: str, root: str | Path, split: str, transform: Transform | None = None
) -> SegmentationFiles:
    """Build a dataset reader by name.

    Args:
        name: "synthetic" (a folder written by ``python -m cbp.data.synthetic``), "ade20k" or "cocostuff10k".
        root: dataset folder.
        split: "train" or "val" (mapped to "training"/"validation" for ADE20K-layout sets and to
            "train"/"test" for COCO-Stuff-10K); the dataset's own split names are accepted too.
        transform: optional ``(image uint8 (3, H, W), label int64 (H, W)) -> ...`` callable.

    Raises:
        KeyError: unknown name (lists the valid ones). ValueError: unknown split.
        FileNotFoundError: a synthetic root without ``cbp_meta.json`` (says how to generate it).
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    splits = SPLITS[name]
    native = splits.get(split, split if split in splits.values() else None)
    if native is None:
        raise ValueError(
            f"unknown split {split!r} for {name}: use 'train' or 'val' (or {sorted(splits.values())})"
        )
    if name == "synthetic" and not (Path(root) / META_FILE).exists():
        raise FileNotFoundError(
            f"{Path(root) / META_FILE} does not exist: {root} is not a generated synthetic set. Generate it with "
            f"`python -m cbp.data.synthetic --out {root}` or cbp.data.synthetic.ensure_synthetic(root, ...)"
        )
    return DATASETS[name](root, native, transform=transform)
