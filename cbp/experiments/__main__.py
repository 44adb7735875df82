"""Command line of the study: ``python -m cbp.experiments {run,status,table,plan,record,snapshot} ...``
(and the plan's internal steps ``embed`` and ``encoder``).

Errors are one line with an exit code (2 usage or config, e.g. an unknown study or profile; 4 data or
file; 1 a bug, with its traceback; see :mod:`cbp.engine.errors`). ``run`` returns 1 when a run failed.
"""

from __future__ import annotations

import argparse
import sys

from cbp.engine.config import ConfigError
from cbp.engine.errors import OneLineParser, run_cli
from cbp.experiments import verdicts
from cbp.experiments.current import CURRENT
from cbp.experiments.record import embed_main, encoder_main, record
from cbp.experiments.runner import results_dir, run_study, status
from cbp.experiments.study import PROFILES, plan
from cbp.experiments.trained_runs import similarity_snapshot

#: The subcommands and their help.
COMMANDS = {
    "run": "run every unfinished run of a study (resumable)",
    "status": "which runs are done / started / pending",
    "table": "the verdict table of the paper's claims",
    "plan": "print the commands of the study",
    "record": "(internal) write the result JSON of a finished run",
    "snapshot": "save similarity maps of one validation image for some runs (small .npz for the book)",
}


def build_parser() -> OneLineParser:
    """The parser of the subcommands of :data:`COMMANDS`."""
    parser = OneLineParser(prog="python -m cbp.experiments", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, text in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("study", nargs="?", default="ablations")
        if name == "record":
            p.add_argument("run")
            p.add_argument("--seconds", type=float, default=0.0)
        p.add_argument("--profile", default="default", choices=list(PROFILES))
        p.add_argument("--results", default="results", help="results folder (default results/)")
        if name == "snapshot":
            p.add_argument("--runs", nargs="+", default=["pretrained-linear-s0", "pretrained-cbp_occl-s0"])
            p.add_argument(
                "--index", type=int, default=None, help="validation image (default: most confusable classes)"
            )
        if name == "run":
            p.add_argument("--jobs", type=int, default=2, help="parallel runs, one thread each")
            p.add_argument(
                "--only", nargs="*", default=None, help="only runs whose name contains one of these"
            )
            p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser


def _run(args: argparse.Namespace) -> int:
    # a history profile, an unlocked environment or a dirty tree is a ConfigError (exit 2), said
    # before any run; anything else is a bug and keeps its traceback
    failed = run_study(
        args.study, args.profile, jobs=args.jobs, only=args.only, root=args.results, dry_run=args.dry_run
    )
    return 1 if failed else 0


def _status(args: argparse.Namespace) -> int:
    print(status(args.study, args.profile, args.results))
    return 0


def _plan(args: argparse.Namespace) -> int:
    for r in plan(args.study, args.profile):
        print(f"{r.name:34s} OMP_NUM_THREADS=1 {' '.join(r.command)}")
    return 0


def _record(args: argparse.Namespace) -> int:
    print(record(args.study, args.run, args.profile, args.seconds, args.results))
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    import numpy as np

    dirs = {r.name: r.run_dir for r in plan(args.study, args.profile)}
    arrays: dict[str, np.ndarray] = {}
    index = args.index
    for name in args.runs:
        snap = similarity_snapshot(dirs[name], index)
        index = int(snap["index"])  # the same image for every run
        arrays.update({f"{name}/{k}": v for k, v in snap.items()})
    out = results_dir(args.study, args.profile, args.results) / "similarity_snapshot.npz"
    np.savez_compressed(out, **arrays)
    print(f"{out}: image {index}, runs {args.runs}")
    return 0


def _table(args: argparse.Namespace) -> int:
    """The verdicts of a profile's records as plain text (:mod:`cbp.experiments.verdicts`): the current
    study's claims for its profiles; for a superseded study's, the claims its records can test, per regime
    (the re-reading of the book's history appendix)."""
    df = verdicts.records(results_dir(args.study, args.profile, args.results))
    if args.profile in CURRENT.profiles and len(df):
        out = verdicts.holm_intervals(verdicts.compare(df, verdicts.planned_claims()))
        out["regime"] = ", ".join(sorted(set(df.regime)))
    else:
        out = verdicts.judge_recorded(df)
    if out.empty:
        print(
            f"{args.profile}: no claim's two arms are recorded in this profile ({len(df)} training records)"
        )
        return 0
    shown = out.assign(verdict=[v.value for v in out.verdict], p_holm=out.p_holm.map(lambda p: f"{p:.3f}"))
    cols = ["regime", "family", "text", "n", "mean", "lo", "hi", "lo_holm", "hi_holm", "p_holm", "verdict"]
    print(shown[cols].to_string(index=False, float_format=lambda x: f"{x:+.2f}"))
    return 0


HANDLERS = dict(run=_run, status=_status, plan=_plan, record=_record, snapshot=_snapshot, table=_table)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the plan's internal steps: the masked embeddings (takes --section.key=value overrides) and the
    # encoder weights of the pretraining checkpoint
    if argv and argv[0] in (steps := {"embed": embed_main, "encoder": encoder_main}):
        steps[argv[0]](argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    try:
        plan(args.study, args.profile)  # an unknown study or profile: one line, exit code 2
    except KeyError as e:
        raise ConfigError(f"{e.args[0]}; see python -m cbp.experiments {args.cmd} --help") from None
    return HANDLERS[args.cmd](args)


def cli(argv: list[str] | None = None) -> None:
    """``python -m cbp.experiments``: :func:`main` with one-line errors and exit codes."""

    def body(args: list[str]) -> None:
        code = main(args)
        if code:
            raise SystemExit(code)

    run_cli("cbp.experiments", body, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    cli()
