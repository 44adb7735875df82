"""Decoders, reimplemented from mmsegmentation's heads (behaviour, not code or registries).

Each decoder takes the encoder's list of feature maps (finest first) and returns one embedding
``(B, C, h, w)``, the C-dim pixel features the classifier reads (paper Eq. 1). The dropout and the
1x1 classifier of mmseg's ``BaseDecodeHead.cls_seg`` live in :class:`cbp.models.Segmentor`, so
that the embedding OCCL sees is the one the classifier reads, before dropout.

- :class:`FCNHead`: mmseg ``FCNHead`` (num_convs=2, concat_input=True, 3x3 conv-BN-ReLU) on one level.
- :class:`UPerHead`: mmseg ``UPerHead``, PPM (pool scales 1, 2, 3, 6) on the last level + FPN,
  all levels fused at 1/4 by a 3x3 conv-BN-ReLU.
- :class:`SegformerHead`: mmseg ``SegformerHead``, per-level 1x1 conv-BN-ReLU to C, upsample to
  the finest level, concatenate, 1x1 fuse conv-BN-ReLU.

Convolutions are initialised as mmcv's ``ConvModule`` does (Kaiming normal, fan_out, ReLU; BN
weight 1, bias 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class ConvBNReLU(nn.Sequential):
    """mmcv ``ConvModule(conv_cfg=None, norm_cfg=BN, act_cfg=ReLU)``: conv without bias, BN, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        nn.init.kaiming_normal_(self[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self[1].weight)
        nn.init.zeros_(self[1].bias)


def _cat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat(list(tensors), dim=1)  # concatenate along channels


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with ``align_corners=False`` (mmseg's ``resize`` as its heads call it)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class FCNHead(nn.Module):
    """Fully convolutional head (mmseg ``FCNHead``) on one feature level.

    Args:
        in_channels: widths of all encoder levels (from ``encoder.channels``).
        channels: embedding width C (mmseg: 512 for ResNet-50/101, 256 for the auxiliary head).
        in_index: which level to read (-1: the last one; 2: stage 3 for the auxiliary head).
        num_convs: number of 3x3 conv-BN-ReLU (mmseg: 2 for the main head, 1 for the auxiliary).
        concat_input: concatenate the input with the conv output and fuse by one more 3x3 conv.
        dilation: dilation of the 3x3 convolutions.

    Shapes:
        features[in_index] (B, C_in, h, w) -> (B, channels, h, w).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int = 512,
        *,
        in_index: int = -1,
        num_convs: int = 2,
        concat_input: bool = True,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"FCNHead needs num_convs >= 1 (got {num_convs})")
        self.in_index = in_index
        c_in = in_channels[in_index]
        self.convs = nn.Sequential(
            *[
                ConvBNReLU(c_in if i == 0 else channels, channels, 3, dilation=dilation)
                for i in range(num_convs)
            ]
        )
        self.conv_cat = ConvBNReLU(c_in + channels, channels, 3) if concat_input else None
        self.channels = channels

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = features[self.in_index]  # (B, C_in, h, w)
        out = self.convs(x)  # (B, C, h, w)
        if self.conv_cat is not None:
            out = self.conv_cat(_cat([x, out]))  # (B, C, h, w)
        return out


class PPM(nn.Module):
    """Pyramid pooling module (PSPNet): adaptive average pooling to each scale, 1x1 conv-BN-ReLU,
    bilinear upsample back; returns the list of pooled branches (mmseg ``PPM``)."""

    def __init__(self, pool_scales: Sequence[int], in_channels: int, channels: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(in_channels, channels, 1))
                for s in pool_scales
            ]
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        size = x.shape[-2:]
        return [_resize(branch(x), size) for branch in self.branches]  # each (B, C, h, w)


class UPerHead(nn.Module):
    """Unified perceptual parsing head (mmseg ``UPerHead``): PPM on the last level, FPN top-down,
    every level's FPN output upsampled to the finest level and fused.

    Args:
        in_channels: widths of the encoder levels (finest first).
        channels: embedding width C (mmseg: 512).
        pool_scales: PPM output sizes.

    Shapes:
        features [(B, C_i, H / r_i, W / r_i)] -> (B, channels, H / r_0, W / r_0).
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int = 512, *, pool_scales: Sequence[int] = (1, 2, 3, 6)
    ) -> None:
        super().__init__()
        in_channels = list(in_channels)
        self.psp_modules = PPM(pool_scales, in_channels[-1], channels)
        self.bottleneck = ConvBNReLU(in_channels[-1] + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList([ConvBNReLU(c, channels, 1) for c in in_channels[:-1]])
        self.fpn_convs = nn.ModuleList([ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1]])
        self.fpn_bottleneck = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.channels = channels

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        last = features[-1]  # (B, C_last, h_L, w_L)
        psp = self.bottleneck(_cat([last, *self.psp_modules(last)]))  # (B, C, h_L, w_L)
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, features[:-1], strict=True)] + [psp]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse into fine
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1], strict=True)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        return self.fpn_bottleneck(_cat([_resize(o, size) for o in outs]))  # (B, C, H / r_0, W / r_0)


class SegformerHead(nn.Module):
    """SegFormer's all-MLP decoder (mmseg ``SegformerHead``): each level through a 1x1 conv-BN-ReLU
    to C, upsampled to the finest level (1/4), concatenated, fused by a 1x1 conv-BN-ReLU.

    Args:
        in_channels: widths of the encoder levels (finest first).
        channels: embedding width C (mmseg: 256 for every MiT size).

    Shapes:
        features [(B, C_i, H / r_i, W / r_i)] -> (B, channels, H / r_0, W / r_0).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256) -> None:
        super().__init__()
        self.convs = nn.ModuleList([ConvBNReLU(c, channels, 1) for c in in_channels])
        self.fusion_conv = ConvBNReLU(len(in_channels) * channels, channels, 1)
        self.channels = channels

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        size = features[0].shape[-2:]
        outs = [_resize(conv(f), size) for conv, f in zip(self.convs, features, strict=True)]
        return self.fusion_conv(_cat(outs))  # (B, C, H / r_0, W / r_0)


DECODERS: dict[str, type[nn.Module]] = {"fcn": FCNHead, "upernet": UPerHead, "segformer": SegformerHead}
