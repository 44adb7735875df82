"""``BACKBONES`` (one plain dict of model specs) and ``create_model``, the one way to build a model.

The paper's models (Section 4.1, Table 1) as mmsegmentation configures them:

- ``resnet50`` / ``resnet101``: timm ``resnet50c`` / ``resnet101c``, output stride 8, FCN head, C = 512;
- ``convnext_b``: timm ``convnext_base``, UPerNet, C = 512;
- ``swin_b``: timm ``swin_base_patch4_window7_224``, UPerNet, C = 512;
- ``mit_b0`` .. ``mit_b5``: smp ``mit_b0`` .. ``mit_b5``, SegFormer all-MLP head, C = 256.

ResNet, ConvNeXt and Swin carry mmseg's auxiliary FCN head on stage 3 (256 channels) by default;
MiT does not.

ResNet: mmseg uses ResNetV1c (a deep 3x3 stem, stride-2 3x3 convs in the bottlenecks) dilated to
output stride 8 with dilations (1, 1, 2, 4) and ``contract_dilation``. timm's ``resnet50c`` /
``resnet101c`` are exactly the deep-stem V1c variants (``resnet50d`` would add average-pool
shortcuts, which V1c lacks), and timm's ``output_stride=8`` gives stages 3/4 dilation 2/4 with the
first block of each at the previous dilation, i.e. mmseg's ``contract_dilation=True``.

Small variants for CPUs, tests and laptops (not in the paper; decoder width 256 so that CBP fits
ADE20K's 150 and COCO-Stuff's 171 classes): ``resnet18`` (timm ``resnet18d``: timm has no
``resnet18c``; ``d`` is the closest deep-stem variant with hub weights), ``convnext_atto``,
``convnext_t`` (timm ``convnext_tiny``, UPerNet 512 as mmseg's ConvNeXt-T), ``swin_t`` (timm
``swin_tiny_patch4_window7_224``, UPerNet 512 as mmseg's Swin-T), ``swin_atto`` (a 4-block Swin
with widths 32..256 built from timm's Swin class; no hub weights) and ``cnn_tiny`` (a 4-stage
conv net + the SegFormer decoder, the book's synthetic default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from cbp.heads import CBPHead, LinearHead
from cbp.io import UnreadableFileError, WrongCheckpointError, load_torch, state_mismatch
from cbp.paper import PAPER_ABLATION

from .decoders import FCNHead, SegformerHead, UPerHead
from .encoders import SmpEncoder, TimmEncoder, TinyCNN
from .segmentor import AuxHead, Segmentor


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one model of ``BACKBONES``.

    Attributes:
        arch: the encoder's architecture, "resnet" | "convnext" | "swin" | "mit" | "cnn".
        source: where the encoder comes from: "timm" | "smp" | "cbp".
        name: the timm / smp model name ("" for cbp's own encoder).
        decoder: "fcn" | "upernet" | "segformer".
        channels: decoder width C, the embedding dimension the classifier reads.
        aux_channels: width of the auxiliary FCN head when it is on.
        aux: whether the auxiliary head is on by default (mmseg's configs).
        encoder_kwargs: extra keyword arguments of the encoder (timm ``create_model`` kwargs).
        hub_weights: whether ``pretrained=True`` can find weights for this encoder.
    """

    arch: str
    source: str
    name: str
    decoder: str
    channels: int
    aux_channels: int = 256
    aux: bool = True
    encoder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    hub_weights: bool = True

    @property
    def paper_model(self) -> str:
        """The paper's model (Table 1 row) whose recipe this backbone uses: "fcn", "convnext", "swin"
        or "segformer" (the decoder, and for UPerNet the encoder that the paper pairs with it)."""
        if self.decoder == "upernet":
            return self.arch
        return self.decoder


_RESNET = {"output_stride": 8, "out_indices": (1, 2, 3, 4)}  # levels 1-4: skip the stem level 0
# A tiny Swin (no timm model is smaller than Swin-T): same class, 1-1-2-1 blocks, widths 32-256.
_SWIN_ATTO = {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8)}

