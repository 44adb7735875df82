"""cbp.book.launch and run_data: training commands from a page's parameters, launching them without
ever deleting a run, and reading a run's files (no training here)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbp.book import captions, figures, launch, run_data
from cbp.engine.command import parse_args
from cbp.engine.config import PRESETS, apply_overrides, get_preset, to_dict
from cbp.paper import PAPER_TABLE1_GAINS

ROOT = Path("/repo")


def _overrides(cmd: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in cmd if a.startswith("--") and "=" in a)


def test_synthetic_cpu_command() -> None:
    cmd = launch.train_command(launch.RunSpec(backbone="swin_b", iters=20, prefix="05"), ROOT)
    assert cmd[:3] == [sys.executable, "-m", "cbp.train"]
    assert cmd[cmd.index("--preset") + 1] == "synthetic"
    assert cmd[cmd.index("--out") + 1] == "/repo/runs/05_swin_b_cbp_occl_synthetic_20it_s0"
    o = _overrides(cmd)
    assert o["model.backbone"] == "swin_b" and o["train.iters"] == "20" and o["train.device"] == "cpu"
    assert o["loss.occl"] == "true" and o["model.classifier"] == "cbp" and o["train.progress"] == "true"
    assert o["data.root"] == "/repo/data/synthetic-50-small"
    assert "train.eval_every" not in o  # large model on a CPU: final validation only
    assert launch.format_command(cmd).startswith("python -m cbp.train --preset synthetic")


def test_default_iters_and_eval_points() -> None:
    spec = launch.RunSpec()
    o = _overrides(launch.train_command(spec, ROOT))
    assert o["train.iters"] == str(launch.CPU_ITERS["cnn_tiny"])
    assert int(o["train.eval_every"]) == launch.CPU_ITERS["cnn_tiny"] // 4  # 3 validations + the final one
    assert "model.backbone" not in o  # the synthetic preset's own backbone


def test_torchrun_paper_command() -> None:
    spec = launch.RunSpec(backbone="swin_b", dataset="ade20k", data_root="/d/ADE", gpus=8, prefix="05")
    cmd = launch.train_command(spec, ROOT)
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert cmd[cmd.index("--preset") + 1] == "ade20k_swin_b"
    o = _overrides(cmd)
    assert o["data.root"] == "/d/ADE" and o["train.device"] == "cuda"
    assert "train.iters" not in o  # the preset's 160K
    assert launch.total_iters(spec) == 160_000
    assert o["train.eval_every"] == str(160_000 // 4)
    assert launch.format_command(cmd).startswith("torchrun --standalone --nproc_per_node=8 -m cbp.train")


@pytest.mark.parametrize(
    ("dataset", "backbone", "preset", "extra"),
    [
        ("ade20k", "resnet50", "ade20k_fcn_r50", []),
        ("ade20k", "resnet101", "ade20k_fcn_r50", ["--model.backbone=resnet101"]),
        ("ade20k", "mit_b3", "ade20k_segformer_b3", []),
        ("cocostuff10k", "convnext_b", "cocostuff10k_convnext_b", []),
        ("cocostuff10k", "swin_t", "cocostuff10k_swin_b", ["--model.backbone=swin_t"]),
        ("synthetic", "cnn_tiny", "synthetic", []),
    ],
)
def test_preset_for(dataset: str, backbone: str, preset: str, extra: list[str]) -> None:
    assert launch.preset_for(dataset, backbone) == (preset, extra)
    assert preset in PRESETS


def test_every_backbone_has_a_preset_and_a_paper_gain() -> None:
    from cbp.models import BACKBONES

    for backbone in BACKBONES:
        for dataset in ("ade20k", "cocostuff10k"):
            preset, _ = launch.preset_for(dataset, backbone)
            assert preset in PRESETS
            assert (dataset, BACKBONES[backbone].paper_model) in PAPER_TABLE1_GAINS
    with pytest.raises(KeyError, match="unknown backbone .vgg16.: expected one of"):
        launch.preset_for("ade20k", "vgg16")  # the KeyError lists the valid names
    with pytest.raises(ValueError, match="dataset"):
        launch.preset_for("cityscapes", "cnn_tiny")


def test_command_parses_with_the_engine() -> None:
    """The engine's own parser accepts every override the helper writes (resnet101 on COCO-Stuff, baseline)."""
    spec = launch.RunSpec(backbone="resnet101", dataset="cocostuff10k", gpus=1, batch_size=8).baseline()
    cmd = launch.train_command(spec, ROOT)
    cfg, out = parse_args(cmd[cmd.index("cbp.train") + 1 :])
    assert cfg.model.backbone == "resnet101" and cfg.model.classifier == "linear" and not cfg.loss.occl
    assert cfg.data.root == "/repo/data/coco_stuff10k" and cfg.train.batch_size == 8
    assert cfg.loss.lam == 1.0 and cfg.model.length == 0.3  # COCO-Stuff FCN row of the paper's Section 4
    assert out == Path("/repo/runs/run_resnet101_linear_cocostuff10k_paper_s0")
    ref = apply_overrides(get_preset("cocostuff10k_fcn_r50"), ["--model.backbone=resnet101"])
    assert cfg.optim == ref.optim


