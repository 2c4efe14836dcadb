"""The nonlinear-projection study: MNIST FC test accuracy at fixed d for five maps theta_d -> theta_D.

The slides (Lam & Lee 2020; ../shared/seeds/nonlinear-projections-slides.txt) conclude
"RFF > linear ~ power terms", with RFF helping most at small d. Every map here uses a dense P (the
only one that can be trained or left unnormalised), the same network, optimiser, step size, epochs
and seeds:
  linear        theta_0 + P theta_d                              (P [D, d], unit-norm columns)
  power         theta_0 + P [theta_d; theta_d^2]                 (P [D, 2d])
  rff           theta_0 + P [theta_d; cos(B theta_d) - 1; sin(B theta_d)], d / 2 features
                (P [D, 2d], the width of power's; B entries N(0, rff_scale^2))
  rff_low       rff with B 1/30 as large (``--rff-scale-low`` 0.03): after training, linear theta_d at
                d = 50 has a norm of about 35 here, so with scale 1 the phases B theta_d span tens of
                radians; at 0.03 they stay of order 1. Chosen from the linear runs' theta_d before any
                rff_low run, and reported beside rff, not instead of it.
  unnormalised  linear with P's entries N(0, 1/D), columns not rescaled
  trainable     linear with P trained too (Adam, its own step size ``--projection-lr``); no longer a
                d-dimensional search: the trained-parameter count d + D d is recorded. Only where
                P, its gradient and Adam's moments fit the trainer's cap (2 GiB).
Resumable (run the same command again). Writes results/nonlinear/{summary.json,README.md,runs/}
and results/plots/nonlinear.png.

    RLSUB_DATA=../shared/data nice -n 19 python scripts/nonlinear.py
    python scripts/nonlinear.py --summarise
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from rlsub.config import ConfigError
from rlsub.projections import MAX_DENSE_BYTES
from rlsub.rundir import command_line, git_commit, machine, read_json, write_json
from rlsub.studies import add_study_arguments, bootstrap_mean, run_point, save_figure
from rlsub.subspace import atomic_write_text, check_trainable
from rlsub.supervised import trainer

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/supervised/mnist_fc.yaml"
MAPS = ("linear", "power", "rff", "rff_low", "unnormalised", "trainable")
#: the maps whose "RFF > linear ~ power" verdict is given (the slides' rff at two scales of B)
RFF_MAPS = ("rff", "rff_low")


def map_keys(name: str, d: int, args) -> dict:
    """The config keys of one map at dimension d."""
    keys = {"projection": "dense"}
    if name == "power":
        keys["augment"] = "power"
    elif name in RFF_MAPS:
        scale = args.rff_scale if name == "rff" else args.rff_scale_low
        keys.update(augment="rff", rff_features=max(1, d // 2), rff_scale=scale)
    elif name == "unnormalised":
        keys["normalize_columns"] = False
    elif name == "trainable":
        keys.update(trainable_projection=True, projection_lr=args.projection_lr)
    return keys


def point_name(name: str, d: int, seed: int) -> str:
    return f"{name}__d{d}__s{seed}"


def points(args):
    """(map, d, seed, config or the ConfigError that refuses it), d-major (the small, cheap d first)."""
    for d in args.dims:
        for seed in args.seeds:
            for name in MAPS:
                overrides = {"dim": d, "seed": seed, "epochs": args.epochs, "threads": 1, **map_keys(name, d, args)}
                if name == "trainable" and d not in args.trainable_dims:
                    yield name, d, seed, ConfigError(f"a trained {d}-column P costs too much time for this "
                                                     f"budget (--trainable-dims {' '.join(map(str, args.trainable_dims))})")
                    continue
                try:
                    config = trainer.resolve(str(ROOT / CONFIG), overrides)
                    if name == "trainable":  # refused by the model's own memory check, before any run
                        check_trainable("dense", trainer.dimension(config), d, MAX_DENSE_BYTES)
                except ConfigError as exc:
                    yield name, d, seed, exc
                    continue
                yield name, d, seed, config


def run(args) -> None:
    runs = Path(args.out) / "runs"
    for name, d, seed, config in points(args):
        if isinstance(config, ConfigError):
            continue
        t0 = time.time()
        summary, trained = run_point(config, runs / point_name(name, d, seed))
        if trained:
            print(f"{name} d={d} seed={seed}: test accuracy {summary['test_accuracy']:.4f}, "
                  f"{summary['trained_parameters']:,} trained, {time.time() - t0:.0f} s", flush=True)
            summarise(args)


def summarise(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cells, refused, wall, seeds_done, D, commits = {}, {}, 0.0, set(), None, set()
    for name, d, seed, config in points(args):
        key = f"{name}/{d}"
        if isinstance(config, ConfigError):
            refused[key] = str(config)
            continue
        folder = out / "runs" / point_name(name, d, seed)
        if not (folder / "summary.json").exists():
            continue
        s = read_json(folder / "summary.json")
        seeds_done.add(seed)
        commits.add(s.get("git_commit"))
        wall += s["wall_time_s"]
        D = s["D"]
        c = cells.setdefault(key, {"map": name, "d": d, "projection_width": s["projection_width"],
                                   "trained_parameters": s["trained_parameters"], "acc": [], "seeds": [],
                                   "wall_time_s": []})
        c["acc"].append(s["test_accuracy"])
        c["seeds"].append(seed)
        c["wall_time_s"].append(s["wall_time_s"])
    for c in cells.values():
        c["test_accuracy"] = bootstrap_mean(c.pop("acc"))
    base_path = ROOT / "results/mnist_fc/summary.json"
    summary = {"study": "nonlinear", "task": "mnist_fc", "config_file": CONFIG, "D": D,
               "command": "python scripts/nonlinear.py " + " ".join(_argv(args)), "run_command": command_line(),
               "git_commit": git_commit(), "run_commits": sorted(c for c in commits if c), "machine": machine(), "python": platform.python_version(),
               "epochs": args.epochs, "seeds": sorted(seeds_done), "seeds_asked": list(args.seeds),
               "dims": list(args.dims), "trainable_dims": list(args.trainable_dims), "maps": list(MAPS), "rff_scale": args.rff_scale, "rff_scale_low": args.rff_scale_low,
               "projection_lr": args.projection_lr, "wall_time_s_total": wall, "cells": cells, "refused": refused,
               "baseline": read_json(base_path)["baseline"] if base_path.exists() else None,
               "baseline_from": "results/mnist_fc/summary.json", "verdict": verdict(cells, args.dims),
               "plot": "results/plots/nonlinear.png"}
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "README.md", readme(summary))
    if cells:
        plot(summary, Path(args.plot))
    return summary


def verdict(cells: dict, dims) -> dict:
    """"RFF > linear ~ power" at each d: whether the bootstrap ranges of the means are apart or overlap."""
    def rng(name, d):
        c = cells.get(f"{name}/{d}")
        return c["test_accuracy"] if c else None

    out = {}
    for d in dims:
        for rff in RFF_MAPS:
            lin, pw, rf = rng("linear", d), rng("power", d), rng(rff, d)
            if not (lin and pw and rf):
                continue
            power_overlaps = not (pw["lo"] > lin["hi"] or pw["hi"] < lin["lo"])
            out[str(d) if rff == "rff" else f"{d} ({rff})"] = {
                "rff": rff, "rff_minus_linear": rf["mean"] - lin["mean"], "power_minus_linear": pw["mean"] - lin["mean"],
                "rff_above_linear": rf["lo"] > lin["hi"], "rff_below_linear": rf["hi"] < lin["lo"],
                "power_overlaps_linear": power_overlaps, "holds": rf["lo"] > lin["hi"] and power_overlaps}
    return out


def _argv(args) -> list[str]:
    return ["--epochs", str(args.epochs), "--seeds", *map(str, args.seeds), "--dims", *map(str, args.dims),
            "--trainable-dims", *map(str, args.trainable_dims),
            "--rff-scale", f"{args.rff_scale:g}", "--rff-scale-low", f"{args.rff_scale_low:g}",
            "--projection-lr", f"{args.projection_lr:g}"]


def readme(s: dict) -> str:
    lines = ["# Nonlinear and trainable projections on MNIST FC (accuracy at fixed d)", "",
             f"Generated by `{s['command']}` (run with `RLSUB_DATA=../shared/data nice -n 19`; every run in "
             f"`runs/` holds its `config.json`, `metrics.jsonl` and `summary.json`). Git commit {s['git_commit']}; "
             f"`{s['config_file']}` (FC 784-200-200-10, D = {s['D'] or 0:,}, Adam, its lr for theta_d) with a dense P "
             f"for every map, {s['epochs']} epochs a run (a budget of about 30 CPU-minutes on a shared 2-core "
             f"machine: a dense P costs far more per step than the Fastfood P of the d_int90 sweeps, so this "
             f"study stops at d = {max(s['dims'])} and trains P only at d = {', '.join(map(str, s['trainable_dims']))}), seeds {s['seeds']} of {s['seeds_asked']}, rff_features = d / 2, rff_scale = "
             f"{s['rff_scale']:g} (rff_low: {s['rff_scale_low']:g}), trainable P at its own Adam step {s['projection_lr']:g}; total training wall "
             f"time {s['wall_time_s_total'] / 60:.1f} min; run commits {', '.join(s['run_commits']) or '-'}. "
             "Test accuracy after the last epoch: mean over seeds "
             "[bootstrap 16-84% range of the mean] (n).", ""]
    if s["baseline"]:
        lines += [f"Full-space baseline (from `{s['baseline_from']}`, 5 epochs): {s['baseline']['mean']:.4f}.", ""]
    lines += ["| map | " + " | ".join(f"d = {d}" for d in s["dims"]) + " |",
              "|---|" + "---|" * len(s["dims"])]
    for name in s["maps"]:
        cellstr = []
        for d in s["dims"]:
            c = s["cells"].get(f"{name}/{d}")
            if c:
                a = c["test_accuracy"]
                cellstr.append(f"{a['mean']:.4f} [{a['lo']:.4f}-{a['hi']:.4f}] ({a['n']})")
            else:
                cellstr.append("not run (see below)" if f"{name}/{d}" in s["refused"] else "-")
        lines.append(f"| {name} | " + " | ".join(cellstr) + " |")
    lines += ["", "Reading the table: `unnormalised` draws P's entries N(0, 1/D) and leaves the columns alone; with D "
              "this large their norms are already within about sqrt(2 / D) of 1, so it can differ from `linear` only "
              "by that. `trainable` trains every entry of P as well, d + D d numbers: more than the network's own D, "
              "so it is full-space training in another parameterisation, not a d-dimensional search. Its trained P "
              "(D x d floats, 40 MB at d = 50) is not kept in `runs/`, so those runs cannot be reloaded.", "",
              "Trained parameters (what the optimiser actually searches) and P's width:", ""]
    for key, c in s["cells"].items():
        lines.append(f"- {key}: {c['trained_parameters']:,} trained, P of width {c['projection_width']:,}, "
                     f"{sum(c['wall_time_s']) / max(1, len(c['wall_time_s'])):.0f} s a run")
    for key, why in s["refused"].items():
        lines.append(f"- {key}: not run ({why})")
    lines += ["", "\"RFF > linear ~ power\" (RFF's range above linear's, power's overlapping it):", ""]
    for d, v in s["verdict"].items():
        lines.append(f"- d = {d}: {v['rff']} - linear = {v['rff_minus_linear']:+.4f}, power - linear = "
                     f"{v['power_minus_linear']:+.4f}; rff above linear: {v['rff_above_linear']}, rff below "
                     f"linear: {v['rff_below_linear']}, power overlaps linear: {v['power_overlaps_linear']} -> "
                     f"**{'holds' if v['holds'] else 'does not hold'}**")
    lines += ["", "Plot: `results/plots/nonlinear.png`.", ""]
    return "\n".join(lines)


def plot(s: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in s["maps"]:
        cs = sorted((c for c in s["cells"].values() if c["map"] == name), key=lambda c: c["d"])
        if not cs:
            continue
        xs = [c["d"] for c in cs]
        line = ax.plot(xs, [c["test_accuracy"]["mean"] for c in cs], "-o", label=name)[0]
        ax.fill_between(xs, [c["test_accuracy"]["lo"] for c in cs], [c["test_accuracy"]["hi"] for c in cs],
                        color=line.get_color(), alpha=0.2)
        for c in cs:
            ax.scatter([c["d"]] * c["test_accuracy"]["n"], c["test_accuracy"]["values"], s=8,
                       color=line.get_color(), alpha=0.6)
    if s["baseline"]:
        ax.axhline(s["baseline"]["mean"], color="gray", ls="--", lw=1, label="full space (5 epochs)")
        ax.axhline(0.9 * s["baseline"]["mean"], color="gray", ls=":", lw=1, label="90% of it")
    ax.set_xscale("log")
    ax.set_xlabel("d (trained coordinates of theta_d)")
    ax.set_ylabel(f"test accuracy after {s['epochs']} epochs")
    ax.set_title(f"MNIST FC, dense P: nonlinear / trainable maps ({len(s['seeds'])} seeds, 16-84% bootstrap)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_study_arguments(p, "nonlinear", 2, ROOT)
    p.add_argument("--dims", type=int, nargs="+", default=[50, 200])
    p.add_argument("--trainable-dims", type=int, nargs="+", default=[50], help="the d at which P is trained too")
    p.add_argument("--rff-scale", type=float, default=1.0)
    p.add_argument("--rff-scale-low", type=float, default=0.03, help="B's scale for the map rff_low")
    p.add_argument("--projection-lr", type=float, default=1e-3, help="Adam step for a trained P (the config's full_lr)")
    args = p.parse_args(argv)
    if not args.summarise:
        run(args)
    summarise(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
