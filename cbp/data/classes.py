"""Class metadata that ships with the package: names, palettes, pixel statistics, label mappings.

ADE20K (SceneParsing, 150 classes)
    Names and training pixel ratios come from ``ade20k_objectinfo150.tsv`` (the dataset's own
    ``objectInfo150`` table, shipped beside this module). Index ``i`` of every array here is the
    *training id* ``i`` (annotation PNG value ``i + 1``; PNG value 0 is "other" and is ignored).
    The names are the table's first names, which equal mmsegmentation's ``ADE20KDataset`` names
    except class 89 ("television" here, "television receiver" in mmseg) and mmseg's stray trailing
    space in "bed ". The palette is mmsegmentation's ``ADE20KDataset`` palette, copied exactly.

COCO-Stuff-10K (171 classes)
    Names and palette are mmsegmentation's ``COCOStuffDataset``. The raw release stores, in each
    ``annotations/*.mat`` file, a matrix ``S`` of COCO ids 0..182 (0 = unlabeled; 11 of the ids
    1..182 are unused). mmseg's converter (``tools/dataset_converters/coco_stuff10k.py``) maps them
    with ``clsID_to_trID`` to 1..171 (0 stays 0) and its config loads the result with
    ``reduce_zero_label=True``; so the final training id is ``clsID_to_trID[id] - 1`` and 0 becomes
    255. :func:`cocostuff_raw_lut` and :func:`cocostuff_train_id_lut` build both steps as lookup tables.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

_TSV = Path(__file__).with_name("ade20k_objectinfo150.tsv")

#: Label value meaning "not a class" everywhere in cbp.
IGNORE_INDEX = 255


@lru_cache(maxsize=1)
def _ade20k_table() -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Parse the shipped objectInfo150 table -> (names, stuff flags (150,), pixel ratios (150,))."""
    names, stuff, ratios, indices = [], [], [], []
    with open(_TSV, newline="") as f:
        rows = csv.DictReader((line for line in f if not line.startswith("#")), delimiter="\t")
        for row in rows:
            indices.append(int(row["index"]))
            names.append(row["name"].split(";")[0].strip())
            stuff.append(int(row["stuff"]))
            ratios.append(float(row["pixel_ratio"]))
    if indices != list(range(1, 151)):
        raise RuntimeError(f"{_TSV} is damaged: expected indices 1..150 in order, got {len(indices)} rows")
    return tuple(names), np.asarray(stuff, dtype=bool), np.asarray(ratios, dtype=np.float64)


#: The 150 ADE20K class names, index = training id (annotation PNG value - 1).
ADE20K_CLASSES: tuple[str, ...] = _ade20k_table()[0]


def ade20k_pixel_counts() -> np.ndarray:
    """Relative training pixel counts of the 150 ADE20K classes.

    Returns:
        float64 array (150,): each class's *share of all training pixels* (the ``Ratio`` column of
        objectInfo150, 4 decimals), not absolute counts. It is proportional to the pixel counts, which
        is all that frequency ranks, frequency groups and log-count correlations need.
    """
    return _ade20k_table()[2].copy()


def ade20k_is_stuff() -> np.ndarray:
    """bool array (150,): True for "stuff" classes (wall, sky, ...), False for "things"."""
    return _ade20k_table()[1].copy()