def test_auto_baseline() -> None:
    assert launch.auto_baseline(launch.RunSpec()) and not launch.auto_baseline(
        launch.RunSpec(backbone="swin_b")
    )
    assert launch.auto_baseline(launch.RunSpec(backbone="swin_b", gpus=1))


def test_baseline_and_names() -> None:
    spec = launch.RunSpec(out_dir="runs/mine/")
    base = spec.baseline()
    assert (base.classifier, base.occl, base.out_dir) == ("linear", False, "runs/mine_baseline")
    assert launch.run_name(spec) == "CBP + OCCL" and launch.run_name(base) == "learnable baseline"
    with pytest.raises(ValueError, match="gpus"):
        launch.train_command(launch.RunSpec(gpus=-1), ROOT)


def _fake_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = [
        {
            "iter": 2,
            "loss": 3.0,
            "ce": 2.0,
            "centroid": 0.5,
            "category": 1.0,
            "lr": 1e-3,
            "time_per_iter": 0.1,
        },
        {
            "iter": 4,
            "loss": 2.0,
            "ce": 1.5,
            "centroid": 0.3,
            "category": 0.7,
            "lr": 5e-4,
            "time_per_iter": 0.1,
        },
    ]
    text = "".join(json.dumps(r) + "\n" for r in log) + '{"iter": 6, "loss": '  # half-written last line
    (run_dir / "log.jsonl").write_text(text)
    metrics = {
        "mIoU": 40.0,
        "mAcc": 50.0,
        "aAcc": 80.0,
        "class_names": ["wall", "flag", "sky"],
        "IoU": [70.0, None, 50.0],
        "Acc": [80.0, None, 60.0],
        "F1": [82.0, None, 66.0],
        "pixel_counts": [100.0, 1.0, 10.0],
        "prototype_norms": [2.0, 2.0, 2.0],
        "iters": 4,
        "device": "cpu (x86_64, 2 threads) x1",
        "seconds": 90.0,
        "config": {"data": {"name": "synthetic"}, "train": {"batch_size": 8}, "model": {"pretrained": ""}},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_read_log_and_metrics(tmp_path: Path) -> None:
    run_dir = _fake_run(tmp_path)
    log = run_data.read_log(run_dir)
    assert list(log.index) == [2, 4]  # the incomplete line is skipped
    np.testing.assert_allclose(log["loss"].to_numpy(), [3.0, 2.0])
    table = run_data.per_class_table(run_data.read_metrics(run_dir))
    assert list(table["class"]) == ["wall", "sky", "flag"]  # by training pixels, most first
    assert np.isnan(table.loc[1, "IoU"]) and table.loc[2, "IoU"] == 50.0
    row = run_data.summary_row(run_data.read_metrics(run_dir), "x")
    assert row["mIoU"] == 40.0 and row["minutes"] == 1.5
    label = captions.run_label(run_data.read_metrics(run_dir))
    assert label.startswith("this run: SYNTHETIC, 4 iters, batch 8, from scratch")
    with pytest.raises(FileNotFoundError, match="eval.jsonl"):
        run_data.read_log(run_dir, "eval.jsonl")


def test_compare_with_paper_labels(tmp_path: Path) -> None:
    metrics = run_data.read_metrics(_fake_run(tmp_path))
    base = {**metrics, "mIoU": 38.5}
    table = captions.compare_with_paper(
        "cocostuff10k", "swin_b", metrics, base, run_label="this run: SYNTHETIC"
    )
    assert list(table["source"]) == [
        "paper: COCO-Stuff-10K, 80K iters, batch 16 on 8 GPUs, ImageNet-pretrained",
        "this run: SYNTHETIC",
    ]
    assert list(table["gain (mIoU points)"]) == ["+0.6", "+1.50"]
    alone = captions.compare_with_paper("ade20k", "mit_b0", metrics, None, run_label="x")
    assert list(alone["gain (mIoU points)"]) == ["+1.0", "run with baseline=True"]


@pytest.mark.parametrize(
    ("dataset", "facts"),
    [
        ("ade20k", ("ADE20K's 20K", "150 classes", "160K")),
        ("cocostuff10k", ("COCO-Stuff-10K's 9K", "171 classes", "80K")),
    ],
)
def test_synthetic_caveat_and_run_lines(tmp_path: Path, dataset: str, facts: tuple[str, ...]) -> None:
    metrics = run_data.read_metrics(_fake_run(tmp_path))
    text = captions.synthetic_caveat(dataset, metrics)
    assert "not comparable" in text and f"for {metrics['iters']} iterations from scratch" in text
    assert "(3 classes," in text  # the run's own classes, not a fixed 50
    pretrained = {**metrics, "config": {**metrics["config"], "model": {"pretrained": "enc.pt"}}}
    assert "iterations pretrained on" in captions.synthetic_caveat(dataset, pretrained)
    assert ", pretrained," in captions.run_label(pretrained)
    assert all(f in text for f in facts) and f"-p dataset {dataset}" in text
    lines = captions.run_lines(
        {"CBP + OCCL": metrics, "learnable baseline": {**metrics, "seconds": 90.0}}
    ).splitlines()
    assert lines[0].startswith("- **CBP + OCCL**: this run: SYNTHETIC") and lines[1].endswith(", 1.5 min")


def test_progress_line_reads_the_engines_bar() -> None:
    """A line tqdm really writes for the engine's bar (desc "train", postfix loss and lr)."""
    import io

    from tqdm import tqdm

    buf = io.StringIO()
    bar = tqdm(total=200, initial=89, desc="train", file=buf, mininterval=0, ncols=80)
    bar.set_postfix(loss="1.234", lr="1.00e-03", refresh=False)
    bar.update(1)
    line = buf.getvalue().split("\r")[-1]
    it, total, summary = launch.progress_line(line)
    assert (it, total) == (90, 200)
    assert summary.startswith("iter 90/200  loss 1.234  lr 1.00e-03  ") and "eta " in summary
    assert launch.progress_line("eval:  50%|#####     | 4/8 [00:01<00:01,  3.0it/s]") is None
    assert launch.progress_line("[cbp.train] resuming at iteration 3") is None


_FAKE_ENGINE = """
import sys, time
from tqdm import tqdm
print("[cbp] set-up line", flush=True)
bar = tqdm(total=42, desc="train", mininterval=0, file=sys.stderr)
for i in range(42):
    bar.update(1)
    bar.set_postfix(loss=f"{1 / (i + 1):.3f}", lr="1.00e-03", refresh=False)
bar.close()
for _ in tqdm(range(3), desc="eval", mininterval=0, leave=False, file=sys.stderr):
    pass
print("[cbp.train] run: mIoU 1.00", flush=True)
"""


def test_run_streams_the_output_in_short_form(capsys: pytest.CaptureFixture[str]) -> None:
    """42 iterations of the engine's bar -> about max_lines summary lines; other lines as they are."""
    launch.run([sys.executable, "-c", _FAKE_ENGINE], total_iters=42, max_lines=5)
    out = capsys.readouterr().out.splitlines()
    progress = [line for line in out if line.startswith("iter ")]
    assert 5 <= len(progress) <= 7 and progress[-1].startswith("iter 42/42  loss 0.024")
    assert len({line.split()[1] for line in progress}) == len(progress)  # no iteration twice
    assert out[0] == "[cbp] set-up line" and out[-1] == "[cbp.train] run: mIoU 1.00"
    assert not any("eval" in line or "%|" in line for line in out)
    with pytest.raises(launch.RunFailed, match=r"status 3(.|\n)*boom"):
        launch.run([sys.executable, "-c", "print('boom'); raise SystemExit(3)"])


def _write_run(spec: launch.RunSpec, root: Path, *, finished: bool, **changes: object) -> Path:
    """A run folder as the engine leaves it for ``spec``'s command (config.json, optionally metrics.json)."""
    cmd = launch.train_command(spec, root)
    cfg, out = parse_args(cmd[cmd.index("cbp.train") + 1 :])
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(to_dict(cfg)))
    (out / "log.jsonl").write_text('{"iter": 1}\n')
    if finished:
        (out / "metrics.json").write_text(json.dumps({"iters": cfg.train.iters, "mIoU": 1.0}))
    return out


