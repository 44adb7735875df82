"""Time per training step: learnable baseline (linear head, CE) vs CBP + OCCL, same model and batch.

    python benchmarks/train_step.py                 # CPU cases; plus SegFormer-B5 when CUDA is present
    python benchmarks/train_step.py --cases cnn_tiny --reps 30
    python benchmarks/train_step.py --cases mit_b5 --dry-run   # what would run (ci/gpu_check.sh --dry-run)

Each step is the engine's own (``cbp.engine.loss.compute_loss``): zero_grad, forward, loss, backward,
AdamW step (+ ``classifier.after_step``). The two variants are timed interleaved (A, B, A, B, ...)
so that load from other processes hits both alike; the median of ``--reps`` steps after
``--warmup`` steps is reported with the ratio. On CUDA also the peak training memory, inference
throughput (batch 1, eval mode, no grad; the paper's Table 2 setting) and parameter counts.
Target (issue 3): CBP + OCCL adds at most 5 % to the step time; inference speed and parameter
count equal the baseline's up to the classifier bias.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from cbp.engine.build import build_model
from cbp.engine.config import Config, get_preset
from cbp.engine.loss import compute_loss
from cbp.engine.optim import build_optimizer
from cbp.losses import OCCL


@dataclass
class Case:
    name: str
    backbone: str
    size: int
    batch: int
    num_classes: int
    ce_resolution: str  # "feature" (the synthetic preset) or "input" (the paper's)
    device: str


CASES = {
    "cnn_tiny": Case("cnn_tiny 64x64 b8 (synthetic preset)", "cnn_tiny", 64, 8, 50, "feature", "cpu"),
    "mit_b0": Case("SegFormer-B0 128x128 b8", "mit_b0", 128, 8, 150, "input", "cpu"),
    "mit_b5": Case("SegFormer-B5 512x512 b2 (paper Table 2)", "mit_b5", 512, 2, 150, "input", "cuda"),
}


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"CPU: {cpu}, torch threads {torch.get_num_threads()}; torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f"; GPU: {torch.cuda.get_device_name()} (CUDA {torch.version.cuda})"
    return text


def blob_labels(batch: int, size: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Piecewise-constant labels (8x8 grid of random classes, some ignored), (B, size, size) int64."""
    cells = torch.randint(0, num_classes, (batch, 8, 8), generator=gen)
    cells[torch.rand(batch, 8, 8, generator=gen) < 0.05] = 255
    return cells.repeat_interleave(size // 8, 1).repeat_interleave(size // 8, 2)


def variant(case: Case, cbp_occl: bool, amp: str) -> Config:
    cfg = get_preset("synthetic")
    cfg.model.backbone = case.backbone
    cfg.model.classifier = "cbp" if cbp_occl else "linear"
    cfg.model.length = 2.0
    cfg.loss.occl = cbp_occl
    cfg.loss.ce_resolution = case.ce_resolution
    cfg.train.amp = amp
    return cfg


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Runner:
    """One variant: model, optimizer, OCCL, and a timed step."""

    def __init__(self, case: Case, cbp_occl: bool, device: torch.device, amp: str) -> None:
        torch.manual_seed(0)
        self.cfg = variant(case, cbp_occl, amp)
        self.device = device
        self.model = build_model(self.cfg, case.num_classes).to(device).train()
        self.opt = build_optimizer(self.model, self.cfg.optim)
        # views="batch": the views benchmarks/README.md's numbers were measured with (the engine's are "objects")
        self.occl = OCCL(tau=0.07, lam=1.0, phi=0.3, views="batch") if cbp_occl else None
        self.amp = amp if device.type == "cuda" else "none"

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "none"):
            out = self.model(images, upsample=self.cfg.loss.ce_resolution == "input")
        loss, _ = compute_loss(self.model, out, labels, self.cfg, self.occl)
        loss.backward()
        self.opt.step()
        self.model.classifier.after_step()
        sync(self.device)
        return time.perf_counter() - t0

    @torch.no_grad()
    def inference_fps(self, size: int, reps: int) -> float:
        self.model.eval()
        x = torch.randn(1, 3, size, size, device=self.device)
        times = []
        for i in range(reps + 3):
            sync(self.device)
            t0 = time.perf_counter()
            self.model(x)
            sync(self.device)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        self.model.train()
        return 1.0 / statistics.median(times)

    def params(self) -> int:
        """Parameters, counting a frozen prototype buffer too (it is stored and used like the weight)."""
        n = sum(p.numel() for p in self.model.parameters())
        protos = self.model.classifier.prototypes
        if not isinstance(protos, torch.nn.Parameter) and self.cfg.model.classifier == "cbp":
            n += protos.numel()
        return n


def run_case(case: Case, reps: int, warmup: int, amp: str) -> None:
    device = torch.device(case.device)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(case.batch, 3, case.size, case.size, generator=gen).to(device)
    labels = blob_labels(case.batch, case.size, case.num_classes, gen).to(device)
    runners = {
        "baseline (linear, CE)": Runner(case, False, device, amp),
        "CBP + OCCL": Runner(case, True, device, amp),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    peak: dict[str, float] = {}
    for k, r in runners.items():  # warm-up, and peak memory of a training step
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            r.step(images, labels)
        if device.type == "cuda":
            peak[k] = torch.cuda.max_memory_allocated(device) / 2**30
    for _ in range(reps):
        for k, r in runners.items():
            times[k].append(r.step(images, labels))
    print(
        f"\n## {case.name}  [{device.type}{', amp ' + amp if device.type == 'cuda' and amp != 'none' else ''}]"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for k in runners:
        q = sorted(times[k])
        line = f"  {k:22s} step {1000 * med[k]:8.1f} ms  (IQR {1000 * q[len(q) // 4]:.1f}-{1000 * q[3 * len(q) // 4]:.1f})"
        line += f"  params {runners[k].params() / 1e6:.3f}M"
        if device.type == "cuda":
            line += f"  peak train mem {peak[k]:.2f} GiB  inference {runners[k].inference_fps(case.size, reps):.1f} fps"
        print(line)
    base, ours = med["baseline (linear, CE)"], med["CBP + OCCL"]
    diff_params = runners["baseline (linear, CE)"].params() - runners["CBP + OCCL"].params()
    print(
        f"  ratio CBP+OCCL / baseline = {ours / base:.3f}  ({100 * (ours / base - 1):+.1f} % step time; "
        f"target <= +5 %); parameter difference {diff_params} (the baseline's {case.num_classes} biases; "
        "params count CBP's frozen prototypes, a buffer)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", nargs="*", default=None, help=f"subset of {list(CASES)} (default: all that fit the host)"
    )
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="autocast on CUDA")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--dry-run", action="store_true", help="print the cases that would run, run nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.cases or []) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}: expected some of {list(CASES)}")
    if args.dry_run:
        for name in args.cases or list(CASES):
            c = CASES[name]
            print(
                f"would run {name}: {c.name} on {c.device}, {args.warmup} warm-up + {args.reps} timed steps "
                f"per variant, amp {args.amp}"
                + (
                    ""
                    if c.device == "cpu" or torch.cuda.is_available()
                    else " (skipped here: no CUDA device)"
                )
            )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.cases or [k for k, c in CASES.items() if c.device == "cpu" or torch.cuda.is_available()]
    print(f"# train_step benchmark\n{hardware()}")
    for name in names:
        case = CASES[name]
        if case.device == "cuda" and not torch.cuda.is_available():
            print(f"\n## {case.name}: skipped (no CUDA device)")
            continue
        run_case(case, args.reps, args.warmup, args.amp)


if __name__ == "__main__":
    main()
