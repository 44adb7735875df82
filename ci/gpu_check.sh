#!/usr/bin/env bash
# The checks that need a CUDA GPU, for a machine with one (each step has a time limit; together they
# stay under 8 minutes):
#   1. benchmarks/train_step.py's GPU case: SegFormer-B5, 512x512, batch 2, baseline vs CBP + OCCL:
#      step time, peak training memory, inference fps, parameters (the paper's Table 2 setting);
#   2. the engine under torchrun with AMP (bf16) on a short synthetic run, then cbp.evaluate;
#   3. nccl + SyncBatchNorm + DDP + AMP in one torchrun process (ci/gpu_ddp_check.py: the engine
#      starts a process group only with 2+ processes, and NCCL cannot put two ranks on one GPU);
#   4. a 50-iteration slice of the study's `--profile gpu` (its scratch-cbp_occl-s0 command, on a
#      small set generated with that profile's data parameters).
#
#   bash ci/gpu_check.sh             # run it (needs CUDA); logs and a summary in $GPU_CHECK_DIR
#   bash ci/gpu_check.sh --dry-run   # on any machine: print each command and check that it parses
#
# The dry run runs every Python command in a parse-only form (--print-config for cbp.train, --dry-run
# for the benchmark, --help for the rest), so a renamed option or key fails it; CI runs it on CPU.
# PYTHON (default .venv/bin/python, made by `make test`) is the interpreter; GPU_CHECK_DIR (default a
# new temporary folder) receives the data, runs and logs.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
case "${1:-}" in
  --dry-run) dry=1 ;;
  "") ;;
  -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "ci/gpu_check.sh: unknown option $1 (use --dry-run or nothing)" >&2; exit 2 ;;
esac

PY=${PYTHON:-.venv/bin/python}
if ! "$PY" -c "import cbp, torch" 2>/dev/null; then
  echo "ci/gpu_check.sh: $PY cannot import cbp and torch; run 'make test' (creates .venv) or set PYTHON" >&2
  exit 2
fi
if [ -n "${GPU_CHECK_DIR:-}" ]; then
  work=$GPU_CHECK_DIR
  mkdir -p "$work"
else
  work=$(mktemp -d)
  # a dry run removes its temporary folder again (a GPU_CHECK_DIR given by the user is never removed)
  if [ "$dry" = 1 ]; then trap 'rm -r "$work"' EXIT; fi
fi
start=$(date +%s)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# the study's command for one run of the gpu profile (validates the study and the profile too)
slice_cmd=$("$PY" -m cbp.experiments plan ablations --profile gpu | awk '$1 == "scratch-cbp_occl-s0"')
if [ -z "$slice_cmd" ]; then
  echo "ci/gpu_check.sh: the gpu profile has no run scratch-cbp_occl-s0 (see python -m cbp.experiments plan ablations --profile gpu)" >&2
  exit 2
fi
# "NAME  OMP_NUM_THREADS=1 python -m cbp.train ARGS" -> ARGS
slice_args=${slice_cmd#*-m cbp.train }

syn="$work/synthetic-50"
syn150="$work/synthetic-150-128"
engine_args=(--preset synthetic --out "$work/torchrun-amp" --data.root="$syn" --train.iters=200
  --train.amp=bf16 --train.device=cuda --train.num_workers=4 --train.progress=false --train.eval_every=100)
# shellcheck disable=SC2206  # the plan's arguments are plain words
slice=($slice_args --out "$work/study-gpu-slice" --data.root="$syn150" --train.iters=50 --train.eval_every=0)

step() {  # step NAME LIMIT_S RUN_COMMAND... ; in a dry run the PARSE_COMMAND set before is run instead
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== gpu_check: $name ($(( $(date +%s) - start )) s) ==="
  echo "+ $*"
  if [ "$dry" = 1 ]; then
    echo "  parse-only: ${parse[*]}"
    "${parse[@]}" > "$work/$name.dry.log" 2>&1 || { echo "gpu_check --dry-run: '$name' does not parse:" >&2; cat "$work/$name.dry.log" >&2; exit 1; }
    echo "  ok"
  else
    timeout "$limit" "$@" 2>&1 | tee "$work/$name.log"
  fi
}

if [ "$dry" = 0 ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "ci/gpu_check.sh: no CUDA device here; run it on a machine with a GPU, or use --dry-run" >&2
    exit 2
  }
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$work/gpu.txt" || true
fi

parse=("$PY" benchmarks/train_step.py --cases mit_b5 --reps 20 --dry-run)
step benchmark 150 "$PY" benchmarks/train_step.py --cases mit_b5 --reps 20

parse=("$PY" -m cbp.data.synthetic --help)
step data 40 "$PY" -m cbp.data.synthetic --out "$syn" --classes 50 --train 400 --val 50 --size 64 --quiet

parse=("$PY" -m cbp.train "${engine_args[@]}" --print-config)
step torchrun-amp 80 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m cbp.train "${engine_args[@]}"

parse=("$PY" -m cbp.evaluate --help)
step evaluate 40 "$PY" -m cbp.evaluate "$work/torchrun-amp" --train.progress=false

parse=("$PY" ci/gpu_ddp_check.py --help)
step nccl-syncbn 50 "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 ci/gpu_ddp_check.py --amp bf16

parse=("$PY" -m cbp.data.synthetic --help)
step study-data 40 "$PY" -m cbp.data.synthetic --out "$syn150" --classes 150 --size 128 --train 200 --val 50 --quiet

parse=("$PY" -m cbp.train "${slice[@]}" --print-config)
step study-gpu-slice 60 "$PY" -m cbp.train "${slice[@]}"

echo
if [ "$dry" = 1 ]; then
  echo "gpu_check --dry-run: every command parses ($(( $(date +%s) - start )) s); nothing was run"
  exit 0
fi
echo "=== gpu_check summary ($(( $(date +%s) - start )) s; logs in $work) ==="
cat "$work/gpu.txt" 2>/dev/null || true
grep -E "^## |step .* ms|ratio" "$work/benchmark.log" || true
grep -E "mIoU" "$work/torchrun-amp.log" | tail -1 || true
grep -E "mIoU" "$work/evaluate.log" | tail -1 || true
grep -E "^gpu_ddp_check" "$work/nccl-syncbn.log" || true
grep -E "mIoU" "$work/study-gpu-slice.log" | tail -1 || true
