"""``rlsub configs``: the configs shipped with rlsub, usable by name as ``--config NAME`` from any folder."""

from __future__ import annotations

HELP = "list the shipped configs (use one with --config NAME from any folder)"


def add_arguments(p) -> None:
    p.add_argument("kind", nargs="?", choices=("es", "dqn", "supervised", "sweeps"),
                   help="only the configs of this folder")
    p.add_argument("--path", action="store_true", help="print each config's file path too")


def run(args) -> int:
    from rlsub.errors import UserError
    from rlsub.named_configs import configs_dir, describe, shipped

    rows = [(name, path) for name, path in shipped() if not args.kind or name.startswith(args.kind + "/")]
    if not rows:
        raise UserError("no shipped configs found (is rlsub installed with its configs?)")
    width = max(len(name) for name, _ in rows)
    for name, path in rows:
        where = f"  {path}" if args.path else ""
        print(f"{name:<{width}}  {describe(path)}{where}")
    print(f"\n{len(rows)} configs in {configs_dir()}; e.g. rlsub sweep --config cartpole_es, "
          f"rlsub dqn --config dqn/cartpole")
    return 0
