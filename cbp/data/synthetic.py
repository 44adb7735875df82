r"""A synthetic long-tailed scene-parsing benchmark, written in the ADE20K layout.

Why: the paper's claims concern long-tailed, ambiguous scene parsing (ADE20K, COCO-Stuff). This set
keeps the two properties that matter for it, a long tail of class frequencies and groups of classes
that are hard to tell apart, in images small enough (64 x 64) for a CPU model to learn in minutes.
The set is written as ``images/{training,validation}/*.jpg`` + ``annotations/.../*.png`` (PNG value
``c + 1`` for class ``c``) and a ``cbp_meta.json``, and read by :class:`cbp.data.ADE20K`.
This docstring is reStructuredText with ``:math:`` roles: the book renders it twice, in the API
reference and on its page "The synthetic benchmark".

.. rubric:: Generative model

**Classes.** ``classes=150`` uses all ADE20K classes; ``classes=K < 150`` keeps ADE20K classes
``round(i * 150 / K)`` of the frequency-ordered list (``K = 50``: every third, starting at "wall").
Class :math:`c` has frequency :math:`p_c \propto r_c`, the ADE20K share of training pixels,
renormalised (150 classes: wall 17%, rarest 0.02%; 50 classes: wall 42%).

**Appearance** (drawn once per set from ``appearance_seed``). Class :math:`c` has a mean colour
:math:`\mu_c \sim U(0.15, 0.85)^3`, a sinusoid texture with orientation
:math:`\theta_c \sim U(0^\circ, 180^\circ)`, period :math:`\lambda_c` log-uniform in 3-12 px and
amplitude :math:`a_c \sim U(0.06, 0.22)`, and pixel noise :math:`\sigma_c \sim U(0.02, 0.10)`.
*Confusable groups* (16 for 150 classes, 6 for 50): classes are split into frequency thirds and each
group takes one frequent, one mid and one rare class (without replacement). The members share the
frequent member's colour (up to ``±0.015`` a channel), period, amplitude and noise, and differ only in
orientation, by 30° steps (offsets 0/30/60° assigned at random). This is the ambiguity the paper
targets: a frequent class next to rare look-alikes.

**Difficulty knobs** (amendment 6 of the study's protocol). ``lookalike_deg`` sets the orientation
step inside a group (30°), ``noise_scale`` and ``amplitude_scale`` multiply every :math:`\sigma_c` and
:math:`a_c`, and ``tail_power`` :math:`\alpha` shortens the tail (:math:`p_c \propto r_c^\alpha`, so rare
classes appear in more images while the frequency order stays ADE20K's); with ``num_groups`` (up to
``classes / 3``: every class has two look-alikes) and the image counts they set how hard the set is. They scale draws that are made whatever their value, so their
defaults give generator 2's sets bit for bit (same fingerprints).

**Layout** (``seed``). Each image is a Voronoi partition of :math:`n \sim U\{4, \dots, 9\}` distinct
random seed pixels; each cell takes a class drawn i.i.d. from :math:`p`. So pixel frequencies follow
:math:`p` and rare classes appear in few images (150 classes, 4000 training images: the rarest in
about 3-7 images). In validation, every class is additionally forced into ``min_val_images`` (6)
different images (one cell each) so that it can be scored; this flattens the far tail of the
validation distribution only.

**Rendering.** A pixel :math:`x` in cell :math:`j` of class :math:`c` in image :math:`i` gets

.. math::

   I(x) = \mathrm{clip}_{[0,1]}\Big(g_i\,\big[\mu_c + b_j + a_c \sin\big(2\pi\,
   \langle x, u(\theta_c + \delta_j)\rangle / (\lambda_c (1 + \epsilon_j)) + \varphi_j\big)
   + \sigma_c\,\eta(x)\big] + k_i + \ell_i(x) + 0.03\,\eta'(x)\Big)

where :math:`u(\theta) = (\cos\theta, \sin\theta)` and :math:`x = (\text{column}, \text{row})`,
with label-independent nuisance: per cell orientation jitter :math:`\delta_j \sim N(0, 4^\circ)`,
period jitter :math:`\epsilon_j \sim N(0, 0.04)`, phase :math:`\varphi_j \sim U(0, 2\pi)`,
brightness :math:`b_j \sim U(-0.04, 0.04)`; per image gain :math:`g_i \sim U(0.75, 1.25)`, colour
cast :math:`k_i \sim N(0, 0.05^2)^3`, linear light gradient :math:`\ell_i` (random direction,
``±0.15`` edge to edge); per pixel noise :math:`\eta, \eta' \sim N(0, 1)` per channel. The texture
is added to all three channels (a luminance pattern). Flips would turn orientation :math:`\theta`
into :math:`180^\circ - \theta`, so training on this set must not flip
(``TrainTransform.synthetic``).

**Storage.** JPEG at quality 98 with 4:4:4 chroma (PIL ``subsampling=0``). Measured on these images
(RMS error against the exact float render, in units of the 0-1 intensity range): PIL's default
q75 / 4:2:0 gives 0.083 (21.6 dB), more than the smallest texture amplitude 0.06, so it would wipe
out the finest (3 px) textures and halve colour resolution; q95 / 4:4:4 gives 0.016 (36 dB); q98 /
4:4:4 gives 0.007 (43 dB, ~10 kB an image), most of it in the pixel noise. The PSNR of each generated
set is recorded in ``cbp_meta.json["jpeg"]``; the tests check that a nearest-centroid classifier on
region colour and orientation, fitted on the stored JPEGs, still separates the classes.

**Portability** (version 2). The set is a pure function of its parameters: every random draw comes
from numpy's ``Generator`` streams, which numpy keeps stable across versions and CPUs, and nothing
depends on an order or a rounding that numpy leaves to the CPU. Version 1 took each image's seed
pixels from ``np.argpartition(keys)[:, :k]``, whose order numpy does not specify: numpy 2's AVX2 and
AVX-512 kernels both return the ``k`` smallest keys sorted, but break ties between equal float32 keys
(24-bit resolution, so a tie among the ``k`` smallest of 4096 keys happens in about 1 image in 1000)
in different orders, which gives two cells each other's classes; the scalar kernel (no AVX2) returns
another order altogether. Version 1 also drew the periods with numpy's ``exp`` / ``log``, whose
AVX-512 kernels round differently from the AVX2 and scalar ones, and rendered in float32, where
numpy's ``sin`` has CPU-specific kernels. Version 2 draws the same random numbers but selects seeds
by a stable sort (equal keys in pixel order, :func:`select_seeds`), takes ``exp`` / ``log`` from
Python's ``math`` and renders in float64 (element-wise IEEE arithmetic and float64 ``sin`` / ``cos``,
which numpy computes with the same scalar routine on every CPU here). What remains is the C
library's last-bit rounding of ``sin`` / ``cos`` / ``exp``: a difference would flip one 8-bit value
only if it fell within about 1e-13 of a rounding boundary. ``cbp_meta.json["fingerprint"]`` holds
SHA-256 digests of the labels, of the 8-bit render before JPEG, and of the decoded JPEGs (which
also depend on Pillow's JPEG library), so a set made elsewhere can be checked, part by part
(:func:`fingerprint`, :func:`compare_fingerprints`).

**Pretraining task.** ``pretrain=True`` (or another ``appearance_seed``) redraws every class
appearance and group while keeping the layout statistics, and uses a different layout stream: a
disjoint task of the same kind, for pretraining an encoder whose classifier is thrown away.

.. rubric:: Usage

From a shell, a 50-class set and its disjoint pretraining set::

    python -m cbp.data.synthetic --out data/synthetic50 --classes 50
    python -m cbp.data.synthetic --out data/synthetic50_pretrain --classes 50 --pretrain

or ``ensure_synthetic(root, classes=50)`` from Python (generates only if ``root/cbp_meta.json`` is
missing; the set is written to a temporary folder and renamed into place, so an interrupted run
never leaves a half set that looks complete).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image

from cbp.cli import EXIT_DATA, OneLineParser
from cbp.data.ade20k import META_FILE, load_meta
from cbp.data.classes import ADE20K_CLASSES, ADE20K_PALETTE, ade20k_pixel_counts
from cbp.io import remove_stale_temporaries

FORMAT = "cbp-synthetic"
VERSION = 2  # 1: seed order and float32 rendering depended on the CPU (see "Portability")
PRETRAIN_SEED_OFFSET = 1000
DEFAULT_GROUPS = {150: 16, 50: 6}


@dataclass(frozen=True)
class SyntheticParams:
    """Everything that determines the generated bytes (stored in ``cbp_meta.json["params"]``): the
    keyword arguments of :func:`generate` and :func:`ensure_synthetic`.

    Attributes:
        classes: 150 (all ADE20K classes) or fewer (every ``150 / classes``-th of the frequency order).
        train: number of training images.
        val: number of validation images.
        size: image side in pixels.
        seed: layout and rendering seed.
        appearance_seed: class-appearance seed; None = ``seed`` (``seed + 1000`` with ``pretrain``).
        pretrain: the disjoint pretraining task (other appearances, other layout stream).
        num_groups: confusable groups of three; None = 16 for 150 classes, 6 for 50, else classes // 9.
        min_cells: fewest Voronoi cells per image (uniform in ``min_cells .. max_cells``).
        max_cells: most Voronoi cells per image.
        min_val_images: every class is forced into this many validation images.
        jpeg_quality: JPEG quality (4:4:4 chroma always).
        lookalike_deg: orientation step between the members of a confusable group (30 degrees).
        noise_scale: factor on every class's pixel noise std.
        amplitude_scale: factor on every class's texture amplitude.
        tail_power: class frequencies are ADE20K's pixel shares to this power, renormalised (1: as ADE20K).

    The last four are the difficulty knobs of amendment 6's calibration; their defaults give generator
    2's sets bit for bit.
    """

    classes: int = 150
    train: int = 4000
    val: int = 900
    size: int = 64
    seed: int = 0
    appearance_seed: int | None = None
    pretrain: bool = False
    num_groups: int | None = None
    min_cells: int = 4
    max_cells: int = 9
    min_val_images: int = 6
    jpeg_quality: int = 98
    lookalike_deg: float = 30.0
    noise_scale: float = 1.0
    amplitude_scale: float = 1.0
    tail_power: float = 1.0

    def resolved(self) -> SyntheticParams:
        """Fill the None defaults and validate."""
        if not 1 <= self.classes <= 150:
            raise ValueError(f"classes must be in 1..150 (ADE20K classes), got {self.classes}")
        if self.size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {self.size}")
        if not 1 <= self.min_cells <= self.max_cells <= self.size * self.size:
            raise ValueError(f"need 1 <= min_cells <= max_cells, got {self.min_cells}, {self.max_cells}")
        if self.train < 1 or self.val < self.min_val_images:
            raise ValueError(
                f"need train >= 1 and val >= min_val_images ({self.min_val_images}) so every class can be "
                f"placed in that many validation images; got train={self.train}, val={self.val}"
            )
        forced_per_image = math.ceil(self.classes * self.min_val_images / self.val)
        if forced_per_image > self.size * self.size // 4:
            raise ValueError(f"val={self.val} is too small to hold every class {self.min_val_images} times")
        groups = self.num_groups
        if groups is None:
            groups = DEFAULT_GROUPS.get(self.classes, self.classes // 9)
        if 3 * groups > self.classes:
            raise ValueError(f"num_groups={groups} needs 3 * groups <= classes ({self.classes})")
        app = self.appearance_seed
        if app is None:
            app = self.seed + (PRETRAIN_SEED_OFFSET if self.pretrain else 0)
        if not 50 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 50..100, got {self.jpeg_quality}")
        if not 0.0 < self.lookalike_deg <= 60.0:
            raise ValueError(
                f"lookalike_deg must be in (0, 60] degrees (3 members x step <= 180), got {self.lookalike_deg}"
            )
        for name in ("noise_scale", "amplitude_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not 0.0 < self.tail_power <= 1.0:
            raise ValueError(f"tail_power must be in (0, 1] (1 keeps ADE20K's shares), got {self.tail_power}")
        return SyntheticParams(**(asdict(self) | {"num_groups": groups, "appearance_seed": app}))


@dataclass
class Appearance:
    """Per-class appearance parameters (N classes, G groups)."""

    colour: np.ndarray  # (N, 3) in [0, 1]
    theta: np.ndarray  # (N,) radians
    period: np.ndarray  # (N,) pixels
    amplitude: np.ndarray  # (N,)
    noise: np.ndarray  # (N,)
    groups: np.ndarray  # (G, 3) class ids: frequent, mid, rare


def class_table(classes: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The ADE20K classes the set uses.

    Returns:
        ade_ids int64 (N,) (0-based ADE20K training ids), names (N,), probabilities float64 (N,) summing to 1.
    """
    ade_ids = np.round(np.arange(classes) * 150 / classes).astype(np.int64)  # K=50 -> 0, 3, 6, ...
    ratios = ade20k_pixel_counts()[ade_ids]
    return ade_ids, [ADE20K_CLASSES[i] for i in ade_ids], ratios / math.fsum(ratios)  # fsum: exact


