"""Models: shapes per family, frozen prototypes untouched, checkpoints, and one-batch overfitting.

All models are the small CPU variants at 64x64 with pretrained=False (no network).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import timm
import torch
from torch.nn import functional as F

from cbp.engine import checkpoint
from cbp.heads import CBPHead, LinearHead
from cbp.io import WrongCheckpointError
from cbp.models import BACKBONES, Segmentor, SegOutput, create_model
from cbp.prototypes import category_basis_prototypes

# (backbone, decoder width C, decoder stride, auxiliary-head stride or None); 64x64 inputs.
FAMILIES = [
    ("cnn_tiny", 256, 4, None),
    ("resnet18", 256, 8, 8),  # FCN on a dilated ResNet (output stride 8); aux on stage 3, also 1/8
    ("convnext_atto", 256, 4, 16),  # UPerNet fuses at 1/4
    ("swin_atto", 256, 4, 16),
    ("mit_b0", 256, 4, None),  # SegFormer MLP head at 1/4
]


def _make(backbone: str, num_classes: int, **kw) -> Segmentor:
    if BACKBONES[backbone].arch == "swin":
        kw.setdefault("img_size", (64, 64))
    return create_model(backbone, num_classes, **kw)


@pytest.mark.parametrize(("backbone", "channels", "stride", "aux_stride"), FAMILIES)
def test_output_shapes(backbone: str, channels: int, stride: int, aux_stride: int | None) -> None:
    model = _make(backbone, 7).train()
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    assert isinstance(out, SegOutput)
    h = 64 // stride
    assert out.logits.shape == (2, 7, 64, 64)
    assert out.embedding.shape == (2, channels, h, h)
    assert model.embed_dim == channels and model.num_classes == 7
    if aux_stride is None:
        assert model.aux_head is None and out.aux_logits is None
    else:
        assert out.aux_logits is not None and out.aux_logits.shape == (
            2,
            7,
            64 // aux_stride,
            64 // aux_stride,
        )
    model.eval()
    with torch.no_grad():
        low = model(images, upsample=False)
    assert low.logits.shape == (2, 7, h, h)
    assert low.aux_logits is None  # the auxiliary head only feeds the training loss
    # Without dropout, the upsampled logits are the bilinear resize of the low-resolution ones.
    with torch.no_grad():
        full = model(images).logits
    expected = F.interpolate(low.logits, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, expected, rtol=0, atol=0)


def test_encoder_widths_come_from_feature_info() -> None:
    model = create_model("resnet18", 5)
    info = timm.create_model("resnet18d", features_only=True, out_indices=(1, 2, 3, 4))
    assert model.encoder.channels == info.feature_info.channels() == [64, 128, 256, 512]
    assert model.decoder.convs[0][0].in_channels == 512


@pytest.mark.parametrize("img_size", [None, (64, 64)])
def test_swin_takes_other_input_sizes(img_size: tuple[int, int] | None) -> None:
    model = create_model("swin_atto", 4, img_size=img_size).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 96, 64))  # e.g. whole-image testing at a size other than the crop
    assert out.logits.shape == (1, 4, 96, 64)
    assert out.embedding.shape == (1, 256, 24, 16)


def test_unknown_backbone_lists_valid_names() -> None:
    with pytest.raises(KeyError) as err:
        create_model("resnet5O", 10)
    for name in ("resnet50", "resnet101", "convnext_b", "swin_b", "mit_b0", "mit_b5", "cnn_tiny"):
        assert name in str(err.value)
    assert set(BACKBONES) >= {"resnet18", "convnext_atto", "convnext_t", "swin_t", "swin_atto"}


def test_unknown_classifier() -> None:
    with pytest.raises(ValueError, match="classifier"):
        create_model("cnn_tiny", 10, classifier="cosine")


@pytest.mark.parametrize("backbone", ["cnn_tiny", "resnet18"])
def test_prototypes_bit_exact_and_frozen(backbone: str) -> None:
    model = create_model(backbone, 11, length=1.5, proto_seed=3)
    expected = category_basis_prototypes(11, model.embed_dim, 1.5, seed=3)
    assert isinstance(model.classifier, CBPHead)
    assert torch.equal(model.classifier.prototypes, expected)
    assert model.classifier.prototypes.dtype == torch.float32
    params = {id(p) for p in model.parameters()}
    assert id(model.classifier.prototypes) not in params
    assert "classifier.prototypes" in model.state_dict()
    assert not any(name.startswith("classifier.") for name, _ in model.named_parameters())


def test_prototype_options_reach_the_head() -> None:
    model = create_model("cnn_tiny", 6, init="orthogonal", update="gradient", proto_seed=1, length=3.0)
    expected = category_basis_prototypes(6, 256, 3.0, seed=1, init="orthogonal")
    assert torch.equal(model.classifier.prototypes.detach(), expected)
    assert any(p is model.classifier.prototypes for p in model.parameters())  # learnable variant


def test_linear_head_has_bias() -> None:
    model = create_model("resnet18", 9, classifier="linear")
    assert isinstance(model.classifier, LinearHead)
    assert model.classifier.bias.shape == (9,)
    assert model.classifier.prototypes.shape == (9, 256)
    assert model.aux_head is not None and isinstance(model.aux_head.classifier, LinearHead)


def test_aux_head_switch() -> None:
    assert create_model("resnet18", 3, aux_head=False).aux_head is None
    assert create_model("cnn_tiny", 3, aux_head=True).aux_head is not None


def test_cbp_too_few_channels_names_decoder_width() -> None:
    with pytest.raises(ValueError, match="256"):
        create_model("cnn_tiny", 300)
    create_model("cnn_tiny", 300, classifier="linear")  # the baseline has no such limit


def test_parameter_groups_by_prefix() -> None:
    model = create_model("convnext_atto", 4)
    names = [n for n, _ in model.named_parameters()]
    encoder = [n for n in names if n.startswith("encoder.")]
    assert encoder and len(encoder) == len(list(model.encoder.parameters()))


def _state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pretrained_path_round_trip(tmp_path: Path) -> None:
    a = create_model("cnn_tiny", 5)
    torch.manual_seed(123)  # so that B's random init differs from A's
    encoder_file = tmp_path / "encoder.pt"
    torch.save(a.encoder.state_dict(), encoder_file)
    b = create_model("cnn_tiny", 5, pretrained=encoder_file)
    assert _state_equal(a.encoder.state_dict(), b.encoder.state_dict())
    assert not torch.equal(a.decoder.fusion_conv[0].weight, b.decoder.fusion_conv[0].weight)

    full_file = tmp_path / "ckpt_last.pt"  # a training checkpoint: {"model": Segmentor state dict, ...}
    torch.save({"model": a.state_dict(), "iter": 10}, full_file)
    c = create_model("cnn_tiny", 5, pretrained=str(full_file))
    assert _state_equal(a.encoder.state_dict(), c.encoder.state_dict())

    # What cbp.train really writes also holds the RNG states, in a form the safe loader accepts.
    engine_file = tmp_path / "engine_ckpt.pt"
    torch.save({"model": a.state_dict(), "rng": checkpoint.rng_state()}, engine_file)
    d = create_model("cnn_tiny", 5, pretrained=engine_file)
    assert _state_equal(a.encoder.state_dict(), d.encoder.state_dict())

    # A pickle that would run code is refused, and the code does not run.
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil_file = tmp_path / "evil.pt"
    torch.save({"model": a.state_dict(), "x": Evil()}, evil_file)
    with pytest.raises(ValueError, match="evil.pt"):
        create_model("cnn_tiny", 5, pretrained=evil_file)
    assert not (tmp_path / "pwned").exists()


def test_pretrained_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        create_model("cnn_tiny", 5, pretrained=missing)
    junk = tmp_path / "junk.pt"
    torch.save({"foo.weight": torch.zeros(3)}, junk)
    with pytest.raises(ValueError, match="foo.weight"):
        create_model("cnn_tiny", 5, pretrained=junk)
    other = tmp_path / "resnet18_encoder.pt"
    torch.save(create_model("resnet18", 5, aux_head=False).encoder.state_dict(), other)
    with pytest.raises(WrongCheckpointError, match="none of its keys is the encoder's .the file's first is"):
        create_model("convnext_atto", 5, pretrained=other)
    state = create_model("cnn_tiny", 5).encoder.state_dict()
    del state["stages.3.1.0.weight"]
    state["stages.4.0.0.weight"] = torch.zeros(1)
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    with pytest.raises(
        WrongCheckpointError, match=r"stages\.3\.1\.0\.weight \(\d+, \d+, 3, 3\) of this model is not in"
    ):
        create_model("cnn_tiny", 5, pretrained=partial)
    state = create_model("swin_atto", 5, img_size=64).encoder.state_dict()  # windows shrink at 64x64
    swin = tmp_path / "swin.pt"
    torch.save(state, swin)
    with pytest.raises(WrongCheckpointError, match=r"is \(.*\) in the file, \(.*\) in this model"):
        create_model("swin_atto", 5, img_size=224, pretrained=swin)


@pytest.mark.parametrize(
    ("backbone", "timm_name"), [("resnet18", "resnet18d"), ("convnext_atto", "convnext_atto")]
)
def test_plain_timm_checkpoint(tmp_path: Path, backbone: str, timm_name: str) -> None:
    """An ImageNet-style timm checkpoint (with its classifier) loads into the features-only encoder."""
    reference = timm.create_model(timm_name)  # a classification model: has fc / head keys
    file = tmp_path / "imagenet.pt"
    torch.save(reference.state_dict(), file)
    model = create_model(backbone, 4, pretrained=file)
    raw = reference.state_dict()
    own = model.encoder.state_dict()
    loaded = [k for k in own if not k.startswith("out_norms.")]
    assert all(torch.equal(own[k], raw[model.encoder.raw_key(k)]) for k in loaded)


def _blob_batch(num_classes: int = 4, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy images with a few coloured discs and squares; label 0 is the background."""
    generator = torch.Generator().manual_seed(0)
    colours = torch.tensor([[0.0, 0.0, 0.0], [1.5, -1.0, -1.0], [-1.0, 1.5, -1.0], [-1.0, -1.0, 1.5]])
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.zeros(2, size, size, dtype=torch.long)
    blobs = [
        [(1, 18, 20, 11), (2, 44, 40, 13), (3, 20, 48, 9)],
        [(3, 40, 18, 12), (1, 46, 48, 10), (2, 14, 30, 8)],
    ]
    for b, items in enumerate(blobs):
        for cls, cy, cx, r in items:
            labels[b][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = cls
    images = colours[labels].permute(0, 3, 1, 2) + 0.3 * torch.randn(2, 3, size, size, generator=generator)
    return images, labels


@pytest.mark.parametrize("backbone", [name for name, *_ in FAMILIES])
def test_each_family_overfits_one_batch(backbone: str) -> None:
    """30 Adam steps on one batch of 2 images drive the pixel accuracy above 0.9 (0.97-0.99 seen).

    The background holds about 74% of the pixels, so 0.9 cannot be reached without segmenting the
    discs; the colours make them separable, so a working model memorises the batch quickly, while a
    broken one (wrong upsampling, a disconnected decoder, a classifier reading the wrong tensor)
    stays near the background fraction.
    """
    images, labels = _blob_batch()
    background = (labels == 0).float().mean().item()
    assert 0.6 < background < 0.8
    model = _make(backbone, 4).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(30):
        out = model(images)
        loss = F.cross_entropy(out.logits, labels)
        if out.aux_logits is not None:  # mmseg: auxiliary loss weight 0.4, at the label's size
            aux = F.interpolate(out.aux_logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + 0.4 * F.cross_entropy(aux, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert math.isfinite(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = (model(images).logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9, (
        f"{backbone}: pixel accuracy {accuracy:.3f} after 30 steps (background {background:.2f})"
    )


@pytest.mark.parametrize("backbone", ["swin_t", "convnext_t"])
def test_parameter_count_matches_published_upernet(backbone: str) -> None:
    """UPerNet with Swin-T / ConvNeXt-T on ADE20K has 60M parameters (Swin and ConvNeXt papers,
    mmseg model zoo): an independent check of the decoder and auxiliary head as reimplemented."""
    model = create_model(backbone, 150, classifier="linear", img_size=64)
    count = sum(p.numel() for p in model.parameters())
    assert 59.5e6 < count < 60.5e6, f"{backbone}: {count / 1e6:.2f}M parameters"


def test_resnet50_is_dilated_v1c_like_mmseg() -> None:
    """mmseg's FCN ResNetV1c-D8: deep stem, stages 3/4 at dilation 2/4 with contract_dilation
    (the first block of a dilated stage uses half the dilation), output stride 8."""
    net = create_model("resnet50", 4).encoder.model
    assert [net.conv1[i].out_channels for i in (0, 3, 6)] == [32, 32, 64]  # deep stem
    dilations = [
        (b.conv2.dilation[0], b.conv2.stride[0]) for b in (net.layer3[0], net.layer3[1], net.layer4[0])
    ]
    assert dilations == [(1, 1), (2, 1), (2, 1)]
    assert net.layer4[1].conv2.dilation == (4, 4)
