"""The synthetic presets follow protocol amendment 5: the paper's head lr x10 and the object views."""

from __future__ import annotations

import pytest

from cbp.engine.build import build_model
from cbp.engine.config import LossConfig, get_preset
from cbp.engine.optim import param_groups


@pytest.mark.parametrize("preset", ["synthetic", "synthetic150"])
def test_synthetic_presets_use_the_amendment_5_recipe(preset: str) -> None:
    cfg = get_preset(preset)
    assert cfg.optim.head_lr_mult == 10.0 and cfg.optim.lr == 1e-3
    assert cfg.loss.views == "objects" == LossConfig().views


@pytest.mark.parametrize("update", ["gradient", "frozen"])
def test_decoder_and_classifier_get_ten_times_the_encoder_lr(update: str) -> None:
    """mmseg's SegFormer recipe: lr x10 for the whole head (decoder and classifier), x1 for the encoder."""
    cfg = get_preset("synthetic")
    cfg.model.update = update
    model = build_model(cfg, 50)
    lr_of = {}
    for group in param_groups(model, cfg.optim):
        lr_of.update({name: group["base_lr"] for name in group["names"]})
    assert set(lr_of) == {n for n, p in model.named_parameters() if p.requires_grad}
    for name, lr in lr_of.items():
        expected = 1e-3 if name.startswith("encoder.") else 1e-2
        assert lr == pytest.approx(expected), name
    assert any(n.startswith("decoder.") for n in lr_of)
    # learnable prototypes are in the head group; frozen ones are a buffer the optimiser never sees
    assert ("classifier.prototypes" in lr_of) == (update == "gradient")
