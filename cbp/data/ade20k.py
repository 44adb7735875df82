"""ADE20K (SceneParsing, ``ADEChallengeData2016``) reader, also used for the synthetic benchmark.

Layout (the official release, unchanged)::

    ADEChallengeData2016/
      images/training/ADE_train_00000001.jpg ...
      images/validation/ADE_val_00000001.jpg ...
      annotations/training/ADE_train_00000001.png ...     (uint8, 0 = "other", 1..150 = classes)
      annotations/validation/ADE_val_00000001.png ...

Labels follow mmsegmentation's ``reduce_zero_label``: PNG value 0 ("other") becomes 255 (ignored)
and every class value ``v`` becomes ``v - 1``. A root that holds ``cbp_meta.json`` (written by
:mod:`cbp.data.synthetic`) is read the same way, with its own class names, class count and
training pixel counts.

The image/label helpers here (``read_image``, ``read_label_png``, ``map_label``) are shared with the
COCO-Stuff reader.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cbp.data.classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    ade20k_pixel_counts,
    reduce_zero_label_lut,
)
from cbp.io import UnreadableFileError

META_FILE = "cbp_meta.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

ADE20K_LAYOUT = """\
<root>/                       (e.g. ADEChallengeData2016)
  images/training/*.jpg
  images/validation/*.jpg
  annotations/training/*.png     (same file stem as the image; 0 = other, 1..N = classes)
  annotations/validation/*.png"""

Transform = Callable[[torch.Tensor, torch.Tensor], Any]


def read_image(path: Path) -> torch.Tensor:
    """Read an RGB image file.

    Returns:
        uint8 tensor (3, H, W).

    Raises:
        UnreadableFileError: the file cannot be opened or decoded, or it is too large to decode safely
            (the message names it).
    """
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))  # (H, W, 3) uint8
    except Exception as e:  # PIL raises several types (UnidentifiedImageError, OSError, SyntaxError ...)
        raise unreadable("image", path, e) from e
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


def read_label_png(path: Path) -> np.ndarray:
    """Read a single-channel label PNG (mode L, P, I or I;16) without any colour conversion.

    Returns:
        integer array (H, W) with the raw stored values.

    Raises:
        UnreadableFileError: (a ValueError) an unreadable file, or a colour (RGB) label image.
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            array = np.asarray(img)
    except Exception as e:
        raise unreadable("label", path, e) from e
    if array.ndim != 2:
        raise UnreadableFileError(
            f"label {path} has mode {mode!r} and shape {array.shape}: expected a single-channel (H, W) PNG of "
            "class ids (mode L or P), not a colour visualisation"
        )
    return array


def unreadable(what: str, path: Path, error: Exception) -> UnreadableFileError:
    """The error of an image or label file that PIL cannot read (exit code 4), naming the file."""
    if isinstance(error, Image.DecompressionBombError):
        return UnreadableFileError(
            f"cannot read {what} {path}: {str(error).rstrip('.')}; PIL refuses to decode an image this large "
            "(a decompression bomb?). Re-download or remove this file."
        )
    return UnreadableFileError(
        f"cannot read {what} {path}: {type(error).__name__}: {str(error).rstrip('.')}. Re-download or remove "
        "this file."
    )


def map_label(raw: np.ndarray, lut: np.ndarray, path: Path, what: str) -> torch.Tensor:
    """Map raw label values through a lookup table and refuse values outside the classes.

    Args:
        raw: integer array (H, W) as stored in the file.
        lut: int64 array (256,); -1 marks invalid raw values.
        path: file the values came from (for the error message).
        what: description of the valid values, e.g. "0..150 or 255".

    Returns:
        int64 tensor (H, W) with values in 0..N-1 or 255.

    Raises:
        UnreadableFileError: (a ValueError) naming the file and the offending values (never clipped).
    """
    raw = np.asarray(raw)
    if raw.dtype.kind not in "iub":
        raise UnreadableFileError(f"label {path} has dtype {raw.dtype}: expected integer class ids ({what})")
    raw64 = raw.astype(np.int64)
    outside = (raw64 < 0) | (raw64 > 255)
    mapped = lut[np.clip(raw64, 0, 255)]  # (H, W)
    bad = outside | (mapped < 0)
    if bad.any():
        values = np.unique(raw64[bad])
        shown = ", ".join(str(v) for v in values[:20]) + (" ..." if len(values) > 20 else "")
        raise UnreadableFileError(
            f"label {path} holds values outside the classes: {shown} ({int(bad.sum())} pixels); expected {what}. "
            "Check that the annotation belongs to this dataset (wrong class count or a converted/colour file)."
        )
    return torch.from_numpy(mapped)


def layout_error(root: Path, missing: Path, layout: str, extra: str = "") -> FileNotFoundError:
    """A FileNotFoundError that shows the expected directory tree."""
    return FileNotFoundError(
        f"{missing} does not exist. Expected this layout under {root}:\n{layout}\n{extra}".rstrip()
    )


def list_images(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (every entry with an image suffix: see :func:`check_regular`)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def check_regular(paths: list[Path], root: Path) -> None:
    """Refuse data files that are not regular files (after links): a FIFO (reading it hangs), a device
    (``/dev/zero`` reads forever), a socket, a folder or a broken link.

    Raises:
        UnreadableFileError: (exit code 4) naming them, each with what it is.
    """
    bad = []
    for p in paths:
        try:
            mode = p.stat().st_mode
        except OSError:
            bad.append(f"{p} (a broken link)")
            continue
        if not stat.S_ISREG(mode):
            bad.append(f"{p} ({_KINDS.get(stat.S_IFMT(mode), 'not a regular file')})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UnreadableFileError(
            f"{len(bad)} file(s) of the data set in {root} are not regular files: {shown}. An image or a "
            "label must be a file (a link to one is fine); replace or remove them"
        )


class SegmentationFiles(Dataset):
    """Base for the readers: a list of (image, label) paths, a label decoder, an optional transform."""

    num_classes: int
    class_names: list[str]
    palette: np.ndarray
    pixel_counts: np.ndarray | None
    files: list[tuple[Path, Path]]

    def __init__(self, transform: Transform | None) -> None:
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def load_label(self, path: Path) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        """Returns ``(image uint8 (3, H, W), label int64 (H, W))``, or ``transform(image, label)``."""
        image_path, label_path = self.files[index]
        image = read_image(image_path)  # (3, H, W) uint8
        label = self.load_label(label_path)  # (H, W) int64
        if tuple(image.shape[1:]) != tuple(label.shape):
            raise UnreadableFileError(
                f"image {image_path} is {tuple(image.shape[1:])} (H, W) but its label {label_path} is "
                f"{tuple(label.shape)}: an image and its label must have the same size"
            )
        if self.transform is not None:
            return self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, num_classes={self.num_classes}, root={getattr(self, 'root', '?')})"


class ADE20K(SegmentationFiles):
    """ADE20K SceneParsing (150 classes) or a synthetic set in the same layout.

    Args:
        root: the ``ADEChallengeData2016`` folder (or a folder written by :mod:`cbp.data.synthetic`).
        split: "training" or "validation".
        transform: optional callable ``(image uint8 (3, H, W), label int64 (H, W)) -> anything``.

    Attributes:
        num_classes: 150, or the synthetic set's class count.
        class_names: list of N names.
        palette: uint8 array (N, 3) for visualisation.
        pixel_counts: float64 array (N,) of training pixel counts (synthetic: exact counts; real ADE20K:
            the shipped share of training pixels per class, which is proportional to the counts).
        files: sorted list of (image path, label path).
        meta: the parsed ``cbp_meta.json`` (synthetic sets) or None.

    ``ds[i]`` is ``(image uint8 (3, H, W), label int64 (H, W))`` with values 0..N-1 or 255, or
    ``transform(image, label)``.
    """

    SPLITS = ("training", "validation")

    def __init__(self, root: str | Path, split: str = "training", transform: Transform | None = None) -> None:
        super().__init__(transform)
        if split not in self.SPLITS:
            raise ValueError(f"ADE20K split must be one of {self.SPLITS}, got {split!r}")
        self.root = Path(root)
        self.split = split
        if not self.root.is_dir():
            raise layout_error(
                self.root,
                self.root,
                ADE20K_LAYOUT,
                "Download ADEChallengeData2016.zip or generate "
                "a synthetic set with `python -m cbp.data.synthetic --out DIR`.",
            )
        image_dir, label_dir = self.root / "images" / split, self.root / "annotations" / split
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise layout_error(self.root, folder, ADE20K_LAYOUT)

        self.meta: dict | None = None
        meta_path = self.root / META_FILE
        if meta_path.exists():
            self.meta = _read_meta(meta_path)
            self.num_classes = int(self.meta["num_classes"])
            self.class_names = list(self.meta["class_names"])
            self.pixel_counts = np.asarray(self.meta["pixel_counts"], dtype=np.float64)
            palette = self.meta.get("palette")
            self.palette = (
                np.asarray(palette, dtype=np.uint8) if palette else _fallback_palette(self.num_classes)
            )
        else:
            self.num_classes = len(ADE20K_CLASSES)
            self.class_names = list(ADE20K_CLASSES)
            self.pixel_counts = ade20k_pixel_counts()
            self.palette = ADE20K_PALETTE.copy()
        self._lut = reduce_zero_label_lut(self.num_classes)

        self.files = _pair_files(image_dir, label_dir, ".png", self.root, ADE20K_LAYOUT)

    def load_label(self, path: Path) -> torch.Tensor:
        """Read an annotation PNG and apply ``reduce_zero_label`` -> int64 (H, W)."""
        return map_label(
            read_label_png(path), self._lut, path, f"0 (other) or 1..{self.num_classes} (or 255)"
        )


def _pair_files(
    image_dir: Path, label_dir: Path, label_suffix: str, root: Path, layout: str
) -> list[tuple[Path, Path]]:
    """Pair every image with ``label_dir/<stem><label_suffix>``; a missing label is an error."""
    images = list_images(image_dir)
    if not images:
        raise layout_error(root, image_dir / "*.jpg", layout, f"({image_dir} exists but holds no images)")
    present = {p.name for p in label_dir.iterdir()}
    files = [(p, label_dir / (p.stem + label_suffix)) for p in images]
    missing = [(img, lab) for img, lab in files if lab.name not in present]
    if missing:
        img, lab = missing[0]
        raise FileNotFoundError(
            f"image {img} has no label: expected {lab} ({len(missing)} of {len(files)} images lack labels). "
            f"Expected layout under {root}:\n{layout}"
        )
    check_regular([p for pair in files for p in pair], root)
    return files


def load_meta(path: Path) -> dict:
    """The JSON object in ``path`` (a set's ``cbp_meta.json``).

    Raises:
        UnreadableFileError: the file cannot be read or is not a JSON object (the message names it).
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
        raise UnreadableFileError(
            f"cannot read {path}: {type(e).__name__}: {e}. Delete the folder and regenerate the synthetic set."
        ) from None
    if not isinstance(meta, dict):
        raise UnreadableFileError(
            f"{path} holds a JSON {type(meta).__name__}, not an object. Delete the folder and regenerate the "
            "synthetic set."
        )
    return meta


def _read_meta(path: Path) -> dict:
    meta = load_meta(path)
    missing = [k for k in ("num_classes", "class_names", "pixel_counts") if k not in meta]
    if missing:
        raise UnreadableFileError(
            f"{path} lacks the keys {missing}: regenerate it with `python -m cbp.data.synthetic`"
        )
    if len(meta["class_names"]) != meta["num_classes"] or len(meta["pixel_counts"]) != meta["num_classes"]:
        raise UnreadableFileError(
            f"{path} is inconsistent: class_names / pixel_counts lengths differ from num_classes"
        )
    return meta


def _fallback_palette(n: int) -> np.ndarray:
    """Deterministic distinct-ish colours for a class count without a shipped palette."""
    if n <= len(ADE20K_PALETTE):
        return ADE20K_PALETTE[:n].copy()
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 3), dtype=np.uint8)
