"""Execute a study plan: N parallel subprocesses, resumable, with a progress display; record each run.

A run is *finished* when ``results/<study>/<run>.json`` exists; ``run`` skips finished runs, so
an interrupted study continues where it stopped (and a half-trained run resumes from its
``ckpt_last.pt``, see :mod:`cbp.engine.train`). A finished run whose artefact (the pretraining checkpoint,
the masked embeddings; not committed) is missing is rebuilt only when an unfinished run needs it.

Every job runs ``OMP_NUM_THREADS=1`` subprocesses: the run's own ``command`` (``python -m cbp.train``
or the embeddings step), then ``python -m cbp.experiments record`` which writes the result JSON:
``command``, ``metrics`` (mIoU, mAcc, per-class IoU / Acc / F1, CS, norms), ``config``, ``commit``,
``hardware``, ``seconds`` and the analysis of :mod:`cbp.analysis`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from cbp.engine.config import ConfigError
from cbp.experiments.study import (
    FINGERPRINTS,
    GENERATOR,
    PROFILES,
    PROTOCOL_COMMIT,
    Run,
    plan,
    study_dir_name,
)
from cbp.io import read_json, remove_stale_temporaries

RESULTS_ROOT = "results"


def results_dir(study: str, profile: str, root: str = RESULTS_ROOT) -> Path:
    """``results/<study>`` (default profile) or ``results/<study>-<profile>``."""
    return Path(root) / study_dir_name(study, profile)


def result_path(run: Run, study: str, profile: str, root: str = RESULTS_ROOT) -> Path:
    return results_dir(study, profile, root) / f"{run.name}.json"


def finished(run: Run, study: str, profile: str, root: str = RESULTS_ROOT) -> bool:
    """A run is finished when its result JSON exists."""
    return result_path(run, study, profile, root).is_file()


def to_do(runs: list[Run], study: str, profile: str, root: str = RESULTS_ROOT) -> list[Run]:
    """The runs to execute: unfinished ones, plus finished ones whose missing artefact an unfinished run needs.

    Returns:
        Runs in plan order.
    """
    unfinished = {r.name for r in runs if not finished(r, study, profile, root)}
    needed = with_dependencies(
        runs, unfinished, lambda d: bool(d.artefact) and not Path(d.artefact).is_file()
    )
    return [r for r in runs if r.name in needed]


def with_dependencies(
    runs: list[Run], names: set[str], include: Callable[[Run], bool] = lambda d: True
) -> set[str]:
    """``names`` plus, transitively, the dependencies of those runs for which ``include`` holds."""
    by_name = {r.name: r for r in runs}
    out = set(names)
    frontier = list(out)
    while frontier:
        for dep in by_name[frontier.pop()].deps:
            if dep not in out and include(by_name[dep]):
                out.add(dep)
                frontier.append(dep)
    return out


# --------------------------------------------------------------------------------------------
# Facts recorded with each run


#: The paths whose uncommitted changes make a record irreproducible (the library and the protocol).
TRACKED_PATHS = ("cbp", "experiments")


def _git(*args: str, cwd: str | Path) -> str:
    """The output of ``git ARGS`` run in ``cwd`` (raises OSError / CalledProcessError)."""
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def dirty_paths(cwd: str | Path = ".") -> list[str]:
    """Changed, staged or untracked files under :data:`TRACKED_PATHS` (``git status --porcelain``)."""
    out = _git("status", "--porcelain", "--untracked-files=all", "--", *TRACKED_PATHS, cwd=cwd)
    return [line[3:] for line in out.splitlines() if line.strip()]


PROTOCOL_FILE = "experiments/protocol.md"


def protocol_commit(commit: str, cwd: str | Path = ".") -> str:
    """The last commit that touched :data:`PROTOCOL_FILE` at ``commit`` (short hash): the protocol a run
    followed, derived from the history rather than typed (amendment 6). "unknown" outside a git checkout.
    """
    try:
        out = _git("log", "-1", "--format=%h", commit.removesuffix("-dirty"), "--", PROTOCOL_FILE, cwd=cwd)
        return out.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def git_commit(cwd: str | Path = ".") -> str:
    """``git rev-parse HEAD`` (+ ``-dirty`` when files under cbp/ or experiments/ differ), or "unknown"."""
    try:
        head = _git("rev-parse", "HEAD", cwd=cwd).strip()
        return head + ("-dirty" if dirty_paths(cwd) else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


#: The packages whose versions every record holds (distribution names).
VERSIONED = ("torch", "torchvision", "numpy", "pillow", "scipy", "timm", "segmentation-models-pytorch")


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`VERSIONED` (None when one is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


LOCK_FILE = "requirements.lock"


def locked_versions(lock: str | Path = LOCK_FILE) -> dict[str, str]:
    """``name -> version`` of the ``name==version`` lines of a pip-compile lock file (names lower-case)."""
    out = {}
    for line in Path(lock).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            out[name.strip().lower().replace("_", "-")] = version.strip().split(" ", 1)[0]
    return out


def lock_mismatches(lock: str | Path = LOCK_FILE) -> list[str]:
    """Packages of :data:`VERSIONED` whose installed version is not the lock's (a local label such as
    ``+cu128`` is ignored: a CUDA build of the locked torch is the locked torch)."""
    locked = locked_versions(lock)
    return [
        f"{name} {got} (locked {locked.get(name)})"
        for name, got in package_versions().items()
        if (got or "").split("+", 1)[0] != (locked.get(name) or "").split("+", 1)[0]
    ]


def _cpu_fields() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (``{"model name": ..., "flags": ...}``), {} where
    there is none."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for key, _, value in (line.partition(":") for line in lines):
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags() -> list[str]:
    """The CPU's SIMD flags from /proc/cpuinfo (sse*, avx*, fma, amx*), empty where there is none."""
    flags = _cpu_fields().get("flags", "").split()
    return sorted(f for f in flags if f.startswith(("sse", "ssse", "avx", "fma", "amx")))


