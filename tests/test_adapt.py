"""cbp.adapt on the real libraries: transformers (SegFormer, UperNet), segmentation-models-pytorch (Unet,
FPN, DeepLabV3+) and torchvision (FCN, DeepLabV3), each a small random-init model on CPU.

For every model: where the classifier is found and what becomes of it (shapes, frozen, the auxiliary
head left), the model's own output equal to ``f . w`` on the hook's embedding, a 20-step loop of CE +
OCCL through the helper that lowers the loss, and a state-dict round trip. Then the OCCL helper
(labels resized by nearest, ignored pixels left out) and the refusals.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cbp.adapt import KNOWN_CLASSIFIERS, Adapted, adapt
from cbp.heads import CBPHead
from cbp.losses import OCCL

N = 4  # classes
IGNORE = 255


@dataclass(frozen=True)
class Family:
    """One model of one library: how to build it, run it, and what its head's logits become."""

    name: str
    build: Callable[[], nn.Module]
    size: int  # input height = width
    path: str  # where the classifier is
    channels: int  # C of the embedding the classifier reads
    forward: Callable[[nn.Module, Tensor], Tensor]  # the model's final logits
    post: Callable[[nn.Module, Tensor, Tensor], Tensor]  # head logits, input -> final logits
    loss: Callable[[nn.Module, Tensor, Tensor], Tensor]  # the user's own loss (without OCCL)
    aux: str | None = None  # the auxiliary classifier, left as it is


def _segformer() -> nn.Module:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=N,
    )
    return SegformerForSemanticSegmentation(config)


def _upernet() -> nn.Module:
    from transformers import ConvNextConfig, UperNetConfig, UperNetForSemanticSegmentation

    backbone = ConvNextConfig(
        num_stages=3, hidden_sizes=[8, 16, 16], depths=[1, 1, 1], out_features=["stage1", "stage2", "stage3"]
    )
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=16,
        pool_scales=[1, 2],
        use_auxiliary_head=True,
        auxiliary_in_channels=16,
        auxiliary_channels=8,
        num_labels=N,
    )
    return UperNetForSemanticSegmentation(config)


def _smp(name: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return getattr(smp, name)(encoder_name="mobilenet_v2", encoder_weights=None, classes=N, **kwargs)

    return build


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision.models import segmentation

        return getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=N, aux_loss=True)

    return build


def _smp_after_conv(model: nn.Module, logits: Tensor) -> Tensor:
    """What smp's SegmentationHead does after its conv: upsampling (or Identity), then activation."""
    return model.segmentation_head[2](model.segmentation_head[1](logits))


def _bilinear(model: nn.Module, logits: Tensor, x: Tensor) -> Tensor:
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _ce(logits: Tensor, labels: Tensor) -> Tensor:
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, labels, ignore_index=IGNORE)


def _torchvision_loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    out = model(x)
    return _ce(out["out"], y) + 0.5 * _ce(out["aux"], y)


FAMILIES = [
    Family(
        "segformer",
        _segformer,
        32,
        "decode_head.classifier",
        16,
        forward=lambda m, x: m(pixel_values=x).logits,
        post=lambda m, logits, x: logits,  # SegFormer returns the head's 1/4-resolution logits
        loss=lambda m, x, y: m(pixel_values=x, labels=y).loss,  # their CE (ignore index 255)
    ),
    Family(
        "upernet",
        _upernet,
        32,
        "decode_head.classifier",
        16,
        forward=lambda m, x: m(pixel_values=x).logits,
        post=_bilinear,
        loss=lambda m, x, y: m(pixel_values=x, labels=y).loss,  # their CE + 0.4 x auxiliary CE
        aux="auxiliary_head.classifier",
    ),
    Family(
        "smp-unet",
        _smp("Unet", encoder_depth=3, decoder_channels=(32, 16, 16)),
        32,
        "segmentation_head.0",
        16,
        forward=lambda m, x: m(x),
        post=lambda m, logits, x: _smp_after_conv(m, logits),
        loss=lambda m, x, y: _ce(m(x), y),
    ),
    Family(
        "smp-fpn",
        _smp("FPN", decoder_pyramid_channels=32, decoder_segmentation_channels=32),
        32,
        "segmentation_head.0",
        32,
        forward=lambda m, x: m(x),
        post=lambda m, logits, x: _smp_after_conv(m, logits),
        loss=lambda m, x, y: _ce(m(x), y),
    ),
    Family(
        "smp-deeplabv3plus",
        _smp("DeepLabV3Plus", decoder_channels=32),
        32,
        "segmentation_head.0",
        32,
        forward=lambda m, x: m(x),
        post=lambda m, logits, x: _smp_after_conv(m, logits),
        loss=lambda m, x, y: _ce(m(x), y),
    ),
    Family(
        "torchvision-fcn",
        _torchvision("fcn_resnet50"),
        32,
        "classifier.4",
        512,
        forward=lambda m, x: m(x)["out"],
        post=_bilinear,
        loss=_torchvision_loss,
        aux="aux_classifier.4",
    ),
    Family(
        "torchvision-deeplabv3",
        _torchvision("deeplabv3_resnet50"),
        32,
        "classifier.4",
        256,
        forward=lambda m, x: m(x)["out"],
        post=_bilinear,
        loss=_torchvision_loss,
        aux="aux_classifier.4",
    ),
]
FAST = [f for f in FAMILIES if not f.name.startswith("torchvision")]
# torchvision's ResNet-50 models train at about 2 s a step on one busy CPU thread.
SLOW_MARKED = [
    pytest.param(f, id=f.name, marks=pytest.mark.slow) if f not in FAST else pytest.param(f, id=f.name)
    for f in FAMILIES
]


