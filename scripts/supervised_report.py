"""Write results/supervised/README.md from supervised run directories (their summary.json files).

Usage: ``python scripts/supervised_report.py RUNS_DIR [--results results/supervised]``

Every run directory below RUNS_DIR that holds a ``summary.json`` from the supervised trainer is
copied (config.json, metrics.jsonl, summary.json; nothing over 1 MB) to ``<results>/<run name>/``,
and the table is generated from the copies: each subspace run is compared with the full-space run
of the same task and seed (its baseline), as in d_int90's definition (90% of the baseline).
No number in the README is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

COPY = ("config.json", "metrics.jsonl", "summary.json")
MAX_BYTES = 1 << 20


def collect(runs: Path, results: Path) -> list[dict]:
    """Copy each finished supervised run's small files into ``results``; return their summaries."""
    for summary_path in sorted(runs.glob("*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("trainer") != "supervised":
            continue
        dest = results / summary_path.parent.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in COPY:
            src = summary_path.parent / name
            if src.exists() and src.stat().st_size <= MAX_BYTES:
                shutil.copyfile(src, dest / name)
    rows = []
    for path in sorted(results.glob("*/summary.json")):
        rows.append({"run": path.parent.name, **json.loads(path.read_text())})
    return rows


def table(rows: list[dict]) -> list[str]:
    baselines = {(r["task"], r["seed"]): r for r in rows if r["dim"] == "full"}
    lines = ["| run | task | D | d | projection | test acc | train acc | full-space baseline | "
             "test acc / baseline | >= 90%? | epochs | wall time (s) | seed |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["task"], r["dim"] != "full", str(r["dim"]))):
        base = baselines.get((r["task"], r["seed"]))
        if r["dim"] == "full" or base is None:
            ratio = reached = base_text = "-"
        else:
            ratio_value = r["value"] / base["value"]
            ratio, reached = f"{ratio_value:.3f}", "yes" if ratio_value >= 0.9 else "no"
            base_text = f"{base['value']:.4f} ({base['run']})"
        lines.append(f"| {r['run']} | {r['task']} | {r['D']:,} | {r['dim']} | {r['projection'] or '-'} | "
                     f"{r['test_accuracy']:.4f} | {r['train_accuracy']:.4f} | {base_text} | {ratio} | "
                     f"{reached} | {r['epochs']} | {r['wall_time_s']:.1f} | {r['seed']} |")
    return lines


def by_dim(rows: list[dict]) -> list[str]:
    """Mean over seeds at each (task, dim), against the mean of the task's full-space runs (d_int90's rule)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], str(r["dim"])), []).append(r)
    lines = ["| task | d | seeds | mean test acc (min-max) | mean full-space baseline | ratio | >= 90%? | "
             "mean wall time (s) | data |", "|---|---|---|---|---|---|---|---|---|"]
    for (task, dim), group in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "full", kv[0][1])):
        values = [r["value"] for r in group]
        base = groups.get((task, "full"))
        mean = statistics.fmean(values)
        if dim == "full" or not base:
            base_text = ratio = reached = "-"
        else:
            base_mean = statistics.fmean(r["value"] for r in base)
            base_text, ratio = f"{base_mean:.4f} (n = {len(base)})", f"{mean / base_mean:.3f}"
            reached = "yes" if mean / base_mean >= 0.9 else "no"
        lines.append(f"| {task} | {dim} | {', '.join(str(r['seed']) for r in group)} | {mean:.4f} "
                     f"({min(values):.4f}-{max(values):.4f}) | {base_text} | {ratio} | {reached} | "
                     f"{statistics.fmean(r['wall_time_s'] for r in group):.1f} | {group[0]['data_source']} |")
    return lines


def provenance(rows: list[dict]) -> list[str]:
    lines = ["| run | command | git commit | machine | data (folder) | batch size, lr | threads |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["run"]):
        m = r.get("machine", {})
        machine = f"{m.get('host', '?')}, {m.get('cpus', '?')} CPUs, {m.get('platform', '?')}"
        lines.append(f"| {r['run']} | `{r.get('command') or '?'}` | {r.get('git_commit', '?')} | {machine} | "
                     f"{r['data_description']} ({r.get('data_dir', '?')}) | {r['batch_size']}, {r['lr']} | {r.get('threads', '?')} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="folder of run directories (e.g. runs/supervised_results)")
    parser.add_argument("--results", type=Path, default=Path("results/supervised"))
    args = parser.parse_args()
    rows = collect(args.runs, args.results)
    text = [
        "# Supervised results",
        "",
        "Generated by `scripts/supervised_report.py` from the `summary.json` files in the run folders",
        "below (copied from the run directories; theta_d / theta_D arrays are not kept). The runs are",
        "made by `scripts/supervised_results.sh`. Budget: 5 epochs per run (each row's `epochs`),",
        "Adam, batch size and lr as in the provenance table, CPU only, one torch thread on a 2-core",
        "machine shared with other developers' jobs, so wall times include contention. d_int90's",
        "criterion (Li et al. 2018): the mean over seeds at a d reaches 90% of the mean full-space",
        "baseline of the same network. These are short runs, not converged ones: the baselines sit",
        "below the paper's, and subspace runs gain more from longer training than full-space ones.",
        "",
        "## Mean over seeds",
        "",
        *by_dim(rows),
        "",
        "## Every run",
        "",
        *table(rows),
        "",
        "## Provenance",
        "",
        "A git commit ending in `+dirty` means tracked files differed from that commit when the run",
        "started (in this shared tree, other developers' uncommitted work). CIFAR-10 rows come from",
        "the data folder's JPEG re-encoding unless their data column says otherwise.",
        "",
        *provenance(rows),
        "",
    ]
    (args.results / "README.md").write_text("\n".join(text))
    print(f"wrote {args.results / 'README.md'} ({len(rows)} runs)")


if __name__ == "__main__":
    main()
