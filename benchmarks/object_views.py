"""What do OCCL's object views cost? CPU benchmark of ``cbp.losses.assign_views`` per reading.

The ``"objects"`` reading (protocol amendment 5) finds the 4-connected regions of every label in the
batch with one ``scipy.sparse.csgraph.connected_components`` call on the CPU (labels on a GPU are
copied to the host and back), then splits each class's objects at random. This prints the median time
of one call for the two label maps the study and the paper's recipe give OCCL (labels at the feature
resolution, 1/4 of the input):

* synthetic study: B=8 images of 64 x 64 -> 16 x 16 labels, Voronoi cells of 50 classes;
* ADE20K recipe: B=2 images per device of 512 x 512 -> 128 x 128 labels, 150 classes;

next to ``"random"`` (pixel halves, no region search) and one OCCL forward + backward on C=256
features of the same size, so the share of the view split in a step is visible.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/object_views.py [--reps 21]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import cbp
from cbp.losses import assign_views


def cells(batch: int, size: int, classes: int, cells_per_image: int, seed: int = 0) -> torch.Tensor:
    """Labels (B, size, size): Voronoi cells with random classes, as the synthetic scenes."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = torch.empty(batch, size, size, dtype=torch.long)
    for b in range(batch):
        centres = torch.randint(size, (cells_per_image, 2), generator=g)
        cls = torch.randint(classes, (cells_per_image,), generator=g)
        d = (ys[None] - centres[:, 0, None, None]) ** 2 + (xs[None] - centres[:, 1, None, None]) ** 2
        out[b] = cls[d.argmin(dim=0)]
    return out


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


WIDTHS = ("11.2f", "10.2f", "16.2f", "8d")


def measure(batch: int, size: int, classes: int, cells_per_image: int, reps: int) -> tuple:
    """(objects ms, random ms, OCCL forward + backward ms, number of objects) on one label batch."""
    labels = cells(batch, size, classes, cells_per_image)
    g = torch.Generator().manual_seed(0)
    t_obj = median_ms(lambda: assign_views(labels, "objects", generator=g), reps)
    t_rand = median_ms(lambda: assign_views(labels, "random", generator=g), reps)
    features = torch.randn(batch, 256, size, size, requires_grad=True)
    prototypes = cbp.category_basis_prototypes(classes, 256)
    occl = cbp.OCCL(views="objects")
    t_occl = median_ms(lambda: occl(features, labels, prototypes)["loss"].backward(), max(3, reps // 3))
    return t_obj, t_rand, t_occl, int(cbp.losses.object_ids(labels).max()) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {"synthetic B=8, 16x16, N=50": (8, 16, 50, 12), "ADE20K B=2, 128x128, N=150": (2, 128, 150, 40)}
    print(f"{'labels':30s} {'objects ms':>11s} {'random ms':>10s} {'OCCL fwd+bwd ms':>16s} {'objects':>8s}")
    for name, (batch, size, classes, k) in cases.items():
        print(
            f"{name:30s} "
            + " ".join(f"{v:{w}}" for v, w in zip(measure(batch, size, classes, k, args.reps), WIDTHS))
        )


if __name__ == "__main__":
    main()
