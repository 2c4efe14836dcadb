"""CMA-ES's own cost per ES generation beside the episodes, at d <= 100 (CartPole-v1).

Run: python scripts/bench_cma.py [--dims 4 16 100] [--generations 30] [--repeats 3]
Writes results/benchmarks/cma.md and cma.json.

Each job is a real ES run of configs/es/cartpole.yaml (one process) with optimizer cma_es
(popsize 16, sigma0 3, the CartPole cross-check's settings) or openai_es (8 mirrored pairs: the
same 16 episodes a generation), d in --dims, seed 0. The trainer logs per generation the share of
its wall time spent in the optimizer's own work (``opt_time_frac``: CMA-ES's ask and tell;
OpenAI-ES's theta_0 + P x and its update) and inside the environment (``env_time_frac``). Reported:
the medians over generations after the first, and the optimizer's seconds per generation (share x
generation time), for each of --repeats interleaved repetitions; the figure is their median.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rlsub.rundir import git_commit, machine, read_metrics, write_json
from rlsub.subspace import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "benchmarks"


def one_run(optimizer: str, dim: int, generations: int) -> dict:
    from rlsub.es import trainer

    overrides = {"dim": dim, "seed": 0, "generations": generations, "optimizer": optimizer, "eval_every": generations,
                 "target_return": None}
    if optimizer == "cma_es":
        overrides["cma"] = {"popsize": 16, "sigma0": 3.0}
    else:
        overrides["pairs"] = 8
    config = trainer.resolve(str(ROOT / "configs/es/cartpole.yaml"), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(config, Path(tmp) / "run", quiet=True)
        rows = read_metrics(Path(tmp) / "run", strict=True)
    rows = [r for r in rows if "opt_time_frac" in r]
    steps = np.diff([0] + [r["timesteps"] for r in rows])[1:]  # the last one may include evaluation steps
    rows = rows[1:]  # after the first generation
    gen_s = np.array([max(s, 1) / r["steps_per_s"] for s, r in zip(steps, rows)])
    opt_frac = np.array([r["opt_time_frac"] for r in rows])
    return {"opt_frac": float(np.median(opt_frac)), "env_frac": float(np.median([r["env_time_frac"] for r in rows])),
            "opt_ms": float(np.median(opt_frac * gen_s) * 1e3), "gen_ms": float(np.median(gen_s) * 1e3),
            "mean_episode_steps": float(np.mean(steps) / 16)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, nargs="+", default=[4, 16, 100])
    p.add_argument("--generations", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    load_before = os.getloadavg()[0]
    results = {}
    for _ in range(args.repeats):
        for dim in args.dims:
            for optimizer in ("cma_es", "openai_es"):
                results.setdefault(f"{optimizer} d={dim}", []).append(one_run(optimizer, dim, args.generations))
    load_after = os.getloadavg()[0]
    summary = {k: {m: float(np.median([r[m] for r in v])) for m in v[0]} | {"per_repeat": v}
               for k, v in results.items()}
    record = {"command": "python scripts/bench_cma.py " + " ".join(
                  f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "git_commit": git_commit(),
              "machine": machine(), "load_before": load_before, "load_after": load_after, "results": summary}
    write_json(OUT / "cma.json", record)
    lines = ["# CMA-ES overhead per generation (CartPole-v1, d <= 100)", "",
             f"Command: `{record['command']}`; {record['date']}; git {record['git_commit']}; machine "
             f"{record['machine']}; load average before {load_before:.2f}, after {load_after:.2f}.", "",
             __doc__.split("\n\n")[2].replace("\n", " "), "",
             "| job | optimizer share of a generation (per repetition) | optimizer ms / generation | "
             "generation ms | env share | mean episode steps |", "|---|---|---|---|---|---|"]
    for k, v in summary.items():
        reps = ", ".join(f"{r['opt_frac']:.4f}" for r in v["per_repeat"])
        lines.append(f"| {k} | {v['opt_frac']:.4f} ({reps}) | {v['opt_ms']:.2f} | {v['gen_ms']:.1f} | "
                     f"{v['env_frac']:.2f} | {v['mean_episode_steps']:.0f} |")
    atomic_write_text(OUT / "cma.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