def cpu_model() -> str:
    """The CPU model as one string: vendor, model name, family / model / stepping (a virtual machine may
    show only "AMD EPYC" as its name, so the numbers tell two generations apart) and whether it has
    AVX-512 (numpy and torch pick other kernels with it). Two records made on one model give the same
    string (amendment 6: the two runs of a pair must share it)."""
    keys = ("vendor_id", "model name", "cpu family", "model", "stepping")
    fields = {k: v for k, v in _cpu_fields().items() if k in keys}
    if not fields:
        return platform.processor() or platform.machine()
    vendor, name, family, model, stepping = (fields.get(k, "?") for k in keys)
    isa = "AVX-512" if "avx512f" in cpu_flags() else "no AVX-512"
    return f"{vendor} {name} (family {family}, model {model}, stepping {stepping}; {isa})"


def hardware() -> dict[str, Any]:
    """CPU model, cores, threads a run uses, torch version and device."""
    import torch

    from cbp.data.synthetic import simd_features

    fields = _cpu_fields()
    return {
        "cpu": fields["model name"] if "model name" in fields else platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads_per_run": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "versions": package_versions(),
        "cpu_flags": cpu_flags(),
        "numpy_simd": simd_features(),
        "lock_mismatches": lock_mismatches() if Path(LOCK_FILE).is_file() else None,
    }


# --------------------------------------------------------------------------------------------
# The study's data sets


def recorded_fingerprint(data_run: Run, study: str, profile: str, root: str = RESULTS_ROOT) -> dict[str, str]:
    """The fingerprint of the set a data step's record holds (``cbp_meta.json``'s), {} where none."""
    path = result_path(data_run, study, profile, root)
    return ((read_json(path).get("data") or {}).get("fingerprint") or {}) if path.is_file() else {}


