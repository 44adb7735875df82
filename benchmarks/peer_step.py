"""Peer benchmark: one training step of this project's SegFormer-B0 vs Hugging Face transformers'.

    pip install -e ".[bench]"
    OMP_NUM_THREADS=1 python benchmarks/peer_step.py --threads 1
    python benchmarks/peer_step.py --reps 30 --batch 4 --size 256

"ours" is ``cbp.engine.build.build_model`` with backbone ``mit_b0`` (smp's MiT-B0 encoder + the SegFormer
all-MLP decoder, C = 256) and the learnable linear classifier, stepped as the engine steps it
(``cbp.engine.loss.compute_loss``, ``cbp.engine.optim.build_optimizer``). "theirs" is transformers'
``SegformerForSemanticSegmentation`` from a ``SegformerConfig`` with the same architecture (depths
2-2-2-2, widths 32-64-160-256, heads 1-2-5-8, reduction ratios 8-4-2-1, decoder width 256, drop
path 0.1, classifier dropout 0.1), random init, stepped through its own ``labels=`` loss.

The same in both: batch, resolution, labels (an 8x8 grid of random classes, 5 % ignored), AdamW
(lr 1e-3, betas (0.9, 0.999), weight decay 0.01 on every parameter, torch's default
implementation), and the loss: logits at the decoder's 1/4 resolution bilinearly upsampled
(``align_corners=False``) to the labels' full resolution, then pixel cross-entropy with ignore
index 255 (our ``loss.ce_resolution="input"``, the paper presets' setting; transformers always
does this). OCCL is off: this times the engine's plain step against the peer's.

The step is zero_grad, forward, loss, backward, optimizer step. Both models are timed in one
process, interleaved (A B B A ...), so that load from other processes hits both alike; the median
of ``--reps`` steps after ``--warmup`` is reported with the ratio ours / theirs (target <= 1.0).
Peak memory: each case runs alone in a fresh subprocess (before the parent builds any model),
which reports its peak resident set over ``--warmup`` steps minus its resident set just before the
first step (model, optimizer and inputs built): the memory a training step adds (activations,
gradients, AdamW state). The peak is the kernel's high-water mark of the process's own memory
(``VmHWM`` in ``/proc/self/status``); ``resource.getrusage(...).ru_maxrss`` would not do, since Linux
carries it across ``fork`` + ``exec`` from the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

NUM_CLASSES = 150
LR, WEIGHT_DECAY = 1e-3, 0.01
IGNORE_INDEX = 255


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import transformers

    return (
        f"CPU: {cpu} ({os.cpu_count()} cores), torch threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


def make_batch(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (B, 3, size, size) and piecewise-constant labels (B, size, size) int64, seeded."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=gen)
    cells = torch.randint(0, NUM_CLASSES, (batch, 8, 8), generator=gen)
    cells[torch.rand(batch, 8, 8, generator=gen) < 0.05] = IGNORE_INDEX
    labels = cells.repeat_interleave(size // 8, 1).repeat_interleave(size // 8, 2)  # (B, size, size)
    return images, labels


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_ours() -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], None]]:
    """This project's SegFormer-B0 with a linear classifier, and the engine's training step."""
    from cbp.engine.build import build_model
    from cbp.engine.config import get_preset
    from cbp.engine.loss import compute_loss
    from cbp.engine.optim import build_optimizer

    cfg = get_preset("synthetic")
    cfg.model.backbone = "mit_b0"
    cfg.model.classifier = "linear"
    cfg.loss.occl = False
    cfg.loss.ce_resolution = "input"  # upsample the 1/4 logits to the labels, as transformers does
    cfg.loss.ignore_index = IGNORE_INDEX
    cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay = "adamw", LR, WEIGHT_DECAY
    cfg.optim.betas, cfg.optim.head_lr_mult = (0.9, 0.999), 1.0
    torch.manual_seed(0)
    model = build_model(cfg, NUM_CLASSES).train()
    opt = build_optimizer(model, cfg.optim)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        out = model(images, upsample=True)  # logits (B, N, H, W)
        loss, _ = compute_loss(model, out, labels, cfg, None)
        loss.backward()
        opt.step()
        model.classifier.after_step()

    return model, step


def build_theirs() -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], None]]:
    """transformers' SegformerForSemanticSegmentation, MiT-B0 configuration, random init."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_channels=3,
        num_encoder_blocks=4,
        depths=[2, 2, 2, 2],
        sr_ratios=[8, 4, 2, 1],
        hidden_sizes=[32, 64, 160, 256],
        patch_sizes=[7, 3, 3, 3],
        strides=[4, 2, 2, 2],
        num_attention_heads=[1, 2, 5, 8],
        mlp_ratios=[4, 4, 4, 4],
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout_prob=0.1,
        drop_path_rate=0.1,
        decoder_hidden_size=256,
        num_labels=NUM_CLASSES,
        semantic_loss_ignore_index=IGNORE_INDEX,
    )
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config).train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), weight_decay=WEIGHT_DECAY)

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss = model(pixel_values=images, labels=labels).loss  # upsampled logits, CE ignore 255
        loss.backward()
        opt.step()

    return model, step