def test_train_runs_reuses_resumes_and_never_deletes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = launch.RunSpec(iters=4, prefix="t")
    launched: list[list[str]] = []
    monkeypatch.setattr(launch, "run", lambda cmd, **kw: launched.append(list(cmd)) or 1.0)
    done = _write_run(spec, tmp_path, finished=True)
    half = _write_run(spec.baseline(), tmp_path, finished=False)
    dirs = launch.train_runs(spec, baseline=True, root=tmp_path)
    assert dirs == {"CBP + OCCL": done, "learnable baseline": half}
    out = capsys.readouterr().out
    assert f"== CBP + OCCL: already trained -> {done}" in out and "== learnable baseline (resuming)" in out
    assert len(launched) == 1 and launched[0][launched[0].index("--out") + 1] == str(half)
    assert (done / "metrics.json").exists() and (half / "log.jsonl").exists()  # nothing deleted

    # another config in the folder: an error naming the folder and the key, and the run is kept
    other = tmp_path / "other"
    _write_run(launch.RunSpec(iters=4, out_dir=str(other)), tmp_path, finished=True, loss__phi=0.5)
    with pytest.raises(
        launch.RunDirConflict, match=rf"{other} holds a run of another config.*loss.phi: 0.5 there"
    ):
        launch.train_runs(launch.RunSpec(iters=4, out_dir=str(other)), baseline=False, root=tmp_path)
    assert (other / "metrics.json").exists()

    # resume=False says what it deletes, then deletes the folder and trains again
    launched.clear()
    said = f"== resume=False: deleting {other} (3 files: config.json, log.jsonl, metrics.json)"
    rmtree = launch.shutil.rmtree

    def announced_rmtree(path: Path) -> None:
        assert said in capsys.readouterr().out, "deleted before saying so"
        rmtree(path)

    monkeypatch.setattr(launch.shutil, "rmtree", announced_rmtree)
    launch.train_runs(
        launch.RunSpec(iters=4, out_dir=str(other)), baseline=False, resume=False, root=tmp_path
    )
    assert not other.exists() and len(launched) == 1 and "(training)" in capsys.readouterr().out