def expected_fingerprint(data_run: Run, study: str, profile: str, root: str = RESULTS_ROOT) -> str:
    """The sha256 a data step's set must have: :data:`FINGERPRINTS` of its folder, else the one its
    recorded JSON holds (the set the study's records were made on), else "" (nothing to compare)."""
    folder = str(Path(data_run.artefact).parent)
    return FINGERPRINTS.get(folder) or recorded_fingerprint(data_run, study, profile, root).get("sha256", "")


def check_data(run: Run, runs: list[Run], study: str, profile: str, root: str = RESULTS_ROOT) -> list[str]:
    """Why the data sets ``run`` reads (its data-step ancestors, or itself) are not the study's; [] if they are.

    A set is the study's when its ``cbp_meta.json`` says generator :data:`cbp.experiments.study.GENERATOR`
    and its fingerprint equals ``expected_fingerprint``. A message names the part that differs
    (labels, render, decoded JPEGs) and the versions / SIMD extensions of both machines.
    """
    from cbp.data.synthetic import FINGERPRINT_PARTS, VERSION, compare_fingerprints, read_meta

    names = with_dependencies(runs, {run.name})
    problems = []
    for step in sorted((r for r in runs if r.name in names and r.kind == "data"), key=lambda r: r.name):
        folder = Path(step.artefact).parent
        meta = read_meta(folder)
        if meta is None:
            continue  # not generated yet: its data step runs first
        if meta.get("version") != VERSION:
            problems.append(f"{folder}: generator version {meta.get('version')}, expected {VERSION}")
            continue
        expected = expected_fingerprint(step, study, profile, root)
        got = meta.get("fingerprint") or {}
        if expected and got.get("sha256") != expected:
            recorded = recorded_fingerprint(step, study, profile, root)
            parts = compare_fingerprints(recorded, got) if set(FINGERPRINT_PARTS) <= set(recorded) else []
            env = meta.get("environment") or {}
            problems.append(
                f"{folder}: fingerprint {got.get('sha256', 'none')[:12]} is not the study's {expected[:12]}"
                + (f" ({'; '.join(parts)})" if parts else "")
                + f"; this set: numpy {env.get('numpy')}, Pillow {env.get('pillow')}, "
                f"libjpeg-turbo {env.get('libjpeg_turbo')}, SIMD {', '.join(env.get('simd', [])[-3:])}. "
                "Install the locked environment (requirements.lock) and regenerate the set, or report it"
            )
    return problems


# --------------------------------------------------------------------------------------------
# Execution


def _call(argv: list[str], log: Path) -> int:
    """Run ``argv`` single-threaded (``OMP_NUM_THREADS=1``), its output appended to ``log``; its exit code."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with log.open("a") as f:
        return subprocess.run(argv, env=env, stdout=f, stderr=subprocess.STDOUT).returncode


def _progress(run: Run) -> str:
    """``"412/800"`` from the last line of a training run's log.jsonl ("" if none yet)."""
    log = Path(run.run_dir) / "log.jsonl"
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 2048))
            last = f.read().decode(errors="ignore").strip().splitlines()[-1]
        it = json.loads(last).get("iter")
    except (OSError, IndexError, ValueError):
        return ""
    total = next((c.split("=", 1)[1] for c in run.command if c.startswith("--train.iters=")), "?")
    return f"{it}/{total}" if it is not None else ""


def _score(rec: dict[str, Any], width: str = "") -> str:
    """``"mIoU 37.65"`` of a result record (the number ``width`` wide), "done" where it has no mIoU."""
    miou = rec.get("metrics", {}).get("mIoU")
    return f"mIoU {miou:{width}.2f}" if isinstance(miou, (int, float)) else "done"


