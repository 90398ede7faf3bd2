"""The `keras-kd` command (also `python -m keras_kd`).

Each subcommand lives in its own module of this package, which provides
`add_parser(subparsers)` (registering the subcommand with
`set_defaults(run=...)`); they read data through one loader,
`keras_kd.src.cli.data`. The subcommands import their heavy modules inside
`run`, but `keras-kd --help` still imports TensorFlow: the command lives in
the `keras_kd` package, whose `__init__` imports the whole public API (and
registers its serializable classes, which loading a `.keras` file needs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: Modules that each provide `add_parser(subparsers)`.
SUBCOMMANDS = (
    "keras_kd.src.cli.demo",
    "keras_kd.src.cli.export_cli",
    "keras_kd.src.cli.report_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keras-kd",
        description="Knowledge distillation for Keras 3.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMANDS:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.run(args)
    except (ValueError, TypeError, OSError, RuntimeError) as error:
        # OSError covers FileNotFoundError and an unwritable output path.
        print(f"keras-kd {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
