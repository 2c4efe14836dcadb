"""``rlsub dqn``: train a DQN agent (stable-baselines3) whose Q-network lives in a random subspace."""

from __future__ import annotations

from pathlib import Path

from rlsub.commands import PROJECTION_CHOICES
from rlsub.config import parse_sets

HELP = "train DQN (stable-baselines3) with the Q-network in a random subspace of dimension --dim"


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="YAML config: a file, or a shipped name such as cartpole (rlsub configs dqn)")
    p.add_argument("--dim", default=None, help="subspace dimension d (1 <= d <= D), or 'full' for the baseline")
    p.add_argument("--projection", choices=PROJECTION_CHOICES)
    p.add_argument("--seed", type=int, default=None, help="seed of the run (DQN, env, theta_0 and P)")
    p.add_argument("--timesteps", type=int, default=None, help="training environment steps")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes of the final deterministic evaluation")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other config key, dotted for nested ones (YAML value), e.g. dqn.learning_starts=1000")
    p.add_argument("--out", default=None, help="run directory (default runs/<env>__dqn__d<dim>__s<seed>__<time>)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from rlsub.rundir import default_run_dir
    from rlsub.trainers import get_trainer

    trainer = get_trainer("dqn")
    overrides = parse_sets(args.set)
    flags = dict(dim=args.dim, projection=args.projection, seed=args.seed, timesteps=args.timesteps,
                 eval_episodes=args.eval_episodes)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    config = trainer.resolve(args.config, overrides)
    out = Path(args.out) if args.out else default_run_dir(config["env"], "dqn", config["dim"], config["seed"])
    summary = trainer.train(config, out, quiet=args.quiet)
    print(f"{summary['task']}: d={summary['dim']} seed={summary['seed']} eval return {summary['value']:.2f} "
          f"+- {summary['value_std']:.2f} after {summary['timesteps']} timesteps, {summary['wall_time_s']:.1f} s "
          f"-> {out}")
    return 0