def flatten_tail(probs: np.ndarray, power: float) -> np.ndarray:
    """Class frequencies :math:`p_c^\\alpha` renormalised: (N,) -> (N,), same order, a shorter tail.

    ``power = 0.7`` on 150 classes turns ADE20K's wall-to-rarest ratio of about 790 into about 110, and
    gives each of the ten rarest classes about 27 cells in 4000 training images instead of about 8.
    Python's ``math.pow`` and ``math.fsum`` (not numpy's kernels) keep it the same on every CPU.
    """
    powered = [math.pow(float(q), power) for q in probs]
    total = math.fsum(powered)
    return np.array([q / total for q in powered], dtype=np.float64)


def draw_appearance(
    probs: np.ndarray,
    num_groups: int,
    rng: np.random.Generator,
    lookalike_deg: float = 30.0,
    noise_scale: float = 1.0,
    amplitude_scale: float = 1.0,
) -> Appearance:
    """Draw class appearances and confusable groups (see module docstring).

    The knobs scale draws that are made the same way whatever their value (a factor of 1.0 leaves
    every float unchanged), so the defaults reproduce generator 2's sets bit for bit.
    """
    n = len(probs)
    colour = rng.uniform(0.15, 0.85, size=(n, 3))
    theta = rng.uniform(0.0, np.pi, size=n)
    # math.exp / math.log, not numpy's: numpy's AVX-512 kernels round them differently (v1)
    period = np.array([math.exp(u) for u in rng.uniform(math.log(3.0), math.log(12.0), size=n)])
    amplitude = rng.uniform(0.06, 0.22, size=n) * amplitude_scale
    noise = rng.uniform(0.02, 0.10, size=n) * noise_scale
    order = np.argsort(-probs, kind="stable")  # most frequent first
    thirds = np.array_split(order, 3)
    groups = np.stack([rng.choice(t, size=num_groups, replace=False) for t in thirds], axis=1)  # (G, 3)
    if num_groups:
        lead = groups[:, 0]  # (G,)
        members = groups[:, 1:]  # (G, 2)
        colour[members] = np.clip(
            colour[lead][:, None, :] + rng.uniform(-0.015, 0.015, size=(num_groups, 2, 3)), 0, 1
        )
        for arr in (period, amplitude, noise):
            arr[members] = arr[lead][:, None]
        offsets = rng.permuted(np.tile(np.arange(3), (num_groups, 1)), axis=1) * np.deg2rad(
            lookalike_deg
        )  # (G, 3)
        theta[groups] = (theta[lead][:, None] + offsets) % np.pi
    return Appearance(colour, theta, period, amplitude, noise, groups.astype(np.int64))


