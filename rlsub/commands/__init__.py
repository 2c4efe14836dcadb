"""Subcommands of the ``rlsub`` CLI, one module each (see rlsub.cli.COMMANDS).

Command modules import torch, gymnasium and mpi4py inside ``run`` only, so that ``rlsub --help``
(which imports every command module to build its parser) stays fast.
"""

#: ``--projection`` choices, the same for every command (rlsub.projections.PROJECTIONS without
#: identity, which full-space runs choose themselves, plus auto)
PROJECTION_CHOICES = ("dense", "sparse", "fastfood", "auto")
