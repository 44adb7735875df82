"""A seconds-long training run for the engine tests: cnn_tiny on a 12-class synthetic set of 32x32 images."""

from __future__ import annotations

from pathlib import Path


def make_tiny_synthetic(root: Path) -> Path:
    """Generate (or reuse) the 12-class, 32 + 8 image synthetic set that :func:`tiny_args` expects."""
    from cbp.data.synthetic import ensure_synthetic

    return ensure_synthetic(root, classes=12, train=32, val=8, size=32, seed=0, progress=False)


def tiny_args(root: Path, out: Path, *extra: str) -> list[str]:
    """``python -m cbp.train`` arguments of a tiny run on ``root`` (from :func:`make_tiny_synthetic`)."""
    return [
        "--preset=synthetic",
        f"--out={out}",
        f"--data.root={root}",
        "--data.synthetic_classes=12",
        "--data.synthetic_train=32",
        "--data.synthetic_val=8",
        "--data.synthetic_size=32",
        "--data.crop_size=32",
        "--data.scale=32,32",
        "--data.test_scale=32,32",
        "--train.batch_size=4",
        "--train.num_workers=0",
        "--train.log_every=2",
        "--train.ckpt_every=2",
        "--train.progress=false",
        "--optim.warmup_iters=2",
        *extra,
    ]
