"""How much does OCCL cost next to the pixel cross-entropy it is added to (Eq. 7)? CPU benchmark.

On the same tensors (B=8, C=256, 128x128 features, N=150 classes, 10% of the labels = 255) it times
forward + backward of

* ``ce``:    pixel cross-entropy of a 1x1 projection (the CBP logits ``f . w``), so CE has a matmul to
             differentiate, as in training;
* ``occl``:  ``cbp.OCCL`` (one segmented reduction over all classes);
* ``naive``: ``tests/reference_occl.py``, a per-class Python loop, run in float32 here (1 rep by default):
             it loops over classes for the centroids *and* over class pairs for the losses, so it is
             much slower than a loop over classes alone.

Each measurement runs in a fresh subprocess. Time = median over reps (after one warm-up). Peak extra
memory = growth of the process's peak resident set (``resource.getrusage().ru_maxrss``) during the
first forward + backward, over the peak after the inputs were built. ``tracemalloc`` cannot see
torch's CPU allocations (they bypass Python's allocator), and a fresh process per method keeps one
method's high-water mark from hiding another's. It is an upper bound on what the step allocates at
once (allocator caching included); inputs (features 128 MiB) are not counted, but the gradient
w.r.t. the features (the same 128 MiB), which every method returns, is.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/occl_speed.py [--threads 1] [--reps 7]

Target (issue 2): OCCL <= 0.5x CE (stretch 0.25x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B, C, H, W, N = 8, 256, 128, 128, 150


def _inputs(seed: int = 0):
    import torch

    import cbp

    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, C, H, W, generator=g)  # (B, C, H, W)
    labels = torch.randint(N, (B, H, W), generator=g)  # (B, H, W)
    labels[torch.rand(B, H, W, generator=g) < 0.1] = 255
    prototypes = cbp.category_basis_prototypes(N, C, seed=seed)  # (N, C)
    return features, labels, prototypes


def _step_fn(method: str, features, labels, prototypes):
    import torch
    import torch.nn.functional as F

    import cbp

    if method == "ce":
        weight = prototypes.clone().requires_grad_(True)  # a learnable 1x1 projection for CE to differentiate

        def step() -> None:
            f = features.detach().requires_grad_(True)
            logits = F.conv2d(f, weight[:, :, None, None])  # (B, N, H, W)
            F.cross_entropy(logits, labels, ignore_index=255).backward()

        return step
    if method == "occl":
        occl = cbp.OCCL(views="batch")  # the views benchmarks/README.md's numbers were measured with

        def step() -> None:
            f = features.detach().requires_grad_(True)
            occl(f, labels, prototypes)["loss"].backward()

        return step
    if method == "naive":
        sys.path.insert(0, str(ROOT / "tests"))
        from reference_occl import reference_occl

        def step() -> None:
            f = features.detach().requires_grad_(True)
            reference_occl(f, labels, prototypes, dtype=torch.float32)["loss"].backward()

        return step
    raise KeyError(f"unknown method {method!r}: expected one of ['ce', 'occl', 'naive']")


def measure(method: str, reps: int, threads: int) -> dict:
    """Run in a fresh process: peak extra RSS of one step, then the median time of ``reps`` steps."""
    import torch

    torch.set_num_threads(threads)
    features, labels, prototypes = _inputs()
    step = _step_fn(method, features, labels, prototypes)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    step()  # warm-up, also the memory measurement
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {
        "method": method,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "reps": reps,
        "peak_extra_mib": (rss_after - rss_before) / 1024,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--reps", type=int, default=7, help="timed reps for ce and occl")
    parser.add_argument("--naive-reps", type=int, default=1, help="timed reps for the per-class loop")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: run one method, print JSON
    args = parser.parse_args()
    if args.measure:
        reps = args.naive_reps if args.measure == "naive" else args.reps
        print(json.dumps(measure(args.measure, reps, args.threads)))
        return

    import torch

    print(f"CPU: {_cpu_model()}  ({os.cpu_count()} logical cores visible)")
    print(f"torch {torch.__version__}, intra-op threads {args.threads}, Python {platform.python_version()}")
    print(f"tensors: features ({B}, {C}, {H}, {W}) float32, labels ({B}, {H}, {W}) with 10% = 255, N = {N}")
    methods = ["ce", "occl"] + ([] if args.skip_naive else ["naive"])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results = {}
    for method in methods:
        cmd = [sys.executable, __file__, "--measure", method, "--threads", str(args.threads)]
        cmd += ["--reps", str(args.reps), "--naive-reps", str(args.naive_reps)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    ce = results["ce"]["median_s"]
    print()
    print(f"{'method':<34} {'reps':>4} {'median ms':>10} {'min ms':>9} {'x CE':>7} {'peak extra MiB':>15}")
    labels = {
        "ce": "pixel CE (1x1 proj + CE), fwd+bwd",
        "occl": "cbp.OCCL, fwd+bwd",
        "naive": "per-class loop reference, fwd+bwd",
    }
    for method, r in results.items():
        print(
            f"{labels[method]:<34} {r['reps']:>4} {1000 * r['median_s']:>10.1f} {1000 * r['min_s']:>9.1f} "
            f"{r['median_s'] / ce:>7.3f} {r['peak_extra_mib']:>15.1f}"
        )
    ratio = results["occl"]["median_s"] / ce
    verdict = "within" if ratio <= 0.5 else "OVER"
    print(f"\nOCCL / CE = {ratio:.3f} ({verdict} the 0.5x target; stretch 0.25x)")
    if "naive" in results:
        print(f"per-class loop / OCCL = {results['naive']['median_s'] / results['occl']['median_s']:.1f}x")


if __name__ == "__main__":
    main()
