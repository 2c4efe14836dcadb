"""``rlsub export``: a trained run as one small file (config + seeds + theta_d), for ``rlsub eval``."""

from __future__ import annotations

HELP = "write a run's compressed model (config, seeds, theta_d, observation statistics) to one .npz file"


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--out", required=True, help="the export file (.npz)")


def run(args) -> int:
    from rlsub.export import export_run

    info = export_run(args.run, args.out)
    print(f"{info['path']}: {info['bytes']:,} bytes ({info['numbers']:,} trained numbers), against "
          f"{info['full_bytes']:,} bytes for the full model's D = {info['D']:,} float32 parameters "
          f"({info['full_bytes'] / info['bytes']:.1f}x)")
    return 0
