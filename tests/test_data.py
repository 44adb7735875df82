"""Dataset readers on tiny fixtures written in the real ADE20K and COCO-Stuff-10K layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from cbp.data import ADE20K, COCOStuff10K, build_dataset
from cbp.data.classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    COCOSTUFF_CLASSES,
    COCOSTUFF_ID_TO_TRAIN_ID,
    COCOSTUFF_PALETTE,
    ade20k_pixel_counts,
    cocostuff_raw_lut,
)
from cbp.engine.errors import EXIT_DATA, describe
from cbp.io import UnreadableFileError


def _rand_image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write_ade(root: Path, labels: dict[str, dict[str, np.ndarray]], image_ext: str = ".png") -> None:
    """labels[split][stem] = uint8 (H, W) raw annotation; images are random (PNG keeps them exact)."""
    for split, items in labels.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for k, (stem, lab) in enumerate(items.items()):
            Image.fromarray(_rand_image(*lab.shape, k)).save(root / "images" / split / f"{stem}{image_ext}")
            Image.fromarray(lab.astype(np.uint8), mode="L").save(root / "annotations" / split / f"{stem}.png")


@pytest.fixture
def ade_root(tmp_path: Path) -> Path:
    root = tmp_path / "ADEChallengeData2016"
    lab_a = np.array([[0, 1, 2, 150], [150, 149, 0, 1], [5, 5, 5, 5]], dtype=np.uint8)  # (3, 4)
    lab_b = np.full((5, 6), 7, dtype=np.uint8)
    _write_ade(
        root,
        {
            "training": {"ADE_train_00000001": lab_a, "ADE_train_00000002": lab_b},
            "validation": {"ADE_val_00000001": lab_b},
        },
    )
    return root


# --- class metadata ------------------------------------------------------------------------------
def test_class_tables() -> None:
    assert len(ADE20K_CLASSES) == 150 and ADE20K_CLASSES[:3] == ("wall", "building", "sky")
    assert ADE20K_CLASSES[-1] == "flag" and ADE20K_CLASSES[44] == "chest of drawers"
    assert ADE20K_PALETTE.shape == (150, 3) and ADE20K_PALETTE.dtype == np.uint8
    assert ADE20K_PALETTE[0].tolist() == [120, 120, 120] and ADE20K_PALETTE[-1].tolist() == [92, 0, 255]
    counts = ade20k_pixel_counts()
    assert (
        counts.shape == (150,) and counts[0] == pytest.approx(0.1576) and counts[-1] == pytest.approx(0.0002)
    )
    assert np.all(np.diff(counts) <= 0)  # the table is in frequency order
    assert len(COCOSTUFF_CLASSES) == 171 and COCOSTUFF_PALETTE.shape == (171, 3)
    assert (
        COCOSTUFF_CLASSES[0] == "person"
        and COCOSTUFF_CLASSES[80] == "banner"
        and COCOSTUFF_CLASSES[-1] == "wood"
    )


def test_cocostuff_mapping_matches_mmseg_table() -> None:
    # hand-copied entries of mmseg's clsID_to_trID (tools/dataset_converters/coco_stuff10k.py)
    expected = {0: 0, 1: 1, 11: 11, 13: 12, 25: 24, 27: 25, 28: 26, 31: 27, 44: 40, 46: 41, 65: 60, 67: 61,
                70: 62, 72: 63, 82: 73, 84: 74, 90: 80, 92: 81, 120: 109, 182: 171}  # fmt: skip
    for raw, tr in expected.items():
        assert COCOSTUFF_ID_TO_TRAIN_ID[raw] == tr
    assert len(COCOSTUFF_ID_TO_TRAIN_ID) == 172  # 0 + 171 classes
    for unused in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91):
        assert unused not in COCOSTUFF_ID_TO_TRAIN_ID
    lut = cocostuff_raw_lut()
    assert lut[[0, 1, 13, 92, 182, 255]].tolist() == [255, 0, 11, 80, 170, 255]
    assert lut[[12, 183, 254]].tolist() == [-1, -1, -1]


# --- ADE20K --------------------------------------------------------------------------------------
def test_ade20k_reads_and_reduces_zero_label(ade_root: Path) -> None:
    ds = ADE20K(ade_root, "training")
    assert len(ds) == 2 and ds.num_classes == 150 and ds.class_names[0] == "wall"
    assert ds.pixel_counts.shape == (150,) and ds.palette.shape == (150, 3)
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 3, 4)
    assert label.dtype == torch.int64 and label.shape == (3, 4)
    expected = torch.tensor([[255, 0, 1, 149], [149, 148, 255, 0], [4, 4, 4, 4]])
    torch.testing.assert_close(label, expected)
    # the image is the file's pixels, channels first
    torch.testing.assert_close(image, torch.from_numpy(_rand_image(3, 4, 0)).permute(2, 0, 1))
    assert [p.name for p, _ in ds.files] == ["ADE_train_00000001.png", "ADE_train_00000002.png"]
    val = ADE20K(ade_root, "validation", transform=lambda im, lab: (im.shape, lab.unique().tolist()))
    assert val[0] == (torch.Size([3, 5, 6]), [6])


def test_ade20k_jpg_images(tmp_path: Path) -> None:
    _write_ade(tmp_path, {"training": {"a": np.ones((8, 8), np.uint8)}}, image_ext=".jpg")
    image, label = ADE20K(tmp_path, "training")[0]
    assert image.shape == (3, 8, 8) and (label == 0).all()


def test_ade20k_missing_root_shows_layout(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"(?s)does not exist.*images/training/\*\.jpg.*annotations/training"
    ):
        ADE20K(tmp_path / "nowhere", "training")
    (tmp_path / "images" / "training").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"annotations/training"):
        ADE20K(tmp_path, "training")
    with pytest.raises(ValueError, match="split"):
        ADE20K(tmp_path, "train")


def test_ade20k_missing_label_names_expected_path(ade_root: Path) -> None:
    (ade_root / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    expected = ade_root / "annotations" / "training" / "ADE_train_00000002.png"
    with pytest.raises(FileNotFoundError, match="ADE_train_00000002.png has no label") as err:
        ADE20K(ade_root, "training")
    assert str(expected) in str(err.value)


def test_ade20k_label_out_of_range_raises(ade_root: Path) -> None:
    path = ade_root / "annotations" / "training" / "ADE_train_00000002.png"
    Image.fromarray(np.array([[1, 151], [200, 3]], dtype=np.uint8), mode="L").save(path)
    Image.fromarray(_rand_image(2, 2, 0)).save(ade_root / "images" / "training" / "ADE_train_00000002.png")
    ds = ADE20K(ade_root, "training")
    with pytest.raises(
        ValueError, match=r"ADE_train_00000002\.png holds values outside the classes: 151, 200"
    ):
        ds[1]


def test_ade20k_unreadable_and_bad_files(ade_root: Path) -> None:
    bad = ade_root / "images" / "training" / "ADE_train_00000001.png"
    bad.write_bytes(b"not an image")
    ds = ADE20K(ade_root, "training")
    with pytest.raises(UnreadableFileError, match="cannot read image .*ADE_train_00000001.png"):
        ds[0]
    # colour label
    Image.fromarray(_rand_image(5, 6, 1)).save(
        ade_root / "annotations" / "training" / "ADE_train_00000002.png"
    )
    with pytest.raises(ValueError, match="single-channel"):
        ds[1]
    # size mismatch
    Image.fromarray(np.ones((4, 4), np.uint8), mode="L").save(
        ade_root / "annotations" / "training" / "ADE_train_00000002.png"
    )
    with pytest.raises(ValueError, match="same size"):
        ds[1]


@pytest.mark.skipif(
    not Path("/dev/zero").exists() or not hasattr(os, "mkfifo"), reason="needs a FIFO and /dev/zero"
)
def test_files_that_are_not_regular_are_refused_at_indexing(ade_root: Path, tmp_path: Path) -> None:
    """A FIFO label (reading it hangs) and an image linked to /dev/zero (silently left out): refused
    when the set is indexed, each named, as a data error (exit code 4)."""
    label = ade_root / "annotations" / "training" / "ADE_train_00000001.png"
    label.unlink()
    os.mkfifo(label)
    image = ade_root / "images" / "training" / "ADE_train_00000002.png"
    image.unlink()
    image.symlink_to("/dev/zero")
    with pytest.raises(UnreadableFileError) as e:
        ADE20K(ade_root, "training")
    message = str(e.value)
    assert f"{label} (a FIFO)" in message and f"{image} (a character device)" in message
    assert describe(e.value)[0] == EXIT_DATA and "\n" not in message
    assert len(ADE20K(ade_root, "validation")) == 1  # the other split is untouched
    _write_coco_raw(tmp_path)
    mat = tmp_path / "annotations" / "COCO_train2014_000000000078.mat"
    mat.unlink()
    os.mkfifo(mat)
    with pytest.raises(UnreadableFileError, match=rf"{mat} \(a FIFO\)"):
        COCOStuff10K(tmp_path, "train")


def test_ade20k_reads_meta_for_other_class_counts(tmp_path: Path) -> None:
    _write_ade(tmp_path, {"training": {"a": np.array([[0, 1], [2, 3]], np.uint8)}})
    meta = {"num_classes": 3, "class_names": ["x", "y", "z"], "pixel_counts": [5, 3, 1]}
    (tmp_path / "cbp_meta.json").write_text(json.dumps(meta))
    ds = ADE20K(tmp_path, "training")
    assert ds.num_classes == 3 and ds.class_names == ["x", "y", "z"] and ds.pixel_counts.tolist() == [5, 3, 1]
    torch.testing.assert_close(ds[0][1], torch.tensor([[255, 0], [1, 2]]))
    meta["num_classes"], meta["class_names"], meta["pixel_counts"] = 2, ["x", "y"], [1, 1]
    (tmp_path / "cbp_meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="outside the classes: 3"):
        ADE20K(tmp_path, "training")[0]


# --- COCO-Stuff-10K ------------------------------------------------------------------------------
RAW_IDS = np.array([[0, 1, 11, 13], [27, 92, 182, 0], [1, 1, 1, 1]], dtype=np.uint8)  # (3, 4)
RAW_EXPECTED = torch.tensor([[255, 0, 10, 11], [24, 80, 170, 255], [0, 0, 0, 0]])  # hand-computed


def _write_coco_raw(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    (root / "imageLists").mkdir()
    names = {
        "train": ["COCO_train2014_000000000077", "COCO_train2014_000000000078"],
        "test": ["COCO_val2014_1"],
    }
    for split, stems in names.items():
        (root / "imageLists" / f"{split}.txt").write_text("\n".join(stems) + "\n")
        for k, stem in enumerate(stems):
            Image.fromarray(_rand_image(3, 4, k)).save(root / "images" / f"{stem}.jpg")
            scipy.io.savemat(root / "annotations" / f"{stem}.mat", {"S": np.roll(RAW_IDS, k, axis=1)})


def test_cocostuff_raw_layout(tmp_path: Path) -> None:
    _write_coco_raw(tmp_path)
    ds = COCOStuff10K(tmp_path, "train")
    assert ds.layout == "raw" and len(ds) == 2 and ds.num_classes == 171 and ds.pixel_counts is None
    image, label = ds[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 3, 4) and label.dtype == torch.int64
    torch.testing.assert_close(label, RAW_EXPECTED)
    torch.testing.assert_close(ds[1][1], torch.roll(RAW_EXPECTED, 1, dims=1))
    assert len(COCOStuff10K(tmp_path, "test")) == 1


def test_cocostuff_raw_errors(tmp_path: Path) -> None:
    _write_coco_raw(tmp_path)
    scipy.io.savemat(
        tmp_path / "annotations" / "COCO_train2014_000000000078.mat", {"S": np.array([[1, 12]], np.uint8)}
    )
    with pytest.raises(ValueError, match=r"000000000078\.mat holds values outside the classes: 12"):
        COCOStuff10K(tmp_path, "train")[1]
    scipy.io.savemat(
        tmp_path / "annotations" / "COCO_train2014_000000000078.mat", {"T": np.array([[1]], np.uint8)}
    )
    with pytest.raises(ValueError, match="no key 'S'"):
        COCOStuff10K(tmp_path, "train")[1]
    (tmp_path / "annotations" / "COCO_val2014_1.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no label: expected .*COCO_val2014_1\.mat"):
        COCOStuff10K(tmp_path, "test")


def test_cocostuff_converted_layout(tmp_path: Path) -> None:
    for split in ("train2014", "test2014"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "annotations" / split).mkdir(parents=True)
    stem = "COCO_train2014_000000000077"
    Image.fromarray(_rand_image(2, 3, 0)).save(tmp_path / "images" / "train2014" / f"{stem}.jpg")
    png = tmp_path / "annotations" / "train2014" / f"{stem}_labelTrainIds.png"
    Image.fromarray(np.array([[0, 1, 171], [255, 2, 81]], np.uint8), mode="L").save(png)
    ds = COCOStuff10K(tmp_path, "train")
    assert ds.layout == "converted"
    torch.testing.assert_close(ds[0][1], torch.tensor([[255, 0, 170], [255, 1, 80]]))
    Image.fromarray(np.array([[172, 1]], np.uint8), mode="L").save(png)
    Image.fromarray(_rand_image(1, 2, 0)).save(tmp_path / "images" / "train2014" / f"{stem}.jpg")
    with pytest.raises(ValueError, match="outside the classes: 172"):
        ds[0]
    with pytest.raises(FileNotFoundError, match="no images"):
        COCOStuff10K(tmp_path, "test")


def test_cocostuff_missing_root_shows_both_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)imageLists/train\.txt.*_labelTrainIds\.png"):
        COCOStuff10K(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="neither layout"):
        COCOStuff10K(tmp_path)


# --- build_dataset -------------------------------------------------------------------------------
def test_build_dataset(ade_root: Path, tmp_path: Path) -> None:
    assert build_dataset("ade20k", ade_root, "train", None).split == "training"
    assert build_dataset("ade20k", ade_root, "val", None).split == "validation"
    assert build_dataset("ade20k", ade_root, "validation", None).split == "validation"
    coco = tmp_path / "coco"
    _write_coco_raw(coco)
    assert build_dataset("cocostuff10k", coco, "val", None).split == "test"
    with pytest.raises(KeyError, match="ade20k.*cocostuff10k.*synthetic"):
        build_dataset("ade21k", ade_root, "train", None)
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("ade20k", ade_root, "test", None)
    with pytest.raises(FileNotFoundError, match="python -m cbp.data.synthetic"):
        build_dataset("synthetic", ade_root, "train", None)
