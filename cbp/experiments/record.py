"""The recording step of a run (``python -m cbp.experiments record``) and the masked-embeddings step (``embed``).

``record`` turns a finished run directory into ``results/<study>/<run>.json``: the exact
``command``, the engine's ``metrics`` (its ``config`` moved to the top level), ``commit``,
``hardware``, ``seconds`` and the analysis of :func:`cbp.analysis.run_analysis` (plus post-hoc
norm equalisation for learnable linear classifiers, and the validation ``curve`` of a run with
``train.eval_every``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from cbp import analysis
from cbp.engine import checkpoint
from cbp.experiments import trained_runs
from cbp.experiments.runner import (
    RESULTS_ROOT,
    TRACKED_PATHS,
    dirty_paths,
    git_commit,
    hardware,
    protocol_commit,
    result_path,
    with_dependencies,
)
from cbp.experiments.study import PROFILES, Run, plan
from cbp.io import read_json, read_jsonl, write_json


def _classifier(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (N, C), bias (N,) or None) of the classifier in a Segmentor state dict."""
    if "classifier.prototypes" in state:
        return state["classifier.prototypes"].float(), None
    if "classifier.conv.weight" in state:
        w = state["classifier.conv.weight"].float()
        return w.reshape(w.shape[0], -1), state.get("classifier.conv.bias")
    keys = [k for k in state if k.startswith("classifier.")]
    raise KeyError(f"no classifier weights in the checkpoint (classifier keys: {keys})")


def set_facts(meta: dict[str, Any], *keys: str) -> dict[str, Any]:
    """What a record says of the synthetic set it read or made: its kind, ``keys`` of its ``cbp_meta.json``,
    the generator's version and the set's fingerprint."""
    generator = {"generator_version": meta.get("version"), "fingerprint": meta.get("fingerprint")}
    return {"kind": "SYNTHETIC", **{k: meta.get(k) for k in keys}, **generator}


def record_train(run: Run, seconds: float) -> dict[str, Any]:
    """Result record of a training run (train / pretrain) from its run directory."""
    run_dir = Path(run.run_dir)
    metrics = read_json(run_dir / "metrics.json")
    config = metrics.pop("config", None) or read_json(run_dir / "config.json")
    state = checkpoint.load(run_dir / checkpoint.CKPT_NAME)["model"]
    weight, bias = _classifier(state)
    meta = trained_runs.load_meta(config["data"]["root"])
    counts = metrics.get("pixel_counts") or meta["pixel_counts"]
    rec: dict[str, Any] = {
        "metrics": metrics,
        "config": config,
        "analysis": analysis.run_analysis(
            metrics,
            weight=weight,
            bias=bias,
            pixel_counts=counts,
            groups=trained_runs.meta_groups(meta),
            keep_cosine=run.seed == 0,
        ),
        "data": {"root": config["data"]["root"], **set_facts(meta, "num_classes", "params", "groups")},
    }
    if config["model"]["classifier"] == "linear":
        rec["posthoc_equalisation"] = trained_runs.posthoc_equalisation(run_dir)
    # Amendment 5's end points: the validation curve of train.eval_every (eval.jsonl) and the final
    # evaluation, from which best, final and plateau are read.
    evals = read_jsonl(run_dir / "eval.jsonl")
    if evals:
        final = {"iter": metrics["iters"], **{k: metrics[k] for k in ("mIoU", "mAcc", "aAcc")}}
        rec["curve"] = [e for e in evals if e["iter"] < final["iter"]] + [final]
    return rec


def record_embed(run: Run) -> dict[str, Any]:
    """Result record of the masked-embeddings step: shape and the similarity structure of the embeddings."""
    emb = torch.load(run.artefact, map_location="cpu", weights_only=True)
    root = next(c.split("=", 1)[1] for c in run.command if c.startswith("--data.root="))
    meta = trained_runs.load_meta(root)
    return {
        "embeddings": {
            "file": run.artefact,
            "shape": list(emb.shape),
            "group_cosine": analysis.group_cosines(emb, trained_runs.meta_groups(meta)),
            "class_separability": analysis.class_separability(emb),
        },
        "data": {"root": root, **set_facts(meta, "num_classes")},
    }