def test_a_folder_that_is_not_a_run_is_never_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's folder (a config.json of no run, a thesis, a sub-folder) and a run holding a file of
    the user's: a page refuses both, resume=False or not, in one line naming the folder and
    the files the engine does not write, and nothing is deleted or trained."""
    launched: list[list[str]] = []
    monkeypatch.setattr(launch, "run", lambda cmd, **kw: launched.append(list(cmd)) or 1.0)
    thesis = tmp_path / "v"
    (thesis / "sub").mkdir(parents=True)
    (thesis / "config.json").write_text("{}\n")
    (thesis / "thesis.txt").write_text("keep")
    (thesis / "sub" / "chapter.txt").write_text("keep")
    run = _write_run(launch.RunSpec(iters=4, out_dir=str(tmp_path / "r")), tmp_path, finished=True)
    (run / "notes.md").write_text("mine")
    for folder, foreign in ((thesis, r"sub/, thesis\.txt"), (run, r"notes\.md")):
        before = sorted(p.relative_to(tmp_path) for p in folder.rglob("*"))
        spec = launch.RunSpec(iters=4, out_dir=str(folder))
        for resume in (True, False):
            with pytest.raises(launch.RunDirConflict) as e:
                launch.train_runs(spec, baseline=None, resume=resume, root=tmp_path)
            assert re.match(rf"{folder} holds files the engine does not write \({foreign}\)", str(e.value))
            assert "nothing was deleted" in str(e.value) and "\n" not in str(e.value)
        assert sorted(p.relative_to(tmp_path) for p in folder.rglob("*")) == before
    assert launched == [] and "deleting" not in capsys.readouterr().out
    fake = tmp_path / "fake"  # only engine names, but a config.json the engine did not write
    fake.mkdir()
    (fake / "config.json").write_text("{}\n")
    (fake / "log.jsonl").write_text("")
    with pytest.raises(launch.RunDirConflict, match="is not a cbp run folder.*nothing was deleted"):
        launch.delete_run_dir(fake)
    assert (fake / "config.json").is_file()
    cmd = launch.train_command(launch.RunSpec(iters=4, out_dir=str(fake)), tmp_path)
    assert launch.run_dir_state(cmd, tmp_path / "empty") == "new"


def test_page_lines_shows_each_announcement_as_it_comes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with launch.page_lines(tmp_path):
        print(f"== resume=False: deleting {tmp_path}/runs/a (1 files: config.json)", end="", flush=True)
        assert capsys.readouterr().out == ""  # not before the line is complete
        print("\niter 1/2  loss 1.0\n== a: done", flush=True)
        assert (
            capsys.readouterr().out == "== resume=False: deleting runs/a (1 files: config.json)\n== a: done\n"
        )


def test_a_run_another_process_holds_is_never_deleted(tmp_path: Path) -> None:
    """resume=False must not pull a run folder from under a process that is training in it."""
    run_dir = _write_run(launch.RunSpec(iters=4, out_dir=str(tmp_path / "busy")), tmp_path, finished=False)
    holder = subprocess.Popen(  # takes the run's lock the way the engine does, then waits
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from cbp.engine.run_dir import "
         "try_lock_run_dir; fd, _ = try_lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); "
         "time.sleep(60)", str(run_dir)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(launch.RunDirConflict, match=f"in use by process {holder.pid}"):
            launch.delete_run_dir(run_dir)
        assert (run_dir / "config.json").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert launch.delete_run_dir(run_dir) == ["config.json", "log.jsonl"]  # lock released: deleted
    assert not run_dir.exists()


def test_colorize() -> None:
    palette = np.array([[10, 0, 0], [0, 20, 0]], dtype=np.uint8)
    label = np.array([[0, 1], [255, 1]])
    rgb = figures.colorize(label, palette)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[1, 0], [0, 0, 0])
    np.testing.assert_array_equal(rgb[0, 1], [0, 20, 0])


def test_run_experiments_prints_the_command_and_a_failure_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """The pages' ``rerun`` path: ``python -m cbp.experiments ARGS`` from the repository, printed first."""
    import subprocess

    from cbp.book.launch import repo_root, run_experiments

    run_experiments("plan", "ablations", "--profile", "quick", root=repo_root())
    assert capsys.readouterr().out.startswith("running: -m cbp.experiments plan ablations --profile quick\n")
    with pytest.raises(subprocess.CalledProcessError):
        run_experiments("plan", "ablations", "--profile", "no-such-profile", root=repo_root())
