"""``rlsub sweep``: d values x seeds plus the full-space baseline, resumable, printing d_int90."""

from __future__ import annotations

HELP = "sweep d (grid or adaptive) for one trainer and measure d_int90"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="sweep config: a file, or a shipped name such as cartpole_es (rlsub configs lists them)")
    p.add_argument("--results", default="results", help="results root; the sweep writes RESULTS/<name>/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any key of the sweep config, dotted for nested ones (YAML value), e.g. seeds=[0] or "
                        "overrides.generations=20")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from rlsub import sweep
    from rlsub.config import parse_sets
    from rlsub.rundir import command_line

    config = sweep.resolve(args.config, args.results, parse_sets(args.set))
    summary = sweep.run_sweep(config, command=command_line(), quiet=args.quiet)
    from mpi4py import MPI

    if MPI.COMM_WORLD.Get_rank() == 0:
        print(sweep.format_result(summary))
        print(f"results: {config['results']}/summary.json")
    return 0
