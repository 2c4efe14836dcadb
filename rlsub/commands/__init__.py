"""Subcommands of the ``rlsub`` CLI, one module each (see rlsub.cli.COMMANDS)."""
