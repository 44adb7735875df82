"""The synthetic long-tailed benchmark: determinism, frequencies, validation coverage, groups, storage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from PIL import Image

from cbp.data import ADE20K, build_dataset
from cbp.data import synthetic as syn
from cbp.data.classes import ADE20K_CLASSES, ade20k_pixel_counts


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def set50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.generate(
        tmp_path_factory.mktemp("syn") / "s50", classes=50, train=1200, val=150, progress=False
    )


@pytest.fixture(scope="module")
def set150(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.generate(
        tmp_path_factory.mktemp("syn") / "s150", classes=150, train=300, val=160, progress=False
    )


def _all_labels(ds: ADE20K) -> np.ndarray:
    return np.stack([ds.load_label(lab).numpy() for _, lab in ds.files])  # (n, S, S)


def test_class_table() -> None:
    ids, names, probs = syn.class_table(50)
    assert ids.tolist() == list(range(0, 150, 3)) and names[:2] == ["wall", "floor"]
    assert probs.sum() == pytest.approx(1.0) and probs[0] == pytest.approx(0.42, abs=0.01)  # wall ~42% (v2)
    ids150, names150, probs150 = syn.class_table(150)
    assert names150 == list(ADE20K_CLASSES)
    np.testing.assert_allclose(probs150, ade20k_pixel_counts() / ade20k_pixel_counts().sum())


def test_read_by_ade20k_reader(set50: Path) -> None:
    meta = json.loads((set50 / "cbp_meta.json").read_text())
    tr = build_dataset("synthetic", set50, "train", None)
    va = build_dataset("synthetic", set50, "val", None)
    assert len(tr) == 1200 and len(va) == 150 and tr.num_classes == 50 and va.num_classes == 50
    assert tr.class_names == meta["class_names"] and tr.class_names[0] == "wall"
    image, label = tr[0]
    assert image.shape == (3, 64, 64) and label.shape == (64, 64)
    assert int(label.min()) >= 0 and int(label.max()) < 50  # no ignored pixels, no out-of-range values
    labels = _all_labels(tr)
    np.testing.assert_array_equal(np.bincount(labels.reshape(-1), minlength=50), tr.pixel_counts)
    assert meta["jpeg"]["subsampling"] == "4:4:4" and meta["jpeg"]["psnr_db"] > 40


def test_frequencies_follow_ade20k_ratios(set50: Path, set150: Path) -> None:
    # 150 classes in only 300 images leaves the far tail at ~0.4 cells a class, hence the lower bar
    for root, bar in ((set50, 0.9), (set150, 0.7)):
        meta = json.loads((root / "cbp_meta.json").read_text())
        rho = scipy.stats.spearmanr(meta["pixel_counts"], meta["pixel_ratios"]).statistic
        assert rho > bar, (root, rho)
    counts = np.asarray(json.loads((set50 / "cbp_meta.json").read_text())["pixel_counts"], dtype=float)
    assert counts[0] / counts.sum() == pytest.approx(0.42, abs=0.04)  # wall, v2


def test_every_class_in_enough_validation_images(set50: Path, set150: Path) -> None:
    for root, n in ((set50, 50), (set150, 150)):
        va = ADE20K(root, "validation")
        labels = _all_labels(va).reshape(len(va), -1)
        present = np.zeros((len(va), n), dtype=bool)
        present[np.arange(len(va))[:, None], labels] = True
        assert present.sum(0).min() >= 6
        meta = json.loads((root / "cbp_meta.json").read_text())
        np.testing.assert_array_equal(present.sum(0), meta["val_image_counts"])


def test_confusable_groups(set50: Path) -> None:
    meta = json.loads((set50 / "cbp_meta.json").read_text())
    groups = np.asarray(meta["groups"])
    assert groups.shape == (6, 3) and len(np.unique(groups)) == 18
    order = np.argsort(-np.asarray(meta["pixel_ratios"]), kind="stable")
    third = np.empty(50, dtype=int)
    third[order] = np.repeat([0, 1, 2], [17, 17, 16])  # np.array_split sizes
    np.testing.assert_array_equal(third[groups], np.tile([0, 1, 2], (6, 1)))  # frequent, mid, rare
    app = meta["appearance"]
    for g in groups:
        for key in ("period_px", "amplitude", "noise"):
            assert len({app[key][c] for c in g}) == 1
        colours = np.asarray([app["colour"][c] for c in g])
        assert np.abs(colours - colours[0]).max() <= 0.0151
        theta = np.asarray([app["theta_deg"][c] for c in g])
        steps = (
            (theta[:, None] - theta[None]) % 180
        ) / 30  # (3, 3) orientation differences in 30-degree units
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
        assert sorted(np.round(steps[0]).astype(int) % 6) != [0, 0, 0]  # distinct orientations
        assert len(set(np.round(theta, 2) % 180)) == 3
    group_of = np.asarray(meta["group_of"])
    assert (group_of >= 0).sum() == 18 and (group_of[groups] == np.arange(6)[:, None]).all()


def _region_features(ds: ADE20K) -> tuple[np.ndarray, np.ndarray]:
    """Per (image, class) region: mean colour and mean texture orientation (doubled-angle gradient tensor)."""
    feats, ys = [], []
    for i in range(len(ds)):
        image, label = ds[i]
        x = image.numpy().astype(np.float64) / 255.0  # (3, S, S)
        gy, gx = np.gradient(x.mean(0))
        tensor = np.stack([gx * gx - gy * gy, 2 * gx * gy])  # (2, S, S)
        lab = label.numpy()
        for c in np.unique(lab):
            mask = lab == c
            if mask.sum() < 30:
                continue
            o = tensor[:, mask].mean(1)
            feats.append(np.concatenate([x[:, mask].mean(1), 0.3 * o / (np.linalg.norm(o) + 1e-12)]))
            ys.append(c)
    return np.asarray(feats), np.asarray(ys)


def test_classes_separable_after_jpeg(set50: Path) -> None:
    """Nearest class centroid on (colour, orientation) of regions, fitted on the stored JPEGs."""
    train = ADE20K(set50, "training")
    train.files = train.files[:500]
    f_tr, y_tr = _region_features(train)
    f_va, y_va = _region_features(ADE20K(set50, "validation"))
    cent = np.full((50, f_tr.shape[1]), np.inf)
    for c in np.unique(y_tr):
        cent[c] = f_tr[y_tr == c].mean(0)
    pred = np.nanargmin(((f_va[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    acc = (pred == y_va).mean()
    majority = np.bincount(y_va).max() / len(y_va)
    assert acc > 0.5 and acc > 2.5 * majority, (acc, majority)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    kw = dict(classes=50, train=12, val=10, progress=False)
    a = _digest(syn.generate(tmp_path / "a", seed=3, **kw))
    b = _digest(syn.generate(tmp_path / "b", seed=3, **kw))
    c = _digest(syn.generate(tmp_path / "c", seed=4, **kw))
    assert a == b and len(a) == 12 + 10 + 12 + 10 + 1
    assert a != c


def test_pretrain_task_redraws_appearance(tmp_path: Path) -> None:
    kw = dict(classes=50, train=12, val=10, progress=False)
    base = json.loads((syn.generate(tmp_path / "base", **kw) / "cbp_meta.json").read_text())
    pre = json.loads((syn.generate(tmp_path / "pre", pretrain=True, **kw) / "cbp_meta.json").read_text())
    assert pre["appearance_seed"] == base["appearance_seed"] + 1000 and pre["params"]["pretrain"]
    assert pre["class_names"] == base["class_names"] and pre["pixel_ratios"] == base["pixel_ratios"]
    assert (
        np.abs(np.asarray(pre["appearance"]["colour"]) - np.asarray(base["appearance"]["colour"])).mean()
        > 0.1
    )
    assert pre["groups"] != base["groups"]


def test_ensure_synthetic_is_idempotent_and_checks_params(tmp_path: Path) -> None:
    root = tmp_path / "set"
    kw = dict(classes=50, train=12, val=10, progress=False)
    syn.ensure_synthetic(root, **kw)
    stamp = (root / "cbp_meta.json").stat().st_mtime_ns
    assert syn.ensure_synthetic(root, **kw) == root
    assert (root / "cbp_meta.json").stat().st_mtime_ns == stamp  # not regenerated
    with pytest.raises(ValueError, match="train: existing 12 vs requested 13"):
        syn.ensure_synthetic(root, **(kw | {"train": 13}))
    other = tmp_path / "other"
    (other / "x").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not empty"):
        syn.ensure_synthetic(other, **kw)


def test_crashed_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(syn, "_write_split", boom)
    with pytest.raises(RuntimeError, match="simulated crash"):
        syn.ensure_synthetic(tmp_path / "set", classes=50, train=12, val=10, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path: Path) -> None:
    out = syn.main(
        ["--out", str(tmp_path / "cli"), "--classes", "50", "--train", "8", "--val", "6", "--quiet"]
    )
    meta = json.loads((out / "cbp_meta.json").read_text())
    assert meta["num_classes"] == 50 and meta["params"]["train"] == 8 and meta["params"]["num_groups"] == 6
    with pytest.raises(ValueError, match="val"):
        syn.generate(tmp_path / "bad", classes=50, train=8, val=5, progress=False)


# ---- portability (generator version 2) ----------------------------------------------------------

#: Fingerprint of ``generate(classes=50, train=24, val=10)`` (seed 0), pinned when version 2 was written.
#: ``labels`` and ``render`` are functions of the parameters alone; ``images`` (decoded JPEGs) also
#: of the JPEG codec of the locked Pillow build.
SMALL_SET = dict(classes=50, train=24, val=10, progress=False)
SMALL_FINGERPRINT = {
    "labels": "22193ad65e321acccb73690e1845a8ae6f44fd94a4036add40fe9d3687f7e38f",
    "render": "647d845027e26121b4bb99a3cd340eae1ac70941893df712e285d3c85a36b0e2",
    "images": "49d30576f31f3f0a3ed8e08d2259fa02fbde4f732ee5579084f4d04630feca25",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return syn.generate(tmp_path_factory.mktemp("syn") / "small", **SMALL_SET)


def test_small_set_fingerprint_is_pinned(small: Path) -> None:
    meta = json.loads((small / "cbp_meta.json").read_text())
    assert meta["version"] == 2
    got = {k: meta["fingerprint"][k] for k in SMALL_FINGERPRINT}
    assert got == SMALL_FINGERPRINT, syn.compare_fingerprints(SMALL_FINGERPRINT, got)
    # recomputed from the files on disk: the same labels and decoded images
    assert syn.fingerprint(small) == meta["fingerprint"]
    assert {"numpy", "pillow", "simd"} <= set(meta["environment"])


def test_select_seeds_matches_a_sorted_loop_with_ties() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 6, size=(40, 50)).astype(np.float32)  # many equal keys
    got = syn.select_seeds(keys, 7)
    for row, seeds in zip(keys, got):
        reference = sorted(range(len(row)), key=lambda j: (row[j], j))[:7]  # (key, pixel index)
        assert seeds.tolist() == reference


def test_generation_does_not_depend_on_argpartition_order(
    tmp_path: Path, small: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 1 read ``np.argpartition(...)[:, :k]`` in the order the CPU's kernel left it."""
    real = np.argpartition
    shuffle = np.random.default_rng(0)

    def shuffled(a, kth, axis=-1, **kw):  # the same partition, another order within each side
        out = real(a, kth, axis=axis, **kw)
        k = int(np.max(kth)) + 1
        front, back = out[..., :k], out[..., k:]
        return np.concatenate([shuffle.permuted(front, axis=-1), shuffle.permuted(back, axis=-1)], axis=-1)

    monkeypatch.setattr(np, "argpartition", shuffled)
    other = syn.generate(tmp_path / "shuffled", **SMALL_SET)
    a = json.loads((small / "cbp_meta.json").read_text())["fingerprint"]
    b = json.loads((other / "cbp_meta.json").read_text())["fingerprint"]
    assert a == b, syn.compare_fingerprints(a, b)


