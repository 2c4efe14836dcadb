"""The ``rlsub`` command line. Each subcommand lives in its own module, listed in COMMANDS.

A subcommand module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input (:class:`rlsub.errors.UserError`, and OSError such as a full disk or a read-only folder)
ends in one line on stderr and exit status 2; so do argparse's own errors.
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
    "configs": "rlsub.commands.configs",
}


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in the house format: one line on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(text) -> str:
    """An error message on one line (YAML and library messages often span several)."""
    return " ".join(str(text).split())


def os_error_message(exc: OSError) -> str:
    """'<file>: <reason>' for an OSError (disk full, read-only folder, a file where a folder should be)."""
    where = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlsub",
        description="Measure the intrinsic dimension of learning problems by training in random subspaces.",
    )
    parser.add_argument("--version", action="version", version=f"rlsub {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _absolute_data_env() -> None:
    """A relative RLSUB_DATA is resolved once, against the folder rlsub started in (so that a run
    that changes folder, and the processes it starts, read the same data)."""
    import os

    value = os.environ.get("RLSUB_DATA")
    if value and not os.path.isabs(os.path.expanduser(value)):
        os.environ["RLSUB_DATA"] = os.path.abspath(os.path.expanduser(value))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    _absolute_data_env()
    try:
        if getattr(args, "config", None):  # a file path or a shipped config's name, from any folder
            from rlsub.named_configs import KIND_OF_COMMAND, find

            args.config = find(args.config, KIND_OF_COMMAND.get(args.command))
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"rlsub {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # outputs: disk full, read-only folder, ... (atomic writes keep the old files)
        print(f"rlsub {args.command}: error: {one_line(os_error_message(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rlsub {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
