"""The engine's multi-process GPU path on a machine with one GPU: nccl, SyncBatchNorm, DDP and AMP.

    torchrun --standalone --nproc_per_node=1 ci/gpu_ddp_check.py [--amp bf16|fp16] [--steps 20]

``python -m cbp.train`` starts a process group only with more than one process, and NCCL cannot put
two ranks on one GPU; so on a one-GPU machine this script does what the engine does with K GPUs, in
one rank: the nccl process group, the model (the synthetic preset's cnn_tiny, which has BatchNorm)
converted to SyncBatchNorm and wrapped in DDP on the device, ``train.amp`` autocast (and the fp16
GradScaler), the engine's loss (Eq. 7 with OCCL) and an all-reduce. With one rank SyncBatchNorm has
nobody to synchronise with (the statistics are the local ones): the cross-rank arithmetic is tested
on CPU by the 2-process gloo tests. Run by ``ci/gpu_check.sh``; prints one line and exits 0 when the
loss stays finite and falls.
"""

from __future__ import annotations

import argparse
import math
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="ci/gpu_ddp_check.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--amp", choices=["bf16", "fp16"], default="bf16", help="autocast dtype")
    parser.add_argument("--steps", type=int, default=20, help="training steps on one fixed batch")
    args = parser.parse_args(argv)
    if "LOCAL_RANK" not in os.environ:
        parser.error("run it under torchrun: torchrun --standalone --nproc_per_node=1 ci/gpu_ddp_check.py")

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    from cbp.engine.build import build_model, build_occl
    from cbp.engine.config import get_preset
    from cbp.engine.loss import compute_loss
    from cbp.engine.optim import build_optimizer

    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    device = torch.device("cuda", local)
    torch.manual_seed(0)
    cfg = get_preset("synthetic")
    model = nn.SyncBatchNorm.convert_sync_batchnorm(build_model(cfg, 50)).to(device)
    sync_bn = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    ddp = DDP(model, device_ids=[local])
    optimizer = build_optimizer(model, cfg.optim)
    occl = build_occl(cfg)
    scaler = torch.amp.GradScaler("cuda") if args.amp == "fp16" else None
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    images = torch.randn(8, 3, 64, 64, device=device)  # (B, 3, H, W)
    labels = torch.randint(0, 50, (8, 8, 8), device=device).repeat_interleave(8, 1).repeat_interleave(8, 2)
    losses = []
    for _ in range(args.steps):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype):
            out = ddp(images, upsample=cfg.loss.ce_resolution == "input")
        loss, _ = compute_loss(model, out, labels, cfg, occl)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        model.classifier.after_step()
        losses.append(float(loss.detach()))
    ones = torch.ones(1, device=device)
    dist.all_reduce(ones)
    world = dist.get_world_size()
    dist.destroy_process_group()
    ok = all(math.isfinite(v) for v in losses) and losses[-1] < losses[0] and int(ones.item()) == world
    ok = ok and sync_bn > 0
    print(
        f"gpu_ddp_check: nccl world {world}, {sync_bn} SyncBatchNorm layers, DDP on {torch.cuda.get_device_name(device)}, "
        f"amp {args.amp}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {args.steps} steps: {'ok' if ok else 'FAILED'}"
    )
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
