"""mmsegmentation's training and test pipelines with torchvision.transforms.v2.

Image and label are wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask`` and go through the same
geometric ops, so torchvision resizes the label with nearest neighbour and they stay aligned.

Training (mmseg's ADE20K / COCO-Stuff pipeline, in this order):

1. ``RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)``: draw ``r`` uniform in
   ``ratio_range``, target scale ``(int(2048 r), int(512 r))``, then rescale keeping the aspect ratio so
   the long side fits ``max(scale)`` and the short side fits ``min(scale)`` (mmcv ``rescale_size``).
   Bilinear for the image (no antialias, like ``cv2.resize``), nearest for the label with half-pixel
   centres (``NEAREST_EXACT``). mmcv's ``cv2.INTER_NEAREST`` samples ``floor(x * scale)``, which shifts
   the label up to one pixel against the bilinear image when upscaling; here they stay aligned.
2. ``RandomCrop(crop_size, cat_max_ratio=0.75)``: draw a crop; up to 10 times draw again while the
   crop has fewer than two classes or one class (ignoring 255) covers ``>= cat_max_ratio`` of the
   labelled pixels (mmseg's loop, last draw kept).
3. ``RandomFlip(prob=0.5)`` horizontal (``flip=False`` disables it: the synthetic benchmark encodes
   classes by texture orientation, which a flip would change).
4. ``PhotoMetricDistortion``: brightness ``±32``, then contrast ``0.5-1.5`` either here or last (coin),
   saturation ``0.5-1.5`` (HSV S channel), hue ``±18`` (OpenCV units of 2 degrees), each applied with
   probability 1/2, with the uint8 clip-and-truncate after every step as mmseg does. Hue/saturation are
   computed in float HSV rather than OpenCV's uint8 HSV (a rounding-level difference).
5. ``Normalize`` with ImageNet mean/std in 0-255 units (mmseg's ``SegDataPreProcessor``).
6. Pad bottom/right to ``crop_size``: 0 for the normalised image, ``ignore_index`` (255) for the label.

Test: resize keeping the ratio to fit ``scale`` (``(2048, 512)`` means short side 512 unless the long
side would exceed 2048), normalise; the label is returned untouched at full size (the engine resizes
logits to it, as mmseg does).

Randomness: every random draw uses torch's global RNG (``torch.rand`` / ``torch.randint``), so the
engine's ``torch.manual_seed`` (and per-worker seeding of DataLoader workers, which torch does by
default) makes the pipeline reproducible. No numpy or ``random`` state is touched.

Small images (the synthetic benchmark): ``TrainTransform.synthetic(size=64)`` gives crop
``(64, 64)``, scale ``(64, 64)``, ratio ``(0.75, 1.5)``, no flip and no photometric distortion (colour
and orientation are the class cues there); every argument can also be set directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def rescale_size(height: int, width: int, scale: Sequence[float]) -> tuple[int, int]:
    """mmcv ``rescale_size`` with ``keep_ratio=True``: the (H, W) that fits ``scale`` = (long, short) edges.

    Args:
        height, width: input size.
        scale: two numbers; the larger bounds the long side, the smaller the short side.

    Returns:
        (new_height, new_width), rounded as mmcv does (``int(x * factor + 0.5)``).
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _check_pair(image: torch.Tensor, label: torch.Tensor) -> None:
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"image must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
    if label.ndim != 2 or tuple(label.shape) != tuple(image.shape[1:]):
        raise ValueError(f"label must be (H, W) = {tuple(image.shape[1:])}, got {tuple(label.shape)}")


