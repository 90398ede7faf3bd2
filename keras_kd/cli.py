"""The `keras-kd` command (also `python -m keras_kd`).

Each subcommand lives in its own module, which provides
`add_parser(subparsers)` (registering the subcommand with
`set_defaults(run=...)`). The modules are listed in `SUBCOMMANDS` and imported
lazily, so `keras-kd --help` does not import TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: Modules that each provide `add_parser(subparsers)`.
SUBCOMMANDS = (
    "keras_kd.demo",
    "keras_kd.export_cli",
    "keras_kd.report",
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
