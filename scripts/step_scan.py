"""Compare runs of a step-size (or any) scan at a common step budget, from their metrics.jsonl only.

Usage: python scripts/step_scan.py RUN_DIR [RUN_DIR ...] --budget STEPS [--key lr [--key sigma ...]]

For each run: the config values named by ``--key`` (repeatable; default lr), the evaluations
(``eval_return``) logged up to ``--budget`` environment steps, their mean over the second half of that budget (the rule the Humanoid baseline's
step size was chosen by: later evaluations, several of them, not one noisy maximum), their least-squares
slope over that half (return per million steps: whether the run was still rising) and the last one.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rlsub.rundir import read_metrics


def scan_row(run: Path, budget: int, keys: list[str]) -> dict:
    config = json.loads((run / "config.json").read_text())
    rows = read_metrics(run)
    evals = [(r["timesteps"], r["eval_return"]) for r in rows if "eval_return" in r and r["timesteps"] <= budget]
    half = [(t, v) for t, v in evals if t > budget / 2]
    slope = None
    if len(half) >= 2 and len({t for t, _ in half}) >= 2:
        slope = float(np.polyfit([t / 1e6 for t, _ in half], [v for _, v in half], 1)[0])
    return {"run": run.name, **{k: config.get(k) for k in keys}, "evaluations": len(evals),
            "second_half_mean": float(np.mean([v for _, v in half])) if half else None,
            "second_half_slope": slope,
            "last": evals[-1][1] if evals else None, "last_at": evals[-1][0] if evals else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--key", action="append", help="config value to show (repeatable; default lr)")
    args = p.parse_args()
    keys = args.key or ["lr"]
    print(f"| run | {' | '.join(keys)} | evaluations up to {args.budget:,} steps | mean over the second half | "
          "slope over the second half (per 1M steps) | last (at steps) |")
    print("|---" * (len(keys) + 5) + "|")
    for run in args.runs:
        r = scan_row(run, args.budget, keys)
        mean = "-" if r["second_half_mean"] is None else f"{r['second_half_mean']:.1f}"
        slope = "-" if r["second_half_slope"] is None else f"{r['second_half_slope']:+.1f}"
        values = " | ".join(str(r[k]) for k in keys)
        print(f"| {r['run']} | {values} | {r['evaluations']} | {mean} | {slope} | {r['last']:.1f} ({r['last_at']:,}) |")


if __name__ == "__main__":
    main()
