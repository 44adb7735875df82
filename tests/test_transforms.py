"""mmseg-equivalent train/test transforms: alignment, cat_max_ratio, padding, keep-ratio resize."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import torch

from cbp.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TestTransform,
    TrainTransform,
    _hsv_to_rgb,
    _rgb_to_hsv,
    collate_pad,
    rescale_size,
)

# class k is painted with grey level LEVELS[k]: decoding the image gives back the label
LEVELS = torch.tensor([20.0, 70.0, 120.0, 170.0, 220.0])


def _block_scene(h: int, w: int, block: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random class blocks (asymmetric, so a flip of only one of image/label would show)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, len(LEVELS), (h // block + 1, w // block + 1), generator=g)
    label = coarse.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].contiguous()  # (H, W)
    image = LEVELS[label].to(torch.uint8).expand(3, h, w).contiguous()  # (3, H, W)
    return image, label


def _interior(label: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label and no padding (away from edges)."""
    lab = label.float()[None, None]
    mx = torch.nn.functional.max_pool2d(lab, 3, 1, 1)[0, 0]
    mn = -torch.nn.functional.max_pool2d(-lab, 3, 1, 1)[0, 0]
    inside = (mx == mn) & (label != 255)
    inside[[0, -1], :] = False  # the crop border: its neighbours beyond the crop are unknown
    inside[:, [0, -1]] = False
    return inside