def _batch(size: int) -> tuple[Tensor, Tensor]:
    """A fixed tiny batch: two images of the N classes in quadrants, a stripe of ignored pixels."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.empty(2, size, size, dtype=torch.long)
    half = size // 2
    for b, order in enumerate(([0, 1, 2, 3], [3, 2, 1, 0])):  # every class in both images (views)
        labels[b, :half, :half], labels[b, :half, half:] = order[0], order[1]
        labels[b, half:, :half], labels[b, half:, half:] = order[2], order[3]
    colours = torch.rand(N, 3, generator=generator) * 2 - 1  # (N, 3)
    images = colours[labels].permute(0, 3, 1, 2) + 0.1 * torch.randn(2, 3, size, size, generator=generator)
    labels[:, -2:, :] = IGNORE
    return images, labels


def _adapted(family: Family, **kwargs) -> tuple[nn.Module, Adapted]:
    model = family.build()
    return model, adapt(model, **kwargs)


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_classifier_replaced_in_place_and_frozen(family: Family) -> None:
    model = family.build()
    before = model.get_submodule(family.path)
    assert isinstance(before, nn.Conv2d) and before.out_channels == N
    aux_before = model.get_submodule(family.aux) if family.aux else None
    handle = adapt(model)

    assert handle.model is model and handle.path == family.path
    head = model.get_submodule(family.path)
    assert head is handle.head and isinstance(head, CBPHead)
    assert (head.channels, head.num_classes, head.update) == (family.channels, N, "frozen")
    assert handle.prototypes.shape == (N, family.channels)
    if family.aux:  # the auxiliary classifier is left as it was: the same learnable conv
        assert model.get_submodule(family.aux) is aux_before
        assert all(p.requires_grad for p in aux_before.parameters())

    # Frozen: the head has no parameter, the prototypes are a buffer, and the optimizer the user
    # builds from the model's trainable parameters holds neither the prototypes nor the old conv.
    assert list(head.parameters()) == []
    assert not handle.prototypes.requires_grad
    assert not any(name.startswith(family.path + ".") for name, _ in model.named_parameters())
    optimizer = torch.optim.AdamW(p for p in model.parameters() if p.requires_grad)
    in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(handle.prototypes) not in in_groups
    assert not {id(p) for p in before.parameters()} & in_groups
    assert f"{family.path}.prototypes" in model.state_dict()


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_logits_are_embedding_dot_prototypes(family: Family) -> None:
    model, handle = _adapted(family)
    model.eval()
    images, _ = _batch(family.size)
    with torch.no_grad():
        out = family.forward(model, images)
    embedding, logits = handle.embedding, handle.logits
    assert embedding is not None and logits is not None
    assert embedding.shape[:2] == (2, family.channels)
    assert logits.shape == (2, N, *embedding.shape[-2:])
    expected = torch.einsum("bchw,nc->bnhw", embedding.double(), handle.prototypes.double())  # Eq. 1
    torch.testing.assert_close(logits.double(), expected, rtol=1e-6, atol=1e-6)
    # The model's own output is those logits after its own resizing: nothing else moved.
    assert out.shape[:2] == (2, N)
    torch.testing.assert_close(out, family.post(model, logits, images), rtol=0, atol=0)
    with torch.no_grad():
        reference = family.post(model, expected.float(), images)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", SLOW_MARKED)
def test_training_with_ce_and_occl_lowers_the_loss(family: Family) -> None:
    """20 steps of the user's loss + the helper's OCCL on one fixed batch; prototypes stay put."""
    torch.manual_seed(0)
    model, handle = _adapted(family)
    model.train()
    images, labels = _batch(family.size)
    frozen = handle.prototypes.clone()
    optimizer = torch.optim.AdamW((p for p in model.parameters() if p.requires_grad), lr=1e-3)
    losses, occls = [], []
    start = time.perf_counter()
    for _ in range(20):
        loss = family.loss(model, images, labels)
        occl = handle.occl_loss(labels)
        optimizer.zero_grad()
        (loss + occl).backward()
        optimizer.step()
        losses.append(float((loss + occl).detach()))
        occls.append(float(occl.detach()))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first, f"{family.name}: loss {first:.4f} -> {last:.4f} over 20 steps ({losses})"
    assert all(o > 0 for o in occls), "OCCL was zero: no class in both views?"
    assert torch.equal(handle.prototypes, frozen)
    print(f"{family.name}: {first:.3f} -> {last:.3f}, {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_state_dict_round_trip(family: Family) -> None:
    torch.manual_seed(1)
    source, source_handle = _adapted(family, seed=1)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    assert f"{family.path}.weight" not in source.state_dict()

    torch.manual_seed(2)
    fresh, fresh_handle = _adapted(family)  # other weights, prototypes of seed 0
    assert not torch.equal(fresh_handle.prototypes, source_handle.prototypes)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(fresh_handle.prototypes, source_handle.prototypes)
    source.eval(), fresh.eval()
    images, _ = _batch(family.size)
    with torch.no_grad():
        assert torch.equal(family.forward(fresh, images), family.forward(source, images))
    assert torch.equal(fresh_handle.embedding, source_handle.embedding)  # the hook survives the load


def test_transformers_save_pretrained_then_adapt_again(tmp_path, monkeypatch) -> None:
    """from_pretrained of an adapted checkpoint + adapt with the same T and seed: the same model, since
    the prototypes are a function of (N, C, T, seed) (the loader reports the classifier's keys)."""
    from transformers import SegformerForSemanticSegmentation

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, _ = _adapted(FAMILIES[0], length=1.0, seed=3)
    model.save_pretrained(tmp_path)
    again = SegformerForSemanticSegmentation.from_pretrained(tmp_path)
    adapt(again, length=1.0, seed=3)
    model.eval(), again.eval()
    images, _ = _batch(32)
    with torch.no_grad():
        assert torch.equal(again(pixel_values=images).logits, model(pixel_values=images).logits)


@pytest.mark.parametrize("family", [FAMILIES[0], FAMILIES[3]], ids=["segformer", "smp-fpn"])
def test_occl_helper_resizes_labels_and_leaves_out_ignored_pixels(family: Family) -> None:
    # image halves as views (the reference below): the default views ("objects") split at random
    model, handle = _adapted(family, occl=OCCL(views="batch", ignore_index=IGNORE))
    images, labels = _batch(family.size)
    labels[0, :3] = IGNORE  # some more ignored pixels, in one image only
    family.forward(model, images)
    embedding = handle.embedding
    size = embedding.shape[-2:]
    assert size != labels.shape[-2:]  # the helper has something to resize

    terms = handle.occl_terms(labels)
    assert torch.equal(terms["loss"], handle.occl_loss(labels))
    assert terms["loss"].requires_grad
    # Reference: labels resized by nearest, then per-(image = view, class) means of the embedding
    # over the pixels that are not ignored; category centroids = mean of the two views' centroids.
    near = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()  # (B, H, W)
    features = embedding.detach().double()  # (B, C, H, W)
    expected = torch.zeros(N, family.channels, dtype=torch.float64)
    for cls in range(N):
        views = [features[b].permute(1, 2, 0)[near[b] == cls].mean(0) for b in range(2)]  # (C,) each
        expected[cls] = (views[0] + views[1]) / 2
    torch.testing.assert_close(terms["category_centroids"].double(), expected, rtol=1e-5, atol=1e-6)
    assert terms["present"].all()
    # The same numbers as a direct OCCL call on the hook's embedding with nearest-resized labels.
    direct = OCCL()(embedding, near, handle.prototypes)
    torch.testing.assert_close(terms["loss"], direct["loss"])
    # Labels beyond N that are not the ignore index are an error, not a silent skip.
    with pytest.raises(ValueError, match="labels must be in"):
        handle.occl_loss(torch.full_like(labels, N))


def test_helper_needs_a_forward_and_remove_takes_the_hook_off() -> None:
    model, handle = _adapted(FAMILIES[3])
    with pytest.raises(RuntimeError, match="run the model forward first"):
        handle.occl_loss(torch.zeros(2, 8, 8, dtype=torch.long))
    images, _ = _batch(32)
    model(images)
    assert handle.embedding is not None
    handle.remove()
    assert handle.embedding is None
    model(images)
    assert handle.embedding is None
    assert isinstance(model.segmentation_head[0], CBPHead)  # the head stays


def test_found_inside_a_wrapper_and_by_explicit_name() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = FAMILIES[3].build()

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)

    wrapper = Wrapper()
    assert adapt(wrapper).path == "net.segmentation_head.0"
    with pytest.raises(ValueError, match=r"'net\.segmentation_head\.0' is already a CBPHead"):
        adapt(wrapper)  # twice: refused, not a second hook

    upernet = FAMILIES[1].build()  # the auxiliary classifier made CBP too, by a second call
    main, aux = adapt(upernet), adapt(upernet, classifier="auxiliary_head.classifier", seed=1)
    assert isinstance(upernet.auxiliary_head.classifier, CBPHead) and aux.head.channels == 8
    out = upernet(pixel_values=_batch(32)[0], labels=_batch(32)[1])
    assert main.embedding.shape[1] == 16 and aux.embedding.shape[1] == 8 and out.loss.requires_grad

    toy = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, N, 1))
    handle = adapt(toy, classifier="2", length=3.0, seed=5)
    assert isinstance(toy[2], CBPHead) and handle.head.length == 3.0
    torch.testing.assert_close(handle.prototypes.norm(dim=1), torch.full((N,), 3.0))
    assert toy(torch.randn(2, 3, 8, 8)).shape == (2, N, 8, 8)


