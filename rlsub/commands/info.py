"""``rlsub info``: D of a registry model and what a projection of it costs."""

from __future__ import annotations

import json

from rlsub.commands import PROJECTION_CHOICES
from rlsub.config import ConfigError

HELP = "print D for a model and the size of its projection at a given d"


def add_arguments(p) -> None:
    p.add_argument("--model", default="mlp", help="registry model name (mlp, lenet, pong_conv)")
    p.add_argument("--kwargs", default="{}", help='model keyword arguments as JSON, e.g. \'{"in_dim": 4, "out_dim": 2}\'')
    p.add_argument("--dim", type=int, default=None, help="subspace dimension d (optional)")
    p.add_argument("--projection", default="auto", choices=PROJECTION_CHOICES)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    from rlsub.models import MODELS, build_model, num_params
    from rlsub.projections import make_projection

    if args.model not in MODELS:
        raise ConfigError(f"unknown model {args.model!r}; choose one of {sorted(MODELS)}")
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--kwargs is not valid JSON: {exc}") from None
    try:
        D = num_params(build_model(args.model, seed=args.seed, **kwargs))
    except TypeError as exc:
        raise ConfigError(f"bad arguments for model {args.model!r}: {exc}") from None
    print(f"model {args.model} {kwargs}: D = {D:,}")
    if args.dim is not None:
        proj = make_projection(args.projection, D, args.dim, args.seed)
        print(f"projection {proj.kind}: d = {proj.d:,}, buffers {proj.nbytes() / 2**20:.1f} MiB, "
              f"compression D/d = {D / proj.d:.1f}x")
    return 0
