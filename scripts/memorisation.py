"""Memorisation scaling: d_int90 of 100% random MNIST labels against the number of training images N.

Beyond the paper (issue 15, item 3). For each N one intrinsic-dimension sweep
(``configs/sweeps/mnist_fc5_memorisation.yaml``: FC 784-400x5-10, D = 959,610, every label random,
metric = training accuracy, adaptive bisection of d in [N / 4, 4 N]) is run with the sweep machinery
of ``rlsub sweep`` (resumable: finished points are reused), into ``RESULTS/n<N>/``. Then d_int90
(interpolated on log d) is fitted against N:

- a line d = a + b N, b = dimensions per memorised label;
- a power law d = c N^k (k < 1: each label costs fewer dimensions as N grows, the blog's
  "infrastructure for memorisation").

Uncertainty: a joint bootstrap over seeds (every N resampled at once: its baseline and each d's
runs, as in ``rlsub.analysis.bootstrap``), refitted per draw; 16-84% ranges of a, b, k and of the
prediction at N = 50,000 (the paper's 100%-shuffled point: 190,000 with its 50,000 training images) and
at N = 60,000 (all of MNIST's training images, ``results/mnist_fc5_shuffled_labels/``, shown beside it
when that sweep has a summary).

    RLSUB_DATA=../shared/data nice -n 19 mpirun -n 2 python scripts/memorisation.py --sizes 1000 2000 5000 10000
    RLSUB_DATA=../shared/data nice -n 19 mpirun -n 2 python scripts/memorisation.py --labels real --sizes 1000
    python scripts/memorisation.py --summarise                     # fit and plot what has finished

The control (``--labels real``): the same network, images, budget and metric with the images' own
labels, d bisected in [16, 4 N]: how many dimensions the same N images need when the labels follow
the images.

Writes ``RESULTS/summary.json``, ``RESULTS/README.md`` and ``results/plots/memorisation.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rlsub.analysis import d_int, threshold_of
from rlsub.rundir import command_line, git_commit, machine, write_json
from rlsub.subspace import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "configs" / "sweeps" / "mnist_fc5_memorisation.yaml"
PREDICT_AT = 60000
FULL_SWEEP = ROOT / "results" / "mnist_fc5_shuffled_labels"
#: Li et al. 2018, 100% shuffled labels: the blog (../shared/seeds/intrinsic-dimension-blog.txt) counts
#: "50,000 random labels", the paper's MNIST training set, every label random: the task measured here
PAPER = {"n": 50000, "d_int90": 190000, "source": "Li et al. 2018, MNIST FC5, 100% shuffled labels (50,000 images)"}
#: the blog's two points: 10% shuffled (5,000 random labels among 45,000 real ones, a different task)
#: and 100% shuffled (all 50,000 labels random)
BLOG = [{"random_labels": 5000, "of": 50000, "d_int90": 90000}, {"random_labels": 50000, "of": 50000, "d_int90": 190000}]


def sweep_config(n: int, args) -> dict:
    """The sweep for N images: random labels in ``n<N>/`` (d bisected in [N / 4, 4 N]); with
    ``--labels real``, the control with the images' own labels in ``real_n<N>/`` (d in [16, 4 N])."""
    from rlsub import sweep

    real = args.labels == "real"
    over = {"name": f"real_n{n}" if real else f"n{n}", "seeds": args.seeds,
            "overrides": {"subset": n, "epochs": args.epochs, **({"shuffle_labels": 0.0} if real else {})},
            "adaptive": {"d_min": 16 if real else max(1, n // 4), "d_max": 4 * n, "max_dims": 10 if real else 8}}
    return sweep.resolve(SWEEP, args.results, over)


def _sweep_folders(results: Path, prefix: str) -> list[tuple[int, Path]]:
    """(N, folder) of the finished sweeps named <prefix><N>, by N."""
    found = []
    for folder in results.glob(f"{prefix}*"):
        tail = folder.name[len(prefix):]
        if tail.isdigit() and (folder / "summary.json").exists():
            found.append((int(tail), folder))
    return sorted(found)


def run(args) -> None:
    from rlsub import sweep

    for n in args.sizes:
        sweep.run_sweep(sweep_config(n, args), command=command_line(), quiet=args.quiet)


def read_points(folder: Path) -> list[dict]:
    path = folder / "points.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def estimate(points: list[dict], frac: float, rng: np.random.Generator | None = None) -> float | None:
    """Interpolated d_int90 of one sweep's points; with ``rng``, of one bootstrap resample of its seeds."""
    base = [float(p["value"]) for p in points if p["dim"] == "full"]
    curve: dict[int, list[float]] = {}
    for p in points:
        if p["dim"] != "full":
            curve.setdefault(int(p["dim"]), []).append(float(p["value"]))
    dims = sorted(curve)
    if not base or not dims:
        return None
    if rng is not None:
        base = list(rng.choice(base, size=len(base)))
        curve = {d: list(rng.choice(curve[d], size=len(curve[d]))) for d in dims}
    lo = min(float(p.get("metric_min") or 0.0) for p in points)
    return d_int(dims, [float(np.mean(curve[d])) for d in dims], threshold_of(base, lo, frac))[1]


def fit(ns: np.ndarray, ds: np.ndarray) -> dict:
    """Least squares: d = a + b N, and log d = log c + k log N."""
    b, a = np.polyfit(ns, ds, 1)
    k, logc = np.polyfit(np.log(ns), np.log(ds), 1)
    c = math.exp(logc)
    return {"a": float(a), "b": float(b), "k": float(k), "c": float(c),
            "line_at": float(a + b * PREDICT_AT), "power_at": float(c * PREDICT_AT ** k),
            "line_at_paper": float(a + b * PAPER["n"]), "power_at_paper": float(c * PAPER["n"] ** k)}


def _shown(folder: Path) -> str:
    """A folder as the README names it: relative to the checkout when inside it."""
    return str(folder.relative_to(ROOT)) if folder.is_relative_to(ROOT) else str(folder)


def _step(folder: Path) -> float | None:
    """theta_d's Adam step at d = lr_ref_dim (the ``lr`` of the sweep's subspace runs), from a run's config."""
    for path in sorted((folder / "runs").glob("d*_s*/config.json")):
        config = json.loads(path.read_text())
        if config.get("dim") != "full":
            return config.get("lr")
    return None


def measured_full(folder: Path = FULL_SWEEP) -> dict | None:
    """The all-60,000-images sweep (item 2's), to set beside the fit's prediction; None before it has a summary."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    s = json.loads(path.read_text())
    return {"n": PREDICT_AT, "folder": _shown(folder), "d_int90": s["d_int90"],
            "step": _step(folder),
            "d_int90_interp": s["d_int90_interp"], "baseline": s["baseline"]["mean"], "threshold": s["threshold"],
            "budget_label": s.get("budget_label"), "epochs": s["budget"].get("epochs_per_point"),
            "curve": [{"dim": c["dim"], "mean": c["mean"]} for c in s["curve"]]}


def summarise(args) -> dict:
    results = Path(args.results)
    rows = []
    for n, folder in _sweep_folders(results, "n"):
        s = json.loads((folder / "summary.json").read_text())
        points = read_points(folder)
        rows.append({"n": n, "folder": _shown(folder),
                     "d_int90": s["d_int90"], "d_int90_interp": s["d_int90_interp"], "reached": s["reached"],
                     "baseline": s["baseline"], "threshold": s["threshold"], "curve": s["curve"],
                     "bootstrap": s.get("bootstrap"), "budget_settled": (s.get("budget_curve") or {}).get("settled"),
                     "dims_per_label": None if s["d_int90_interp"] is None else s["d_int90_interp"] / n,
                     "wall_time_s": s["budget"]["wall_time_s_total"], "git_commit": s["git_commit"],
                     "points": points, "epochs": s["budget"].get("epochs_per_point"), "step": _step(folder)})
    controls = []
    for n, folder in _sweep_folders(results, "real_n"):
        s = json.loads((folder / "summary.json").read_text())
        controls.append({"n": n, "d_int90": s["d_int90"], "d_int90_interp": s["d_int90_interp"],
                         "baseline": s["baseline"], "curve": s["curve"], "bootstrap": s.get("bootstrap"),
                         "budget_settled": (s.get("budget_curve") or {}).get("settled"),
                         "epochs": s["budget"].get("epochs_per_point")})
    used = [r for r in rows if r["d_int90_interp"] is not None]
    out: dict = {"study": "memorisation", "task": "mnist_fc5_shuffled_labels", "sizes": [r["n"] for r in rows],
                 "rows": [{k: v for k, v in r.items() if k != "points"} for r in rows], "paper": PAPER,
                 "real_label_controls": controls, "measured_full": measured_full(Path(args.full_sweep)),
                 "blog": BLOG, "predict_at": PREDICT_AT, "threshold_frac": args.threshold,
                 "command": command_line(), "git_commit": git_commit(), "machine": machine(),
                 "python": platform.python_version(), "written": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    if len(used) >= 2:
        ns = np.array([r["n"] for r in used], dtype=float)
        out["fit"] = fit(ns, np.array([r["d_int90_interp"] for r in used]))
        rng = np.random.default_rng(args.bootstrap_seed)
        draws, unreached = [], 0
        for _ in range(args.bootstrap):
            est = [estimate(r["points"], args.threshold, rng) for r in used]
            if any(e is None for e in est):
                unreached += 1
                continue
            draws.append(fit(ns, np.array(est)))
        ranges = {key: {f"p{q}": float(np.percentile([f[key] for f in draws], q)) for q in (16, 50, 84)}
                  for key in ("a", "b", "k", "line_at", "power_at", "line_at_paper", "power_at_paper")} if draws else {}
        out["fit_bootstrap"] = {"n": args.bootstrap, "seed": args.bootstrap_seed, "unreached_draws": unreached,
                                **ranges}
    write_json(results / "summary.json", out)
    atomic_write_text(results / "README.md", readme(out))
    if used:
        plot(out, Path(args.plot))
    return out


def _n(x, digits=0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def readme(s: dict) -> str:
    lines = ["# Memorisation scaling: d_int90 of random labels against the number of training images", "",
             f"Generated by `scripts/memorisation.py` ({s['written']}): `{s['command']}`, git {s['git_commit']}, "
             f"machine {s['machine']['host']} ({s['machine']['cpus']} CPUs).", "",
             "MNIST, FC 784-400x5-10 (D = 959,610), a subset of N training images, **every label random** "
             "(`shuffle_labels: 1.0`), metric = training accuracy on those N images (eval mode, after the last "
             "epoch). One adaptive sweep per N (`configs/sweeps/mnist_fc5_memorisation.yaml`, d bisected on a log "
             "scale in [N/4, 4N] until the bracket is within 1.25x), Fastfood projection, Adam, batch 128; theta_d's "
             "step 0.01 x sqrt(20,000 / d), full space 0.001. Threshold: 90% of the full-space baseline's training "
             "accuracy. Budget and seeds per row below; each point's learning curve is in `n<N>/runs/*/metrics.jsonl`.",
             "", "| N | epochs | seeds | baseline train acc | threshold | d_int90 (grid) | interpolated | bootstrap 16-84% "
             "| dims per label | budget curve settled | sweep wall time |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        b = r["bootstrap"] or {}
        lines.append(f"| {r['n']:,} | {_n(r['epochs'])} | {r['baseline']['n']} | {r['baseline']['mean']:.4f} "
                     f"| {r['threshold']:.4f} | {_n(r['d_int90'])} | {_n(r['d_int90_interp'])} "
                     f"| {_n(b.get('p16'))}-{_n(b.get('p84')) if b.get('p84') is not None else '>' + _n(b.get('censored_above'))} "
                     f"| {_n(r['dims_per_label'], 2)} | {r['budget_settled']} | {r['wall_time_s'] / 60:.0f} min |")
    lines += ["", "Curves (mean training accuracy over seeds at each d):", ""]
    for r in s["rows"]:
        lines.append(f"- N = {r['n']:,}: " + ", ".join(f"d {c['dim']:,}: {c['mean']:.3f}" for c in r["curve"]))
    if "fit" in s:
        f, fb = s["fit"], s.get("fit_bootstrap", {})

        def rng(key, digits=0):
            return "" if key not in fb else f" (16-84%: {_n(fb[key]['p16'], digits)} to {_n(fb[key]['p84'], digits)})"
        lines += ["", "## Fits (least squares on the interpolated d_int90; ranges from a joint bootstrap over seeds, "
                  f"{fb.get('n', 0)} draws, {fb.get('unreached_draws', 0)} with a point unreached left out)", "",
                  f"- Line: d_int90 = {f['a']:,.0f}{rng('a')} + {f['b']:.3f}{rng('b', 3)} x N: "
                  f"**{f['b']:.2f} dimensions per memorised label**.",
                  f"- Power law: d_int90 = {f['c']:.3g} x N^{f['k']:.3f}{rng('k', 3)}.",
                  f"- Predicted at N = {s['paper']['n']:,}: line {_n(f.get('line_at_paper'))}{rng('line_at_paper')}, "
                  f"power law {_n(f.get('power_at_paper'))}{rng('power_at_paper')}; the paper measured "
                  f"{s['paper']['d_int90']:,} there (100% shuffled labels, its {s['paper']['n']:,} training images).",
                  f"- Predicted at N = {s['predict_at']:,} (all of MNIST's training images): line {_n(f['line_at'])}"
                  f"{rng('line_at')}, power law {_n(f['power_at'])}{rng('power_at')}."]
    m = s.get("measured_full")
    if m:
        reached = (f"d_int90 {_n(m['d_int90'])} (interpolated {_n(m['d_int90_interp'])}, "
                   f"{m['d_int90_interp'] / m['n']:.2f} dimensions per label)" if m["d_int90"] is not None
                   else "threshold not reached at any d measured")
        lines += [f"- Measured at N = {m['n']:,} (`{m['folder']}/`, {m['budget_label']}): baseline {m['baseline']:.4f}, "
                  f"threshold {m['threshold']:.4f}, {reached}; accuracy by d: "
                  + ", ".join(f"{c['dim']:,}: {c['mean']:.3f}" for c in m["curve"]) + "."]
        if m["d_int90_interp"] is not None:
            steps = sorted({r.get("step") for r in s["rows"] if r.get("step") is not None})
            lines += [f"- Measured / predicted (line): {m['d_int90_interp'] / f['line_at']:.2f}x."
                      + (f" The fitted sweeps ran with theta_d's step {', '.join(f'{x:g}' for x in steps)} (at "
                         f"d = 20,000), the 60,000-image sweep with {m['step']:g}: the larger step never leaves "
                         "chance on 60,000 random labels (`results/archive/`), and on 10,000 a smaller one "
                         "memorises less (`step_check/`), so the fitted points would lie higher with the "
                         "smaller step. The line describes one recipe over N <= 10,000; it is not a law across N."
                         if m.get("step") is not None and steps and steps != [m["step"]] else "")]
    if s.get("real_label_controls"):
        lines += ["", "Control: the same network, images and budget with the images' own labels (`--labels real`, "
                  "`real_n<N>/`), same metric (training accuracy):", "",
                  "| N | baseline train acc | d_int90 (grid) | interpolated | random labels, interpolated | ratio |",
                  "|---|---|---|---|---|---|"]
        random_at = {r["n"]: r["d_int90_interp"] for r in s["rows"]}
        for c in s["real_label_controls"]:
            rnd = random_at.get(c["n"])
            ratio = f"{rnd / c['d_int90_interp']:.1f}x" if rnd and c["d_int90_interp"] else "-"
            lines.append(f"| {c['n']:,} | {c['baseline']['mean']:.4f} | {_n(c['d_int90'])} | {_n(c['d_int90_interp'])} "
                         f"| {_n(rnd)} | {ratio} |")
    lines += ["", "For comparison: MNIST FC with real labels has d_int90 = 750 (paper) for all 60,000 images "
              "(`results/mnist_fc/`, 784-200-200-10). The paper's 190,000 is this task at N = 50,000 (100% shuffled: "
              "every one of its 50,000 training labels random; the blog's 3.8 dimensions per label). Its 90,000 is "
              "10% shuffled (5,000 random labels among 45,000 real ones, the blog's 18 per label), a different task "
              "from N images that all carry random labels.", ""]
    return "\n".join(lines)


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rlsub.studies import save_figure

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in s["rows"]:
        dims = [c["dim"] for c in r["curve"]]
        ax[0].plot(dims, [c["mean"] for c in r["curve"]], "o-", label=f"N = {r['n']:,}")
        ax[0].axhline(r["threshold"], color=ax[0].lines[-1].get_color(), ls=":", lw=0.8)
    ax[0].set(xscale="log", xlabel="d", ylabel="training accuracy (mean over seeds)",
              title="random labels: accuracy vs d (dotted: 90% of baseline)")
    ax[0].legend(fontsize=8)
    used = [r for r in s["rows"] if r["d_int90_interp"] is not None]
    ns = np.array([r["n"] for r in used], dtype=float)
    ds = np.array([r["d_int90_interp"] for r in used])
    lo = [d - ((r["bootstrap"] or {}).get("p16") or d) for r, d in zip(used, ds)]
    hi = [((r["bootstrap"] or {}).get("p84") or d) - d for r, d in zip(used, ds)]
    ax[1].errorbar(ns, ds, yerr=[np.maximum(lo, 0), np.maximum(hi, 0)], fmt="o", label="measured (bootstrap 16-84%)")
    if "fit" in s:
        f = s["fit"]
        grid = np.geomspace(min(ns) / 1.5, s["predict_at"], 100)
        ax[1].plot(grid, f["a"] + f["b"] * grid, "-", label=f"line: {f['b']:.2f} dims per label")
        ax[1].plot(grid, f["c"] * grid ** f["k"], "--", label=f"power law: N^{f['k']:.2f}")
    controls = [c for c in s.get("real_label_controls", []) if c["d_int90_interp"] is not None]
    if controls:
        ax[1].plot([c["n"] for c in controls], [c["d_int90_interp"] for c in controls], "gD",
                   label="same images, real labels (control)")
    ax[1].plot([s["paper"]["n"]], [s["paper"]["d_int90"]], "k*", ms=12, label=f"paper (N = {s['paper']['n']:,})")
    m = s.get("measured_full")
    if m and m["d_int90_interp"] is not None:
        ax[1].plot([m["n"]], [m["d_int90_interp"]], "rs", label=f"measured, N = {m['n']:,} ({m['epochs']} epochs"
                   + (f", step {m['step']:g})" if m.get("step") is not None else ")"))
    elif m and m["curve"]:  # not reached: d_int90 lies above the largest d measured
        ax[1].plot([m["n"]], [max(c["dim"] for c in m["curve"])], "r^",
                   label=f"N = {m['n']:,}: above this d ({m['epochs']} epochs)")
    ax[1].set(xscale="log", yscale="log", xlabel="N (training images, all labels random)", ylabel="d_int90",
              title="d_int90 vs N")
    ax[1].legend(fontsize=8)
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    p.add_argument("--labels", choices=("random", "real"), default="random",
                   help="real: the control sweeps with the images' own labels (real_n<N>/)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--results", default=str(ROOT / "results" / "memorisation"))
    p.add_argument("--plot", default=str(ROOT / "results" / "plots" / "memorisation.png"))
    p.add_argument("--full-sweep", default=str(FULL_SWEEP),
                   help="the sweep on all 60,000 images, set beside the fit's prediction (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--bootstrap-seed", type=int, default=0)
    p.add_argument("--summarise", action="store_true", help="only fit and plot the finished sweeps")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if not args.summarise:
        run(args)
    from rlsub.sweep import _comm_or_none

    comm = _comm_or_none()
    if comm is None or comm.Get_rank() == 0:
        s = summarise(args)
        for r in s["rows"]:
            print(f"N = {r['n']:>6,}: d_int90 {_n(r['d_int90'])} (interpolated {_n(r['d_int90_interp'])})", file=sys.stderr)
        if "fit" in s:
            print(f"line: {s['fit']['b']:.3f} dims per label; power law exponent {s['fit']['k']:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