def test_compare_fingerprints_names_the_part(tmp_path: Path, small: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small, copy)
    label = sorted((copy / "annotations" / "training").glob("*.png"))[0]
    arr = np.asarray(Image.open(label)).copy()
    arr[0, 0] = arr[0, 0] % 50 + 1  # another class at one pixel
    Image.fromarray(arr, mode="L").save(label)
    diff = syn.compare_fingerprints(syn.read_meta(small)["fingerprint"], syn.fingerprint(copy))
    assert len(diff) == 1 and diff[0].startswith("labels:")
    assert syn.compare_fingerprints(syn.fingerprint(small), syn.fingerprint(small)) == []


def test_ensure_synthetic_refuses_a_version_1_set(tmp_path: Path) -> None:
    root = syn.generate(tmp_path / "set", **SMALL_SET)
    meta = json.loads((root / "cbp_meta.json").read_text())
    (root / "cbp_meta.json").write_text(json.dumps(meta | {"version": 1}))
    kw = {k: v for k, v in SMALL_SET.items() if k != "progress"}
    with pytest.raises(ValueError, match="version 1"):
        syn.ensure_synthetic(root, progress=False, **kw)


def test_difficulty_knobs_scale_the_same_draws(tmp_path: Path, set150: Path) -> None:
    """Amendment 6's knobs act on the draws generator 2 makes anyway: noise and amplitude scale exactly,
    group members step by the new angle, and the layout (labels) is untouched."""
    kw = dict(classes=150, train=300, val=160, progress=False)
    hard = syn.generate(
        tmp_path / "hard", **kw, num_groups=16, lookalike_deg=10.0, noise_scale=2.0, amplitude_scale=0.5
    )
    a, b = (json.loads((s / "cbp_meta.json").read_text()) for s in (set150, hard))
    np.testing.assert_allclose(
        b["appearance"]["noise"], np.multiply(a["appearance"]["noise"], 2.0), atol=1e-5
    )
    np.testing.assert_allclose(
        b["appearance"]["amplitude"], np.multiply(a["appearance"]["amplitude"], 0.5), atol=1e-5
    )
    assert (
        b["fingerprint"]["labels"] == a["fingerprint"]["labels"]
        and b["fingerprint"]["render"] != a["fingerprint"]["render"]
    )
    theta = np.array(b["appearance"]["theta_deg"])
    for group in b["groups"]:  # the members are base + 0, 10, 20 degrees (mod 180), in some order
        v = theta[group]
        assert any(np.allclose(np.sort((v - base) % 180.0), [0.0, 10.0, 20.0], atol=1e-3) for base in v)
    with pytest.raises(ValueError, match="lookalike_deg"):
        syn.SyntheticParams(lookalike_deg=0.0).resolved()
    with pytest.raises(ValueError, match="noise_scale"):
        syn.SyntheticParams(noise_scale=float("nan")).resolved()


