"""A user's mistake on any command line is one line on stderr and a documented exit code, never a traceback.

Every case runs the real command (``python -m ...`` in a subprocess); the cases run a few at a time
because each one pays the interpreter's and torch's start-up. Exit codes (the book's "Using the engine", "Exit codes"):
2 usage or config, 3 diverged, 4 data or file, 5 a torchrun rank that lost its peer, 1 a bug.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tiny_run import make_tiny_synthetic, tiny_args

from cbp.engine.command import parse_args
from cbp.engine.config import to_dict
from cbp.engine.errors import describe, one_line

ROOT = Path(__file__).resolve().parents[1]

# torch's @record on the entry points enables faulthandler, which pytest's captured stderr cannot take
pytestmark = pytest.mark.filterwarnings("ignore:Unable to enable fault handler:UserWarning")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` from the repository root, the test's tmp folders passed as absolute paths."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def assert_one_line(r: subprocess.CompletedProcess[str], rc: int, *fragments: str) -> str:
    """rc as expected; stderr exactly one ``[cbp...] error:`` line holding every fragment, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == rc, f"rc {r.returncode} != {rc}; stderr:\n{r.stderr}"
    assert len(lines) == 1 and "Traceback" not in r.stderr, f"not one line:\n{r.stderr}"
    assert lines[0].startswith("[cbp.") and "] error: " in lines[0], lines[0]
    for f in fragments:
        assert f in lines[0], f"{f!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny synthetic set, a run directory with a config but no checkpoint, and a file that is not a folder."""
    base = tmp_path_factory.mktemp("cli")
    data = make_tiny_synthetic(base / "syn12")
    untrained = base / "untrained"
    untrained.mkdir()
    cfg, _ = parse_args(tiny_args(data, untrained))
    (untrained / "config.json").write_text(json.dumps(to_dict(cfg)))
    (base / "notes.txt").write_text("not a data set\n")
    bad = to_dict(cfg)
    bad["train"]["iters"] = "ten"
    (base / "bad.json").write_text(json.dumps(bad))
    bad["train"]["iters"], bad["optim"]["lr"] = 1, float("nan")
    (base / "nan.json").write_text(json.dumps(bad))  # json writes NaN, and reads it back as a float
    (base / "latin1.json").write_bytes('{"preset": "synthétique"}'.encode("latin-1"))
    (base / "deep.json").write_text("[" * 100_000)  # json's parser raises RecursionError
    with open(base / "huge.json", "wb") as f:  # 64 MB, sparse: refused from its size, never read whole
        f.truncate(64 << 20)
    return {"base": base, "data": data, "untrained": untrained}


# The mistakes the issue lists, each through its real command line: (name, argv, rc, fragments the
# line must hold); {base} {data} {untrained} are filled from `world`.
CASES: list[tuple[str, list[str], int, tuple[str, ...]]] = [
    ("train-unknown-backbone", ["-m", "cbp.train", "--out", "{base}/r1", "--model.backbone=nonsense"], 2,
     ("model.backbone", "unknown backbone 'nonsense'", "mit_b0")),
    ("train-negative-lr", ["-m", "cbp.train", "--out", "{base}/r1", "--optim.lr=-0.1"], 2,
     ("optim.lr must be >= 0", "-0.1")),
    ("train-tau-zero", ["-m", "cbp.train", "--out", "{base}/r1", "--loss.tau=0"], 2,
     ("loss.tau must be > 0", "--loss.tau=0.07")),
    ("train-missing-ade-root",
     ["-m", "cbp.train", "--preset", "ade20k_segformer_b0", "--out", "{base}/r1", "--data.root={base}/noADE"], 4,
     ("data.root={base}/noADE", "no such folder", "--data.root=DIR")),
    ("train-missing-pretrained", ["-m", "cbp.train", "--out", "{base}/r1", "--model.pretrained={base}/enc.pt"], 4,
     ("model.pretrained={base}/enc.pt", "no such file")),
    ("evaluate-no-checkpoint", ["-m", "cbp.evaluate", "{untrained}"], 4,
     ("checkpoint {untrained}/ckpt_last.pt not found", "has no saved checkpoint")),
    ("experiments-unknown-study", ["-m", "cbp.experiments", "status", "ablation"], 2,
     ("unknown study 'ablation'", "'ablations'")),
    ("synthetic-other-set",
     ["-m", "cbp.data.synthetic", "--out", "{data}", "--classes", "50", "--quiet"], 4,
     ("holds a synthetic set with different parameters", "classes: existing 12 vs requested 50")),
]  # fmt: skip