BACKBONES: dict[str, BackboneSpec] = {
    # The paper's models (mmseg configs: drop-path 0.4 ConvNeXt-B, 0.3 Swin, 0.1 MiT (smp's default)).
    "resnet50": BackboneSpec("resnet", "timm", "resnet50c", "fcn", 512, encoder_kwargs=_RESNET),
    "resnet101": BackboneSpec("resnet", "timm", "resnet101c", "fcn", 512, encoder_kwargs=_RESNET),
    "convnext_b": BackboneSpec(
        "convnext", "timm", "convnext_base", "upernet", 512, encoder_kwargs={"drop_path_rate": 0.4}
    ),
    "swin_b": BackboneSpec(
        "swin", "timm", "swin_base_patch4_window7_224", "upernet", 512, encoder_kwargs={"drop_path_rate": 0.3}
    ),
    **{f"mit_b{i}": BackboneSpec("mit", "smp", f"mit_b{i}", "segformer", 256, aux=False) for i in range(6)},
    # Small variants.
    "resnet18": BackboneSpec(
        "resnet", "timm", "resnet18d", "fcn", 256, aux_channels=64, encoder_kwargs=_RESNET
    ),
    "convnext_atto": BackboneSpec(
        "convnext",
        "timm",
        "convnext_atto",
        "upernet",
        256,
        aux_channels=64,
        encoder_kwargs={"drop_path_rate": 0.1},
    ),
    "convnext_t": BackboneSpec(
        "convnext", "timm", "convnext_tiny", "upernet", 512, encoder_kwargs={"drop_path_rate": 0.4}
    ),
    "swin_t": BackboneSpec(
        "swin", "timm", "swin_tiny_patch4_window7_224", "upernet", 512, encoder_kwargs={"drop_path_rate": 0.3}
    ),
    "swin_atto": BackboneSpec(
        "swin",
        "timm",
        "swin_tiny_patch4_window7_224",
        "upernet",
        256,
        aux_channels=64,
        encoder_kwargs={**_SWIN_ATTO, "drop_path_rate": 0.1},
        hub_weights=False,
    ),
    "cnn_tiny": BackboneSpec("cnn", "cbp", "", "segformer", 256, aux=False, hub_weights=False),
}

CLASSIFIERS = ("cbp", "linear")
# Keys of ImageNet classification heads, absent from a features-only encoder; dropped when a plain
# timm / smp checkpoint is loaded.
_CLASSIFICATION_KEYS = ("fc.", "head.", "classifier.", "norm.")


def get_spec(backbone: str) -> BackboneSpec:
    """The spec of ``backbone``; an unknown name is a ``KeyError`` listing the valid ones."""
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise KeyError(
            f"unknown backbone {backbone!r}: expected one of {sorted(BACKBONES)} (see cbp.models.BACKBONES)"
        ) from None


def _size_pair(img_size: int | tuple[int, int]) -> tuple[int, int]:
    return (img_size, img_size) if isinstance(img_size, int) else (int(img_size[0]), int(img_size[1]))


def build_encoder(
    spec: BackboneSpec, *, hub: bool = False, img_size: int | tuple[int, int] | None = None
) -> nn.Module:
    """The encoder of ``spec``; ``hub=True`` loads timm / smp hub weights.

    ``img_size``, (H, W) or an int, is Swin's design input size (None: timm's 224), from which timm
    derives each stage's window size (windows shrink to small feature maps); pass the training crop
    size. Inputs of other sizes are still accepted (windows padded, masks built per forward, as mmseg).
    Ignored by the other backbones.
    """
    if hub and not spec.hub_weights:
        raise ValueError(
            f"no hub weights exist for this encoder ({spec.arch}, {spec.name or 'cbp'}): "
            "use pretrained=False or a path to a local checkpoint"
        )
    if spec.source == "cbp":
        return TinyCNN()
    if spec.source == "smp":
        return SmpEncoder(spec.name, pretrained=hub)
    kwargs = dict(spec.encoder_kwargs)
    if spec.arch == "swin":
        # img_size (timm default 224) fixes the stage resolutions from which timm derives the window
        # sizes (a window never exceeds its feature map) and hence the shapes of the relative-position
        # tables. dynamic_img_size still accepts any input: attention masks are built per forward and
        # windows padded, as mmseg's Swin does (same speed on CPU as the static masks).
        kwargs["dynamic_img_size"] = True
        if img_size is not None:
            kwargs["img_size"] = _size_pair(img_size)
    return TimmEncoder(
        spec.name,
        nhwc=spec.arch == "swin",
        out_norms=spec.arch in ("swin", "convnext"),  # mmseg's per-output norm0..norm3
        pretrained=hub,
        **kwargs,
    )


