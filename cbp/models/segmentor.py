"""The segmentation model: encoder -> decoder -> (dropout) -> classifier, plus an optional
auxiliary FCN head, returning a documented :class:`SegOutput` instead of a tuple."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F

from cbp.heads import LinearHead

from .decoders import FCNHead


@dataclass
class SegOutput:
    """What :meth:`Segmentor.forward` returns.

    Attributes:
        logits: (B, N, H, W) class scores, bilinearly resized to the input size when
            ``upsample=True``, else (B, N, h, w) at the decoder's resolution (paper Eq. 1, 2).
        embedding: (B, C, h, w) the decoder output the classifier reads, before dropout: the pixel
            features f that OCCL pulls toward the prototypes (Eq. 6-7).
        aux_logits: (B, N, h', w') logits of the auxiliary FCN head at its own resolution (not
            upsampled), or None (no auxiliary head, or the model is in eval mode).
    """

    logits: Tensor
    embedding: Tensor
    aux_logits: Tensor | None = None


class AuxHead(nn.Module):
    """mmseg's auxiliary ``FCNHead`` (num_convs=1, concat_input=False, on stage 3) with its own
    dropout and linear classifier. Its loss weight (0.4 in mmseg) is applied by the engine.

    Shapes:
        features[in_index] (B, C_in, h', w') -> logits (B, N, h', w').
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 256,
        *,
        in_index: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.decoder = FCNHead(in_channels, channels, in_index=in_index, num_convs=1, concat_input=False)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = LinearHead(channels, num_classes)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.classifier(self.dropout(self.decoder(features)))  # (B, N, h', w')


class Segmentor(nn.Module):
    """Encoder, decoder and classifier of a segmentation model (built by :func:`cbp.models.create_model`).

    ``forward(images, *, upsample=True) -> SegOutput``:

    - ``images``: (B, 3, H, W) float, normalised.
    - ``SegOutput.logits``: (B, N, H, W) if ``upsample`` (bilinear, ``align_corners=False``, as mmseg),
      else (B, N, h, w) at the decoder's resolution (1/8 for FCN on a dilated ResNet, 1/4 otherwise).
    - ``SegOutput.embedding``: (B, C, h, w) the decoder output, before dropout; ``C = .embed_dim``.
    - ``SegOutput.aux_logits``: (B, N, h', w') from the auxiliary head (stage 3, 1/16 or 1/8) when
      the model has one and is in training mode; None otherwise (mmseg uses it only for the loss).

    The classifier computes ``logits = W f (+ b)`` on the dropped-out embedding (Eq. 1); for
    ``CBPHead`` W is the frozen category-basis prototype matrix, a buffer that no weight-init
    pass touches. Parameter names starting with ``"encoder."`` are the backbone's.

    Args:
        encoder: returns a list of (B, C_i, H / r_i, W / r_i) maps, finest first.
        decoder: maps that list to one (B, C, h, w) embedding; has ``.channels == C``.
        classifier: (B, C, h, w) -> (B, N, h, w), ``cbp.heads.CBPHead`` or ``cbp.heads.LinearHead``.
        num_classes: N, the number of classes.
        aux_head: optional :class:`AuxHead`.
        dropout: ``Dropout2d`` probability between embedding and classifier (mmseg: 0.1).
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        classifier: nn.Module,
        *,
        num_classes: int,
        aux_head: nn.Module | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = classifier
        self.aux_head = aux_head
        self.num_classes = num_classes
        self.embed_dim: int = decoder.channels

    def forward(self, images: Tensor, *, upsample: bool = True) -> SegOutput:
        features = self.encoder(images)  # [(B, C_i, H / r_i, W / r_i)]
        embedding = self.decoder(features)  # (B, C, h, w)
        logits = self.classifier(self.dropout(embedding))  # (B, N, h, w), Eq. 1
        if upsample:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        aux_logits = self.aux_head(features) if self.aux_head is not None and self.training else None
        return SegOutput(logits=logits, embedding=embedding, aux_logits=aux_logits)
