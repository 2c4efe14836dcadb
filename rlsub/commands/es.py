"""``rlsub es``: Evolution Strategies over theta_d; run under ``mpirun -n N`` for N ranks."""

from __future__ import annotations

import sys
import traceback

from rlsub.commands import PROJECTION_CHOICES, train_or_resume
from rlsub.errors import UserError

HELP = "train a policy with Evolution Strategies in a random subspace (MPI-parallel)"


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config: a file, or a shipped name such as cartpole (rlsub configs es); keys as in rlsub.es.trainer.DEFAULTS")
    p.add_argument("--dim", help="subspace dimension d, or 'full' for the full-space baseline")
    p.add_argument("--projection", choices=PROJECTION_CHOICES)
    p.add_argument("--seed", type=int)
    p.add_argument("--generations", type=int)
    p.add_argument("--pairs", type=int, help="mirrored pairs per generation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, dotted for nested ones (YAML value), e.g. cma.popsize=16")
    p.add_argument("--out", help="run directory (default runs/<task>__es__d<dim>__s<seed>__<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no per-generation progress lines")


def run(args) -> int:
    from rlsub.config import parse_sets
    from rlsub.es import trainer

    comm = trainer._comm()
    try:
        overrides = parse_sets(args.set)
        flags = {"dim": args.dim, "projection": args.projection, "seed": args.seed,
                 "generations": args.generations, "pairs": args.pairs}
        overrides.update({k: v for k, v in flags.items() if v is not None})
        summary = train_or_resume(trainer, args, overrides)
    except Exception as exc:
        if comm.Get_size() > 1:
            # one rank failing must end the whole job, never leave the others waiting in a collective
            user = isinstance(exc, (UserError, OSError))
            kind = "error" if user else "failed"
            print(f"rlsub es: rank {comm.Get_rank()}/{comm.Get_size()} {kind}: {exc}", file=sys.stderr)
            if not user:
                traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(2 if user else 1)
        raise
    if comm.Get_rank() == 0:
        print(f"{summary['task']}: d={summary['dim']} seed={summary['seed']} eval return "
              f"{summary['value']:.2f} after {summary['timesteps']} timesteps, {summary['wall_time_s']:.1f} s")
    return 0