def _encoder_state(obj: Any, path: Path) -> dict[str, Tensor]:
    """The encoder part of a loaded checkpoint: a cbp checkpoint (``obj["model"]`` holds a
    Segmentor state dict), a ``{"state_dict": ...}`` wrapper, or a plain state dict."""
    if not isinstance(obj, Mapping):
        raise UnreadableFileError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}"
        )
    if isinstance(obj.get("model"), Mapping):
        state = {k.removeprefix("encoder."): v for k, v in obj["model"].items() if k.startswith("encoder.")}
        if not state:
            found = list(obj["model"])[:8]
            raise UnreadableFileError(
                f"{path}: the checkpoint's 'model' has no 'encoder.*' keys (found e.g. {found}); "
                "expected a cbp checkpoint or a plain encoder state dict"
            )
        return state
    if isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, Tensor)}
    for prefix in ("encoder.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint not found: {path} (expected a file with an encoder state dict or a cbp "
            "checkpoint; use pretrained=False for random weights or pretrained=True for the timm/smp hub)"
        )
    return path


def load_encoder_checkpoint(encoder: nn.Module, path: str | Path) -> None:
    """Load encoder weights from a local file, strictly.

    Accepted: ``model.encoder.state_dict()`` of a cbp model, a cbp training checkpoint (a dict
    whose ``"model"`` is a Segmentor state dict; its ``"encoder.*"`` keys are taken), or a plain
    timm / smp checkpoint of the same architecture (keys mapped through timm's feature-wrapper
    renaming; ImageNet classifier keys ``fc.``/``head.``/``norm.`` dropped; the new per-output
    norms of Swin/ConvNeXt may be absent, as in mmseg).

    Raises:
        FileNotFoundError: no file at ``path``.
        cbp.io.UnreadableFileError: the file holds no state dict (exit code 4).
        cbp.io.WrongCheckpointError: (a ValueError, exit code 2) no key matches the encoder, or a key is
            missing / unexpected / of another shape: the message names the first and both shapes.
    """
    path = _existing_file(path)
    name = getattr(encoder, "name", type(encoder).__name__)
    hint = (
        f"pass encoder weights of the same backbone ({name}; and for Swin the same img_size), e.g. a "
        "checkpoint of a run of that backbone"
    )
    raw = load_torch(path)  # weights_only: a "pretrained" file never runs code
    state = _encoder_state(raw, path)
    own = encoder.state_dict()
    if any(k in own for k in state):
        target, allowed_missing, dropped = state, (), []
    else:  # a plain timm / smp checkpoint: map its keys onto the wrapper's
        from_raw = {encoder.raw_key(k): k for k in own}
        target = {from_raw[k]: v for k, v in state.items() if k in from_raw}
        dropped = [k for k in state if k not in from_raw and k.startswith(_CLASSIFICATION_KEYS)]
        state = {k: v for k, v in state.items() if k not in dropped}
        allowed_missing = ("out_norms.",)
        if not target:
            (k, v), (ok, ov) = next(iter(state.items())), next(iter(own.items()))
            raise WrongCheckpointError(
                f"{path} does not fit the {name} encoder: none of its keys is the encoder's (the file's first is "
                f"{k} {tuple(v.shape)}, the encoder's {ok} {tuple(ov.shape)}); {hint}"
            )
        target.update({k: v for k, v in state.items() if k not in from_raw})  # reported as unexpected
    expected = {k: v for k, v in own.items() if k in target or not k.startswith(allowed_missing)}
    where = state_mismatch(expected, target)
    if where is not None:
        raise WrongCheckpointError(f"{path} does not fit the {name} encoder: {where}; {hint}")
    encoder.load_state_dict(target, strict=not allowed_missing)


def build_decoder(spec: BackboneSpec, in_channels: list[int]) -> nn.Module:
    """The decoder of ``spec``, of width C = ``spec.channels``: mmseg's FCN head (two convs, input
    concatenated), UPerNet (pool scales 1, 2, 3, 6) or SegFormer's all-MLP head."""
    if spec.decoder == "fcn":
        return FCNHead(in_channels, spec.channels, num_convs=2, concat_input=True)
    if spec.decoder == "upernet":
        return UPerHead(in_channels, spec.channels, pool_scales=(1, 2, 3, 6))
    return SegformerHead(in_channels, spec.channels)