def normalize(image: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(image - mean) / std per channel, image uint8 or float (3, H, W) in 0-255 units -> float32 (3, H, W)."""
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (image.float() - m) / s


class PhotoMetricDistortion:
    """mmseg's ``PhotoMetricDistortion`` on a uint8 (3, H, W) RGB image (see module docstring).

    Args:
        brightness_delta: additive delta drawn from [-delta, delta].
        contrast_range: multiplicative factor range.
        saturation_range: factor range on the HSV saturation channel.
        hue_delta: hue shift drawn as an integer in [-hue_delta, hue_delta) in OpenCV units (1 = 2 degrees).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
    ) -> None:
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    @staticmethod
    def _coin() -> bool:
        return bool(torch.randint(0, 2, ()).item())

    @staticmethod
    def _uniform(low: float, high: float) -> float:
        return float(low + (high - low) * torch.rand(()).item())

    @staticmethod
    def _convert(x: torch.Tensor, alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
        # mmseg: img * alpha + beta, clip to [0, 255], astype(uint8) (truncation)
        return (x * alpha + beta).clamp(0, 255).floor()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> uint8 (3, H, W)."""
        img = image.float()  # (3, H, W), values 0..255
        if self._coin():
            img = self._convert(img, beta=self._uniform(-self.brightness_delta, self.brightness_delta))
        contrast_first = self._coin()  # mmseg: mode == 1 -> contrast first
        if contrast_first and self._coin():
            img = self._convert(img, alpha=self._uniform(*self.contrast_range))
        if self._coin():
            hsv = _rgb_to_hsv(img / 255.0)  # (3, H, W): h in [0, 1), s, v in [0, 1]
            alpha = self._uniform(*self.saturation_range)
            hsv[1] = (hsv[1] * alpha).clamp(0, 1)
            img = (_hsv_to_rgb(hsv) * 255.0).round().clamp(0, 255)
        if self._coin():
            shift = int(torch.randint(-self.hue_delta, self.hue_delta, ()).item())
            hsv = _rgb_to_hsv(img / 255.0)
            hsv[0] = (hsv[0] + shift / 180.0) % 1.0
            img = (_hsv_to_rgb(hsv) * 255.0).round().clamp(0, 255)
        if not contrast_first and self._coin():
            img = self._convert(img, alpha=self._uniform(*self.contrast_range))
        return img.to(torch.uint8)


def _rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """float (3, H, W) in [0, 1] -> HSV (3, H, W), hue in [0, 1)."""
    r, g, b = rgb
    maxc, _ = rgb.max(dim=0)
    minc, _ = rgb.min(dim=0)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    h = torch.where(
        maxc == r, ((g - b) / d) % 6, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)
    )  # (H, W) in sextants
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, maxc])


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV (3, H, W), hue in [0, 1) -> RGB float (3, H, W) in [0, 1]."""
    h, s, v = hsv
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype).view(3, 1, 1) + h * 6.0) % 6.0  # (3, H, W)
    return v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


