"""CBP and OCCL in a segmentation model you already train: one call, no fork of the model's code.

:func:`adapt` finds the model's final classifier conv (C -> N), replaces it in place by a frozen
:class:`cbp.heads.CBPHead` of the same C and N (logits ``f . w_l``, Eq. 1-2, prototypes of
Algorithm 1), and registers a forward hook on that head that keeps its input: the embedding f
(B, C, H, W) that OCCL (Eq. 3-6) reads. The returned :class:`Adapted` handle adds OCCL to *your*
loss in *your* loop::

    adapted = adapt(model)                                  # model.decode_head.classifier is a CBPHead now
    out = model(pixel_values=images, labels=labels)         # your forward, unchanged
    loss = out.loss + adapted.occl_loss(labels)             # + OCCL on the hook's embedding (Eq. 7)

Where the classifier is looked for: a module whose dotted name is, or ends with, one of
:data:`KNOWN_CLASSIFIERS` (so a model wrapped in your own module is found too); more than one match is
an error. Each was read off the installed library (transformers 5.25, segmentation-models-pytorch
0.6, torchvision 0.29):

* ``decode_head.classifier``: transformers' ``SegformerForSemanticSegmentation`` and
  ``UperNetForSemanticSegmentation``. UperNet's auxiliary head (``auxiliary_head.classifier``) is left
  as it is: a learnable 1x1 conv on a backbone stage whose logits enter the auxiliary loss only.
* ``segmentation_head.0``: segmentation-models-pytorch's ``SegmentationHead`` (Unet, Unet++, FPN,
  PSPNet, Linknet, MAnet, PAN, DeepLabV3, DeepLabV3+, UPerNet, Segformer), followed by its upsampling
  and activation, which stay. Unet, Unet++, MAnet, PAN and PSPNet end with a 3x3 conv: CBP replaces
  it by the paper's per-pixel dot product (1x1), so the classifier no longer mixes neighbours. DPT's
  head differs: pass ``classifier="segmentation_head.head.4"``.
* ``classifier.4``: torchvision's FCN and DeepLabV3 (``fcn_resnet50``, ``deeplabv3_resnet50``, ...).
  Their auxiliary classifier (``aux_classifier``, present with ``aux_loss=True``) is left as it is,
  learnable, as UperNet's. LR-ASPP (two classifiers, summed) is not supported.

Any other model: ``adapt(model, classifier="dotted.name")`` of its final Conv2d. An auxiliary
classifier can be made CBP too by a second call, ``adapt(model, classifier="aux_classifier.4")``,
which returns a second handle with its own hook.

Rules: the classifier must be a ``Conv2d`` with groups 1 and stride 1 that keeps the spatial size,
with N >= 2 outputs and C >= N inputs (Algorithm 1 needs N orthogonal rows in C dimensions). Nothing
is patched globally: the hook sits on the new head only (``Adapted.remove()`` takes it off). Adapt
*after* loading pretrained weights and *before* building the optimizer or wrapping the model (DDP,
``torch.compile``). To reload, build the model, adapt it, then ``load_state_dict`` (the head's
state is its ``prototypes`` buffer, ``<path>.prototypes``); or, after transformers'
``save_pretrained``, ``from_pretrained`` then ``adapt`` with the same ``length`` and ``seed``: the
prototypes are a function of (N, C, T, seed), so they come back bit for bit. If the model calls its classifier more than
once in a forward, the handle keeps the last call's embedding.
"""

from __future__ import annotations

from torch import Tensor, nn

from cbp.heads import CBPHead
from cbp.losses import OCCL

#: Dotted-name suffixes of the final classifier conv in the libraries :func:`adapt` knows.
KNOWN_CLASSIFIERS: dict[str, str] = {
    "decode_head.classifier": "transformers SegFormer / UperNet",
    "segmentation_head.0": "segmentation-models-pytorch",
    "classifier.4": "torchvision FCN / DeepLabV3",
}