def build_classifier(
    classifier: str,
    embed_dim: int,
    num_classes: int,
    *,
    backbone: str,
    length: float,
    init: str | Tensor,
    update: str,
    proto_seed: int,
    momentum: float,
    penalty_weight: float,
    penalty_form: str,
) -> nn.Module:
    """The classifier over C-d embeddings; the arguments after ``backbone`` are CBP's only (their
    defaults are :func:`create_model`'s).

    Args:
        classifier: ``"cbp"`` (frozen category-basis prototypes, :class:`cbp.heads.CBPHead`) or
            ``"linear"`` (the learnable baseline with bias, :class:`cbp.heads.LinearHead`).
        embed_dim: C, the decoder width.
        num_classes: N, the number of classes.
        backbone: the model's backbone, named when CBP cannot be built on fewer dimensions than classes.
        length: T, the norm of every prototype (Algorithm 1; 2.0 in the paper's ablations).
        init: prototype initialisation (``cbp.category_basis_prototypes``).
        update: ``"frozen"``, ``"gradient"``, ``"ema"`` or ``"penalty"``.
        proto_seed: seed of the prototypes' private generator.
        momentum, penalty_weight, penalty_form: the ``"ema"`` / ``"penalty"`` updates' settings
            (:class:`cbp.heads.CBPHead`; :func:`create_model`'s defaults are the head's:
            ``penalty_weight`` 1.0 since protocol amendment 5, was 0.01 here).
    """
    if classifier == "linear":
        return LinearHead(embed_dim, num_classes)
    try:
        return CBPHead(
            embed_dim,
            num_classes,
            length=length,
            init=init,
            update=update,
            seed=proto_seed,
            momentum=momentum,
            penalty_weight=penalty_weight,
            penalty_form=penalty_form,  # type: ignore[arg-type]
        )
    except ValueError as err:
        if embed_dim >= num_classes:
            raise
        raise ValueError(
            f"{err} [the {backbone!r} decoder gives {embed_dim}-d embeddings, fewer than the "
            f"{num_classes} classes: use a backbone with a wider decoder or classifier='linear']"
        ) from err


def create_model(
    backbone: str,
    num_classes: int,
    *,
    classifier: str = "cbp",
    pretrained: bool | str | Path = False,
    img_size: int | tuple[int, int] | None = None,
    length: float = PAPER_ABLATION.length,
    init: str | Tensor = "orthogonal+equal",
    update: str = "frozen",
    proto_seed: int = 0,
    momentum: float = 0.99,
    penalty_weight: float = 1.0,
    penalty_form: str = "squared",
    aux_head: bool | None = None,
    dropout: float = 0.1,
) -> Segmentor:
    """Build a segmentation model: encoder + decoder + classifier (+ auxiliary FCN head).

    The classifier's defaults (``length`` ... ``penalty_form``) and ``dropout`` are the engine
    config's (:class:`cbp.engine.config.ModelConfig`, ``tests/test_defaults.py``); the engine passes
    every argument explicitly.

    Args:
        backbone: a key of :data:`BACKBONES` (e.g. ``"mit_b5"``, ``"swin_b"``, ``"cnn_tiny"``).
        num_classes: N, the number of classes.
        classifier: ``"cbp"`` or ``"linear"`` (``build_classifier``).
        pretrained: False (random encoder), True (timm / smp hub weights, downloaded into the user's
            cache), or a path to a local checkpoint (see :func:`load_encoder_checkpoint`).
        img_size: (H, W) or an int, Swin's design input size: pass the training crop size
            (``build_encoder``). Ignored by the other backbones.
        length, init, update, proto_seed, momentum, penalty_weight, penalty_form: CBP's settings
            (``build_classifier``); ignored by the linear classifier.
        aux_head: add mmseg's auxiliary FCN head on stage 3; None = as mmseg (on for ResNet,
            ConvNeXt and Swin, off for MiT and cnn_tiny).
        dropout: ``Dropout2d`` probability before the classifier (mmseg: 0.1).

    Returns:
        A :class:`Segmentor` with ``.embed_dim`` = the decoder width C.
    """
    spec = get_spec(backbone)
    if classifier not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {classifier!r}: expected one of {list(CLASSIFIERS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    local = _existing_file(pretrained) if isinstance(pretrained, (str, Path)) else None
    encoder = build_encoder(spec, hub=pretrained is True, img_size=img_size)
    if local is not None:
        load_encoder_checkpoint(encoder, local)
    # built in this order, as ever: the modules' initial weights come from the global generator
    decoder = build_decoder(spec, encoder.channels)
    cbp = dict(length=length, init=init, update=update, proto_seed=proto_seed, momentum=momentum)
    cbp |= dict(penalty_weight=penalty_weight, penalty_form=penalty_form)
    head = build_classifier(classifier, spec.channels, num_classes, backbone=backbone, **cbp)
    aux = None
    if spec.aux if aux_head is None else aux_head:
        aux = AuxHead(encoder.channels, num_classes, spec.aux_channels, in_index=2, dropout=dropout)
    return Segmentor(encoder, decoder, head, num_classes=num_classes, aux_head=aux, dropout=dropout)