# More mistakes, through the same entry functions in this process (the interpreter's start-up is
# the only part left out): (name, module, argv, rc, fragments).
IN_PROCESS: list[tuple[str, str, list[str], int, tuple[str, ...]]] = [
    ("train-unknown-preset", "cbp.engine.train", ["--preset", "nope", "--out", "{base}/r1"], 2,
     ("unknown preset 'nope'", "Valid presets: synthetic")),
    ("train-unknown-key", "cbp.engine.train", ["--out", "{base}/r1", "--optim.lrr=1"], 2,
     ("--optim.lrr", "Did you mean --optim.lr?")),
    ("train-bad-value", "cbp.engine.train", ["--out", "{base}/r1", "--train.iters=ten"], 2,
     ("--train.iters='ten'", "expected an integer")),
    ("train-no-out", "cbp.engine.train", ["--preset", "synthetic"], 2, ("--out RUN_DIR is required",)),
    ("train-cuda-without-gpu", "cbp.engine.train", ["--out", "{base}/r1", "--train.device=cuda"], 2,
     ("train.device=cuda but no CUDA device", "--train.device=cpu")),
    ("train-missing-config-file", "cbp.engine.train", ["--config", "{base}/none.json", "--out", "{base}/r1"], 4,
     ("config file {base}/none.json not found",)),
    ("train-config-not-json", "cbp.engine.train", ["--config", "{base}/notes.txt", "--out", "{base}/r1"], 2,
     ("{base}/notes.txt is not valid JSON",)),
    ("train-config-bad-type", "cbp.engine.train", ["--config", "{base}/bad.json", "--out", "{base}/r1"], 2,
     ("{base}/bad.json: train.iters='ten': expected an integer",)),
    *[(f"train-{key}-{value}", "cbp.engine.train",
       ["--out", "{base}/r1", "--data.root={data}", "--train.iters=1", f"--{key}={value}"], 2,
       (f"--{key}={value.split(',')[-1]!r}: expected a finite number",))
      for key, value in (("optim.lr", "nan"), ("optim.lr", "inf"), ("loss.lam", "nan"), ("model.length", "inf"),
                         ("data.ratio_range", "0.5,nan"))],
    ("train-config-nan", "cbp.engine.train", ["--config", "{base}/nan.json", "--out", "{base}/r1"], 2,
     ("{base}/nan.json: optim.lr=nan: expected a finite number",)),
    ("train-config-not-utf8", "cbp.engine.train", ["--config", "{base}/latin1.json", "--out", "{base}/r1"], 2,
     ("{base}/latin1.json is not UTF-8 text", "byte 17")),
    ("train-config-too-deep", "cbp.engine.train", ["--config", "{base}/deep.json", "--out", "{base}/r1"], 2,
     ("{base}/deep.json is nested too deeply",)),
    ("evaluate-config-too-big", "cbp.engine.evaluate", ["--config", "{base}/huge.json", "--ckpt", "{base}/x.pt"], 2,
     ("{base}/huge.json is 64.0 MB", "at most 1 MB")),
    ("train-preset-and-config", "cbp.engine.train",
     ["--preset", "synthetic", "--config", "{untrained}/config.json", "--out", "{base}/r1"], 2,
     ("--config: not allowed with argument --preset",)),
    ("evaluate-no-run-dir", "cbp.engine.evaluate", ["{base}/no-such-run"], 4,
     ("{base}/no-such-run does not exist", "python -m cbp.train")),
    ("evaluate-over-metrics", "cbp.engine.evaluate", ["{untrained}", "--out", "{untrained}/metrics.json"], 2,
     ("{untrained}/metrics.json is not an eval-*.json file", "never writes over a run's files")),
    ("evaluate-bad-override", "cbp.engine.evaluate", ["{untrained}", "--eval.mode=sliding"], 2,
     ("--eval.mode='sliding'", "whole, slide")),
    ("evaluate-missing-ckpt-file", "cbp.engine.evaluate", ["{untrained}", "--ckpt", "{base}/x.pt"], 4,
     ("checkpoint {base}/x.pt not found", "--ckpt")),
    ("experiments-unknown-command", "cbp.experiments.__main__", ["rnu"], 2, ("invalid choice: 'rnu'",)),
    ("experiments-unknown-profile", "cbp.experiments.__main__", ["plan", "--profile", "fast"], 2,
     ("invalid choice: 'fast'",)),
    ("synthetic-bad-size", "cbp.data.synthetic", ["--out", "{base}/s", "--size", "2"], 2,
     ("size must be >= 8 pixels",)),
    ("synthetic-out-is-a-file", "cbp.data.synthetic", ["--out", "{base}/notes.txt", "--quiet"], 4,
     ("notes.txt",)),
]  # fmt: skip