class Adapted:
    """The handle :func:`adapt` returns: the model (adapted in place), its CBP head, the hook's embedding.

    Attributes:
        model: the model that was passed, with its classifier replaced (the same object).
        path: dotted name of the replaced classifier, where :attr:`head` now sits.
        head: the frozen :class:`~cbp.heads.CBPHead` (prototypes (N, C), a buffer).
        occl: the :class:`~cbp.losses.OCCL` that :meth:`occl_loss` calls.
        replaced: repr of the conv that was replaced.
        embedding: (B, C, H, W) input of the head at its last call (``None`` before the first
            forward); it keeps its graph, so OCCL's gradient reaches the decoder.
        logits: (B, N, H, W) output of the head at that call (before the model's own upsampling).
    """

    def __init__(self, model: nn.Module, path: str, head: CBPHead, occl: OCCL, replaced: str) -> None:
        self.model = model
        self.path = path
        self.head = head
        self.occl = occl
        self.replaced = replaced
        self.embedding: Tensor | None = None
        self.logits: Tensor | None = None
        self._hook = head.register_forward_hook(self._capture, with_kwargs=True)

    def _capture(self, module: nn.Module, args: tuple, kwargs: dict, output: Tensor) -> None:
        self.embedding = args[0] if args else kwargs["features"]  # (B, C, H, W)
        self.logits = output  # (B, N, H, W)

    @property
    def prototypes(self) -> Tensor:
        """The frozen prototypes w, (N, C)."""
        return self.head.prototypes

    def occl_terms(self, labels: Tensor) -> dict[str, Tensor]:
        """OCCL (Eq. 3-6) of the last forward's embedding: :class:`~cbp.losses.OCCL`'s whole output.

        Args:
            labels: (B, h, w) integer labels of that forward's batch, any resolution: OCCL resizes
                them to the embedding's (H, W) by nearest; pixels equal to ``occl.ignore_index`` are
                left out.

        Returns:
            dict with ``"loss"`` (lam * centroid + phi * category), ``"centroid"``, ``"category"``,
            ``"category_centroids"`` (N, C) and ``"present"`` (N,).
        """
        if self.embedding is None:
            raise RuntimeError(
                f"no embedding yet: run the model forward first; the hook on {self.path!r} keeps the "
                "input of the CBP head at each call"
            )
        return self.occl(self.embedding, labels, self.prototypes)

    def occl_loss(self, labels: Tensor) -> Tensor:
        """The scalar OCCL loss of the last forward, to add to your own loss (Eq. 7).

        Args:
            labels: (B, h, w) integer labels of the last forward's batch (see :meth:`occl_terms`).

        Returns:
            Scalar tensor, differentiable with respect to the embedding.
        """
        return self.occl_terms(labels)["loss"]

    def remove(self) -> None:
        """Take the hook off (the CBP head stays in the model) and drop the kept tensors."""
        self._hook.remove()
        self.embedding = self.logits = None

    def __repr__(self) -> str:
        return (
            f"Adapted(path={self.path!r}, head={self.head!r}, replaced={self.replaced}, occl={self.occl!r})"
        )


def adapt(
    model: nn.Module,
    *,
    classifier: str | None = None,
    length: float = 2.0,
    seed: int = 0,
    occl: OCCL | None = None,
    ignore_index: int = 255,
) -> Adapted:
    """Replace the model's final classifier conv by a frozen CBP head, in place, and hook its input.

    Args:
        model: a segmentation model (see the module docstring for the libraries found by name).
        classifier: dotted name of the classifier conv; ``None`` looks for :data:`KNOWN_CLASSIFIERS`.
        length: T, the common norm of the prototypes (paper: 2).
        seed: seed of the prototypes' Kaiming draw (Algorithm 1).
        occl: the OCCL to use; ``None`` builds the paper's ``OCCL(tau=0.07, lam=1, phi=0.3)``, whose
            views split each class's objects in the batch at random into two halves (the study's
            reading; ``OCCL(views="batch")`` for the two halves of the batch).
        ignore_index: label of ignored pixels for the OCCL built here (unused when ``occl`` is given).

    Returns:
        An :class:`Adapted` handle; ``handle.model is model``.

    Raises:
        ValueError: no classifier found, more than one found, or the one found is not a Conv2d
            (C -> N) with groups 1 and stride 1 that keeps the spatial size, or has C < N or N < 2.
    """
    path = classifier if classifier is not None else _find_classifier(model)
    conv = _get(model, path)
    _check_classifier(conv, path)
    head = CBPHead(conv.in_channels, conv.out_channels, length=length, seed=seed, update="frozen")
    head.to(conv.weight.device)
    parent, _, name = path.rpartition(".")
    setattr(_get(model, parent) if parent else model, name, head)
    occl = occl if occl is not None else OCCL(ignore_index=ignore_index)
    return Adapted(model, path, head, occl, repr(conv))


