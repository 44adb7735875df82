"""`torchrun --nnodes=2` with a c10d rendezvous: two launchers on localhost (one process each, gloo) train
exactly as one launcher with two processes. The engine needs no change for several nodes: it reads
RANK / WORLD_SIZE / LOCAL_RANK from the launcher and writes from global rank 0 only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_run import make_tiny_synthetic, tiny_args

from cbp.engine import checkpoint
from cbp.io import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = (sys.executable, "-m", "torch.distributed.run")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.dist
def test_two_nodes_on_localhost_equal_one_node_with_two_processes(tmp_path: Path) -> None:
    data = make_tiny_synthetic(tmp_path / "syn")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    extra = ("--train.iters=4", "--train.batch_size=8", "--train.device=cpu")
    one = subprocess.run(
        [*TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "cbp.train", *tiny_args(data, tmp_path / "one", *extra)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [
                *TORCHRUN,
                "--nnodes=2",
                f"--node-rank={rank}",
                "--nproc_per_node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=cbp-two-nodes",
                "-m",
                "cbp.train",
                *tiny_args(data, tmp_path / "two", *extra),
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(err[-3000:] for _, err in outs)
    a = checkpoint.load(tmp_path / "one" / "ckpt_last.pt")
    b = checkpoint.load(tmp_path / "two" / "ckpt_last.pt")
    assert a["world_size"] == b["world_size"] == 2
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0, msg=f"{key} differs")
    # logged once: one line an iteration, as with one launcher
    iters = [r["iter"] for r in read_jsonl(tmp_path / "two" / "log.jsonl")]
    assert iters == [r["iter"] for r in read_jsonl(tmp_path / "one" / "log.jsonl")] and len(
        set(iters)
    ) == len(iters)
