"""ES speed benchmark: env steps/s during ES vs raw stepping, parallel efficiency, bytes per generation.

Run: .venv/bin/python scripts/bench_es.py  (about 5 minutes on 2 cores; run it on an idle machine)
Writes results/benchmarks/es.md and es.json.

(a) Per-rank environment steps per second inside ES training (policy forward and projection
    included; from the trainer's own steps_per_s_per_rank metric, median over generations after the
    first) against
    stepping the same environment with random actions, for CartPole (d = 4) and Humanoid-v4 (d = 700).
(b) Generations per second under `mpirun -n 1` and `-n 2` for the same CartPole run (no early
    stop, the same episodes on both), median of 3 repetitions each; efficiency = speed-up / 2.
(c) Bytes all-gathered per generation for several populations and d (read from the trainer's
    comm_bytes metric): they must grow with the population and not with d or D.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "results" / "benchmarks"


def raw_steps_per_s(env_id: str, steps: int) -> float:
    from rlsub.es.envs import make_env

    env = make_env(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def es_run(args: list[str], n: int | None = 1) -> tuple[dict, list[dict]]:
    """Run `rlsub es` under `mpirun -n n` (n None: a plain process, no mpirun)."""
    out = Path(tempfile.mkdtemp(prefix="bench_es_"))
    launcher = [str(BIN / "mpirun"), "-n", str(n)] if n else []
    cmd = [*launcher, str(BIN / "rlsub"), "es", "--quiet", "--out", str(out / "run"), *args]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    summary = json.loads((out / "run" / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return summary, rows


def main() -> None:
    report: dict = {"command": "python scripts/bench_es.py", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                                "platform": platform.platform()},
                    "load_before": os.getloadavg()}
    from rlsub.rundir import git_commit

    report["git_commit"] = git_commit()
    # (a)
    steps = {}
    for name, cfg, extra in [
        ("CartPole-v1", "configs/es/cartpole.yaml", ["--dim", "4", "--generations", "6", "--pairs", "10"]),
        ("Humanoid-v4", "configs/es/humanoid_v4.yaml", ["--dim", "700", "--generations", "7", "--pairs", "6"]),
    ]:
        raw = float(np.median([raw_steps_per_s(name, 20000 if "Cart" in name else 3000) for _ in range(3)]))
        # generation 0 also pays one-off costs (lazy imports inside the environment, first allocations)
        _, rows = es_run(["--config", cfg, *extra], None)
        es = float(np.median([r["steps_per_s_per_rank"] for r in rows[1:]]))
        _, rows = es_run(["--config", cfg, *extra], 1)
        es_mpi = float(np.median([r["steps_per_s_per_rank"] for r in rows[1:]]))
        steps[name] = {"raw_steps_per_s": raw, "es_steps_per_s_per_rank": es, "ratio": es / raw,
                       "es_mpirun1_steps_per_s": es_mpi, "ratio_mpirun1": es_mpi / raw}
    report["steps"] = steps
    # (b)
    base = ["--config", "configs/es/cartpole.yaml", "--dim", "4", "--generations", "8", "--pairs", "20",
            "--seed", "0"]
    times = {1: [], 2: []}
    for _ in range(3):
        for n in (1, 2):
            summary, rows = es_run(base, n)
            # training generations only: the wall time of the last logged generation
            times[n].append(rows[-1]["wall_time_s"] / len(rows))
    t1, t2 = float(np.median(times[1])), float(np.median(times[2]))
    report["parallel"] = {"s_per_generation": {"n1": t1, "n2": t2}, "generations_per_s": {"n1": 1 / t1, "n2": 1 / t2},
                          "speedup": t1 / t2, "efficiency": t1 / t2 / 2, "repetitions": times}
    # (c)
    comm = []
    for pairs in (10, 20, 40):
        for dim in ("4", "100", "full"):
            _, rows = es_run(["--config", "configs/es/cartpole.yaml", "--dim", dim, "--generations", "1",
                              "--pairs", str(pairs)])
            comm.append({"pairs": pairs, "dim": dim, "comm_bytes": rows[0]["comm_bytes"]})
    report["comm"] = comm
    report["load_after"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "es.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "es.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    lines = [
        "# ES speed benchmark", "",
        f"Command: `{r['command']}`; date {r['date']}; git {r['git_commit']}; machine {r['machine']}; "
        f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}.", "",
        "## (a) environment steps per second, one rank", "",
        "ES runs as one plain process (`rlsub es`), and again under `mpirun -n 1`. Figures vary by 20-30% "
        "between runs on this shared 2-core machine; an efficiency above 100% in (b) is such noise.", "",
        "| env | raw random actions (steps/s) | during ES (steps/s per rank) | ratio | target | "
        "under mpirun -n 1 (steps/s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in r["steps"].items():
        target = ">= 0.80: " + ("PASS" if s["ratio"] >= 0.8 else "MISS") if "Humanoid" in name else "-"
        lines.append(f"| {name} | {s['raw_steps_per_s']:,.0f} | {s['es_steps_per_s_per_rank']:,.0f} | "
                     f"{s['ratio']:.2f} | {target} | {s['es_mpirun1_steps_per_s']:,.0f} | {s['ratio_mpirun1']:.2f} |")
    p = r["parallel"]
    lines += ["", "## (b) generations per second, CartPole d = 4, 20 pairs", "",
              "| ranks | s / generation (median of 3) | generations / s |", "|---|---|---|",
              f"| 1 | {p['s_per_generation']['n1']:.3f} | {p['generations_per_s']['n1']:.2f} |",
              f"| 2 | {p['s_per_generation']['n2']:.3f} | {p['generations_per_s']['n2']:.2f} |", "",
              f"Speed-up {p['speedup']:.2f}, parallel efficiency {p['efficiency']:.0%} (target >= 85%: "
              f"{'PASS' if p['efficiency'] >= 0.85 else 'MISS'}).", "",
              "## (c) bytes all-gathered per generation (CartPole, one rank)", "",
              "| pairs | d | bytes |", "|---|---|---|"]
    for c in r["comm"]:
        lines.append(f"| {c['pairs']} | {c['dim']} | {c['comm_bytes']:,} |")
    lines += ["", "Per pair: index, two returns, two lengths as float64 (40 bytes), plus observation sums "
              "when observation normalisation is on; nothing scales with d or D."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
