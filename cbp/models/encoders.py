"""Encoders: thin wrappers that turn a timm / segmentation-models-pytorch backbone into a module
returning a list of NCHW feature maps, finest first, with their widths in ``.channels``.

Every wrapper has the same interface:

- ``forward(images (B, 3, H, W)) -> list[Tensor]``, one map per stage, ``(B, C_i, H / r_i, W / r_i)``;
- ``.channels`` (list[int]) and ``.reductions`` (list[int]), read from the backbone's own
  ``feature_info`` (timm) / ``out_channels`` (smp), never hard-coded, so decoders size themselves.

The widths in the docstrings below are only for the reader.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import timm
from torch import Tensor, nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (mmseg's per-output ``norm{i}`` of Swin/ConvNeXt)."""

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TimmEncoder(nn.Module):
    """A timm backbone built with ``features_only=True``.

    Args:
        name: timm model name, e.g. ``"resnet50c"``, ``"convnext_base"``, ``"swin_base_patch4_window7_224"``.
        out_indices: which feature levels to return (timm numbering; ResNet's level 0 is the stem).
        nhwc: the backbone returns (B, H, W, C) maps (Swin); they are permuted to (B, C, H, W).
        out_norms: add a LayerNorm on each output, as mmseg's Swin and ConvNeXt backbones do
            (``norm0..norm3``); these are new layers, absent from ImageNet checkpoints.
        pretrained: load timm's hub weights (the user's cache / network). False by default.
        **kwargs: passed to ``timm.create_model`` (``output_stride``, ``img_size``, ``drop_path_rate``...).

    Attributes:
        model: the timm ``FeatureListNet``; its ``state_dict`` keys are the timm keys with
            flattened sequential names (``layers_0.`` for ``layers.0.``).
    """

    def __init__(
        self,
        name: str,
        *,
        out_indices: Sequence[int] | None = None,
        nhwc: bool = False,
        out_norms: bool = False,
        pretrained: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.name = name
        self.model = timm.create_model(name, pretrained=pretrained, features_only=True, **kwargs)
        self.channels: list[int] = list(self.model.feature_info.channels())
        self.reductions: list[int] = list(self.model.feature_info.reduction())
        self.nhwc = nhwc
        self.out_norms = nn.ModuleList([LayerNorm2d(c) for c in self.channels]) if out_norms else None

    def forward(self, images: Tensor) -> list[Tensor]:
        features = self.model(images)
        if self.nhwc:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]  # (B, H, W, C) -> (B, C, H, W)
        if self.out_norms is not None:
            features = [norm(f) for norm, f in zip(self.out_norms, features, strict=True)]
        return features

    def raw_key(self, key: str) -> str:
        """The key a plain timm checkpoint uses for one of this encoder's ``state_dict`` keys.

        timm's feature wrapper flattens sequential containers, ``layers.0.blocks`` -> ``layers_0.blocks``.
        """
        key = key.removeprefix("model.")
        head, _, rest = key.partition(".")
        head = re.sub(r"^(.*)_(\d+)$", r"\1.\2", head)
        return f"{head}.{rest}" if rest else head


class SmpEncoder(nn.Module):
    """A segmentation-models-pytorch encoder (used for SegFormer's Mix Transformer, ``mit_b0``..``mit_b5``).

    smp returns ``depth + 1`` maps, the first ones being the input and (for MiT) an empty
    placeholder at stride 2; only the last ``num_stages`` are kept (strides 4, 8, 16, 32).

    Args:
        name: smp encoder name, e.g. ``"mit_b0"``.
        pretrained: load smp's ``"imagenet"`` weights (the user's hub). False by default.
        num_stages: how many of the coarsest maps to return.
    """

    def __init__(self, name: str, *, pretrained: bool = False, num_stages: int = 4) -> None:
        super().__init__()
        from segmentation_models_pytorch.encoders import get_encoder

        self.name = name
        self.model = get_encoder(name, weights="imagenet" if pretrained else None)
        self.num_stages = num_stages
        self.channels: list[int] = list(self.model.out_channels[-num_stages:])
        self.reductions: list[int] = [2 ** (i + 2) for i in range(num_stages)]

    def forward(self, images: Tensor) -> list[Tensor]:
        return list(self.model(images)[-self.num_stages :])

    def raw_key(self, key: str) -> str:
        """The key a plain smp / official MiT checkpoint uses for one of this encoder's keys."""
        return key.removeprefix("model.")


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """A small CPU encoder: 4 stages of two 3x3 conv-BN-ReLU, widths 32/64/128/192, strides 4/8/16/32.

    The first stage reaches stride 4 with two stride-2 convolutions; each later stage starts with
    one stride-2 convolution. 0.84 M parameters; the synthetic default of the book.

    Args:
        widths: channels of the four stages.
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 192)) -> None:
        super().__init__()
        stages = []
        in_channels = 3
        for i, width in enumerate(widths):
            first_stride_pair = (2, 2) if i == 0 else (2, 1)
            stages.append(
                nn.Sequential(
                    _conv_bn_relu(in_channels, width, first_stride_pair[0]),
                    _conv_bn_relu(width, width, first_stride_pair[1]),
                )
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.channels: list[int] = list(widths)
        self.reductions: list[int] = [2 ** (i + 2) for i in range(len(widths))]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> list[Tensor]:
        features = []
        x = images  # (B, 3, H, W)
        for stage in self.stages:
            x = stage(x)  # (B, C_i, H / 2^(i+2), W / 2^(i+2))
            features.append(x)
        return features

    def raw_key(self, key: str) -> str:
        return key