BUILDERS = {"ours": build_ours, "theirs": build_theirs}


def _status_kib(key: str) -> int:
    """A memory line of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak), in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def memory_child(name: str, batch: int, size: int, steps: int) -> None:
    """Run in a fresh process: print JSON with the peak RSS a training step adds (KiB)."""
    model, step = BUILDERS[name]()
    images, labels = make_batch(batch, size)
    before = _status_kib("VmRSS")
    for _ in range(steps):
        step(images, labels)
    peak = _status_kib("VmHWM")
    print(json.dumps({"model_rss_kib": before, "peak_rss_kib": peak, "step_kib": peak - before}))


def measure_memory(name: str, args: argparse.Namespace) -> dict[str, int]:
    cmd = [sys.executable, __file__, "--memory-child", name, "--batch", str(args.batch)]
    cmd += ["--size", str(args.size), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=20, help="timed steps of each model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each model first")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="square input resolution (a multiple of 32)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--memory-child", choices=list(BUILDERS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size % 32:
        parser.error(f"--size must be a multiple of 32 (got {args.size}): MiT downsamples by 32")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.batch, args.size, args.warmup)
        return

    print(f"# peer_step benchmark: SegFormer-B0, batch {args.batch}, {args.size}x{args.size}, CPU")
    print(hardware())
    memory = {name: measure_memory(name, args) for name in BUILDERS}  # while this process is small
    images, labels = make_batch(args.batch, args.size)
    models, steps = {}, {}
    for name, build in BUILDERS.items():
        models[name], steps[name] = build()
        for _ in range(args.warmup):
            steps[name](images, labels)
    times: dict[str, list[float]] = {name: [] for name in BUILDERS}
    order = list(BUILDERS)
    for _ in range(args.reps):
        for name in order:
            t0 = time.perf_counter()
            steps[name](images, labels)
            times[name].append(time.perf_counter() - t0)
        order.reverse()  # A B B A A B ...: neither always goes first

    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"median of {args.reps} interleaved steps after {args.warmup} warm-up steps each")
    for name in BUILDERS:
        q = sorted(times[name])
        mem = memory[name]
        print(
            f"  {name:7s} step {1000 * med[name]:8.1f} ms  (IQR {1000 * q[len(q) // 4]:.1f}-"
            f"{1000 * q[3 * len(q) // 4]:.1f})  params {n_params(models[name]):,}  "
            f"peak RSS added by training steps {mem['step_kib'] / 1024:.0f} MiB "
            f"(process with model built: {mem['model_rss_kib'] / 1024:.0f} MiB)"
        )
    print(f"  ratio ours / theirs = {med['ours'] / med['theirs']:.3f}  (target <= 1.0)")
    diff = n_params(models["ours"]) - n_params(models["theirs"])
    print(
        f"  parameter difference ours - theirs = {diff:+,} (expected +1,024: our per-level projections are "
        "mmseg's 1x1 conv + BN (2 x 256 per level), transformers' are a Linear with bias (256 per level))"
    )


if __name__ == "__main__":
    main()
