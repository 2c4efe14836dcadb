"""Subcommands of the ``rlsub`` CLI, one module each (see rlsub.cli.COMMANDS).

Command modules import torch, gymnasium and mpi4py inside ``run`` only, so that ``rlsub --help``
(which imports every command module to build its parser) stays fast.
"""

#: ``--projection`` choices, the same for every command (rlsub.projections.PROJECTIONS without
#: identity, which full-space runs choose themselves, plus auto)
PROJECTION_CHOICES = ("dense", "sparse", "fastfood", "auto")


def train_or_resume(trainer, args, overrides: dict) -> dict:
    """What ``rlsub es`` and ``rlsub train`` do with their arguments: continue ``args.resume`` with
    ``overrides`` (its budget only), or start a run from ``args.config`` in ``args.out``; the summary."""
    from rlsub.errors import UserError
    from rlsub.trainers import resume_config

    if args.resume:
        if args.config or args.out:
            raise UserError("--resume takes its config and directory from RUN_DIR; drop --config/--out")
        config = resume_config(trainer, args.resume, overrides)
        return trainer.train(config, args.resume, resume=True, quiet=args.quiet)
    config = trainer.resolve(args.config, overrides)
    return trainer.train(config, args.out, quiet=args.quiet)
