"""Evaluation: sliding window vs an independent per-crop reference, sharding, and the evaluate CLI."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_run import make_tiny_synthetic, tiny_args
from torch import Tensor, nn

import cbp.engine.evaluate as ev
import cbp.engine.train as train
from cbp.engine.config import ConfigError, get_preset
from cbp.engine.errors import DataError
from cbp.engine.run_dir import foreign_files, is_run
from cbp.engine.sampler import ShardSampler


@dataclass
class _Out:
    logits: Tensor


class PixelModel(nn.Module):
    """Per-pixel linear model plus a position-independent bias: crop results equal whole-image ones."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)

    def forward(self, images: Tensor, *, upsample: bool = True) -> _Out:
        return _Out(self.conv(images))


def test_slide_equals_whole_for_a_pointwise_model() -> None:
    model = PixelModel().eval()
    images = torch.randn(2, 3, 37, 53)
    whole = model(images).logits
    slide = ev.slide_logits(model, images, 4, crop=(16, 16), stride=(11, 11))
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-6)


def test_slide_averages_overlaps_like_mmseg() -> None:
    class Ones(nn.Module):
        def forward(self, images: Tensor, *, upsample: bool = True) -> _Out:
            return _Out(torch.ones(images.shape[0], 1, *images.shape[-2:]))

    # reference count map: crops at y in {0, 6, 10} (last one flush), x likewise
    h = w = 20
    crop, stride = 10, 6
    count = torch.zeros(h, w)
    starts = []
    for i in range(max(h - crop + stride - 1, 0) // stride + 1):
        y2 = min(i * stride + crop, h)
        starts.append(max(y2 - crop, 0))
    for y in starts:
        for x in starts:
            count[y : y + crop, x : x + crop] += 1
    assert starts == [0, 6, 10] and count.max() == 4
    out = ev.slide_logits(Ones(), torch.zeros(1, 3, h, w), 1, crop=(crop, crop), stride=(stride, stride))
    torch.testing.assert_close(out, torch.ones(1, 1, h, w))  # every pixel divided by its own count
    small = ev.slide_logits(Ones(), torch.zeros(1, 3, 5, 7), 1, crop=(crop, crop), stride=(stride, stride))
    assert small.shape == (1, 1, 5, 7)  # an image smaller than the crop is one window


def test_predict_resizes_logits_to_the_label() -> None:
    model = PixelModel().eval()
    cfg = get_preset("synthetic")
    pred = ev.predict(model, torch.randn(1, 3, 16, 24), (32, 48), cfg, 4)
    assert pred.shape == (1, 32, 48) and pred.dtype == torch.int64


def test_shard_sampler_has_no_duplicates() -> None:
    shards = [list(ShardSampler(11, world_size=3, rank=r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("ev")
    run = base / "run"
    train.main(tiny_args(make_tiny_synthetic(base / "syn12"), run, "--train.iters=4"))
    return run


def test_evaluate_cli_reproduces_train_metrics(trained_run: Path, tmp_path: Path) -> None:
    trained = json.loads((trained_run / "metrics.json").read_text())
    out = tmp_path / "m.json"
    record = ev.main([str(trained_run), "--out", str(out), "--train.progress=false"])
    again = json.loads(out.read_text())
    assert again == record and again["checkpoint"] == str(trained_run / "ckpt_last.pt")
    for key in (
        "mIoU",
        "mAcc",
        "aAcc",
        "IoU",
        "Acc",
        "F1",
        "class_names",
        "class_separability",
        "prototype_norms",
        "iters",
    ):
        assert again[key] == trained[key], key


def test_evaluate_writes_beside_the_run_never_over_metrics(trained_run: Path, tmp_path: Path) -> None:
    """Default output ``RUN/eval-<mode>-<iter>.json``; the run's metrics.json (training result) is untouched."""
    before = (trained_run / "metrics.json").read_bytes()
    rec = ev.main([str(trained_run), "--train.progress=false"])
    out = trained_run / "eval-whole-4.json"
    assert json.loads(out.read_text()) == rec and rec["iters"] == 4 and rec["eval_mode"] == "whole"
    assert (trained_run / "metrics.json").read_bytes() == before
    assert is_run(trained_run) and foreign_files(trained_run) == []  # the engine wrote every file there
    out.unlink()
    # --config FILE --ckpt FILE without a run directory: the output goes beside the checkpoint
    ckpt = tmp_path / "copy.pt"
    ckpt.write_bytes((trained_run / "ckpt_last.pt").read_bytes())
    ev.main(["--config", str(trained_run / "config.json"), "--ckpt", str(ckpt), "--eval.mode=slide"])
    assert json.loads((tmp_path / "eval-slide-4.json").read_text())["checkpoint"] == str(ckpt)
    with pytest.raises(
        ConfigError, match="would write over metrics.json of the run in .*never writes over a run's files"
    ):
        ev.main([str(trained_run), "--out", str(trained_run / "metrics.json")])
    assert (trained_run / "metrics.json").read_bytes() == before


def test_evaluate_cli_slide_mode_and_errors(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "slide.json"
    # a window as large as the 32x32 image: sliding equals whole-image inference
    rec = ev.main(
        [str(trained_run), "--out", str(out), "--eval.mode=slide", "--eval.crop_size=32", "--eval.stride=16"]
    )
    whole = json.loads((trained_run / "metrics.json").read_text())
    assert rec["eval_mode"] == "slide" and rec["mIoU"] == pytest.approx(whole["mIoU"], abs=1e-6)
    with pytest.raises(DataError, match="missing does not exist"):
        ev.main([str(tmp_path / "missing")])
    with pytest.raises(DataError, match="checkpoint .*none.pt not found"):
        ev.main([str(trained_run), "--ckpt", str(tmp_path / "none.pt"), "--out", str(out)])


def test_restore_model_loads_the_checkpoint_without_the_pretraining_file(trained_run: Path) -> None:
    from cbp.engine import checkpoint
    from cbp.engine.build import read_run_config, restore_model

    cfg = read_run_config(trained_run)
    cfg.model.pretrained = str(trained_run / "no-such-encoder.pt")  # e.g. a relative path from elsewhere
    model, ckpt = restore_model(cfg, 12, trained_run / checkpoint.CKPT_NAME)
    assert cfg.model.pretrained.endswith("no-such-encoder.pt")  # the caller's config is untouched
    state = checkpoint.load(trained_run / checkpoint.CKPT_NAME)["model"]
    assert ckpt["iter"] == 4 and state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], msg=k)
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_run_config(trained_run / "missing")


@pytest.mark.filterwarnings("ignore:Unable to enable fault handler:UserWarning")  # cli() under capsys
def test_evaluate_never_writes_over_a_run_file(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` over a run's own files is refused with exit code 2 and one line, however the run is
    given; inside a run only a new ``eval-*.json`` may be named; an existing file that is not an
    evaluation record is never overwritten."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "changes.jsonl").write_text('{"iter": 2, "changed": {}}\n')
    (run / "eval-whole-2.json").write_text("{}\n")  # an earlier evaluation
    (run / "eval-whole-4.json").write_text("{}\n")  # the default output's name, not a record of cbp.evaluate
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    files = sorted([*run.iterdir(), notes])
    before = {p: p.read_bytes() for p in files}
    ckpt, config = str(run / "ckpt_last.pt"), str(run / "config.json")
    names = ("ckpt_last.pt", "ckpt_prev.pt", "config.json", "log.jsonl", "metrics.json", "changes.jsonl")
    refused = [[str(run), "--out", str(run / name)] for name in (*names, "eval-whole-2.json", "mine.json")]
    refused += [["--config", config, "--ckpt", ckpt, "--out", str(run / name)] for name in names]
    refused += [[str(run), "--out", str(notes)], [str(run)]]  # the last: over eval-whole-4.json
    for argv in refused:
        with pytest.raises(SystemExit) as e:
            ev.cli([*argv, "--train.progress=false"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and "never writes over" in err, (argv, err)
    assert {p: p.read_bytes() for p in sorted([*run.iterdir(), notes])} == before
    rec = ev.main(
        [str(run), "--out", str(run / "eval-again.json"), "--train.progress=false"]
    )  # a new eval-*.json
    assert json.loads((run / "eval-again.json").read_text()) == rec
