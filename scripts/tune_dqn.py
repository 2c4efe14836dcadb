"""Hyperparameter search for a DQN config with Optuna (TPE sampler, median pruner), as
rl-baselines3-zoo tunes SB3 agents (its ``sample_dqn_params`` search space).

Each trial trains the config's network (by default the full-space baseline, ``dim: full``) once per
tuning seed (``--seeds``, kept apart from the seeds the sweeps report) with rlsub's own DQN trainer,
so a trial is scored exactly as a sweep point is: the config's budget, periodic evaluations
(``eval_every``, ``eval_every_episodes``; each reported to the pruner), model selection
(``select``) and final evaluation (``eval_episodes`` fresh episodes). The trial's score is the mean
of its seeds' values.

Run (the trials land in OUT/trials.jsonl after every trial; the study itself in OUT/study.db, so
a stopped search continues where it was when started again; several workers may share it):

    python scripts/tune_dqn.py --config configs/dqn/cartpole.yaml --trials 30 --out results/dqn_tuning

``--fixed key=value`` keeps a setting out of the search (e.g. ``--fixed reward_scale=0.1``);
``--enqueue FILE:N`` starts the search with the N best trials of an earlier search's trials.jsonl
(``FILE:1,2,5``: those trials).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rlsub.config import parse_yaml
from rlsub.rundir import command_line, git_commit, machine, write_json
from rlsub.subspace import atomic_write_text


def sample_params(trial) -> dict:
    """The zoo's DQN search space (hyperparams_opt.sample_dqn_params), plus a constant or linearly
    decaying learning rate (the zoo's "lin_" schedules)."""
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
    """The mean, over the tuning seeds, of the value a run of the config reports (rlsub.dqn.trainer.train
    itself: the same schedules, periodic evaluations, model selection and final evaluation as every
    sweep point). Each periodic evaluation is reported to the pruner, seed after seed."""
    import optuna

    from rlsub.dqn import trainer

    params = sample_params(trial)
    lr_schedule = trial.suggest_categorical("lr_schedule", ["constant", "linear"])
    values, curves, t0 = [], [], time.time()
    for j, seed in enumerate(args.seeds):
        config = trainer.resolve(args.config, {**fixed, "seed": seed, "dim": args.dim, "dqn": params,
                                               "lr_schedule": lr_schedule, "save_model": False})
        n_evals = config["timesteps"] // config["eval_every"]
        curve = []
        curves.append(curve)

        def on_eval(t, value, j=j, n_evals=n_evals, curve=curve):
            curve.append([t, value])
            trial.report(value, j * n_evals + len(curve) - 1)  # the pruner counts evaluations
            return not trial.should_prune()

        with tempfile.TemporaryDirectory() as tmp:
            try:
                summary = trainer.train(config, Path(tmp) / "run", quiet=True, on_eval=on_eval)
            except trainer.TrainingStopped:
                trial.set_user_attr("curves", curves)
                trial.set_user_attr("seed_values", values)
                raise optuna.TrialPruned() from None
        values.append(summary["value"])
    trial.set_user_attr("curves", curves)
    trial.set_user_attr("seed_values", values)
    trial.set_user_attr("wall_time_s", round(time.time() - t0, 1))
    return float(np.mean(values))


def export(study, out: Path, args, fixed: dict) -> None:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                     **t.user_attrs})
    atomic_write_text(out / "trials.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    # the best score; among trials that tie on it, the one with the fewest gradient steps per
    # environment step, i.e. the cheapest to run at every d
    top = max((t.value for t in done), default=None)
    tied = [t for t in done if t.value == top]
    best = min(tied, key=lambda t: (_dqn_params(t.params)["gradient_steps"] / t.params["train_freq"], t.number)) \
        if tied else None
    _write_table(out / "trials.md", rows)
    from rlsub.dqn import trainer

    base = trainer.resolve(args.config, fixed)
    write_json(out / "summary.json", {
        "config": args.config, "fixed": fixed, "dim": args.dim, "tuning_seeds": args.seeds,
        "timesteps_per_run": base["timesteps"], "eval_every": base["eval_every"],
        "eval_every_episodes": base["eval_every_episodes"], "select": base["select"],
        "eval_episodes": base["eval_episodes"], "score": "mean over the tuning seeds of each run's value",
        "sampler": "TPESampler(seed = trials so far when a worker (re)started + 1000 x worker)",
        "pruner": "MedianPruner(n_startup_trials=5, n_warmup_steps=4)",
        "n_trials": len(study.trials), "n_complete": len(done),
        "best": None if best is None else {"number": best.number, "value": best.value,
                                           "seed_values": best.user_attrs.get("seed_values"),
                                           "lr_schedule": best.params.get("lr_schedule", "constant"),
                                           "dqn": _dqn_params(best.params)},
        "tied_at_best": [t.number for t in tied],
        "best_rule": "highest score; ties broken by the fewest gradient steps per environment step",
        "command": command_line(), "git_commit": git_commit(), "machine": machine(),
    })


def _write_table(path: Path, rows: list[dict]) -> None:
    """trials.md: one line per trial (state, score, per-seed values, settings), made from the study."""
    keys = ["learning_rate", "lr_schedule", "batch_size", "buffer_size", "gamma", "exploration_fraction",
            "exploration_final_eps", "target_update_interval", "learning_starts", "train_freq", "gradient_steps"]
    lines = ["| trial | state | score | per seed | wall s | " + " | ".join(keys) + " |",
             "|" + "---|" * (5 + len(keys))]
    for r in rows:
        p = {"lr_schedule": "constant", **r["params"], **_dqn_params(r["params"])} if r["params"] else {}
        cells = [f"{p[k]:.3g}" if isinstance(p.get(k), float) else str(p.get(k, "-")) for k in keys]
        score = "-" if r["value"] is None else f"{r['value']:.1f}"
        seeds = ", ".join(f"{v:.1f}" for v in r.get("seed_values") or []) or "-"
        lines.append(f"| {r['number']} | {r['state']} | {score} | {seeds} | {r.get('wall_time_s', '-')} | "
                     + " | ".join(cells) + " |")
    atomic_write_text(path, "\n".join(lines) + "\n")


def _dqn_params(params: dict) -> dict:
    out = {k: v for k, v in params.items() if k not in ("subsample_steps", "lr_schedule")}
    out["gradient_steps"] = max(params["train_freq"] // params["subsample_steps"], 1)
    return out


def main() -> None:
    import optuna

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--dim", default="full")
    p.add_argument("--seeds", type=int, nargs="+", default=[1000, 1001, 1002],
                   help="tuning seeds (keep them apart from the sweeps' seeds)")
    p.add_argument("--worker", type=int, default=0, help="index of this worker when several share OUT")
    p.add_argument("--enqueue", metavar="TRIALS_JSONL:N",
                   help="first evaluate the N best complete trials of an earlier search (or :1,2,5 those trials)")
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
        sampler=optuna.samplers.TPESampler(seed=n_before + 1000 * args.worker),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=4))
    if args.enqueue and n_before == 0:
        path, _, n = args.enqueue.rpartition(":")
        earlier = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        if "," in n:  # FILE:1,2,5 - these trials
            wanted = [int(x) for x in n.split(",")]
            earlier = [next(r for r in earlier if r["number"] == k) for k in wanted]
        else:  # FILE:N - the N best complete trials
            earlier = sorted((r for r in earlier if r["state"] == "COMPLETE"), key=lambda r: -r["value"])[:int(n)]
        for r in earlier:
            study.enqueue_trial({"lr_schedule": "constant", **r["params"]})
    if args.trials:
        # several workers may share the study: together they stop at --trials finished trials
        stop = optuna.study.MaxTrialsCallback(
            args.trials, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
        while len([t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]) < args.trials:
            study.optimize(lambda t: objective(t, args, fixed), n_trials=1, callbacks=[stop])
            export(study, out, args, fixed)
    export(study, out, args, fixed)
    print(json.dumps(json.loads((out / "summary.json").read_text())["best"], indent=1))


if __name__ == "__main__":
    main()