def _fill(text: str, world: dict[str, Path]) -> str:
    return text.format(**{k: str(v) for k, v in world.items()})


@pytest.fixture(scope="module")
def results(world: dict[str, Path]) -> dict[str, tuple[subprocess.CompletedProcess[str], tuple[str, ...]]]:
    """Every case of CASES, run three at a time."""
    with ThreadPoolExecutor(3) as pool:
        futures = {
            name: (
                pool.submit(run, *(_fill(a, world) for a in argv)),
                rc,
                tuple(_fill(f, world) for f in frags),
            )
            for name, argv, rc, frags in CASES
        }
        return {name: (f.result(), (rc, *frags)) for name, (f, rc, frags) in futures.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_user_mistake_is_one_line(results: dict, name: str) -> None:
    r, (rc, *fragments) = results[name]
    assert_one_line(r, rc, *fragments)


@pytest.mark.parametrize(
    ("name", "module", "argv", "rc", "fragments"), IN_PROCESS, ids=[c[0] for c in IN_PROCESS]
)
def test_user_mistake_in_process(
    world: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    name: str,
    module: str,
    argv: list[str],
    rc: int,
    fragments: tuple[str, ...],
) -> None:
    import importlib

    entry = importlib.import_module(module)
    run_it = getattr(entry, "cli", None) or entry.main
    with pytest.raises(SystemExit) as e:
        run_it([_fill(a, world) for a in argv])
    err = capsys.readouterr().err
    r = subprocess.CompletedProcess(argv, e.value.code, "", err)
    assert_one_line(r, rc, *(_fill(f, world) for f in fragments))


@pytest.mark.slow
def test_nothing_is_written_by_a_refused_command(results: dict, world: dict[str, Path]) -> None:
    assert not (world["base"] / "r1").exists()  # every train case above failed before writing --out
    assert not any(world["untrained"].glob("eval-*.json"))
    assert not (world["untrained"] / "metrics.json").exists()


@pytest.mark.slow
def test_cbp_debug_shows_the_traceback() -> None:
    r = run("-m", "cbp.train", "--out", "/nonexistent/r", "--loss.tau=0", env={"CBP_DEBUG": "1"})
    assert r.returncode == 2 and "Traceback" in r.stderr and "ConfigError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("[cbp.train] error: loss.tau must be > 0")


@pytest.mark.slow
def test_the_issue_flow_uses_an_existing_synthetic_set_as_it_is(tmp_path: Path) -> None:
    """``cbp.data.synthetic --train 24 --val 8 --size 64`` then ``cbp.train --preset synthetic --data.root=DIR``."""
    data = tmp_path / "DIR"
    r = run(
        "-m",
        "cbp.data.synthetic",
        "--out",
        str(data),
        "--train",
        "24",
        "--val",
        "8",
        "--size",
        "64",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "-m", "cbp.train", "--preset", "synthetic", "--out", str(tmp_path / "RUN"), f"--data.root={data}",
        "--train.iters=2", "--train.log_every=1", "--train.progress=false", "--train.num_workers=0",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((data / "cbp_meta.json").read_text())
    assert (
        f"using the synthetic set in {data} as it is: 150 classes, 24 training and 8 validation" in r.stdout
    )
    assert meta["params"]["train"] == 24 and meta["num_classes"] == 150  # the set was not regenerated
    metrics = json.loads((tmp_path / "RUN" / "metrics.json").read_text())
    assert len(metrics["IoU"]) == 150  # the model has the set's classes, not the preset's 50


@pytest.mark.slow
def test_disk_full_names_the_folder(world: dict[str, Path], tmp_path: Path) -> None:
    """A run whose --out is on a full file system: one line, exit code 4, 'disk full' and the folder."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mnt / "run"
        r = run("-m", "cbp.train", *tiny_args(world["data"], out, "--train.iters=2"))
        line = assert_one_line(r, 4, "disk full")
        assert str(mnt) in line
    finally:
        subprocess.run(["umount", str(mnt)])


def _png_header(path: Path, width: int, height: int) -> None:
    """A PNG that claims ``width`` x ``height`` pixels: PIL refuses a decompression bomb from its header, at
    ``Image.open``, so the 900 MB of pixels a real one would unpack need not be written."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def _bad_data(world: dict[str, Path], fault: str) -> tuple[Path, tuple[str, ...]]:
    """A copy of the tiny set with one fault in the file the first training batch reads; the fragments its
    one line must hold."""
    from PIL import Image

    from cbp.engine.sampler import epoch_permutation

    root = world["base"] / f"bad-{fault}"
    if not root.exists():
        shutil.copytree(world["data"], root)
    images = sorted((root / "images" / "training").iterdir())
    image = images[int(epoch_permutation(len(images), 0, 0)[0])]  # the stream's first sample (seed 0)
    label = root / "annotations" / "training" / f"{image.stem}.png"
    if fault == "bomb-label":  # 30000 x 30000: PIL's DecompressionBombError
        _png_header(label, 30000, 30000)
        return root, (str(label), "decompression bomb", "Re-download or remove this file")
    if fault == "empty-jpeg":
        image.write_bytes(b"")
        return root, (f"cannot read image {image}", "Re-download or remove this file")
    if fault == "label-size":
        Image.open(label).resize((16, 24)).save(label)
        return root, (str(image), f"its label {label} is (24, 16)", "must have the same size")
    assert fault == "broken-meta"
    (root / "cbp_meta.json").write_text("{\n")
    return root, (f"cannot read {root / 'cbp_meta.json'}", "regenerate")


DATA_FAULTS = ("bomb-label", "empty-jpeg", "label-size", "broken-meta")


@pytest.mark.slow
@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_a_bad_data_file_is_one_line_from_a_loader_worker(
    world: dict[str, Path], tmp_path: Path, fault: str
) -> None:
    """A data file the loader cannot use, read in a DataLoader worker (which torch re-raises with the
    worker's traceback as the message): one line naming the file, exit code 4."""
    root, fragments = _bad_data(world, fault)
    r = run(
        "-m", "cbp.train", *tiny_args(root, tmp_path / "run", "--train.iters=2", "--train.num_workers=1")
    )  # fmt: skip
    line = assert_one_line(r, 4, *fragments)
    assert "DataLoader worker" not in line and "This is a bug" not in r.stderr


@pytest.mark.parametrize("fault", DATA_FAULTS)
def test_a_bad_data_file_is_one_line_in_process(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    """The same faults read by the training process itself (``train.num_workers=0``)."""
    from cbp.engine.train import cli

    root, fragments = _bad_data(world, fault)
    with pytest.raises(SystemExit) as e:
        cli(tiny_args(root, tmp_path / "run", "--train.iters=2"))
    r = subprocess.CompletedProcess([], e.value.code, "", capsys.readouterr().err)
    assert_one_line(r, 4, *fragments)


@pytest.fixture(scope="module")
def trained(world: dict[str, Path]) -> Path:
    """A run of two iterations on the tiny set (cnn_tiny, 12 classes) and, beside its checkpoint,
    ``other.pt``: the same checkpoint with the prototypes of 20 classes (a run of another class count)."""
    import torch

    out = world["base"] / "trained"
    r = run("-m", "cbp.train", *tiny_args(world["data"], out, "--train.iters=2"))
    assert r.returncode == 0, r.stderr
    ckpt = torch.load(out / "ckpt_last.pt", weights_only=True)
    ckpt["model"]["classifier.prototypes"] = torch.zeros(20, ckpt["model"]["classifier.prototypes"].shape[1])
    torch.save(ckpt, world["base"] / "other.pt")
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["pretrained-other-backbone", "evaluate-other-classes", "resume-other-classes"]
)
def test_a_checkpoint_of_another_model_is_one_line(
    world: dict[str, Path], trained: Path, tmp_path: Path, case: str
) -> None:
    """A checkpoint of another backbone or class count, as --model.pretrained, cbp.evaluate --ckpt or in a
    resumed run: one line naming the file, the first key that differs and both shapes; exit code 2."""
    other = world["base"] / "other.pt"
    channels = 256  # cnn_tiny's decoder width
    shapes = f"classifier.prototypes is (20, {channels}) in the file, (12, {channels}) in this model"
    if case == "pretrained-other-backbone":
        ckpt = trained / "ckpt_last.pt"
        args = tiny_args(
            world["data"], tmp_path / "run", "--model.backbone=resnet18", f"--model.pretrained={ckpt}"
        )
        r = run("-m", "cbp.train", *args)
        line = assert_one_line(r, 2, f"{ckpt} does not fit the resnet18", "the file's first is stages.")
        assert "same backbone" in line
        assert not (tmp_path / "run").exists()
    elif case == "evaluate-other-classes":
        r = run(
            "-m", "cbp.evaluate", str(trained), "--ckpt", str(other), "--out", str(tmp_path / "eval-x.json")
        )
        assert_one_line(
            r, 2, f"{other} is a checkpoint of another model", shapes, "pass a checkpoint of this run"
        )
    else:
        run_dir = tmp_path / "run"
        shutil.copytree(trained, run_dir)
        shutil.copy(other, run_dir / "ckpt_last.pt")
        (run_dir / "ckpt_prev.pt").unlink(missing_ok=True)
        r = run("-m", "cbp.train", *tiny_args(world["data"], run_dir, "--train.iters=4"))
        assert_one_line(
            r, 2, f"{run_dir / 'ckpt_last.pt'} is a checkpoint of another model", shapes, "data.root"
        )


@pytest.mark.slow
def test_out_on_a_read_only_file_system(world: dict[str, Path], trained: Path, tmp_path: Path) -> None:
    """--out on a read-only mount (cbp.train and cbp.evaluate): one line naming the folder, exit code 4."""
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only tmpfs")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        r = run("-m", "cbp.train", *tiny_args(world["data"], ro / "run", "--train.iters=2"))
        assert_one_line(r, 4, f"{ro} is on a read-only file system", "--out")
        r = run("-m", "cbp.evaluate", str(trained), "--out", str(ro / "eval-x.json"))
        assert_one_line(r, 4, f"{ro} is on a read-only file system", "--out")
    finally:
        subprocess.run(["umount", str(ro)])


def test_describe_classifies_exceptions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping behind the exit codes, on exceptions raised the way the libraries raise them."""
    import errno

    from cbp.engine.config import ConfigError
    from cbp.engine.errors import DataError
    from cbp.io import UnreadableFileError

    assert (
        describe(ConfigError("a\n  b"))[0] == 2 and one_line("Differences:\n  x\n  y") == "Differences: x; y"
    )
    assert describe(DataError("d")) == (4, "d") and describe(UnreadableFileError("u")) == (4, "u")
    try:
        open(tmp_path / "missing.txt")
    except OSError as e:
        code, msg = describe(e)
    assert code == 4 and msg.startswith(f"No such file or directory: {tmp_path / 'missing.txt'}")
    code, msg = describe(OSError(errno.ENOSPC, "No space left on device"), folder=tmp_path / "run")
    assert code == 4 and msg.startswith(f"disk full: no space left writing to {tmp_path / 'run'}")
    code, msg = describe(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "run")))
    assert code == 4 and msg.startswith(f"{tmp_path / 'ro'} is on a read-only file system")
    code, msg = describe(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos"), folder=tmp_path
    )
    assert code == 4 and "is the disk full?" in msg
    assert describe(RuntimeError("x"), codes={RuntimeError: 3}) == (3, "x")
    assert describe(TypeError("oops")) == (1, "TypeError: oops")  # anything else is a bug
    # a DataLoader worker's exception, re-raised by the loader as torch does: the worker's own message
    from torch._utils import ExceptionWrapper

    try:
        try:
            raise UnreadableFileError("cannot read label /d/a.png:\nbad")
        except UnreadableFileError:
            ExceptionWrapper(where="in DataLoader worker process 0").reraise()
    except UnreadableFileError as e:
        assert str(e).startswith("Caught UnreadableFileError in DataLoader worker process 0.")
        assert describe(e) == (4, "cannot read label /d/a.png: bad")
    # a rank of a torchrun job whose peer ended: gloo's error, or the DataLoader's raised while handling it
    gloo = RuntimeError(
        "[../gloo/transport/tcp/pair.cc:545] Read error [127.0.0.1]:28045: Connection reset by peer."
    )
    assert describe(gloo)[0] == 1  # not under torchrun: a bug
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    try:
        try:
            raise gloo
        except RuntimeError:
            raise RuntimeError("DataLoader worker (pid 31138) is killed by signal: Terminated. ") from None
    except RuntimeError as e:
        chained = e
    for exc in (gloo, chained, RuntimeError("DataLoader worker (pid 7) is killed by signal: Terminated. ")):
        code, msg = describe(exc, folder=tmp_path / "run")
        assert code == 5 and msg.startswith("rank 1 lost its peer process (rank 0 or the launcher ended)"), (
            msg
        )
        assert f"{tmp_path / 'run'} keeps its last checkpoint" in msg
    assert describe(RuntimeError("DataLoader worker (pid 7) is killed by signal: Killed. "))[0] == 1


@pytest.mark.slow
@pytest.mark.dist
def test_torchrun_rank0_prints_the_cause(world: dict[str, Path], tmp_path: Path) -> None:
    """Under torchrun, a failure after the process group is up (an unreadable pretrained file, read by
    every rank): rank 0 prints one line, torchrun's summary shows each rank's exit code and the cause."""
    junk = tmp_path / "encoder.pt"
    junk.write_bytes(b"not a torch file")
    r = run(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cbp.train",
        *tiny_args(world["data"], tmp_path / "run", "--train.iters=2", f"--model.pretrained={junk}"),
    )  # fmt: skip
    ours = [line for line in r.stderr.splitlines() if line.startswith("[cbp.train] error:")]
    assert r.returncode != 0 and len(ours) == 1, r.stderr
    assert f"{junk} is not a readable torch file" in ours[0]
    summary = [line for line in r.stderr.splitlines() if "traceback :" in line]
    assert summary and all(f"{junk} is not a readable torch file" in line for line in summary), r.stderr
    assert "exitcode  : 4" in r.stderr
    assert (
        'File "' + str(ROOT / "cbp") not in r.stderr
    )  # no traceback from cbp's code (torchrun prints its own)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of torchrun's (``launcher``) worker process of ``rank`` (its environment holds ``RANK``)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == launcher and f"RANK={rank}".encode() in (stat.parent / "environ").read_bytes().split(
                b"\0"
            ):
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
    return None


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks' processes in /proc")
@pytest.mark.parametrize(
    ("killed", "workers"), [(1, 1), (0, 0)], ids=["rank1-killed-workers1", "rank0-killed"]
)
def test_torchrun_a_rank_that_lost_its_peer_says_so(
    world: dict[str, Path], tmp_path: Path, killed: int, workers: int
) -> None:
    """kill -9 of one rank mid-training: the other rank says in one line that it lost its peer, exits at
    once with code 5 (not 1), and prints no traceback and no "This is a bug"."""
    import signal
    import time

    from cbp.io import read_jsonl

    out = tmp_path / "run"
    args = tiny_args(
        world["data"], out, "--train.iters=100000", "--train.log_every=1", "--train.ckpt_every=100000",
        f"--train.num_workers={workers}",
    )  # fmt: skip
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "cbp.train",
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 240
        while not any(r.get("iter", 0) >= 2 for r in read_jsonl(out / "log.jsonl")):
            assert launcher.poll() is None and time.monotonic() < deadline, (
                "the run did not reach iteration 2"
            )
            time.sleep(0.2)
        victim = _rank_pid(launcher.pid, killed)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        _, err = launcher.communicate(timeout=120)
        assert time.monotonic() - t0 < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    survivor = 1 - killed
    ours = [line for line in err.splitlines() if line.startswith("[cbp.train]")]
    assert len(ours) == 1, err
    assert ours[0].startswith(
        f"[cbp.train] error: rank {survivor} lost its peer process (rank {killed} or the launcher ended)"
    ), err
    assert "This is a bug" not in err and 'File "' + str(ROOT / "cbp") not in err, err
    assert "exitcode  : 5" in err, err  # torchrun's summary: the survivor's exit code


def test_a_closed_stdout_pipe_is_not_a_bug() -> None:
    """``python -m cbp.experiments plan ... | head -1``: the reader leaves early; no traceback, exit 141."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "cbp.experiments", "plan", "ablations", "--profile", "a6-tune"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.close()  # the reader goes away before the plan is printed
        err = p.stderr.read()
        rc = p.wait(timeout=120)
    assert rc == 141 and err == "", err


@pytest.mark.parametrize("world_size", ["2", "1"])
def test_stop_flag_leaves_sigterm_ignored_when_a_torchrun_rank_exits_on_an_error(
    world_size: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank that leaves the training loop on an exception under torchrun (its peer died) is exiting, and
    torchrun SIGTERMs the survivors at once: between the loop and its one-line message SIGTERM must stay
    ignored, or it kills the rank with no message (the race of the rank0-killed test above). Outside
    torchrun, and on a normal exit, the handler found before comes back."""
    import signal

    from cbp.engine.process import StopFlag

    monkeypatch.setenv("WORLD_SIZE", world_size)
    before, sigint = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with StopFlag():
            assert signal.getsignal(signal.SIGTERM) not in (before, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) == before  # a normal exit restores
        with pytest.raises(RuntimeError), StopFlag():
            raise RuntimeError("Connection closed by peer")
        expected = signal.SIG_IGN if world_size == "2" else before
        assert signal.getsignal(signal.SIGTERM) == expected
        assert signal.getsignal(signal.SIGINT) == sigint  # Ctrl-C as before (ignored in a background job)
    finally:
        signal.signal(signal.SIGTERM, before)