# --- refusals ---------------------------------------------------------------------------------------


def test_refuses_c_smaller_than_n_naming_the_path() -> None:
    import segmentation_models_pytorch as smp

    unet = smp.Unet(
        "mobilenet_v2", encoder_weights=None, classes=150, encoder_depth=3, decoder_channels=(32, 16, 16)
    )
    with pytest.raises(ValueError, match=r"'segmentation_head\.0' reads C=16 channels for N=150") as error:
        adapt(unet)
    assert "C >= N" in str(error.value) and "widen" in str(error.value)
    assert isinstance(unet.segmentation_head[0], nn.Conv2d)  # refused: the model is untouched


def test_refuses_a_model_without_a_known_classifier() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, N, 1))
    with pytest.raises(ValueError, match="found no classifier in Sequential") as error:
        adapt(model)
    message = str(error.value)
    assert all(known in message for known in KNOWN_CLASSIFIERS)
    assert "classifier='dotted.name'" in message and "['2']" in message  # the 1x1 convs as a hint


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.Linear(8, N), r"'head' is a Linear, expected an nn.Conv2d"),
        (nn.Conv2d(8, N, 3), r"'head' .* is not a per-pixel map"),  # no padding: shrinks the map
        (nn.Conv2d(8, N, 1, stride=2), r"'head' .* is not a per-pixel map"),
        (nn.Conv2d(8, 1, 1), r"'head' has N=1 output channel"),
    ],
    ids=["linear", "valid-3x3", "stride-2", "one-class"],
)
def test_refuses_what_is_not_a_per_pixel_classifier(module: nn.Module, match: str) -> None:
    model = nn.Module()
    model.head = module
    with pytest.raises(ValueError, match=match):
        adapt(model, classifier="head")
    with pytest.raises(ValueError, match=r"has no submodule 'decoder\.head'"):
        adapt(model, classifier="decoder.head")


def test_refuses_two_classifiers() -> None:
    model = nn.Module()
    model.a, model.b = FAMILIES[3].build(), FAMILIES[4].build()
    with pytest.raises(
        ValueError, match=r"found 2 classifiers .*'a\.segmentation_head\.0', 'b\.segmentation_head\.0'"
    ):
        adapt(model)
    assert adapt(model, classifier="b.segmentation_head.0").path == "b.segmentation_head.0"
