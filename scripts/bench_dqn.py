"""Training speed of the subspace DQN against vanilla stable-baselines3 DQN, side by side.

For each task, the same config (hyperparameters, network, env wrappers) is trained with SB3's own
policy (MlpPolicy / CnnPolicy with the same net_arch) and with rlsub's subspace policy; runs of
the two alternate, each repetition builds a fresh model, and the median steps/s over repetitions
is reported. Writes results/benchmarks/dqn.md and dqn.json.

    .venv/bin/python scripts/bench_dqn.py [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from stable_baselines3 import DQN

from rlsub.dqn import trainer
from rlsub.rundir import git_commit

ROOT = Path(__file__).resolve().parent.parent

#: name -> (config file, overrides, training steps); learning_starts is lowered so that most of
#: the timed steps include gradient steps.
TASKS = {
    "CartPole-v1 (MLP 4-20-20-2)": ("configs/dqn/cartpole.yaml", {"dim": 25, "projection": "dense"}, 6000),
    "Pong (Nature CNN)": ("configs/dqn/pong.yaml", {"dim": 6000, "projection": "fastfood",
                                                  "dqn": {"learning_starts": 500, "buffer_size": 10_000}}, 2500),
}


def timed_run(config: dict, subspace: bool, steps: int) -> float:
    """Steps per second of ``learn(steps)`` for a fresh model (construction not timed)."""
    env = trainer.make_env(config, config["seed"])
    if subspace:
        model = trainer.build_model(config, env)
    else:
        policy = "CnnPolicy" if config["policy"] == "cnn" else "MlpPolicy"
        model = DQN(policy, env, policy_kwargs=dict(net_arch=list(config["net_arch"])), seed=config["seed"],
                    device="cpu", **config["dqn"])
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one repetition, a tenth of the steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reps = 1 if args.quick else args.reps
    rows = []
    for name, (path, overrides, steps) in TASKS.items():
        steps = steps // 10 if args.quick else steps
        config = trainer.resolve(str(ROOT / path), overrides)
        fps = {"vanilla": [], "subspace": []}
        for _ in range(reps):
            for kind in fps:
                fps[kind].append(timed_run(config, kind == "subspace", steps))
                print(name, kind, round(fps[kind][-1], 1), flush=True)
        med = {k: statistics.median(v) for k, v in fps.items()}
        rows.append(dict(task=name, config=path, dim=config["dim"], projection=config["projection"],
                         steps=steps, learning_starts=config["dqn"]["learning_starts"],
                         train_freq=config["dqn"]["train_freq"], gradient_steps=config["dqn"]["gradient_steps"],
                         reps=reps, fps=fps, vanilla_fps=med["vanilla"], subspace_fps=med["subspace"],
                         ratio=med["subspace"] / med["vanilla"]))
    meta = dict(git_commit=git_commit(), torch=torch.__version__, threads=1, platform=platform.platform(),
                processor=platform.processor() or platform.machine(), date=time.strftime("%Y-%m-%d %H:%M"))
    out = ROOT / "results" / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dqn.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=2) + "\n")
    lines = [
        "# DQN training speed: subspace policy vs. vanilla stable-baselines3",
        "",
        "Produced by `.venv/bin/python scripts/bench_dqn.py` (do not edit by hand). Environment steps per",
        "second of `DQN.learn` (gradient steps included), median over repetitions, vanilla and subspace runs",
        "alternating; one torch thread, CPU only, on a machine shared with other jobs (so single runs vary).",
        "",
        "| task | d | projection | steps (learning_starts) | train_freq / gradient_steps | reps | "
        "vanilla steps/s | subspace steps/s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {r['dim']} | {r['projection']} | {r['steps']} ({r['learning_starts']}) | "
                     f"{r['train_freq']} / {r['gradient_steps']} | {r['reps']} | {r['vanilla_fps']:.0f} | "
                     f"{r['subspace_fps']:.0f} | {r['ratio']:.2f} |")
    lines += ["", f"git {meta['git_commit']}, torch {meta['torch']}, {meta['platform']}, {meta['date']}.", ""]
    (out / "dqn.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
