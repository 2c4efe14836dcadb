"""The ``rlsub`` command line. Each subcommand lives in its own module, listed in COMMANDS.

A subcommand module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input (:class:`rlsub.errors.UserError`) ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rlsub import __version__
from rlsub.errors import UserError

#: subcommand name -> module path
COMMANDS: dict[str, str] = {
    "info": "rlsub.commands.info",
    "dqn": "rlsub.commands.dqn",
    "es": "rlsub.commands.es",
    "sweep": "rlsub.commands.sweep",
    "compare-tasks": "rlsub.commands.compare_tasks",
    "train": "rlsub.commands.train",
    "eval": "rlsub.commands.eval",
    "export": "rlsub.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlsub",
        description="Measure the intrinsic dimension of learning problems by training in random subspaces.",
    )
    parser.add_argument("--version", action="version", version=f"rlsub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"rlsub {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rlsub {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
