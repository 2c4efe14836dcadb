"""Hyperparameter search for a DQN config with Optuna (TPE sampler, median pruner), as
rl-baselines3-zoo tunes SB3 agents (its ``sample_dqn_params`` search space, narrowed to the budget).

Each trial trains the config's network (by default the full-space baseline, ``dim: full``) for the
config's ``timesteps`` with one tuning seed (not one of the seeds the sweeps report), evaluates it
every ``--eval-every`` steps (``--eval-episodes`` deterministic episodes, reported to the pruner) and
scores the trial the way a run is scored (``select: best``): the model with the best periodic
evaluation, re-evaluated on ``--final-episodes`` fresh episodes.

Run (the trials land in OUT/trials.jsonl after every trial; the study itself in
OUT/study.db, so a stopped search continues where it was when started again):

    python scripts/tune_dqn.py --config configs/dqn/cartpole.yaml --trials 30 --out results/dqn_tuning

``--fixed key=value`` keeps a setting out of the search (e.g. ``--fixed reward_scale=0.1``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rlsub.config import parse_yaml
from rlsub.rundir import command_line, git_commit, machine, write_json
from rlsub.subspace import atomic_write_text


def sample_params(trial) -> dict:
    """The zoo's DQN search space (hyperparams_opt.sample_dqn_params), trimmed to a 50k-step budget:
    target intervals and learning starts beyond a fifth of the budget are left out."""
    train_freq = trial.suggest_categorical("train_freq", [1, 4, 8, 16, 128, 256])
    subsample = trial.suggest_categorical("subsample_steps", [1, 2, 4, 8])
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128, 256]),
        "buffer_size": trial.suggest_categorical("buffer_size", [10_000, 50_000, 100_000]),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "exploration_fraction": trial.suggest_float("exploration_fraction", 0.0, 0.5),
        "exploration_final_eps": trial.suggest_float("exploration_final_eps", 0.0, 0.2),
        "target_update_interval": trial.suggest_categorical("target_update_interval", [1, 10, 100, 500, 1000, 5000]),
        "learning_starts": trial.suggest_categorical("learning_starts", [0, 1000, 5000]),
        "train_freq": train_freq,
        "gradient_steps": max(train_freq // subsample, 1),
    }


def objective(trial, args, fixed: dict) -> float:
    import optuna
    import torch

    from rlsub.dqn import trainer

    params = sample_params(trial)
    config = trainer.resolve(args.config, {**fixed, "seed": args.seed, "dim": args.dim, "dqn": params})
    torch.set_num_threads(1)
    env = trainer.make_env(config, config["seed"])
    eval_env = trainer.make_env(config, config["seed"] + 10_000, evaluation=True)
    model = trainer.build_model(config, env)
    q = model.policy.q_net
    best, best_params, curve = -np.inf, None, []
    t0 = time.time()
    try:
        for k, step in enumerate(range(args.eval_every, config["timesteps"] + 1, args.eval_every)):
            model.learn(total_timesteps=args.eval_every, reset_num_timesteps=False)
            value, _ = trainer.evaluate(model, eval_env, args.eval_episodes)
            curve.append([step, value])
            if value > best:
                best, best_params = value, [p.detach().clone() for p in q.parameters()]
            trial.report(value, k)  # the pruner counts evaluations
            if trial.should_prune():
                trial.set_user_attr("curve", curve)
                raise optuna.TrialPruned()
        with torch.no_grad():
            for p, v in zip(q.parameters(), best_params):
                p.copy_(v)
        score, _ = trainer.evaluate(model, eval_env, args.final_episodes)
    finally:
        env.close()
        eval_env.close()
    trial.set_user_attr("curve", curve)
    trial.set_user_attr("best_periodic", best)
    trial.set_user_attr("wall_time_s", round(time.time() - t0, 1))
    return score


def export(study, out: Path, args, fixed: dict) -> None:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                     **t.user_attrs})
    atomic_write_text(out / "trials.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    # the best score; among trials that tie on it (several reach CartPole's maximum of 500), the one
    # with the fewest gradient steps per environment step, i.e. the cheapest to run at every d
    top = max((t.value for t in done), default=None)
    tied = [t for t in done if t.value == top]
    best = min(tied, key=lambda t: (_dqn_params(t.params)["gradient_steps"] / t.params["train_freq"], t.number)) \
        if tied else None
    write_json(out / "summary.json", {
        "config": args.config, "fixed": fixed, "dim": args.dim, "tuning_seed": args.seed,
        "timesteps_per_trial": None if not done else trial_budget(args), "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes, "final_episodes": args.final_episodes,
        "sampler": "TPESampler(seed = number of trials when the search (re)started)", "pruner": "MedianPruner(n_startup_trials=5, n_warmup_steps=3)",
        "n_trials": len(study.trials), "n_complete": len(done),
        "best": None if best is None else {"number": best.number, "value": best.value,
                                           "dqn": _dqn_params(best.params)},
        "tied_at_best": [t.number for t in tied],
        "best_rule": "highest score; ties broken by the fewest gradient steps per environment step",
        "command": command_line(), "git_commit": git_commit(), "machine": machine(),
    })


def trial_budget(args) -> int:
    from rlsub.dqn import trainer

    return trainer.resolve(args.config, {})["timesteps"]


def _dqn_params(params: dict) -> dict:
    out = {k: v for k, v in params.items() if k != "subsample_steps"}
    out["gradient_steps"] = max(params["train_freq"] // params["subsample_steps"], 1)
    return out


def main() -> None:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--dim", default="full")
    p.add_argument("--seed", type=int, default=1000, help="tuning seed (keep it apart from the sweep's seeds)")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--final-episodes", type=int, default=20)
    p.add_argument("--fixed", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    fixed = {}
    for item in args.fixed:
        key, _, value = item.partition("=")
        fixed[key] = parse_yaml(value)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{out / 'study.db'}"
    # A continued search seeds its sampler with the number of trials so far: with the first seed
    # again it would propose the first trials again.
    n_before = len(optuna.load_study(study_name="dqn", storage=storage).trials) \
        if (out / "study.db").exists() else 0
    study = optuna.create_study(
        study_name="dqn", storage=storage, load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=n_before),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3))
    remaining = args.trials - len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")])
    if args.trials == 0:  # only rewrite the outputs from the stored study
        remaining = 0
    for _ in range(max(remaining, 0)):
        study.optimize(lambda t: objective(t, args, fixed), n_trials=1)
        export(study, out, args, fixed)
    export(study, out, args, fixed)
    print(json.dumps(json.loads((out / "summary.json").read_text())["best"], indent=1))


if __name__ == "__main__":
    main()