def draw_layout(
    n_images: int,
    probs: np.ndarray,
    p: SyntheticParams,
    rng: np.random.Generator,
    forced: list[np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voronoi layouts.

    Returns:
        seeds int64 (B, K) flat pixel index of each cell's seed, cell_class int64 (B, K),
        valid bool (B, K) (cells beyond an image's count are unused), K = max cells per image.
    """
    n_cells = rng.integers(p.min_cells, p.max_cells + 1, size=n_images)  # (B,)
    if forced is not None:
        n_forced = np.array([len(f) for f in forced])
        n_cells = np.maximum(n_cells, n_forced)
    k = int(n_cells.max())
    pixels = p.size * p.size
    seeds = select_seeds(rng.random((n_images, pixels), dtype=np.float32), k)  # (B, K) distinct
    cell_class = rng.choice(len(probs), size=(n_images, k), p=probs)  # (B, K)
    if forced is not None:
        for i, f in enumerate(forced):  # at most one or two cells an image: a loop over images, not pixels
            cell_class[i, : len(f)] = f
    valid = np.arange(k)[None, :] < n_cells[:, None]  # (B, K)
    return seeds.astype(np.int64), cell_class, valid


def select_seeds(keys: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` pixels with the smallest keys in each row, in order of (key, pixel index).

    A stable sort makes the result a function of the keys alone: equal keys (float32 keys tie in about
    1 image in 1000) come in pixel order. ``np.argpartition`` would select the same set but leave its
    order, and which of two equal keys at the boundary is kept, to the CPU's kernel.

    Args:
        keys: (B, P) random keys, one per pixel.
        k: seeds per row, ``1 <= k <= P``.

    Returns:
        int64 (B, k) flat pixel indices.
    """
    return np.argsort(keys, axis=1, kind="stable")[:, :k].astype(np.int64)


def forced_validation_classes(
    num_classes: int, n_val: int, copies: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Assign each class to ``copies`` distinct validation images: list (per image) of class ids."""
    perm = rng.permutation(n_val)
    slots = np.arange(num_classes * copies)
    image_of_slot = perm[slots % n_val]  # consecutive slots of a class land in distinct images
    class_of_slot = slots // copies
    order = np.argsort(image_of_slot, kind="stable")
    bounds = np.searchsorted(image_of_slot[order], np.arange(n_val + 1))
    return [class_of_slot[order[bounds[i] : bounds[i + 1]]] for i in range(n_val)]


def render(
    seeds: np.ndarray,
    cell_class: np.ndarray,
    valid: np.ndarray,
    app: Appearance,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a batch of layouts (vectorised over images and pixels).

    Distances are exact integers (a pixel equidistant from two seeds goes to the first of them, in
    :func:`select_seeds` order) and the rendering is float64, so the result does not depend on which
    SIMD kernels numpy picks on this CPU (see "Portability" in the module docstring). The random
    draws are those of version 1 (the float32 pixel noise included).

    Returns:
        images float64 (B, S, S, 3) in [0, 1] (before quantisation), labels int64 (B, S, S) class ids.
    """
    b, k = cell_class.shape
    yy, xx = np.mgrid[0:size, 0:size]  # (S, S) int
    sy, sx = seeds // size, seeds % size  # (B, K)
    dist = (yy[None, None] - sy[:, :, None, None]) ** 2 + (xx[None, None] - sx[:, :, None, None]) ** 2
    dist[~valid] = 2 * size * size  # (B, K, S, S) int, beyond any real squared distance
    cell = dist.argmin(axis=1).reshape(b, -1)  # (B, S*S) first minimum: specified, not CPU-dependent
    labels = np.take_along_axis(cell_class, cell, axis=1)  # (B, S*S)

    # per-cell nuisance (B, K)
    theta = app.theta[cell_class] + np.deg2rad(4.0) * rng.standard_normal((b, k))
    period = app.period[cell_class] * (1.0 + 0.04 * rng.standard_normal((b, k)))
    phase = rng.uniform(0, 2 * np.pi, size=(b, k))
    bright = rng.uniform(-0.04, 0.04, size=(b, k))

    def per_pixel(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, cell, axis=1)  # (B, S*S)

    x, y = xx.reshape(1, -1).astype(np.float64), yy.reshape(1, -1).astype(np.float64)  # (1, S*S)
    th = per_pixel(theta)
    wave = np.sin(
        2 * np.pi * (x * np.cos(th) + y * np.sin(th)) / per_pixel(period) + per_pixel(phase)
    )  # (B, S*S)
    noise = rng.standard_normal((b, size * size, 3), dtype=np.float32).astype(np.float64)
    value = (
        app.colour[labels]  # (B, S*S, 3)
        + (per_pixel(bright) + app.amplitude[labels] * wave)[..., None]
        + app.noise[labels][..., None] * noise
    )
    # per-image nuisance
    gain = rng.uniform(0.75, 1.25, size=(b, 1, 1))
    cast = 0.05 * rng.standard_normal((b, 1, 3))
    angle = rng.uniform(0, 2 * np.pi, size=(b, 1))
    strength = rng.uniform(-0.15, 0.15, size=(b, 1))
    ramp = (
        strength * ((x - (size - 1) / 2) * np.cos(angle) + (y - (size - 1) / 2) * np.sin(angle)) / (size / 2)
    )
    sensor = rng.standard_normal((b, size * size, 3), dtype=np.float32).astype(np.float64)
    image = gain * value + cast + ramp[..., None] + 0.03 * sensor
    image = np.clip(image, 0.0, 1.0).reshape(b, size, size, 3)  # (B, S, S, 3) float64
    return image, labels.reshape(b, size, size)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """uint8 (S, S, 3) -> JPEG bytes with 4:4:4 chroma (no subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _split_stream(p: SyntheticParams, split: int) -> np.random.Generator:
    return np.random.default_rng([p.seed, split, 1 if p.pretrain else 0, 20240])


FINGERPRINT_PARTS = ("labels", "render", "images")


def _hashers() -> dict[str, hashlib._Hash]:
    return {part: hashlib.sha256() for part in FINGERPRINT_PARTS}


def _digest(hashers: dict[str, hashlib._Hash]) -> dict[str, str]:
    """The parts' hex digests plus ``"sha256"``, a digest of the parts (one string to compare)."""
    out = {part: h.hexdigest() for part, h in hashers.items()}
    out["sha256"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    return out


def _update(hashers: dict[str, hashlib._Hash], part: str, stem: str, array: np.ndarray) -> None:
    """Feed one file's name, shape and uint8 content to the digest of ``part``."""
    hashers[part].update(f"{stem}:{array.shape}:".encode())
    hashers[part].update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fingerprint(root: str | Path) -> dict[str, str]:
    """SHA-256 digests of a set on disk, recomputed from its files (both splits, in file order).

    ``labels`` digests the decoded PNG values, ``images`` the decoded JPEG pixels (so it also depends
    on the JPEG decoder of this Pillow build); ``render`` (the 8-bit image before JPEG) is not stored
    and is taken from ``cbp_meta.json``, where generation wrote it. Compare with
    ``cbp_meta.json["fingerprint"]`` by :func:`compare_fingerprints`.
    """
    root = Path(root)
    hashers = _hashers()
    for split in ("training", "validation"):
        for label_path in sorted((root / "annotations" / split).glob("*.png")):
            stem = label_path.stem
            _update(hashers, "labels", stem, np.asarray(Image.open(label_path)))
            _update(hashers, "images", stem, np.asarray(Image.open(root / "images" / split / f"{stem}.jpg")))
    out = _digest(hashers)
    recorded = (read_meta(root) or {}).get("fingerprint", {})
    out["render"] = recorded.get("render", "")
    out["sha256"] = hashlib.sha256(
        json.dumps({k: out[k] for k in FINGERPRINT_PARTS}, sort_keys=True).encode()
    ).hexdigest()
    return out


def compare_fingerprints(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """The parts that differ, each with what it means; empty when the two sets are the same.

    A different ``render`` means the generator computed other pixels (code, numpy or CPU); the same
    ``render`` with different ``images`` means only the JPEG codec differs (the Pillow build).
    """
    meaning = {
        "labels": "the label maps differ (layout: code or numpy)",
        "render": "the 8-bit images before JPEG differ (rendering: code, numpy or the C maths library)",
        "images": "the decoded JPEG images differ (the JPEG codec of this Pillow build, or the render)",
    }
    return [
        f"{part}: {meaning[part]} (expected {expected.get(part, '')[:12] or 'none'}, "
        f"got {actual.get(part, '')[:12] or 'none'})"
        for part in FINGERPRINT_PARTS
        if expected.get(part) != actual.get(part)
    ]


def _write_split(
    root: Path,
    name: str,
    n: int,
    probs: np.ndarray,
    app: Appearance,
    p: SyntheticParams,
    split: int,
    bar,
    hashers: dict[str, hashlib._Hash],
) -> dict:
    """Generate and write one split; returns pixel/image counts and JPEG error statistics, and feeds
    ``hashers`` (see :func:`fingerprint`)."""
    rng = _split_stream(p, split)
    forced = None
    if split == 1:
        forced = forced_validation_classes(len(probs), n, p.min_val_images, rng)
    image_dir, label_dir = root / "images" / name, root / "annotations" / name
    image_dir.mkdir(parents=True)
    label_dir.mkdir(parents=True)
    prefix = "SYN_train" if split == 0 else "SYN_val"
    num_classes = len(probs)
    pixel_counts = np.zeros(num_classes, dtype=np.int64)
    image_counts = np.zeros(num_classes, dtype=np.int64)
    sq_err, n_values = 0.0, 0
    chunk = 256
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        seeds, cell_class, valid = draw_layout(
            stop - start, probs, p, rng, forced[start:stop] if forced else None
        )
        images, labels = render(seeds, cell_class, valid, app, p.size, rng)
        images_u8 = np.round(images * 255.0).astype(np.uint8)  # (B, S, S, 3)
        pixel_counts += np.bincount(labels.reshape(-1), minlength=num_classes)
        present = np.zeros((stop - start, num_classes), dtype=bool)
        present[np.arange(stop - start)[:, None], labels.reshape(stop - start, -1)] = True
        image_counts += present.sum(axis=0)
        for j in range(stop - start):
            stem = f"{prefix}_{start + j + 1:08d}"
            data = encode_jpeg(images_u8[j], p.jpeg_quality)
            (image_dir / f"{stem}.jpg").write_bytes(data)
            stored_label = (labels[j] + 1).astype(np.uint8)  # (S, S) PNG value c + 1
            Image.fromarray(stored_label, mode="L").save(label_dir / f"{stem}.png")
            decoded_u8 = np.asarray(Image.open(io.BytesIO(data)))  # (S, S, 3) uint8
            _update(hashers, "labels", stem, stored_label)
            _update(hashers, "render", stem, images_u8[j])
            _update(hashers, "images", stem, decoded_u8)
            decoded = decoded_u8.astype(np.float64)
            sq_err += float(((decoded - images[j] * 255.0) ** 2).sum())
            n_values += decoded.size
        if bar is not None:
            bar.update(stop - start)
    rmse = math.sqrt(sq_err / n_values)
    return {
        "pixel_counts": pixel_counts.tolist(),
        "image_counts": image_counts.tolist(),
        "jpeg_rmse": rmse / 255.0,
        "jpeg_psnr_db": 20 * math.log10(255.0 / max(rmse, 1e-12)),
    }


def generate(
    out: str | Path,
    *,
    classes: int = 150,
    train: int = 4000,
    val: int = 900,
    size: int = 64,
    seed: int = 0,
    appearance_seed: int | None = None,
    pretrain: bool = False,
    num_groups: int | None = None,
    min_cells: int = 4,
    max_cells: int = 9,
    min_val_images: int = 6,
    jpeg_quality: int = 98,
    lookalike_deg: float = 30.0,
    noise_scale: float = 1.0,
    amplitude_scale: float = 1.0,
    tail_power: float = 1.0,
    progress: bool = True,
) -> Path:
    """Generate a synthetic set into ``out`` (which must not exist, or be an empty folder).

    The arguments from ``classes`` to ``tail_power`` are the set's parameters, documented at
    :class:`SyntheticParams`.

    Args:
        out: destination folder; written atomically (temporary sibling folder, then rename).
        progress: show a tqdm bar and a summary line.

    Returns:
        ``Path(out)``.

    Raises:
        FileExistsError: ``out`` exists and is not empty (use :func:`ensure_synthetic` to reuse a set).
        ValueError: a parameter is out of range (:meth:`SyntheticParams.resolved`).
    """
    knobs = {k: v for k, v in locals().items() if k not in ("out", "progress")}  # SyntheticParams' fields
    params = SyntheticParams(**knobs).resolved()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"{out} exists and is not empty: remove it, choose another --out, or call ensure_synthetic() to reuse it"
        )
    _write_atomically(out, params, progress)
    return out


def _write_atomically(out: Path, p: SyntheticParams, progress: bool) -> None:
    """Write the set into a temporary sibling of ``out`` (a missing or empty folder), then rename it: an
    interrupted run never leaves a half set that looks complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent)  # half sets of killed generators (their pid is in the name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    t0 = time.perf_counter()
    try:
        _generate_into(tmp, p, progress)
        if out.exists():
            out.rmdir()  # empty (checked by generate)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        psnr = json.loads((out / META_FILE).read_text())["jpeg"]["psnr_db"]
        print(
            f"wrote {p.train}+{p.val} images to {out} in {time.perf_counter() - t0:.1f} s (JPEG PSNR {psnr:.1f} dB)"
        )


def _generate_into(root: Path, p: SyntheticParams, progress: bool) -> None:
    ade_ids, names, probs = class_table(p.classes)
    if p.tail_power != 1.0:  # skipped at the default, so generator 2's sets stay bit for bit
        probs = flatten_tail(probs, p.tail_power)
    rng = np.random.default_rng([p.appearance_seed, 7, 20240])
    app = draw_appearance(probs, p.num_groups, rng, p.lookalike_deg, p.noise_scale, p.amplitude_scale)
    bar = None
    if progress:
        from tqdm import tqdm  # not tqdm.auto: it warns in kernels without ipywidgets

        bar = tqdm(total=p.train + p.val, desc=f"synthetic {p.classes} classes", unit="img")
    try:
        hashers = _hashers()
        train = _write_split(root, "training", p.train, probs, app, p, 0, bar, hashers)
        val = _write_split(root, "validation", p.val, probs, app, p, 1, bar, hashers)
    finally:
        if bar is not None:
            bar.close()
    group_of = np.full(p.classes, -1, dtype=np.int64)
    group_of[app.groups.reshape(-1)] = np.repeat(np.arange(len(app.groups)), 3)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "generator": "cbp.data.synthetic",
        "num_classes": p.classes,
        "class_names": names,
        "ade20k_ids": ade_ids.tolist(),
        "pixel_ratios": probs.tolist(),
        "pixel_counts": train["pixel_counts"],
        "image_counts": train["image_counts"],
        "val_pixel_counts": val["pixel_counts"],
        "val_image_counts": val["image_counts"],
        "groups": app.groups.tolist(),
        "group_of": group_of.tolist(),
        "appearance": {
            "colour": np.round(app.colour, 6).tolist(),
            "theta_deg": np.round(np.rad2deg(app.theta), 4).tolist(),
            "period_px": np.round(app.period, 4).tolist(),
            "amplitude": np.round(app.amplitude, 5).tolist(),
            "noise": np.round(app.noise, 5).tolist(),
        },
        "palette": ADE20K_PALETTE[ade_ids].tolist(),
        "seed": p.seed,
        "appearance_seed": p.appearance_seed,
        "params": asdict(p),
        "fingerprint": _digest(hashers),
        "environment": environment(),
        "jpeg": {
            "quality": p.jpeg_quality,
            "subsampling": "4:4:4",
            "rmse": round(float(np.mean([train["jpeg_rmse"], val["jpeg_rmse"]])), 6),
            "psnr_db": round(float(np.mean([train["jpeg_psnr_db"], val["jpeg_psnr_db"]])), 3),
        },
    }
    # written last: its presence marks a complete set
    (root / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def simd_features() -> list[str]:
    """The SIMD extensions numpy found on this CPU and dispatches to (e.g. ``["AVX2", "AVX512F", ...]``)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as found
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as found
    return sorted(name for name, on in found.items() if on)


def environment() -> dict[str, object]:
    """What the generated bytes could depend on besides the parameters: numpy, Pillow and its JPEG
    library, Python, and the CPU's SIMD extensions (recorded in ``cbp_meta.json["environment"]``)."""
    import platform

    import PIL
    from PIL import features

    return {
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "simd": simd_features(),
    }


def read_meta(root: str | Path) -> dict | None:
    """The parsed ``cbp_meta.json`` of a generated set, or None when there is none.

    Raises:
        cbp.io.UnreadableFileError: (a ValueError) the file is not a JSON object (exit code 4).
    """
    path = Path(root) / META_FILE
    return load_meta(path) if path.exists() else None


def ensure_synthetic(root: str | Path, *, progress: bool = True, **kw) -> Path:
    """Generate the set at ``root`` unless ``root/cbp_meta.json`` already describes the same parameters.

    Idempotent and safe to call from rank 0 only (the others wait at a barrier, then read).
    ``**kw`` are the keyword arguments of :func:`generate` (``classes``, ``train``, ``val``, ``size``,
    ``seed``, ``appearance_seed``, ``pretrain``, ``num_groups``, ...); omitted ones take their defaults,
    and all of them must match the existing set's ``cbp_meta.json["params"]``.

    Returns:
        ``Path(root)``.

    Raises:
        ValueError: an existing set was generated with different parameters (the message lists them).
        FileExistsError: ``root`` holds other files but no ``cbp_meta.json``.
    """
    root = Path(root)
    params = SyntheticParams(**kw).resolved()
    meta = read_meta(root)
    if meta is None:
        try:
            return generate(root, progress=progress, **asdict(params))
        except (FileExistsError, OSError):
            meta = read_meta(root)  # another process may have finished the same set meanwhile
            if meta is None:
                raise
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{root} holds a synthetic set of generator version {meta.get('version')}, this code writes "
            f"version {VERSION} (see 'Portability' in cbp.data.synthetic). Use another folder, or delete "
            "this one to regenerate it."
        )
    # a set written before a knob existed was made with the knob's default
    existing = (
        asdict(SyntheticParams()) | {"num_groups": None, "appearance_seed": None} | meta.get("params", {})
    )
    diff = {k: (existing.get(k), v) for k, v in asdict(params).items() if existing.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: existing {a!r} vs requested {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"{root} holds a synthetic set with different parameters ({shown}). "
            "Use another folder for these parameters, or delete this one to regenerate it."
        )
    return root


#: The command line's options of the set's parameters, in the order of ``--help``; each sets the
#: :class:`SyntheticParams` field of its name (``--groups``: ``num_groups``).
OPTIONS: tuple[tuple[str, dict], ...] = (
    ("--classes", dict(type=int, default=150, help="150 (all ADE20K classes) or e.g. 50 (every third)")),
    ("--train", dict(type=int, default=4000, help="training images")),
    ("--val", dict(type=int, default=900, help="validation images")),
    ("--size", dict(type=int, default=64, help="image side in pixels")),
    ("--seed", dict(type=int, default=0, help="layout seed (and appearance seed unless given)")),
    ("--appearance-seed", dict(type=int, default=None, help="redraw class appearances")),
    ("--pretrain", dict(action="store_true", help="disjoint pretraining task (appearance seed+1000)")),
    (
        "--groups",
        dict(
            type=int,
            default=None,
            dest="num_groups",
            metavar="GROUPS",
            help="number of confusable groups of three",
        ),
    ),
    ("--lookalike-deg", dict(type=float, default=30.0, help="orientation step inside a confusable group")),
    ("--noise-scale", dict(type=float, default=1.0, help="factor on every class's pixel noise")),
    ("--amplitude-scale", dict(type=float, default=1.0, help="factor on every class's texture amplitude")),
    ("--tail-power", dict(type=float, default=1.0, help="frequencies: ADE20K shares to this power (<= 1)")),
)


def build_parser() -> OneLineParser:
    """The parser of ``python -m cbp.data.synthetic``: ``--out``, :data:`OPTIONS` and ``--quiet``."""
    parser = OneLineParser(
        prog="python -m cbp.data.synthetic",
        description="Generate the synthetic long-tailed scene-parsing set (ADE20K layout + cbp_meta.json).",
    )
    parser.add_argument("--out", required=True, type=Path, help="destination folder")
    for flag, kw in OPTIONS:
        parser.add_argument(flag, **kw)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _os_error(e: OSError, out: Path) -> str:
    """One line for an OSError writing the set to ``out``."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full: no space left writing the set to {out}; free some space or use another --out"
    if e.filename and e.strerror:
        return f"{e.strerror}: {e.filename}; check the --out path (and its permissions)"
    return " ".join(str(e).split())  # FileExistsError: --out holds other files


def main(argv: list[str] | None = None) -> Path:
    """``python -m cbp.data.synthetic --out DIR [...]``: generate the set (or check the one in DIR); its folder.

    Exit codes (as ``cbp.train``'s): 2 a bad option or parameter, 4 DIR holds another set or other
    files, or the disk is full; a bug prints its traceback (``CBP_DEBUG=1`` shows it for every error).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    kw = {k: v for k, v in vars(args).items() if k not in ("out", "quiet")}  # SyntheticParams' fields
    try:
        SyntheticParams(**kw).resolved()
    except ValueError as e:
        parser.error(str(e))
    try:
        return ensure_synthetic(args.out, progress=not args.quiet, **kw)
    except OSError as e:
        _fail(_os_error(e, args.out))
    except ValueError as e:  # --out holds a set of other parameters or of another generator version
        _fail(" ".join(str(e).split()))


def _fail(message: str) -> NoReturn:
    """One line on stderr (the traceback first with ``CBP_DEBUG=1``) and exit code 4 (data or file)."""
    if os.environ.get("CBP_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    print(f"[cbp.data.synthetic] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_DATA)


if __name__ == "__main__":
    main()