def execute(
    run: Run, study: str, profile: str, *, runs: list[Run], root: str = RESULTS_ROOT
) -> tuple[bool, str]:
    """Run one job (its command, then the recording step); returns (ok, message).

    The data sets the job reads must be the study's (:func:`check_data`), before it runs and, for a
    data step, after it has generated its set.
    """
    if run.kind != "data" and (problems := check_data(run, runs, study, profile, root)):
        return False, "refused: " + " | ".join(problems)
    Path(run.run_dir).mkdir(parents=True, exist_ok=True)
    out_log = Path(run.run_dir) / "stdout.log"
    # the recorded command, with ``python`` replaced by this interpreter
    argv = [sys.executable if i == 0 and c == "python" else c for i, c in enumerate(run.command)]
    t0 = time.time()
    with out_log.open("a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run.command)}\n")
    rc = _call(argv, out_log)
    seconds = time.time() - t0
    if rc != 0:
        return False, f"exit {rc}; see {out_log}"
    if run.kind == "data" and (problems := check_data(run, runs, study, profile, root)):
        return False, "refused: " + " | ".join(problems)
    record = [sys.executable, "-m", "cbp.experiments", "record", study, run.name, "--profile", profile]
    record += ["--seconds", f"{seconds:.1f}", "--results", root]
    if (rc := _call(record, out_log)) != 0:
        return False, f"recording failed (exit {rc}); see {out_log}"
    return True, f"{_score(read_json(result_path(run, study, profile, root)))} in {seconds:.0f} s"


def refuse_to_run(profile: str, dry_run: bool) -> None:
    """Raise :class:`~cbp.engine.config.ConfigError` (a usage error) for a history profile (generator 1)
    and, unless ``dry_run``, for an environment that is not the locked one or a dirty tree."""
    if PROFILES[profile].generator != GENERATOR:
        raise ConfigError(
            f"profile {profile!r} holds the records of synthetic generator {PROFILES[profile].generator} "
            "(history: their sets depended on the CPU); it cannot be re-run with this generator. Run a "
            f"generator-{GENERATOR} profile instead: {[n for n, q in PROFILES.items() if q.generator == GENERATOR]}"
        )
    if not dry_run and Path(LOCK_FILE).is_file() and (off := lock_mismatches()):
        raise ConfigError(
            f"this environment is not the locked one ({', '.join(off)}): install it with "
            f"`make .venv/.test-installed` (pip install -c {LOCK_FILE} -e '.[test]') and run the study with .venv/bin/python"
        )
    if not dry_run and (dirty := dirty_paths()):
        raise ConfigError(
            f"refusing to run a study from a dirty tree ({len(dirty)} changed files under "
            f"{'/, '.join(TRACKED_PATHS)}/, e.g. {dirty[:3]}): commit them, or run from a clean clone"
        )


def select(runs: list[Run], only: list[str], study: str, profile: str) -> list[Run]:
    """The runs whose name contains one of ``only``, and their dependencies, in plan order.

    Raises:
        ConfigError: an entry of ``only`` matches no run (the message names close ones).
    """
    unmatched = [s for s in only if not any(s in r.name for r in runs)]
    if unmatched:
        import difflib

        names = [r.name for r in runs]
        close = sorted({c for s in unmatched for c in difflib.get_close_matches(s, names, n=3, cutoff=0.5)})
        raise ConfigError(
            f"--only {' '.join(unmatched)} matches no run of {study} [{profile}]"
            + (f"; close: {', '.join(close)}" if close else "")
            + f"; list them with: python -m cbp.experiments plan {study} --profile {profile}"
        )
    keep = with_dependencies(runs, {r.name for r in runs if any(s in r.name for s in only)})
    return [r for r in runs if r.name in keep]