def test_rescale_size_matches_mmcv_formula() -> None:
    assert rescale_size(100, 200, (2048, 512)) == (512, 1024)
    assert rescale_size(300, 100, (2048, 512)) == (1536, 512)
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)  # long side capped: factor 2.048
    assert rescale_size(64, 64, (64, 64)) == (64, 64)
    assert rescale_size(333, 500, (1024, 256)) == (
        256,
        384,
    )  # int(333 * 0.7688 + 0.5), int(500 * 0.7688 + 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_label_aligned(seed: int) -> None:
    image, label = _block_scene(96, 128, 8, seed)
    t = TrainTransform(crop_size=(64, 64), scale=(128, 96), ratio_range=(0.5, 2.0), photometric=False,
                       mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    torch.manual_seed(seed)
    for _ in range(8):
        out, lab = t(image, label)
        assert out.shape == (3, 64, 64) and out.dtype == torch.float32
        assert lab.shape == (64, 64) and lab.dtype == torch.int64
        decoded = (out[0][..., None] - LEVELS).abs().argmin(-1)  # (64, 64) class from pixel value
        inside = _interior(lab)
        assert inside.sum() > 50
        assert torch.equal(decoded[inside], lab[inside])


def test_flip_happens_and_is_consistent() -> None:
    image, label = _block_scene(16, 16, 4, 0)
    t = TrainTransform(crop_size=(16, 16), scale=(16, 16), ratio_range=None, cat_max_ratio=1.0, photometric=False,
                       mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip
    outs = set()
    torch.manual_seed(0)
    for _ in range(20):
        out, lab = t(image, label)
        assert torch.equal(LEVELS[lab], out[0])  # exact: no resize, no photometric
        outs.add(bool(torch.equal(lab, label)))
    assert outs == {True, False}  # both flipped and unflipped outcomes occurred
    t_noflip = TrainTransform(crop_size=(16, 16), scale=(16, 16), ratio_range=None, cat_max_ratio=1.0, flip=False,
                              photometric=False)  # fmt: skip
    assert all(torch.equal(t_noflip(image, label)[1], label) for _ in range(10))


def test_cat_max_ratio_respected() -> None:
    # class 0 fills the left half of a 64x64 label, classes 1-4 stripes of 8 columns on the right: a 32x32
    # crop at column offset x <= 8 has class 0 above 75% (9 of 33 offsets); the retries must avoid them
    label = torch.zeros(64, 64, dtype=torch.int64)
    label[:, 32:] = torch.arange(32, 64).div(8, rounding_mode="floor").sub(3)
    label[:4, :4] = 255  # ignored pixels do not count
    image = LEVELS[label.clamp(max=4)].to(torch.uint8).expand(3, 64, 64).contiguous()

    def largest_share(lab: torch.Tensor) -> float:
        counts = torch.bincount(lab[lab != 255], minlength=5).float()
        return (counts.max() / counts.sum()).item()

    kw = dict(crop_size=(32, 32), scale=(64, 64), ratio_range=None, flip=False, photometric=False)
    torch.manual_seed(0)
    with_retry = [largest_share(TrainTransform(cat_max_ratio=0.75, **kw)(image, label)[1]) for _ in range(60)]
    without = [largest_share(TrainTransform(cat_max_ratio=1.0, **kw)(image, label)[1]) for _ in range(60)]
    assert max(with_retry) < 0.75
    assert sum(s >= 0.75 for s in without) >= 8  # the constraint is not met by chance


def test_padding_uses_zero_and_ignore_index() -> None:
    image = torch.full((3, 20, 30), 200, dtype=torch.uint8)
    label = torch.ones(20, 30, dtype=torch.int64)
    t = TrainTransform(crop_size=(32, 48), scale=(30, 20), ratio_range=None, flip=False, photometric=False)
    out, lab = t(image, label)
    assert out.shape == (3, 32, 48) and lab.shape == (32, 48)
    assert (lab[:20, :30] == 1).all() and (lab[20:] == 255).all() and (lab[:, 30:] == 255).all()
    assert (out[:, 20:] == 0).all() and (out[:, :, 30:] == 0).all()
    expected = (200 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 5, 5], expected.float())


def test_test_transform_keeps_ratio_and_label() -> None:
    image, label = _block_scene(100, 200, 10, 0)
    out, lab = TestTransform(scale=(2048, 512))(image, label)
    assert out.shape == (3, 512, 1024) and out.dtype == torch.float32
    assert lab is label  # full-size label, untouched
    out, _ = TestTransform(scale=(128, 32))(image, label)
    assert out.shape == (3, 32, 64)  # factor min(128 / 200, 32 / 100) = 0.32
    out, _ = TestTransform(scale=(100, 80))(image, label)
    assert out.shape == (3, 50, 100)  # the long side binds: factor min(100 / 200, 80 / 100) = 0.5
    tall, tall_label = _block_scene(300, 100, 10, 1)
    assert TestTransform(scale=(2048, 512))(tall, tall_label)[0].shape == (3, 1536, 512)
    same, _ = TestTransform(scale=None)(image, label)
    torch.testing.assert_close(
        same,
        (image.float() - torch.tensor(IMAGENET_MEAN).view(3, 1, 1))
        / torch.tensor(IMAGENET_STD).view(3, 1, 1),
    )


def test_photometric_distortion_in_range_and_reproducible() -> None:
    _, label = _block_scene(32, 32, 4, 0)
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    t = TrainTransform(crop_size=(32, 32), scale=(32, 32), ratio_range=None, mean=(0, 0, 0), std=(1, 1, 1))
    torch.manual_seed(3)
    a = [t(image, label) for _ in range(5)]
    torch.manual_seed(3)
    b = [t(image, label) for _ in range(5)]
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
        assert ia.min() >= 0 and ia.max() <= 255 and torch.equal(ia, ia.round())
    assert any(not torch.equal(ia, a[0][0]) for ia, _ in a[1:])  # it does change the image


def test_hsv_roundtrip_matches_colorsys() -> None:
    rgb = torch.rand(3, 7, 9, dtype=torch.float64)
    hsv = _rgb_to_hsv(rgb)
    ref = np.array([colorsys.rgb_to_hsv(*rgb[:, i, j].tolist()) for i in range(7) for j in range(9)])
    np.testing.assert_allclose(hsv.permute(1, 2, 0).reshape(-1, 3).numpy(), ref, atol=1e-9)
    torch.testing.assert_close(_hsv_to_rgb(hsv), rgb, atol=1e-9, rtol=0)


def test_synthetic_preset_and_collate() -> None:
    t = TrainTransform.synthetic(64)
    assert t.crop_size == (64, 64) and not t.flip and t.photometric is None
    image, label = _block_scene(64, 64, 8, 0)
    out, lab = t(image, label)
    assert out.shape == (3, 64, 64) and lab.shape == (64, 64)
    batch = [
        (torch.ones(3, 5, 7), torch.zeros(10, 14, dtype=torch.int64)),
        (torch.ones(3, 8, 4), torch.zeros(16, 8)),
    ]
    images, labels = collate_pad(
        [(batch[0][0], batch[0][1]), (batch[1][0], batch[1][1].long())], size_divisor=4
    )
    assert images.shape == (2, 3, 8, 8) and labels.shape == (2, 16, 14)
    assert images[0, :, 5:].eq(0).all() and labels[0, 10:].eq(255).all() and labels[1, :, 8:].eq(255).all()