def record(study: str, name: str, profile: str, seconds: float, root: str = RESULTS_ROOT) -> Path:
    """Write ``results/<study>/<name>.json`` for a finished run.

    Raises:
        RuntimeError: files under cbp/ or experiments/ differ from the commit (no record from a dirty
            tree: its command would not reproduce it).
    """
    if dirty := dirty_paths():
        raise RuntimeError(
            f"refusing to record {name}: {len(dirty)} files under {'/, '.join(TRACKED_PATHS)}/ differ from "
            f"the commit (e.g. {dirty[:3]}); commit them and re-run, or run the study from a clean clone"
        )
    runs = {r.name: r for r in plan(study, profile)}
    if name not in runs:
        raise KeyError(f"no run {name!r} in study {study!r} [{profile}]")
    run = runs[name]
    ancestors = with_dependencies(list(runs.values()), set(run.deps))  # the recipe to rebuild its inputs
    rec: dict[str, Any] = {
        "study": study,
        "profile": profile,
        "profile_description": PROFILES[profile].description,
        "run": run.name,
        "kind": run.kind,
        "table": run.table,
        "arm": run.arm,
        "regime": run.regime,
        "seed": run.seed,
        "command": list(run.command),
        "env": {"OMP_NUM_THREADS": "1", "cwd": "repository root"},
        "depends_on": {d: list(r.command) for d, r in runs.items() if d in ancestors},
        "commit": (commit := git_commit()),
        "protocol_commit": protocol_commit(commit),
        "hardware": hardware(),
        "seconds": seconds,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if run.kind in ("train", "pretrain"):
        rec.update(record_train(run, seconds))
    elif run.kind == "embed":
        rec.update(record_embed(run))
    elif run.kind == "encoder":
        state = torch.load(run.artefact, map_location="cpu", weights_only=True)
        size = sum(v.numel() for v in state.values())
        rec["encoder"] = {"file": run.artefact, "tensors": len(state), "parameters": size}
    else:  # data: what the generated set is (the set itself is rebuilt by `command`)
        meta = trained_runs.load_meta(Path(run.artefact).parent)
        keep = ("num_classes", "class_names", "pixel_counts", "image_counts", "val_pixel_counts", "groups")
        rec["data"] = {**set_facts(meta, *keep, "params", "jpeg"), "environment": meta.get("environment")}
    path = result_path(run, study, profile, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(_clean(rec), path)
    return path


def _clean(x: Any) -> Any:
    """JSON-safe: tensors / arrays to lists, NaN / inf to None, floats rounded to 6 digits."""
    if hasattr(x, "tolist") and not isinstance(x, (list, dict, str)):
        x = x.tolist()
    if isinstance(x, float):
        return round(x, 6) if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def embed_main(argv: list[str]) -> Path:
    """``python -m cbp.experiments embed --ckpt PRETRAIN_CKPT --out FILE [--preset P] [--section.key=value ...]``.

    Class-mean features of the pretrained encoder over the target training set (no augmentation),
    saved as a (N, D) float32 tensor: the masked prototypes of Table 5 (``model.embeddings=FILE``).
    """
    from cbp.engine.build import build_model, build_split, ensure_data, test_transform
    from cbp.engine.config import apply_overrides, get_preset

    parser = argparse.ArgumentParser(prog="python -m cbp.experiments embed")
    parser.add_argument("--ckpt", required=True, help="pretraining checkpoint (encoder weights)")
    parser.add_argument("--out", required=True, type=Path, help="output .pt file, (N, D) tensor")
    parser.add_argument("--preset", default="synthetic")
    args, overrides = parser.parse_known_args(argv)
    cfg = apply_overrides(get_preset(args.preset), overrides)
    cfg.train.progress = False
    ensure_data(cfg)
    dataset = build_split(cfg, "train", test_transform(cfg))
    cfg.model.classifier, cfg.model.pretrained = "linear", str(args.ckpt)
    model = build_model(cfg, dataset.num_classes)
    emb = analysis.class_mean_features(model.encoder, dataset, dataset.num_classes)  # (N, D)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(emb, args.out)
    print(f"[cbp.experiments embed] {tuple(emb.shape)} class-mean features -> {args.out}")
    return args.out


def encoder_main(argv: list[str]) -> Path:
    """``python -m cbp.experiments encoder --ckpt RUN/ckpt_last.pt --out FILE``: the encoder weights of a
    training checkpoint as a plain state dict (what ``model.pretrained=FILE`` loads)."""
    parser = argparse.ArgumentParser(prog="python -m cbp.experiments encoder")
    parser.add_argument("--ckpt", required=True, type=Path, help="a cbp.train checkpoint (ckpt_last.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output .pt file (encoder state dict)")
    args = parser.parse_args(argv)
    model = checkpoint.load(args.ckpt)["model"]
    state = {k.removeprefix("encoder."): v for k, v in model.items() if k.startswith("encoder.")}
    if not state:
        raise ValueError(f"{args.ckpt} has no 'encoder.*' weights: is it a cbp.train checkpoint?")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"[cbp.experiments encoder] {len(state)} tensors -> {args.out}")
    return args.out