class TrainTransform:
    """mmseg's training pipeline (module docstring); ``__call__(image, label) -> (image, label)``.

    Args:
        crop_size: (h, w) of the random crop and of the padded output.
        scale: (long, short) edge bounds of the keep-ratio resize before ``ratio_range`` scaling.
        ratio_range: (low, high) uniform multiplier of ``scale``; None resizes to ``scale`` exactly.
        cat_max_ratio: crop retry threshold on the largest class share; 1.0 disables the retries.
        flip: horizontal flip with probability ``flip_prob``.
        photometric: apply :class:`PhotoMetricDistortion` (with the strengths below).
        mean, std: per-channel normalisation in 0-255 units.
        ignore_index: label value for padding and excluded from ``cat_max_ratio``.
        flip_prob, brightness_delta, contrast_range, saturation_range, hue_delta: mmseg defaults.
        crop_retries: extra crop draws for ``cat_max_ratio`` (mmseg: 10).

    ``__call__(image uint8 (3, H, W), label int64 (H, W)) -> (image float32 (3, *crop_size), label int64 crop_size)``.
    """

    def __init__(
        self,
        crop_size: int | Sequence[int] = (512, 512),
        scale: Sequence[int] = (2048, 512),
        ratio_range: Sequence[float] | None = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        flip: bool = True,
        photometric: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        ignore_index: int = 255,
        *,
        flip_prob: float = 0.5,
        brightness_delta: float = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        crop_retries: int = 10,
    ) -> None:
        self.crop_size = _pair(crop_size)
        self.scale = tuple(scale)
        self.ratio_range = None if ratio_range is None else (float(ratio_range[0]), float(ratio_range[1]))
        if self.ratio_range is not None and not 0 < self.ratio_range[0] <= self.ratio_range[1]:
            raise ValueError(f"ratio_range must be (low, high) with 0 < low <= high, got {ratio_range}")
        self.cat_max_ratio = cat_max_ratio
        self.flip = flip
        self.flip_prob = flip_prob
        self.photometric = (
            PhotoMetricDistortion(brightness_delta, contrast_range, saturation_range, hue_delta)
            if photometric
            else None
        )
        self.mean, self.std = tuple(mean), tuple(std)
        self.ignore_index = ignore_index
        self.crop_retries = crop_retries

    @classmethod
    def synthetic(cls, size: int = 64, **kw) -> TrainTransform:
        """Defaults for the synthetic benchmark: crop = scale = size, ratio 0.75-1.5, no flip, no photometric."""
        defaults = dict(
            crop_size=(size, size), scale=(size, size), ratio_range=(0.75, 1.5), flip=False, photometric=False
        )
        return cls(**(defaults | kw))

    def __repr__(self) -> str:
        return (
            f"TrainTransform(crop_size={self.crop_size}, scale={self.scale}, ratio_range={self.ratio_range}, "
            f"cat_max_ratio={self.cat_max_ratio}, flip={self.flip}, photometric={self.photometric is not None})"
        )

    # --- steps -------------------------------------------------------------------------------
    def random_resize(
        self, image: tv_tensors.Image, label: tv_tensors.Mask
    ) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        scale = self.scale
        if self.ratio_range is not None:
            lo, hi = self.ratio_range
            ratio = lo + (hi - lo) * torch.rand(()).item()
            scale = (int(scale[0] * ratio), int(scale[1] * ratio))
        size = list(rescale_size(image.shape[-2], image.shape[-1], scale))
        image = F.resize(image, size, antialias=False)
        return image, F.resize(label, size, interpolation=InterpolationMode.NEAREST_EXACT)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """mmseg ``RandomCrop.crop_bbox``: (top, left, h, w), clipped to the image."""
        ch, cw = self.crop_size
        top = int(torch.randint(0, max(height - ch, 0) + 1, ()).item())
        left = int(torch.randint(0, max(width - cw, 0) + 1, ()).item())
        return top, left, min(ch, height - top), min(cw, width - left)

    def random_crop(
        self, image: tv_tensors.Image, label: tv_tensors.Mask
    ) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        box = self.crop_box(*label.shape[-2:])
        if self.cat_max_ratio < 1.0:
            for _ in range(self.crop_retries):
                top, left, h, w = box
                counts = torch.bincount(
                    label[top : top + h, left : left + w].reshape(-1), minlength=256
                )  # (>=256,)
                counts[self.ignore_index] = 0
                counts = counts[counts > 0]
                if counts.numel() > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                box = self.crop_box(*label.shape[-2:])
        return F.crop(image, *box), F.crop(label, *box)

    def pad(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ch, cw = self.crop_size
        ph, pw = max(ch - image.shape[-2], 0), max(cw - image.shape[-1], 0)
        if ph or pw:
            image = torch.nn.functional.pad(image, (0, pw, 0, ph), value=0.0)  # (3, ch, cw)
            label = torch.nn.functional.pad(label, (0, pw, 0, ph), value=self.ignore_index)  # (ch, cw)
        return image, label

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        img, lab = tv_tensors.Image(image), tv_tensors.Mask(label)
        img, lab = self.random_resize(img, lab)
        img, lab = self.random_crop(img, lab)
        if self.flip and torch.rand(()).item() < self.flip_prob:
            img, lab = F.horizontal_flip(img), F.horizontal_flip(lab)
        out = img.as_subclass(torch.Tensor)
        if self.photometric is not None:
            out = self.photometric(out)
        out = normalize(out, self.mean, self.std)  # (3, h, w) float32
        return self.pad(out, lab.as_subclass(torch.Tensor))


class TestTransform:
    """mmseg's test pipeline: keep-ratio resize to fit ``scale``, normalise; the label is left as is.

    Args:
        scale: (long, short) edge bounds, e.g. (2048, 512) -> short side 512 (long side at most 2048);
            None keeps the input size.
        mean, std: per-channel normalisation in 0-255 units.

    ``__call__(image uint8 (3, H, W), label int64 (H, W)) -> (image float32 (3, h, w), label int64 (H, W))``.
    """

    __test__ = False  # not a pytest class

    def __init__(
        self,
        scale: Sequence[int] | None = (2048, 512),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.scale = None if scale is None else tuple(scale)
        self.mean, self.std = tuple(mean), tuple(std)

    def __repr__(self) -> str:
        return f"TestTransform(scale={self.scale})"

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_pair(image, label)
        if self.scale is not None:
            size = list(rescale_size(image.shape[-2], image.shape[-1], self.scale))
            if size != list(image.shape[-2:]):
                image = F.resize(tv_tensors.Image(image), size, antialias=False).as_subclass(torch.Tensor)
        return normalize(image, self.mean, self.std), label


def collate_pad(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor]], size_divisor: int = 1, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (image, label) pairs of different sizes by padding bottom/right.

    Images are padded with 0 to the largest (H, W) in the batch rounded up to ``size_divisor``; labels
    with ``ignore_index`` to the largest label size (labels may differ from images after TestTransform).

    Returns:
        images float (B, 3, H, W), labels int64 (B, H', W').
    """

    def up(x: int) -> int:
        return -(-x // size_divisor) * size_divisor

    ih = up(max(img.shape[-2] for img, _ in batch))
    iw = up(max(img.shape[-1] for img, _ in batch))
    lh = max(lab.shape[-2] for _, lab in batch)
    lw = max(lab.shape[-1] for _, lab in batch)
    images = torch.stack(
        [
            torch.nn.functional.pad(img, (0, iw - img.shape[-1], 0, ih - img.shape[-2]), value=0.0)
            for img, _ in batch
        ]
    )  # (B, 3, H, W)
    labels = torch.stack(
        [
            torch.nn.functional.pad(lab, (0, lw - lab.shape[-1], 0, lh - lab.shape[-2]), value=ignore_index)
            for _, lab in batch
        ]
    )  # (B, H', W')
    return images, labels
