"""The command line of ``python -m cbp.train``: arguments -> (config, run directory).

Public, so that whatever writes a training command (``cbp.book.launch``) reads it back with the
engine's own parser.
"""

from __future__ import annotations

import json
from pathlib import Path

from cbp.engine.config import (
    PRESETS,
    Config,
    ConfigError,
    apply_overrides,
    format_keys,
    get_preset,
    read_config_file,
    to_dict,
)
from cbp.engine.errors import OneLineParser

__all__ = ["parse_args"]


def parse_args(argv: list[str] | None) -> tuple[Config, Path]:
    """``--preset NAME | --config FILE, --out RUN_DIR [--section.key=value ...]`` -> (config, run directory).

    Raises:
        ConfigError: an unknown preset or key, a bad value (the message names the key and a fix).
        FileNotFoundError: ``--config FILE`` does not exist.
        SystemExit: ``--help``, ``--list-presets``, ``--help-keys``, ``--print-config`` (0) or a bad
            option (2, one line).
    """
    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    if args.list_presets:
        print("\n".join(f"{k:32s} {v.__doc__ or ''}" for k, v in PRESETS.items()))
        raise SystemExit(0)
    if args.config is not None:
        cfg = read_config_file(args.config)
    else:
        try:
            cfg = get_preset(args.preset or "synthetic")
        except KeyError as e:
            raise ConfigError(e.args[0]) from None
    if args.help_keys:
        print(format_keys(cfg))
        raise SystemExit(0)
    apply_overrides(cfg, overrides)
    if args.print_config:
        print(json.dumps(to_dict(cfg), indent=1))
        raise SystemExit(0)
    if args.out is None:
        parser.error("--out RUN_DIR is required (the run directory for config.json, logs and checkpoints)")
    return cfg, args.out


def _parser() -> OneLineParser:
    """The options of ``python -m cbp.train`` (any other ``--section.key=value`` is a config override)."""
    parser = OneLineParser(
        prog="python -m cbp.train",
        description="Train a segmentation model with CBP / OCCL. Any config key is an override: "
        "--section.key=value (see --help-keys). Exit codes: 0 done, 1 bug, 2 usage or config, 3 diverged, "
        "4 data or file, 5 (torchrun) a rank lost its peer process.",
    )
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--preset", default=None, help="preset name (see --list-presets); default synthetic")
    base.add_argument(
        "--config",
        type=Path,
        default=None,
        help="base config from a file instead of a preset, e.g. a run's config.json; overrides apply on top",
    )
    parser.add_argument("--out", type=Path, help="run directory (created; re-running resumes)")
    parser.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    parser.add_argument(
        "--help-keys", action="store_true", help="print every config key of the preset and exit"
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON and exit (checks the command line; reads no data)",
    )
    return parser
