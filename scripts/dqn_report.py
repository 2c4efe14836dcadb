"""Build results/dqn/README.md from the run directories copied under results/dqn/ (no typed numbers).

Every ``results/dqn/<run>/summary.json`` becomes a row; runs are grouped by (task, dim) with the
mean and spread over seeds. The commands that produced the runs are listed in COMMANDS.md next to
the runs and included verbatim.

    .venv/bin/python scripts/dqn_report.py
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

from rlsub.rundir import read_metrics

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results" / "dqn"


def fmt(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"


def estimates(runs) -> list[str]:
    """Compute estimates for full-length runs, from the measured speed of short runs.

    Speed is measured separately before and after ``learning_starts`` (only the latter has
    gradient steps), from the metrics rows of each short run; the full run's length and
    learning_starts come from its config file.
    """
    import yaml

    out = []
    for s, name in runs:
        config = json.loads((RESULTS / name / "config.json").read_text())
        full_path = {"ALE/Pong-v5": ROOT / "configs" / "dqn" / "pong.yaml"}.get(s["task"])
        if full_path is None:
            continue
        full = yaml.safe_load(full_path.read_text())
        rows = read_metrics(RESULTS / name, strict=True)
        rows = [r for r in rows if "fps" in r]
        start = config["dqn"]["learning_starts"]
        before = [r for r in rows if r["timesteps"] <= start]
        after = [r for r in rows if r["timesteps"] >= start]
        if not before or len(after) < 2:
            continue
        pre = before[-1]["timesteps"] / before[-1]["wall_time_s"]
        train = (after[-1]["timesteps"] - after[0]["timesteps"]) / (after[-1]["wall_time_s"] - after[0]["wall_time_s"])
        total, starts = full["timesteps"], full["dqn"]["learning_starts"]
        hours = (starts / pre + (total - starts) / train) / 3600
        out += ["", f"## Compute estimate: {s['task']} at the full budget (from run {name})", "",
                f"Measured on this machine (one torch thread): {pre:,.0f} steps/s while filling the buffer, "
                f"{train:,.0f} steps/s with gradient steps (every {config['dqn']['train_freq']} steps, batch "
                f"{config['dqn']['batch_size']}, d = {s['dim']}, {s['projection']}). The full run "
                f"({total:,} steps, learning_starts {starts:,}) would take about {hours:,.1f} hours "
                f"({hours / 24:,.1f} days) on one core at that speed; periodic evaluations add to it."]
    return out


def main() -> None:
    runs = [(json.loads(p.read_text()), p.parent.name) for p in RESULTS.glob("*/summary.json")]
    runs.sort(key=lambda r: (r[0]["task"], str(r[0]["dim"]), r[0]["seed"]))
    groups = defaultdict(list)
    for s, _ in runs:
        groups[(s["task"], s["dim"])].append(s)
    lines = ["# DQN in a random subspace: results", "",
             "Built by `.venv/bin/python scripts/dqn_report.py` from the `summary.json` files under this",
             "folder (do not edit by hand). Value = mean return of the final deterministic evaluation.", "",
             "## By task and dimension (mean over seeds)", "",
             "| task | D | dim | projection | seeds | timesteps | eval episodes | mean value | min | max | "
             "mean / full-space mean |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    full = {task: statistics.mean(s["value"] for s in g) for (task, dim), g in groups.items() if dim == "full"}
    order = sorted(groups, key=lambda k: (k[0], k[1] != "full", k[1] if k[1] != "full" else 0))
    for task, dim in order:
        g = groups[(task, dim)]
        values = [s["value"] for s in g]
        base, lo = full.get(task), g[0]["metric_min"]
        rel = "-"
        if base is not None and lo is not None and base != lo:
            rel = f"{(statistics.mean(values) - lo) / (base - lo):.2f}"
        lines.append(f"| {task} | {g[0]['D']:,} | {dim} | {g[0]['projection'] or '-'} | "
                     f"{', '.join(str(s['seed']) for s in g)} | {g[0]['timesteps']:,} | {g[0]['eval_episodes']} | "
                     f"{fmt(statistics.mean(values))} | {fmt(min(values))} | {fmt(max(values))} | {rel} |")
    lines += ["", "The last column shifts returns so that the minimum possible return (`metric_min`) is 0, as in",
              "Li et al. (2018); d_int90 is the smallest d whose value reaches 0.90.", "",
              "## Runs", "",
              "| run | task | dim | seed | value (std) | timesteps | train time s | steps/s | model zip bytes |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s, name in runs:
        lines.append(f"| {name} | {s['task']} | {s['dim']} | {s['seed']} | {fmt(s['value'])} ({fmt(s['value_std'])}) | "
                     f"{s['timesteps']:,} | {fmt(s.get('train_time_s'))} | {fmt(s.get('fps'), 0)} | "
                     f"{s.get('model_zip_bytes') or '-'} |")
    lines += estimates(runs)
    commands = RESULTS / "COMMANDS.md"
    if commands.exists():
        lines += ["", commands.read_text().strip()]
    (RESULTS / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