# fmt: off
#: mmsegmentation's ADE20KDataset palette, (150, 3) RGB uint8.
ADE20K_PALETTE: np.ndarray = np.array([
    [120, 120, 120], [180, 120, 120], [6, 230, 230], [80, 50, 50], [4, 200, 3], [120, 120, 80],
    [140, 140, 140], [204, 5, 255], [230, 230, 230], [4, 250, 7], [224, 5, 255], [235, 255, 7],
    [150, 5, 61], [120, 120, 70], [8, 255, 51], [255, 6, 82], [143, 255, 140], [204, 255, 4],
    [255, 51, 7], [204, 70, 3], [0, 102, 200], [61, 230, 250], [255, 6, 51], [11, 102, 255],
    [255, 7, 71], [255, 9, 224], [9, 7, 230], [220, 220, 220], [255, 9, 92], [112, 9, 255],
    [8, 255, 214], [7, 255, 224], [255, 184, 6], [10, 255, 71], [255, 41, 10], [7, 255, 255],
    [224, 255, 8], [102, 8, 255], [255, 61, 6], [255, 194, 7], [255, 122, 8], [0, 255, 20],
    [255, 8, 41], [255, 5, 153], [6, 51, 255], [235, 12, 255], [160, 150, 20], [0, 163, 255],
    [140, 140, 140], [250, 10, 15], [20, 255, 0], [31, 255, 0], [255, 31, 0], [255, 224, 0],
    [153, 255, 0], [0, 0, 255], [255, 71, 0], [0, 235, 255], [0, 173, 255], [31, 0, 255],
    [11, 200, 200], [255, 82, 0], [0, 255, 245], [0, 61, 255], [0, 255, 112], [0, 255, 133],
    [255, 0, 0], [255, 163, 0], [255, 102, 0], [194, 255, 0], [0, 143, 255], [51, 255, 0],
    [0, 82, 255], [0, 255, 41], [0, 255, 173], [10, 0, 255], [173, 255, 0], [0, 255, 153],
    [255, 92, 0], [255, 0, 255], [255, 0, 245], [255, 0, 102], [255, 173, 0], [255, 0, 20],
    [255, 184, 184], [0, 31, 255], [0, 255, 61], [0, 71, 255], [255, 0, 204], [0, 255, 194],
    [0, 255, 82], [0, 10, 255], [0, 112, 255], [51, 0, 255], [0, 194, 255], [0, 122, 255],
    [0, 255, 163], [255, 153, 0], [0, 255, 10], [255, 112, 0], [143, 255, 0], [82, 0, 255],
    [163, 255, 0], [255, 235, 0], [8, 184, 170], [133, 0, 255], [0, 255, 92], [184, 0, 255],
    [255, 0, 31], [0, 184, 255], [0, 214, 255], [255, 0, 112], [92, 255, 0], [0, 224, 255],
    [112, 224, 255], [70, 184, 160], [163, 0, 255], [153, 0, 255], [71, 255, 0], [255, 0, 163],
    [255, 204, 0], [255, 0, 143], [0, 255, 235], [133, 255, 0], [255, 0, 235], [245, 0, 255],
    [255, 0, 122], [255, 245, 0], [10, 190, 212], [214, 255, 0], [0, 204, 255], [20, 0, 255],
    [255, 255, 0], [0, 153, 255], [0, 41, 255], [0, 255, 204], [41, 0, 255], [41, 255, 0],
    [173, 0, 255], [0, 245, 255], [71, 0, 255], [122, 0, 255], [0, 255, 184], [0, 92, 255],
    [184, 255, 0], [0, 133, 255], [255, 214, 0], [25, 194, 194], [102, 255, 0], [92, 0, 255],
], dtype=np.uint8)

#: mmsegmentation's COCOStuffDataset class names (171), index = training id.
COCOSTUFF_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)

#: mmsegmentation's COCOStuffDataset palette, (171, 3) RGB uint8 (its first two entries are equal, as in mmseg).
COCOSTUFF_PALETTE: np.ndarray = np.array([
    [0, 192, 64], [0, 192, 64], [0, 64, 96], [128, 192, 192], [0, 64, 64], [0, 192, 224],
    [0, 192, 192], [128, 192, 64], [0, 192, 96], [128, 192, 64], [128, 32, 192], [0, 0, 224],
    [0, 0, 64], [0, 160, 192], [128, 0, 96], [128, 0, 192], [0, 32, 192], [128, 128, 224],
    [0, 0, 192], [128, 160, 192], [128, 128, 0], [128, 0, 32], [128, 32, 0], [128, 0, 128],
    [64, 128, 32], [0, 160, 0], [0, 0, 0], [192, 128, 160], [0, 32, 0], [0, 128, 128],
    [64, 128, 160], [128, 160, 0], [0, 128, 0], [192, 128, 32], [128, 96, 128], [0, 0, 128],
    [64, 0, 32], [0, 224, 128], [128, 0, 0], [192, 0, 160], [0, 96, 128], [128, 128, 128],
    [64, 0, 160], [128, 224, 128], [128, 128, 64], [192, 0, 32], [128, 96, 0], [128, 0, 192],
    [0, 128, 32], [64, 224, 0], [0, 0, 64], [128, 128, 160], [64, 96, 0], [0, 128, 192],
    [0, 128, 160], [192, 224, 0], [0, 128, 64], [128, 128, 32], [192, 32, 128], [0, 64, 192],
    [0, 0, 32], [64, 160, 128], [128, 64, 64], [128, 0, 160], [64, 32, 128], [128, 192, 192],
    [0, 0, 160], [192, 160, 128], [128, 192, 0], [128, 0, 96], [192, 32, 0], [128, 64, 128],
    [64, 128, 96], [64, 160, 0], [0, 64, 0], [192, 128, 224], [64, 32, 0], [0, 192, 128],
    [64, 128, 224], [192, 160, 0], [0, 192, 0], [192, 128, 96], [192, 96, 128], [0, 64, 128],
    [64, 0, 96], [64, 224, 128], [128, 64, 0], [192, 0, 224], [64, 96, 128], [128, 192, 128],
    [64, 0, 224], [192, 224, 128], [128, 192, 64], [192, 0, 96], [192, 96, 0], [128, 64, 192],
    [0, 128, 96], [0, 224, 0], [64, 64, 64], [128, 128, 224], [0, 96, 0], [64, 192, 192],
    [0, 128, 224], [128, 224, 0], [64, 192, 64], [128, 128, 96], [128, 32, 128], [64, 0, 192],
    [0, 64, 96], [0, 160, 128], [192, 0, 64], [128, 64, 224], [0, 32, 128], [192, 128, 192],
    [0, 64, 224], [128, 160, 128], [192, 128, 0], [128, 64, 32], [128, 32, 64], [192, 0, 128],
    [64, 192, 32], [0, 160, 64], [64, 0, 0], [192, 192, 160], [0, 32, 64], [64, 128, 128],
    [64, 192, 160], [128, 160, 64], [64, 128, 0], [192, 192, 32], [128, 96, 192], [64, 0, 128],
    [64, 64, 32], [0, 224, 192], [192, 0, 0], [192, 64, 160], [0, 96, 192], [192, 128, 128],
    [64, 64, 160], [128, 224, 192], [192, 128, 64], [192, 64, 32], [128, 96, 64], [192, 0, 192],
    [0, 192, 32], [64, 224, 64], [64, 0, 64], [128, 192, 160], [64, 96, 64], [64, 128, 192],
    [0, 192, 160], [192, 224, 64], [64, 128, 64], [128, 192, 32], [192, 32, 192], [64, 64, 192],
    [0, 64, 32], [64, 160, 192], [192, 64, 64], [128, 64, 160], [64, 32, 192], [192, 192, 192],
    [0, 64, 160], [192, 160, 192], [192, 192, 0], [128, 64, 96], [192, 32, 64], [192, 64, 128],
    [64, 192, 96], [64, 160, 64], [64, 64, 0],
], dtype=np.uint8)
# fmt: on