def execute_all(
    runs: list[Run], todo: list[Run], study: str, profile: str, *, jobs: int, root: str, bar: Any
) -> tuple[set[str], dict[str, str]]:
    """Execute ``todo`` with ``jobs`` parallel jobs, each as soon as its dependencies have finished; a run
    whose dependency failed is skipped. Returns the finished runs' names and the failed ones' messages."""
    pending = list(todo)
    running: dict[Future, Run] = {}
    ok_names: set[str] = {r.name for r in runs if r not in todo}
    failed: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        while pending or running:
            for r in list(pending):  # skip runs whose dependency failed
                if bad := [d for d in r.deps if d in failed]:
                    pending.remove(r)
                    failed[r.name] = f"skipped: dependency {bad[0]} failed"
                    bar.write(f"  skip {r.name}: dependency {bad[0]} failed")
            while len(running) < jobs:
                ready = next((r for r in pending if all(d in ok_names for d in r.deps)), None)
                if ready is None:
                    break
                pending.remove(ready)
                bar.write(f"  start {ready.name}")
                running[pool.submit(execute, ready, study, profile, root=root, runs=runs)] = ready
            if not running:
                break
            done, _ = wait(list(running), timeout=5, return_when=FIRST_COMPLETED)
            for fut in done:
                r = running.pop(fut)
                try:
                    ok, msg = fut.result()
                except Exception as err:  # noqa: BLE001 - report and go on with the other runs
                    ok, msg = False, f"{type(err).__name__}: {err}"
                if ok:
                    ok_names.add(r.name)
                    bar.update(1)
                else:
                    failed[r.name] = msg
                bar.write(f"  {'done' if ok else 'FAIL'} {r.name}: {msg}")
            bar.set_postfix_str(" | ".join(f"{r.name} {_progress(r)}" for r in running.values()))
    return ok_names, failed


def run_study(
    study: str = "ablations",
    profile: str = "default",
    *,
    jobs: int = 2,
    only: list[str] | None = None,
    root: str = RESULTS_ROOT,
    runs_root: str = "runs",
    dry_run: bool = False,
) -> int:
    """Run every unfinished run of :func:`~cbp.experiments.study.plan` ``(study, profile, runs_root)`` with
    ``jobs`` parallel subprocesses (one thread each), recording into the results folder ``root``; ``only``
    restricts to runs whose name contains one of these substrings (and their dependencies); ``dry_run``
    prints the commands that would run and runs nothing. Returns the number of failed runs (0 = success).
    """
    from tqdm import tqdm

    refuse_to_run(profile, dry_run)
    runs = plan(study, profile, runs_root)
    if only:
        runs = select(runs, only, study, profile)
    todo = to_do(runs, study, profile, root)
    results_dir(study, profile, root).mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temporaries(results_dir(study, profile, root)):
        print(f"removed {stale}, left by a recording step that was killed")
    done_before = len(runs) - len([r for r in todo if not finished(r, study, profile, root)])
    if dry_run:
        for r in todo:
            print(f"OMP_NUM_THREADS=1 {' '.join(r.command)}")
        return 0
    bar = tqdm(
        total=len(runs), initial=done_before, desc=f"{study} [{profile}]", unit="run", dynamic_ncols=True
    )
    t_start = time.time()
    ok_names, failed = execute_all(runs, todo, study, profile, jobs=jobs, root=root, bar=bar)
    bar.close()
    minutes = (time.time() - t_start) / 60
    print(
        f"{study} [{profile}]: {len(ok_names)} of {len(runs)} runs finished, {len(failed)} failed, {minutes:.1f} min"
    )
    for name, msg in failed.items():
        print(f"  {name}: {msg}")
    return len(failed)


def status(
    study: str = "ablations", profile: str = "default", root: str = RESULTS_ROOT, runs_root: str = "runs"
) -> str:
    """One line per run: finished (mIoU, seconds), running (iteration) or pending."""
    runs, lines, n_done = plan(study, profile, runs_root), [], 0
    for r in runs:
        if (path := result_path(r, study, profile, root)).is_file():
            n_done += 1
            rec = read_json(path)
            lines.append(f"done     {r.name:32s} {_score(rec, '6')}  {rec.get('seconds', 0):6.0f} s")
        else:
            lines.append(f"{'started' if (prog := _progress(r)) else 'pending':8s} {r.name:32s} {prog}")
    return "\n".join([*lines, f"{n_done}/{len(runs)} finished ({results_dir(study, profile, root)})"])


__all__ = [
    "PROTOCOL_COMMIT",
    "check_data",
    "cpu_model",
    "protocol_commit",
    "dirty_paths",
    "package_versions",
    "execute",
    "finished",
    "git_commit",
    "hardware",
    "result_path",
    "results_dir",
    "run_study",
    "status",
    "to_do",
]