def _find_classifier(model: nn.Module) -> str:
    """Dotted name of the one module whose name is or ends with a :data:`KNOWN_CLASSIFIERS` suffix."""
    found = [
        name
        for name, _ in model.named_modules()
        if any(name == known or name.endswith("." + known) for known in KNOWN_CLASSIFIERS)
    ]
    kind = type(model).__name__
    if not found:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
        hint = f"; its 1x1 Conv2d modules are {convs[-5:]} (last 5)" if convs else "; it has no 1x1 Conv2d"
        known = ", ".join(f"{k!r} ({v})" for k, v in KNOWN_CLASSIFIERS.items())
        raise ValueError(
            f"cbp.adapt found no classifier in {kind}: no module is named {known}{hint}. Pass "
            "classifier='dotted.name' of the final Conv2d that maps the embedding (B, C, H, W) to the "
            "logits (B, N, H, W)"
        )
    if len(found) > 1:
        raise ValueError(
            f"cbp.adapt found {len(found)} classifiers in {kind}: {found}; pass classifier='dotted.name' "
            "of the one that gives the model's logits"
        )
    return found[0]


def _get(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as error:
        raise ValueError(
            f"cbp.adapt: {type(model).__name__} has no submodule {path!r} ({error}); "
            "pass the dotted name as printed by model.named_modules()"
        ) from None


def _check_classifier(conv: nn.Module, path: str) -> None:
    """Refuse, naming ``path``, a module that CBP's per-pixel dot product cannot replace."""
    if isinstance(conv, CBPHead):
        raise ValueError(
            f"cbp.adapt: the classifier {path!r} is already a CBPHead: this model was adapted before; "
            "keep the handle that first call returned"
        )
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(
            f"cbp.adapt: the classifier {path!r} is a {type(conv).__name__}, expected an nn.Conv2d that "
            "maps the embedding (B, C, H, W) to the logits (B, N, H, W); pass classifier='dotted.name' "
            "of that conv"
        )
    # The output keeps the input's size iff 2 * padding == dilation * (kernel - 1), stride 1.
    if isinstance(conv.padding, str):  # "same" or "valid"
        same = conv.padding == "same" or conv.kernel_size == (1, 1)
    else:
        same = all(2 * p == d * (k - 1) for p, d, k in zip(conv.padding, conv.dilation, conv.kernel_size))
    if conv.groups != 1 or conv.stride != (1, 1) or not same:
        raise ValueError(
            f"cbp.adapt: the classifier {path!r} ({conv}) is not a per-pixel map: CBP replaces a conv "
            "with groups=1, stride 1 and an output of its input's spatial size (a 1x1 conv, or a kxk "
            "one with 'same' padding)"
        )
    channels, num_classes = conv.in_channels, conv.out_channels
    if num_classes < 2:
        raise ValueError(
            f"cbp.adapt: the classifier {path!r} has N={num_classes} output channel; CBP classifies N >= 2 "
            "classes with a softmax: build the model with 2 classes for a binary task"
        )
    if channels < num_classes:
        raise ValueError(
            f"cbp.adapt: the classifier {path!r} reads C={channels} channels for N={num_classes} classes, "
            f"and CBP needs C >= N (N mutually orthogonal prototypes in C dimensions, the paper's "
            f"limitation); widen the embedding that {path!r} reads to at least {num_classes} channels"
        )
