"""The Goldilocks-zone study: accuracy against the radius r0 / r_X, hyperplane (free radius) vs hypersphere (held).

The poster (J. Chang, after Fort & Scherlis 2019; ../shared/seeds/goldilocks-zone-poster.txt)
claims, for an FC network on CIFAR-10:
  1. started at r0 < r_X on a hyperplane, the radius grows like sqrt(t) and a good solution is
     found near r ~ r_X;
  2. started at r0 > r_X, the radius hardly changes and no good solution is found;
  3. held on a hypersphere of radius r0, a good solution is found only for r0 ~ r_X.
Every point is one `rlsub train` run (rlsub.supervised.trainer) with ``init_radius_ratio`` (the
hyperplane through theta_0 rescaled to r0) or ``subspace: hypersphere`` + ``radius_ratio``, and
``log_every`` for the radius r(t). Resumable: run the same command again. Writes
results/goldilocks/{summary.json,README.md,runs/} and results/plots/goldilocks.png.

    RLSUB_DATA=../shared/data nice -n 19 python scripts/goldilocks.py            # run / continue, then summarise
    python scripts/goldilocks.py --summarise                                    # summarise what has finished
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rlsub.rundir import command_line, git_commit, machine, read_json, read_metrics, write_json
from rlsub.studies import (
    add_study_arguments,
    bootstrap_mean,
    growth_exponent,
    mean_std,
    run_point,
    save_figure,
)
from rlsub.subspace import atomic_write_text
from rlsub.supervised import trainer

ROOT = Path(__file__).resolve().parent.parent
#: task -> (config file, d, the committed sweep whose full-space baseline the accuracies are set against)
TASKS = {
    "mnist_fc": ("configs/supervised/mnist_fc.yaml", 750, "results/mnist_fc/summary.json"),
    "cifar_fc": ("configs/supervised/cifar_fc.yaml", 9000, "results/cifar_fc/summary.json"),
}
RATIOS = (0.1, 0.3, 1.0, 3.0, 10.0)
MODES = ("hyperplane", "hypersphere")
#: the numbers of rlsub.studies.growth_exponent averaged over seeds
GROWTH_KEYS = ("beta", "r_exponent", "r_exponent_early", "r_exponent_late", "loglog_r")


def point_config(task: str, mode: str, ratio: float, seed: int, args) -> dict:
    path, d, _ = TASKS[task]
    shape = {"init_radius_ratio": ratio} if mode == "hyperplane" else {"subspace": "hypersphere", "radius_ratio": ratio}
    return trainer.resolve(str(ROOT / path), {"dim": d, "seed": seed, "epochs": args.epochs, "threads": 1,
                                              "log_every": args.log_every, **shape})


def point_name(task: str, mode: str, ratio: float, seed: int) -> str:
    return f"{task}__{mode}__r{ratio:g}__s{seed}"


def run(args) -> None:
    runs = Path(args.out) / "runs"
    for seed in args.seeds:  # seed-major: a cut-short study still has whole seeds
        for task in args.tasks:
            for ratio in RATIOS:
                for mode in MODES:
                    name = point_name(task, mode, ratio, seed)
                    t0 = time.time()
                    summary, trained = run_point(point_config(task, mode, ratio, seed, args), runs / name)
                    if trained:
                        print(f"{name}: test accuracy {summary['test_accuracy']:.4f}, radius {summary['r0']:.3g} -> "
                              f"{summary['radius_final']:.3g} (r_X {summary['r_X']:.3g}), {time.time() - t0:.0f} s",
                              flush=True)
                        summarise(args)


def summarise(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks, wall, seeds_done, commits = {}, 0.0, set(), set()
    for task in args.tasks:
        _, d, sweep = TASKS[task]
        base = read_json(ROOT / sweep)["baseline"] if (ROOT / sweep).exists() else None
        cells, fits, r_X, D, data_source = {}, {}, None, None, None
        for mode in MODES:
            for ratio in RATIOS:
                acc, rfin, r0s, exps = [], [], [], []
                for seed in args.seeds:
                    folder = out / "runs" / point_name(task, mode, ratio, seed)
                    if not (folder / "summary.json").exists():
                        continue
                    s = read_json(folder / "summary.json")
                    if s["epochs"] != args.epochs:
                        continue
                    seeds_done.add(seed)
                    commits.add(s.get("git_commit"))
                    wall += s["wall_time_s"]
                    r_X, D, data_source = s["r_X"], s["D"], s["data_source"]
                    acc.append(s["test_accuracy"])
                    rfin.append(s["radius_final"] / s["r_X"])
                    r0s.append(s["r0"] / s["r_X"])
                    rows = [r for r in read_metrics(folder, strict=True) if "step" in r and "test_acc" not in r]
                    if mode == "hyperplane" and ratio < 1 and rows:
                        fit = growth_exponent([r["step"] for r in rows], [r["radius"] for r in rows])
                        exps.append({"seed": seed, **fit})
                if not acc:
                    continue
                cells[f"{mode}/{ratio:g}"] = {
                    "mode": mode, "ratio": ratio, "seeds": len(acc), "test_accuracy": bootstrap_mean(acc),
                    "r0_over_rX": mean_std(r0s), "radius_final_over_rX": mean_std(rfin),
                    "of_baseline": (float(np.mean(acc)) / base["mean"]) if base else None}
                if exps:
                    fits[f"{ratio:g}"] = {"per_seed": exps, **{k: mean_std([e[k] for e in exps]) for k in GROWTH_KEYS}}
        if not cells:
            continue
        all_exps = [e for f in fits.values() for e in f["per_seed"]]
        tasks[task] = {"d": d, "D": D, "r_X": r_X, "data_source": data_source, "config_file": TASKS[task][0],
                       "overrides": "dim, seed, epochs, threads = 1, log_every, and init_radius_ratio (hyperplane) "
                                    "or subspace: hypersphere + radius_ratio; each run's config.json has them all",
                       "baseline": base, "baseline_from": sweep, "cells": cells, "growth": fits,
                       "growth_all": {k: mean_std([e[k] for e in all_exps]) for k in GROWTH_KEYS},
                       "claims": claims(cells, fits, all_exps)}
    summary = {"study": "goldilocks", "command": "python scripts/goldilocks.py " + " ".join(_argv(args)),
               "run_command": command_line(), "git_commit": git_commit(), "run_commits": sorted(c for c in commits if c), "machine": machine(),
               "python": platform.python_version(), "epochs": args.epochs, "seeds": sorted(seeds_done),
               "seeds_asked": list(args.seeds), "ratios": list(RATIOS), "modes": list(MODES),
               "log_every": args.log_every, "wall_time_s_total": wall, "tasks": tasks,
               "fit": "least squares of log(r^2 - r0^2) on log(step), steps >= 1 (beta; r ~ t^(beta/2) once r >> r0), "
                      "over the whole run, its first tenth (early) and its second half (late); loglog_r: slope of "
                      "log r on log step over the second half",
               "plot": "results/plots/goldilocks.png"}
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "README.md", readme(summary))
    if tasks:
        plot(summary, out, Path(args.plot))
    return summary


def claims(cells: dict, fits: dict, exps: list[dict]) -> dict:
    """The poster's three claims, each a verdict with the numbers it rests on.

    "Good" is stated against the best accuracy the hyperplane reaches at any r0 in this grid: at
    least 90% of it (the same 90% that defines d_int90)."""
    def acc(mode, ratio):
        c = cells.get(f"{mode}/{ratio:g}")
        return c["test_accuracy"]["mean"] if c else None

    def rad(mode, ratio):
        c = cells.get(f"{mode}/{ratio:g}")
        return c["radius_final_over_rX"]["mean"] if c else None

    best = max((acc("hyperplane", r) for r in RATIOS if acc("hyperplane", r) is not None), default=None)
    if best is None:
        return {}
    good = 0.9 * best
    out = {"good_threshold": good, "best_hyperplane": best}
    # 1. below r_X: r ~ sqrt(t), ending near r_X with a good solution
    e = mean_std([x["r_exponent"] for x in exps])
    below = [r for r in RATIOS if r < 1 and acc("hyperplane", r) is not None]
    if below and e["mean"] is not None:
        sqrt_ok = abs(e["mean"] - 0.5) <= max(0.1, 2 * e["std"])
        ends = {f"{r:g}": rad("hyperplane", r) for r in below}
        near = all(0.5 <= v <= 2.0 for v in ends.values())
        found = all(acc("hyperplane", r) >= good for r in below)
        out["1_below_rX_grows_as_sqrt_t"] = {
            "r_exponent": e, "sqrt_t": sqrt_ok, "final_radius_over_rX": ends, "ends_near_rX (0.5..2)": near,
            "accuracy": {f"{r:g}": acc("hyperplane", r) for r in below}, "good_solution": found,
            "holds": bool(sqrt_ok and near and found)}
    # 2. above r_X: the radius hardly moves, no good solution
    above = [r for r in RATIOS if r > 1 and acc("hyperplane", r) is not None]
    if above:
        moved = {f"{r:g}": rad("hyperplane", r) / r for r in above}
        still = all(abs(v - 1) <= 0.1 for v in moved.values())
        bad = all(acc("hyperplane", r) < good for r in above)
        out["2_above_rX_stays_and_fails"] = {
            "final_over_initial_radius": moved, "radius_unchanged (within 10%)": still,
            "accuracy": {f"{r:g}": acc("hyperplane", r) for r in above}, "no_good_solution": bad,
            "holds": bool(still and bad)}
    # 3. hypersphere: good only near r_X
    sphere = {f"{r:g}": acc("hypersphere", r) for r in RATIOS if acc("hypersphere", r) is not None}
    if sphere:
        good_at = [float(r) for r, a in sphere.items() if a >= good]
        out["3_hypersphere_good_only_near_rX"] = {
            "accuracy": sphere, "good_at_ratios": good_at, "best_ratio": float(max(sphere, key=sphere.get)),
            "holds": bool(good_at) and all(1 / 3 - 1e-9 <= r <= 3 + 1e-9 for r in good_at)
                     and "1" in sphere and sphere["1"] >= good}
    return out


def _argv(args) -> list[str]:
    return ["--epochs", str(args.epochs), "--seeds", *map(str, args.seeds), "--tasks", *args.tasks,
            "--log-every", str(args.log_every)]


def _f(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def _growth(g: dict) -> str:
    """The r exponents (mean +- sd over runs) of one fit summary."""
    def one(key):
        return f"{_f(g[key]['mean'])} +- {_f(g[key]['std'])}"
    return (f"r exponent beta/2 = {one('r_exponent')} over the whole run (n = {g['r_exponent']['n']}), "
            f"{one('r_exponent_early')} early, {one('r_exponent_late')} late; log r on log t late: {one('loglog_r')}")


def _each(values: dict, digits: int) -> str:
    """'0.1: 0.905, 0.3: 0.901' from {ratio: number}."""
    return ", ".join(f"{k}: {_f(v, digits)}" for k, v in values.items())


def readme(s: dict) -> str:
    lines = ["# The Goldilocks zone: accuracy against the radius (hyperplane vs hypersphere)", "",
             f"Generated by `{s['command']}` (run with `RLSUB_DATA=../shared/data nice -n 19`; every run "
             "in `runs/` holds its `config.json`, `metrics.jsonl` and `summary.json`). Git commit "
             f"{s['git_commit']}, {s['epochs']} epochs a run (the poster trained 15; this study's budget "
             f"was about 60 CPU-minutes on a shared 2-core machine), seeds {s['seeds']} of {s['seeds_asked']}, "
             f"Adam at each config's lr, total training wall time {s['wall_time_s_total'] / 60:.1f} min. The runs "
             f"record the commit they started from: {', '.join(s['run_commits']) or '-'} (\"+dirty\": started from "
             "uncommitted code, committed next in the history).",
             "", "Hyperplane: theta_D = theta_0 + P theta_d with theta_0 (the standard init, norm r_X) rescaled "
             "to r0 = ratio * r_X, the radius free to move. Hypersphere: theta_D = P theta_d held at "
             "||theta_D|| = r0 (radial gradient removed, renormalised after every step). Accuracy: test "
             "accuracy after the last epoch, mean over seeds [bootstrap 16-84% range of the mean].", "",
             "Reading these numbers: theta_d is trained by Adam at the config's fixed step size for every r0, so a "
             "step is large against a small radius and small against a large one; on the hypersphere the radius "
             "and the effective (angular) step size change together. The hypersphere starts at the point of span(P) "
             "nearest theta_0, rescaled to r0; with d << D that point is almost orthogonal to theta_0, so its start "
             "is a random direction of span(P) (as the poster's r = P theta), not the network's own init.", ""]
    for task, t in s["tasks"].items():
        base = t["baseline"]
        lines += [f"## {task} (d = {t['d']:,}, D = {t['D']:,}, r_X = {t['r_X']:.2f}, data: {t['data_source']})", ""]
        if "jpeg" in str(t["data_source"]).lower():
            lines += ["CIFAR-10 here is the JPEG re-encoding in ../shared/data (not the official pixels); "
                      "accuracies are a few points below the official release's.", ""]
        if base:
            lines += [f"Full-space baseline (from `{t['baseline_from']}`, its own epochs): {base['mean']:.4f}.", ""]
        lines += ["| r0 / r_X | hyperplane accuracy | radius end / r_X | hypersphere accuracy |", "|---|---|---|---|"]
        for r in s["ratios"]:
            h, p = t["cells"].get(f"hyperplane/{r:g}"), t["cells"].get(f"hypersphere/{r:g}")

            def a(c):
                if not c:
                    return "-"
                x = c["test_accuracy"]
                return f"{x['mean']:.4f} [{x['lo']:.4f}-{x['hi']:.4f}] (n={x['n']})"
            lines.append(f"| {r:g} | {a(h)} | {_f(h['radius_final_over_rX']['mean'] if h else None)} | {a(p)} |")
        lines += ["", "Growth of the radius from below (hyperplane, r0 < r_X), " + s["fit"] + ":", ""]
        for r, g in t["growth"].items():
            lines.append(f"- r0 = {r} r_X: {_growth(g)}")
        if t["growth_all"]["r_exponent"]["n"]:
            lines.append(f"- all runs below r_X: {_growth(t['growth_all'])}")
        c = t["claims"]
        if c:
            lines += ["", f"The poster's claims here (\"good\" = at least 90% of the best hyperplane accuracy, "
                      f"{c['best_hyperplane']:.4f}, i.e. >= {c['good_threshold']:.4f}):", ""]
            c1 = c.get("1_below_rX_grows_as_sqrt_t")
            if c1:
                lines.append(f"1. From below, r ~ sqrt(t) and a good solution near r_X: **{'holds' if c1['holds'] else 'does not hold'}**. "
                             f"Exponent {_f(c1['r_exponent']['mean'])} +- {_f(c1['r_exponent']['std'])} "
                             f"(sqrt: {c1['sqrt_t']}); final r / r_X "
                             f"{_each(c1['final_radius_over_rX'], 2)} "
                             f"(near r_X: {c1['ends_near_rX (0.5..2)']}); accuracy "
                             f"{_each(c1['accuracy'], 4)} (good: {c1['good_solution']}).")
            c2 = c.get("2_above_rX_stays_and_fails")
            if c2:
                lines.append(f"2. From above, the radius hardly changes and no good solution: **{'holds' if c2['holds'] else 'does not hold'}**. "
                             f"Final / initial radius {_each(c2['final_over_initial_radius'], 3)} "
                             f"(unchanged: {c2['radius_unchanged (within 10%)']}); accuracy "
                             f"{_each(c2['accuracy'], 4)} (none good: {c2['no_good_solution']}).")
            c3 = c.get("3_hypersphere_good_only_near_rX")
            if c3:
                lines.append(f"3. On the hypersphere, good only near r_X: **{'holds' if c3['holds'] else 'does not hold'}**. "
                             f"Accuracy {_each(c3['accuracy'], 4)}; good at r0 / r_X in "
                             f"{c3['good_at_ratios']} (\"near\" taken as 1/3 .. 3, and good at r_X itself); best at "
                             f"r0 = {c3['best_ratio']:g} r_X.")
        lines.append("")
    lines += ["Plot: `results/plots/goldilocks.png` (left: accuracy against r0 / r_X, seeds as dots; right: "
              "r(t) / r_X of the hyperplane runs, log-log).", ""]
    return "\n".join(lines)


def plot(s: dict, out: Path, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(s["tasks"])
    fig, axes = plt.subplots(len(tasks), 2, figsize=(11, 4 * len(tasks)), squeeze=False)
    colors = {"hyperplane": "tab:blue", "hypersphere": "tab:red"}
    for row, task in enumerate(tasks):
        t = s["tasks"][task]
        ax = axes[row][0]
        for mode in MODES:
            cs = [t["cells"][k] for k in t["cells"] if t["cells"][k]["mode"] == mode]
            xs = [c["ratio"] for c in cs]
            ax.plot(xs, [c["test_accuracy"]["mean"] for c in cs], "-o", color=colors[mode],
                    label=f"{mode} ({'started at' if mode == 'hyperplane' else 'held at'} r0)")
            ax.fill_between(xs, [c["test_accuracy"]["lo"] for c in cs], [c["test_accuracy"]["hi"] for c in cs],
                            color=colors[mode], alpha=0.2)
            for c in cs:
                ax.scatter([c["ratio"]] * c["test_accuracy"]["n"], c["test_accuracy"]["values"], s=8,
                           color=colors[mode], alpha=0.6)
        if t["baseline"]:
            ax.axhline(t["baseline"]["mean"], color="gray", ls="--", lw=1, label="full space (committed sweep)")
        ax.set_xscale("log")
        ax.set_xlabel("r0 / r_X")
        ax.set_ylabel(f"test accuracy after {s['epochs']} epochs")
        jpeg = " (CIFAR-10 JPEG copy)" if "jpeg" in str(t["data_source"]).lower() else ""
        ax.set_title(f"{task}, d = {t['d']:,}{jpeg}")
        ax.legend(fontsize=8)
        ax = axes[row][1]
        cmap = plt.get_cmap("viridis")
        for i, ratio in enumerate(s["ratios"]):
            for seed in s["seeds"]:
                folder = out / "runs" / point_name(task, "hyperplane", ratio, seed)
                rows = [r for r in read_metrics(folder, strict=True) if "step" in r and "test_acc" not in r and r["step"] > 0]
                if rows:
                    ax.plot([r["step"] for r in rows], [r["radius"] / t["r_X"] for r in rows],
                            color=cmap(i / (len(s["ratios"]) - 1)), lw=1,
                            label=f"r0 = {ratio:g} r_X" if seed == s["seeds"][0] else None)
        steps = np.array([10, 3000])
        ax.plot(steps, 0.5 * np.sqrt(steps / steps[0]) * 0.1, "k:", lw=1, label="slope 1/2 (sqrt t)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("optimiser step t")
        ax.set_ylabel("radius r(t) / r_X (hyperplane)")
        ax.set_title(f"{task}: r(t), {len(s['seeds'])} seeds each")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(p, "goldilocks", 5, ROOT)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--log-every", type=int, default=10, help="optimiser steps between radius rows")
    args = p.parse_args(argv)
    if not args.summarise:
        run(args)
    summarise(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
