"""COCO-Stuff-10K reader (171 classes): the raw ``.mat`` release and mmseg's converted layout.

Two layouts are recognised, the raw one first::

    raw release (cocostuff-10k-v1.1.zip)          mmseg-converted (tools/dataset_converters/coco_stuff10k.py)
    <root>/                                         <root>/
      images/<name>.jpg                               images/train2014/<name>.jpg
      annotations/<name>.mat   (key "S", ids 0..182)  images/test2014/<name>.jpg
      imageLists/train.txt     (one <name> a line)    annotations/train2014/<name>_labelTrainIds.png
      imageLists/test.txt                             annotations/test2014/<name>_labelTrainIds.png

Raw ids map to classes as mmseg's converter + ``reduce_zero_label`` do (see :mod:`cbp.data.classes`):
0 (unlabeled) -> 255, COCO id ``i`` -> ``clsID_to_trID[i] - 1``. Converted PNGs hold 0..171
(0 = unlabeled) and go through ``reduce_zero_label``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import torch

from cbp.data.ade20k import (
    SegmentationFiles,
    Transform,
    _pair_files,
    check_regular,
    layout_error,
    map_label,
    read_label_png,
    unreadable,
)
from cbp.data.classes import COCOSTUFF_CLASSES, COCOSTUFF_PALETTE, cocostuff_raw_lut, cocostuff_train_id_lut
from cbp.io import UnreadableFileError

COCOSTUFF_LAYOUT = """\
either the raw release:
<root>/
  images/<name>.jpg
  annotations/<name>.mat          (MATLAB file with key "S": uint8 ids 0..182, 0 = unlabeled)
  imageLists/train.txt, imageLists/test.txt   (one <name> per line)
or the mmseg-converted layout (tools/dataset_converters/coco_stuff10k.py):
<root>/
  images/train2014/*.jpg, images/test2014/*.jpg
  annotations/train2014/<name>_labelTrainIds.png, annotations/test2014/<name>_labelTrainIds.png"""


class COCOStuff10K(SegmentationFiles):
    """COCO-Stuff-10K, 171 classes (9k train / 1k test images).

    Args:
        root: dataset folder in either layout (detected: ``imageLists/`` means raw).
        split: "train" or "test".
        transform: optional callable ``(image uint8 (3, H, W), label int64 (H, W)) -> anything``.

    Attributes:
        layout: "raw" or "converted". num_classes (171), class_names, palette (171, 3),
        pixel_counts (None: no shipped statistics), files (sorted list of (image, label) paths).
    """

    SPLITS = ("train", "test")

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        super().__init__(transform)
        if split not in self.SPLITS:
            raise ValueError(f"COCO-Stuff-10K split must be one of {self.SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.num_classes = len(COCOSTUFF_CLASSES)
        self.class_names = list(COCOSTUFF_CLASSES)
        self.palette = COCOSTUFF_PALETTE.copy()
        self.pixel_counts = None
        if not self.root.is_dir():
            raise layout_error(self.root, self.root, COCOSTUFF_LAYOUT)

        if (self.root / "imageLists").is_dir():
            self.layout = "raw"
            self._lut = cocostuff_raw_lut()
            self.files = self._raw_files()
        elif (self.root / "images" / "train2014").is_dir() or (self.root / "images" / "test2014").is_dir():
            self.layout = "converted"
            self._lut = cocostuff_train_id_lut()
            folder = f"{split}2014"
            image_dir, label_dir = self.root / "images" / folder, self.root / "annotations" / folder
            for d in (image_dir, label_dir):
                if not d.is_dir():
                    raise layout_error(self.root, d, COCOSTUFF_LAYOUT)
            self.files = _pair_files(image_dir, label_dir, "_labelTrainIds.png", self.root, COCOSTUFF_LAYOUT)
        else:
            raise layout_error(
                self.root, self.root / "imageLists", COCOSTUFF_LAYOUT, "(neither layout found)"
            )

    def _raw_files(self) -> list[tuple[Path, Path]]:
        list_file = self.root / "imageLists" / f"{self.split}.txt"
        for p in (list_file, self.root / "images", self.root / "annotations"):
            if not p.exists():
                raise layout_error(self.root, p, COCOSTUFF_LAYOUT)
        names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        names = [n[: -len(".jpg")] if n.endswith(".jpg") else n for n in names]
        if not names:
            raise UnreadableFileError(f"{list_file} lists no images: expected one image name per line")
        files = [(self.root / "images" / f"{n}.jpg", self.root / "annotations" / f"{n}.mat") for n in names]
        for image, label in files:
            if not image.exists():
                raise FileNotFoundError(f"{list_file} lists {image.stem!r} but {image} does not exist")
            if not label.exists():
                raise FileNotFoundError(
                    f"image {image} has no label: expected {label}. Expected layout under {self.root}:\n"
                    f"{COCOSTUFF_LAYOUT}"
                )
        check_regular([p for pair in files for p in pair], self.root)
        return files

    def load_label(self, path: Path) -> torch.Tensor:
        """Read a ``.mat`` (key "S") or ``_labelTrainIds.png`` label and map it to 0..170 / 255."""
        if path.suffix == ".mat":
            try:
                mat = scipy.io.loadmat(path)
            except Exception as e:
                raise unreadable("label", path, e) from e
            if "S" not in mat:
                keys = sorted(k for k in mat if not k.startswith("__"))
                raise UnreadableFileError(
                    f"label {path} has no key 'S' (keys: {keys}): expected a COCO-Stuff-10K annotation"
                )
            raw = np.asarray(mat["S"])
            if raw.ndim != 2:
                raise UnreadableFileError(f"label {path}: 'S' has shape {raw.shape}, expected (H, W)")
            if raw.dtype.kind == "f":  # some tools save ids as double; accept exact integers only
                if not np.array_equal(raw, np.round(raw)):
                    raise UnreadableFileError(
                        f"label {path}: 'S' holds non-integer values, expected ids 0..182"
                    )
                raw = raw.astype(np.int64)
            return map_label(raw, self._lut, path, "0 (unlabeled) or a COCO-Stuff id in 1..182")
        return map_label(read_label_png(path), self._lut, path, "0 (unlabeled), 1..171 or 255")