def test_tail_power_shortens_the_tail_in_the_frequency_order(tmp_path: Path, set150: Path) -> None:
    """``tail_power`` = alpha draws classes with p ** alpha (checked against numpy in float64): the order
    stays ADE20K's, the rare third gets more training pixels, appearances are untouched."""
    _, _, probs = syn.class_table(150)
    for alpha in (1.0, 0.7, 0.3):
        ref = probs**alpha / np.sum(probs**alpha)
        np.testing.assert_allclose(syn.flatten_tail(probs, alpha), ref, rtol=1e-12)
    assert np.array_equal(syn.flatten_tail(probs, 1.0), probs)
    flat = syn.flatten_tail(probs, 0.7)
    assert np.all(np.diff(flat) <= 0) and flat[-1] > 3 * probs[-1]
    kw = dict(classes=150, train=300, val=160, progress=False)
    short = syn.generate(tmp_path / "short", **kw, tail_power=0.5)
    a, b = (json.loads((s / "cbp_meta.json").read_text()) for s in (set150, short))
    np.testing.assert_allclose(b["pixel_ratios"], syn.flatten_tail(probs, 0.5))
    assert a["appearance"] == b["appearance"] and a["fingerprint"]["labels"] != b["fingerprint"]["labels"]
    rare = slice(100, 150)
    assert sum(b["pixel_counts"][rare]) > 2 * sum(a["pixel_counts"][rare])
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tail_power"):
            syn.SyntheticParams(tail_power=bad).resolved()


def test_a_set_written_before_the_knobs_existed_is_still_recognised(tmp_path: Path, set150: Path) -> None:
    root = tmp_path / "old"
    shutil.copytree(set150, root)
    meta = json.loads((root / "cbp_meta.json").read_text())
    for knob in ("lookalike_deg", "noise_scale", "amplitude_scale", "tail_power"):
        del meta["params"][knob]
    (root / "cbp_meta.json").write_text(json.dumps(meta))
    assert syn.ensure_synthetic(root, classes=150, train=300, val=160, progress=False) == root
    with pytest.raises(ValueError, match="noise_scale"):
        syn.ensure_synthetic(root, classes=150, train=300, val=160, noise_scale=2.0, progress=False)


def test_a_killed_generators_half_set_is_removed_by_the_next_one(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    half = tmp_path / f".s.tmp-{proc.pid}-abc"
    (half / "images").mkdir(parents=True)
    busy = tmp_path / f".s.tmp-{os.getpid()}-def"  # a generator still at work keeps its folder
    busy.mkdir()
    syn.generate(tmp_path / "s", classes=10, train=8, val=8, size=16, num_groups=1, progress=False)
    assert not half.exists() and busy.exists() and (tmp_path / "s" / "cbp_meta.json").is_file()