#: COCO ids 1..182 that COCO-Stuff never uses (things removed from COCO's 91-id list).
_COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)

#: mmseg's ``clsID_to_trID`` (tools/dataset_converters/coco_stuff10k.py): raw COCO-Stuff-10K id
#: (the .mat ``S`` value) -> converted label id 0..171 (0 = unlabeled, classes 1..171). The used ids
#: are numbered consecutively in increasing order, which is exactly mmseg's table.
COCOSTUFF_ID_TO_TRAIN_ID: dict[int, int] = {0: 0} | {
    coco_id: train_id
    for train_id, coco_id in enumerate((i for i in range(1, 183) if i not in _COCO_UNUSED_IDS), start=1)
}


def cocostuff_raw_lut() -> np.ndarray:
    """Lookup table raw COCO-Stuff-10K id (``.mat`` ``S`` value) -> cbp training id.

    Returns:
        int64 array (256,): 0 (unlabeled) -> 255; used ids -> ``clsID_to_trID[id] - 1`` in 0..170;
        255 -> 255 (ignore, as mmseg's convert-then-``reduce_zero_label`` treats it); every other
        value (unused ids, 183..254) -> -1, which the loader reports as an error.
    """
    lut = np.full(256, -1, dtype=np.int64)
    for raw, train_id in COCOSTUFF_ID_TO_TRAIN_ID.items():
        lut[raw] = train_id - 1 if train_id > 0 else IGNORE_INDEX
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def cocostuff_train_id_lut() -> np.ndarray:
    """Lookup table for mmseg-converted ``*_labelTrainIds.png`` values -> cbp training id.

    Returns:
        int64 array (256,): 0 -> 255, 1..171 -> 0..170, 255 -> 255 (``reduce_zero_label``), others -> -1.
    """
    return reduce_zero_label_lut(len(COCOSTUFF_CLASSES))


def reduce_zero_label_lut(num_classes: int) -> np.ndarray:
    """mmseg's ``reduce_zero_label`` as a lookup table for PNG values 0..255.

    Args:
        num_classes: number of classes N; PNG values 1..N are classes.

    Returns:
        int64 array (256,): 0 -> 255, v in 1..N -> v - 1, 255 -> 255, anything else -> -1 (invalid).
    """
    if not 1 <= num_classes <= 254:
        raise ValueError(
            f"reduce_zero_label needs 1 <= num_classes <= 254 to fit uint8 PNGs, got {num_classes}"
        )
    lut = np.full(256, -1, dtype=np.int64)
    lut[0] = IGNORE_INDEX
    lut[1 : num_classes + 1] = np.arange(num_classes)
    lut[IGNORE_INDEX] = IGNORE_INDEX
    return lut


def _check_tables() -> None:
    assert len(ADE20K_CLASSES) == 150 and ADE20K_PALETTE.shape == (150, 3)
    assert len(COCOSTUFF_CLASSES) == 171 and COCOSTUFF_PALETTE.shape == (171, 3)
    assert max(COCOSTUFF_ID_TO_TRAIN_ID.values()) == 171 and COCOSTUFF_ID_TO_TRAIN_ID[182] == 171


_check_tables()
