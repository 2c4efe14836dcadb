"""Where each point of an RL sweep stands while its points are continued to a larger step budget.

Usage: python scripts/extension_status.py SWEEP_RESULTS --budget STEPS [--baseline-budget STEPS]
       [--evaluate] [--write FILE]

For every run under ``SWEEP_RESULTS/runs/``: the environment steps it has now (its last logged
generation, so a run in progress or paused shows how far it got), the budget its last finished
invocation ran to (``summary.json``), its last training evaluation, and whether it has reached
``--budget`` (the full-space points: ``--baseline-budget``, when the baseline's budget differs). With ``--evaluate``, each run that has reached it gets the sweep's own final evaluation
(``final_eval`` of ``SWEEP_RESULTS/sweep_config.json``: N noiseless episodes from fixed reset seeds,
``rlsub eval RUN --episodes N --seed S``), kept in the run's ``final_eval.json`` keyed by its theta_d,
so the sweep re-run at the new budget reuses it instead of evaluating again.

Prints a Markdown table; ``--write FILE`` also puts it, with the command and time, between the
markers ``<!-- extension-status -->`` and ``<!-- /extension-status -->`` of FILE (written atomically).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from rlsub.rundir import read_metrics
from rlsub.subspace import atomic_write_text

BEGIN, END = "<!-- extension-status -->", "<!-- /extension-status -->"


def _read(run: Path) -> dict:
    """What the table needs from one run folder, each file read once."""
    config = json.loads((run / "config.json").read_text())
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    rows = read_metrics(run)  # up to a line cut short, for a run stopped mid-write
    evals = [r["eval_return"] for r in rows if r.get("eval_return") is not None]
    finished_at = summary.get("timesteps", 0)
    return {"run": run.name, "d": config.get("d"), "seed": config.get("seed"),
            "steps_now": max(rows[-1].get("timesteps", 0) if rows else 0, finished_at),
            "finished_at": finished_at, "checkpoint": (run / "checkpoint.npz").exists(),
            "last_eval": evals[-1] if evals else None, "wall_time_s": summary.get("wall_time_s")}


def status(results: Path, budget: int, evaluate: bool = False, baseline_budget: int | None = None) -> list[dict]:
    """One dict per run folder under ``results/runs`` (seed, then d, full space last); the full-space
    points are held to ``baseline_budget`` when given."""
    spec = None
    if evaluate:
        sweep_config = json.loads((results / "sweep_config.json").read_text())
        spec = sweep_config.get("final_eval")
        if not spec:
            raise SystemExit(f"{results}/sweep_config.json has no final_eval: nothing to evaluate with")
    rows = [_read(p) for p in (results / "runs").iterdir() if (p / "config.json").exists()]
    rows.sort(key=lambda r: (r["seed"] or 0, r["d"] is None, r["d"] or 0, r["run"]))
    for row in rows:
        own = baseline_budget if (row["d"] is None and baseline_budget) else budget
        row["reached"] = row["finished_at"] >= own
        if not row["reached"]:
            row["wall_time_s"] = None  # that of an invocation at the old budget
        elif evaluate:
            from rlsub.sweep import final_evaluation

            kept = final_evaluation(results / "runs" / row["run"], spec)
            row.update(final=kept["value"], final_std=kept["std"], final_episodes=kept["episodes"])
    return rows


def markdown(rows: list[dict], budget: int, baseline_budget: int | None = None) -> str:
    target = f"{budget:,}" + (f" (full space {baseline_budget:,})" if baseline_budget else "")
    lines = [f"| point | d | seed | steps now | reached {target} | last training evaluation | "
             "final policy (sweep's final_eval) | wall time (its summary.json) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["reached"]:
            reached = "yes"
        elif r["steps_now"] > r["finished_at"]:  # logged generations beyond the last finished invocation
            reached = f"no: in progress or paused{' (checkpoint)' if r['checkpoint'] else ''}"
        else:
            reached = f"no: finished at {r['finished_at']:,}" + ("" if r["checkpoint"] else ", no checkpoint here")
        final = (f"{r['final']:.1f} +- {r['final_std']:.1f} ({r['final_episodes']} episodes)" if "final" in r
                 else "-")
        last = "-" if r["last_eval"] is None else f"{r['last_eval']:.1f}"
        wall = "-" if r["wall_time_s"] is None else f"{r['wall_time_s'] / 60:.0f} min"
        d = "full" if r["d"] is None else f"{r['d']:,}"
        lines.append(f"| {r['run']} | {d} | {r['seed']} | {r['steps_now']:,} | {reached} | {last} | {final} | {wall} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, table: str, command: str) -> None:
    """Replace the text between the markers in ``path`` (one clear error if they are missing)."""
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to write the table into")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    body = f"{BEGIN}\n`{command}` ({stamp}):\n\n{table}{END}"
    atomic_write_text(path, pattern.sub(lambda _: body, text, count=1))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a sweep's results folder (with runs/ and sweep_config.json)")
    p.add_argument("--budget", type=int, required=True, help="the step budget the points are continued to")
    p.add_argument("--baseline-budget", type=int, help="the full-space points' budget, if not --budget")
    p.add_argument("--evaluate", action="store_true", help="final-evaluate the points that reached the budget")
    p.add_argument("--write", type=Path, help="also write the table into this file's marked section")
    args = p.parse_args(argv)
    if not (args.results / "runs").is_dir():
        raise SystemExit(f"{args.results} has no runs/ folder: not a sweep's results")
    table = markdown(status(args.results, args.budget, args.evaluate, args.baseline_budget), args.budget,
                     args.baseline_budget)
    print(table, end="")
    if args.write:
        words = ["python", "scripts/extension_status.py", *(argv if argv is not None else sys.argv[1:])]
        write_section(args.write, table, " ".join(str(w) for w in words))


if __name__ == "__main__":
    main()
