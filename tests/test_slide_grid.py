"""mmseg's sliding-window grid: where :func:`cbp.engine.evaluate.slide_logits` places its crops.

The reference grid is written from the rule as mmseg's documentation states it (windows every
``stride`` pixels while the window does not reach the border, then one last window flush with the
border; an image no larger than the crop is one window), not from the implementation's formula,
plus hand-computed cases of the paper's settings (crop 512, stride 341).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from cbp.engine.evaluate import slide_logits


def reference_starts(length: int, crop: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of every window along one axis."""
    if length <= crop:
        return [(0, length)]
    windows, start = [], 0
    while start + crop < length:  # the window does not reach the border yet
        windows.append((start, start + crop))
        start += stride
    windows.append((length - crop, length))  # the last one, flush with the border
    return windows


@dataclass
class _Out:
    logits: Tensor


class WhereAmI(nn.Module):
    """Records the box of every crop it sees; channel 0 holds the row, channel 1 the column index."""

    def __init__(self) -> None:
        super().__init__()
        self.boxes: list[tuple[int, int, int, int]] = []

    def forward(self, images: Tensor, *, upsample: bool = True) -> _Out:
        y1, x1 = int(images[0, 0, 0, 0]), int(images[0, 1, 0, 0])
        h, w = images.shape[-2:]
        self.boxes.append((y1, y1 + h, x1, x1 + w))
        return _Out(images[:, :1].clone())  # (B, 1, h, w): the row index of each pixel


def coordinate_image(h: int, w: int) -> Tensor:
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    return torch.stack([rows, cols, torch.zeros(h, w)])[None]  # (1, 3, H, W)


@pytest.mark.parametrize(
    ("h", "w", "crop", "stride"),
    [
        (20, 20, (10, 10), (6, 6)),
        (512, 683, (512, 512), (341, 341)),  # ADE20K's usual test size after resize to 2048x512
        (1000, 1365, (512, 512), (341, 341)),
        (16, 40, (8, 12), (4, 7)),  # strides that hit the border exactly and ones that overshoot
        (24, 36, (8, 12), (8, 12)),  # stride = crop: tiles without overlap
        (5, 7, (10, 10), (6, 6)),  # smaller than the crop: one window
    ],
)
def test_slide_crops_follow_mmseg_grid(
    h: int, w: int, crop: tuple[int, int], stride: tuple[int, int]
) -> None:
    model = WhereAmI()
    out = slide_logits(model, coordinate_image(h, w), 1, crop, stride)
    want = [
        (y1, y2, x1, x2)
        for y1, y2 in reference_starts(h, crop[0], stride[0])
        for x1, x2 in reference_starts(w, crop[1], stride[1])
    ]
    assert model.boxes == want
    # each pixel averages the crops covering it, so the row map comes back exactly
    torch.testing.assert_close(out, coordinate_image(h, w)[:, :1], rtol=0, atol=1e-5)


def test_reference_grid_hand_cases() -> None:
    # worked by hand from mmseg's slide_inference with crop 512, stride 341
    assert reference_starts(683, 512, 341) == [(0, 512), (171, 683)]
    assert reference_starts(1000, 512, 341) == [(0, 512), (341, 853), (488, 1000)]
    assert reference_starts(512, 512, 341) == [(0, 512)]
    assert reference_starts(20, 10, 6) == [(0, 10), (6, 16), (10, 20)]
    assert reference_starts(16, 8, 4) == [(0, 8), (4, 12), (8, 16)]  # 8 + 8 == 16: no extra window
