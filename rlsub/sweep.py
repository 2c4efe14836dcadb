"""Intrinsic-dimension sweeps: run one trainer over d values x seeds plus a full-space baseline.

A sweep config (``configs/sweeps/NAME.yaml``) names a trainer and its config; each point
``(dim, seed)`` is a normal run directory under ``<results>/NAME/runs/``. A point counts as done
once its ``summary.json`` exists, so a sweep that stops resumes where it was: finished points are
skipped and a point killed half-way is run again from the start. ``points.jsonl`` (one line per
finished point) and ``summary.json`` are rewritten atomically after every point.

d_int90 (Li et al. 2018): the smallest d whose mean over seeds reaches 90% of the full-space
baseline, after shifting the metric so that its lowest possible value is 0. The summary also holds
an estimate interpolated on log d between the grid points around the threshold, and a bootstrap
over seeds for its uncertainty. ``mode: adaptive`` narrows d by bisection on a log scale instead
of running a whole grid.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from rlsub.config import (
    ConfigError,
    Dim,
    Float,
    Int,
    List,
    Mapping,
    Section,
    Str,
    explicit_nulls,
    resolve_config,
)
from rlsub.errors import UserError
from rlsub.rundir import git_commit, machine, write_json
from rlsub.subspace import atomic_write_text
from rlsub.trainers import get_trainer

SWEEP_DEFAULTS: dict = {
    "name": None,  # defaults to the config file's stem
    "trainer": "es",  # es | dqn | supervised
    "config": None,  # the trainer's config file
    "overrides": {},  # applied to every point (budget, hyperparameters)
    "baseline_overrides": {},  # applied to the full-space baseline points on top of overrides
    "dims": [],  # the grid of d (mode: grid)
    "seeds": [0, 1, 2],
    "baseline_seeds": None,  # defaults to seeds
    "threshold": 0.9,  # fraction of the (shifted) baseline
    "mode": "grid",  # grid | adaptive
    "adaptive": {"d_min": 1, "d_max": None, "ratio": 1.25, "max_dims": 12},
    "paper_task": None,  # key into rlsub.paper.PAPER for the report
    "bootstrap": 1000,  # resamples for the uncertainty
    "bootstrap_seed": 0,
}


#: the type and range of every key of SWEEP_DEFAULTS (checked by rlsub.config.check)
SWEEP_SCHEMA: dict = {
    "name": Str(null=True),
    "trainer": Str(),
    "config": Str(null=True),
    "overrides": Mapping(),
    "baseline_overrides": Mapping(),
    "dims": List(Dim()),
    "seeds": List(Int(min=0), min_len=1),
    "baseline_seeds": List(Int(min=0), min_len=1, null=True),
    "threshold": Float(gt=0, max=1),
    "mode": Str(choices=("grid", "adaptive")),
    "adaptive": Section({"d_min": Int(min=1), "d_max": Int(min=1, null=True), "ratio": Float(gt=1),
                         "max_dims": Int(min=2)}),
    "paper_task": Str(null=True),
    "bootstrap": Int(min=0),
    "bootstrap_seed": Int(min=0),
}


def resolve(path: str | Path, results_root: str | Path = "results", overrides: dict | None = None) -> dict:
    """The sweep config at ``path`` merged onto SWEEP_DEFAULTS, then ``overrides`` (``--set``), checked
    against SWEEP_SCHEMA."""
    try:
        config = resolve_config(SWEEP_DEFAULTS, SWEEP_SCHEMA, path, overrides or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    config["name"] = config["name"] or Path(path).stem
    get_trainer(config["trainer"])  # unknown trainer -> ConfigError
    if not config["config"] or not Path(config["config"]).is_file():
        raise ConfigError(f"{path}: 'config' must name the trainer's config file, got {config['config']!r}")
    if config["mode"] == "grid" and not config["dims"]:
        raise ConfigError(f"{path}: a grid sweep needs a non-empty 'dims' list")
    if "full" in config["dims"]:
        raise ConfigError(f"{path}: 'full' is the baseline, not a grid point")
    config["dims"] = sorted(set(config["dims"]))
    config["baseline_seeds"] = config["baseline_seeds"] or config["seeds"]
    from rlsub.paper import PAPER

    if config["paper_task"] is not None and config["paper_task"] not in PAPER:
        raise ConfigError(f"{path}: paper_task must be one of {', '.join(sorted(PAPER))} or null, "
                          f"got {config['paper_task']!r}")
    a = config["adaptive"]
    if a["d_max"] is not None and a["d_max"] < a["d_min"]:
        raise ConfigError(f"{path}: adaptive.d_max ({a['d_max']}) is below adaptive.d_min ({a['d_min']})")
    config["results"] = str(Path(results_root) / config["name"])
    return config


def _point_config(config: dict, dim, seed: int) -> dict:
    """The trainer config of one point (ConfigError for bad overrides)."""
    trainer = get_trainer(config["trainer"])
    overrides = explicit_nulls(copy.deepcopy(config["overrides"]))
    if dim == "full":
        overrides.update(explicit_nulls(copy.deepcopy(config["baseline_overrides"])))
    overrides.update(dim=dim, seed=seed)
    try:
        return trainer.resolve(config["config"], overrides)
    except ConfigError as exc:
        raise ConfigError(f"sweep {config['name']}, point d={dim} seed={seed}: {exc}") from None


def check_plan(config: dict) -> int | None:
    """Before anything runs: every point's config resolves, and every d of the grid (and the
    adaptive range) is at most D, which the trainer computes by building the network (no training).
    Returns D (None for a trainer that cannot tell)."""
    dims = list(config["dims"]) if config["mode"] == "grid" else [config["adaptive"]["d_min"]]
    if config["mode"] == "adaptive" and config["adaptive"]["d_max"]:
        dims.append(config["adaptive"]["d_max"])
    for seed in config["baseline_seeds"]:
        base = _point_config(config, "full", seed)
    for d in dims:
        for seed in config["seeds"]:
            _point_config(config, d, seed)
    dimension = getattr(get_trainer(config["trainer"]), "dimension", None)
    if dimension is None:
        return None
    D = int(dimension(base))
    too_big = [d for d in dims if d > D]
    if too_big:
        what = "adaptive.d_max" if config["mode"] == "adaptive" else "dims"
        raise ConfigError(f"sweep {config['name']}: {what} holds d = {too_big[0]}, above the network's D = {D}")
    return D


# --- analysis --------------------------------------------------------------------------------


def _curve(points: list[dict]) -> tuple[list[int], dict[int, list[float]]]:
    by_dim: dict[int, list[float]] = {}
    for p in points:
        if p["dim"] != "full":
            by_dim.setdefault(int(p["dim"]), []).append(float(p["value"]))
    return sorted(by_dim), by_dim


def d_int(dims: list[int], means: list[float], threshold: float) -> tuple[int | None, float | None]:
    """(smallest grid d whose mean reaches threshold, estimate interpolated on log d), or Nones.

    The interpolation runs between that d and the grid point before it, on the line through
    (log d, mean); at the first grid point the estimate is that point itself.
    """
    for k, (d, m) in enumerate(zip(dims, means)):
        if m >= threshold:
            if k == 0:
                return d, float(d)
            d0, m0 = dims[k - 1], means[k - 1]
            frac = (threshold - m0) / (m - m0) if m != m0 else 1.0
            return d, float(math.exp(math.log(d0) + frac * (math.log(d) - math.log(d0))))
    return None, None


def analyse(points: list[dict], threshold_frac: float = 0.9, n_boot: int = 1000, boot_seed: int = 0) -> dict:
    """Baseline, threshold, d_int90 (grid and interpolated) and a bootstrap over seeds."""
    base = [float(p["value"]) for p in points if p["dim"] == "full"]
    dims, by_dim = _curve(points)
    lo = min((float(p.get("metric_min", 0.0)) for p in points), default=0.0)
    out: dict = {"metric_min": lo, "threshold_frac": threshold_frac,
                 "curve": [{"dim": d, "mean": float(np.mean(by_dim[d])), "std": float(np.std(by_dim[d])),
                            "n": len(by_dim[d]), "values": by_dim[d]} for d in dims]}
    if not base:
        out.update(baseline=None, threshold=None, d_int90=None, d_int90_interp=None, reached=False)
        return out
    b_mean = float(np.mean(base))
    threshold = lo + threshold_frac * (b_mean - lo)
    means = [float(np.mean(by_dim[d])) for d in dims]
    d90, interp = d_int(dims, means, threshold)
    out.update(baseline={"mean": b_mean, "std": float(np.std(base)), "n": len(base), "values": base},
               threshold=threshold, d_int90=d90, d_int90_interp=interp, reached=d90 is not None)
    if dims and n_boot > 0:
        rng = np.random.default_rng(boot_seed)
        estimates, misses = [], 0
        for _ in range(n_boot):
            bb = rng.choice(base, size=len(base))
            th = lo + threshold_frac * (float(np.mean(bb)) - lo)
            ms = [float(np.mean(rng.choice(by_dim[d], size=len(by_dim[d])))) for d in dims]
            _, est = d_int(dims, ms, th)
            if est is None:
                misses += 1
            else:
                estimates.append(est)
        out["bootstrap"] = {
            "n": n_boot, "unreached_frac": misses / n_boot,
            "median": float(np.median(estimates)) if estimates else None,
            "p16": float(np.percentile(estimates, 16)) if estimates else None,
            "p84": float(np.percentile(estimates, 84)) if estimates else None,
        }
    return out


# --- running ----------------------------------------------------------------------------------


def point_name(dim, seed: int) -> str:
    return f"d{dim}_s{seed}"


def _read_points(results: Path) -> list[dict]:
    """The summaries of the finished points; UserError naming the file for one that is damaged or
    that does not hold the point its folder is named after (a copy, a duplicate)."""
    rows = []
    runs = results / "runs"
    if runs.is_dir():
        for summary in sorted(runs.glob("*/summary.json")):
            try:
                row = json.loads(summary.read_text())
                name = point_name(row["dim"], row["seed"])
                float(row["value"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{summary} is damaged ({type(exc).__name__}: {exc}); move its folder away "
                                f"to run the point again") from None
            if name != summary.parent.name:
                raise UserError(f"{summary} holds the point {name}, not {summary.parent.name} (a copied or "
                                f"duplicate run?); move it away")
            if row.get("metric_min") is None:
                raise UserError(f"{summary} has no metric_min (the lowest possible value of its metric); "
                                f"add it, or move its folder away to run the point again")
            rows.append(row)
    return rows


def _point_row(summary: dict, name: str) -> dict:
    keep = ("task", "trainer", "D", "d", "dim", "projection", "seed", "metric", "value", "metric_min",
            "timesteps", "epochs", "wall_time_s", "git_commit")
    return {"point": name, **{k: summary.get(k) for k in keep}}


def write_outputs(config: dict, command: str) -> dict:
    """Rewrite points.jsonl and summary.json from the finished points; returns the summary."""
    results = Path(config["results"])
    points = _read_points(results)
    rows = [_point_row(p, point_name(p["dim"], p["seed"])) for p in points]
    rows.sort(key=lambda r: (r["dim"] == "full", r["dim"] if r["dim"] != "full" else 0, r["seed"]))
    atomic_write_text(results / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    analysis = analyse(points, config["threshold"], config["bootstrap"], config["bootstrap_seed"])
    first = points[0] if points else {}
    summary = {
        "sweep": config["name"], "trainer": config["trainer"], "task": first.get("task"),
        "paper_task": config["paper_task"], "D": first.get("D"), "metric": first.get("metric"),
        "mode": config["mode"], "seeds": config["seeds"], "n_points": len(points),
        "budget": {"overrides": config["overrides"], "baseline_overrides": config["baseline_overrides"],
                   "timesteps_total": sum(p.get("timesteps") or 0 for p in points),
                   "epochs_per_point": first.get("epochs"),
                   "wall_time_s_total": sum(p.get("wall_time_s") or 0 for p in points)},
        "data_sources": sorted({str(p.get("data_source") or p.get("source")) for p in points
                                if p.get("data_source") or p.get("source")}),
        "command": command, "config_file": config["config"], "git_commit": git_commit(), "machine": machine(),
        **analysis,
    }
    write_json(results / "summary.json", summary)
    return summary


def _run_point(config: dict, dim, seed: int, quiet: bool, comm=None) -> dict:
    """Run (or skip, if finished) one point; returns its summary."""
    trainer = get_trainer(config["trainer"])
    name = point_name(dim, seed)
    run_dir = Path(config["results"]) / "runs" / name
    done = run_dir / "summary.json"
    tconfig = _point_config(config, dim, seed)
    if done.exists():
        _check_same_config(run_dir, tconfig, getattr(trainer, "DEFAULTS", {}))
        try:
            return json.loads(done.read_text())
        except ValueError as exc:
            raise UserError(f"{done} is damaged ({exc}); move its folder away to run the point again") from None
    rank0 = comm is None or comm.Get_rank() == 0
    if rank0 and run_dir.exists():  # a point killed half-way starts again from scratch (no summary: unfinished)
        shutil.rmtree(run_dir)
    if comm is not None:
        comm.Barrier()
    if not quiet and rank0:
        print(f"[{config['name']}] point dim={dim} seed={seed}", file=sys.stderr)
    kwargs = {"quiet": True} if "quiet" in inspect.signature(trainer.train).parameters else {}
    return trainer.train(tconfig, run_dir, **kwargs)


def _check_same_config(run_dir: Path, tconfig: dict, defaults: dict) -> None:
    """A finished point is reused only if it ran the config this sweep would run now. A key the
    point's record lacks (added to rlsub since) matches when it holds the trainer's default."""
    path = run_dir / "config.json"
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is damaged ({exc}); move its folder away to run the point again") from None
    now = json.loads(json.dumps(tconfig))  # the same normalisation (tuples -> lists) as the file
    changed = sorted(k for k in now if k in recorded and recorded[k] != now[k])
    changed += sorted(k for k in now if k not in recorded
                      and (k not in defaults or json.loads(json.dumps(defaults[k])) != now[k]))
    if changed:
        diffs = "; ".join(f"{k}: {recorded.get(k, '(absent)')!r} -> {now[k]!r}" for k in changed[:5])
        raise ConfigError(f"{run_dir} was run with another config ({diffs}). A sweep resumes only with the "
                          f"settings it started with: restore them, or move the results folder away to start "
                          f"afresh.")


def _adaptive_next(config: dict, points: list[dict], D: int) -> list[int]:
    """The next d to evaluate by log-scale bisection, or [] when the bracket is narrow enough."""
    a = config["adaptive"]
    d_min, d_max = int(a["d_min"]), int(a["d_max"] or D)
    analysis = analyse(points, config["threshold"], n_boot=0)
    if analysis["threshold"] is None:
        return []
    evaluated = {c["dim"]: c["mean"] for c in analysis["curve"] if c["n"] >= len(config["seeds"])}
    for d in (d_min, d_max):
        if d not in evaluated:
            return [d]
    if len(evaluated) >= a["max_dims"]:
        return []
    th = analysis["threshold"]
    above = [d for d, m in evaluated.items() if m >= th]
    if not above:
        return []  # not reached even at d_max
    hi = min(above)
    below = [d for d in evaluated if d < hi]
    if not below:
        return []
    lo = max(below)
    if hi - lo <= 1 or hi / lo <= a["ratio"]:
        return []
    mid = int(round(math.sqrt(lo * hi)))
    mid = min(max(mid, lo + 1), hi - 1)
    return [mid]


def run_sweep(config: dict, command: str = "", quiet: bool = False) -> dict:
    """Run every unfinished point of the sweep; returns the sweep summary."""
    comm = _comm_or_none()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    results = Path(config["results"])
    check_plan(config)  # bad overrides or d > D end the sweep before anything runs or is written
    if rank == 0:
        check_results_dir(results)
        _read_points(results)  # a damaged point summary is reported before anything runs
    results.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_json(results / "sweep_config.json", config)
    t0 = time.time()
    plan = [("full", s) for s in config["baseline_seeds"]]
    if config["mode"] == "grid":
        plan += [(d, s) for d in config["dims"] for s in config["seeds"]]
    _execute(config, plan, comm, quiet, command)
    if config["mode"] == "adaptive":
        D = json.loads((results / "runs" / point_name("full", config["baseline_seeds"][0]) / "summary.json").read_text())["D"]
        while True:
            nxt = _adaptive_next(config, _read_points(results), D)
            if not nxt:
                break
            _execute(config, [(d, s) for d in nxt for s in config["seeds"]], comm, quiet, command)
    summary = write_outputs(config, command) if rank == 0 else None
    if comm is not None:
        summary = comm.bcast(summary, root=0)
    if not quiet and rank == 0:
        print(f"[{config['name']}] done in {time.time() - t0:.0f} s", file=sys.stderr)
    return summary


def check_results_dir(path: Path) -> None:
    """UserError unless the sweep can write ``path``: not a file, not under a file, writable."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot write the sweep's results to {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the sweep's results to {path}: {existing} is not writable")


def _execute(config: dict, plan: list, comm, quiet: bool, command: str) -> None:
    size = comm.Get_size() if comm is not None else 1
    rank = comm.Get_rank() if comm is not None else 0
    if config["trainer"] == "es" or size == 1:
        for dim, seed in plan:  # ES points use all ranks
            _run_point(config, dim, seed, quiet, comm if config["trainer"] == "es" else None)
            if rank == 0:
                write_outputs(config, command)
    else:
        for k, (dim, seed) in enumerate(plan):  # other trainers: points spread over ranks
            if k % size == rank:
                _run_point(config, dim, seed, quiet, None)
                write_outputs(config, command)
        comm.Barrier()


def _comm_or_none():
    try:
        from mpi4py import MPI
    except ImportError:  # pragma: no cover - mpi4py is a dependency
        return None
    return MPI.COMM_WORLD


def format_result(summary: dict) -> str:
    """One line saying d_int90, for the terminal."""
    name = summary["sweep"]
    if summary.get("baseline") is None:
        return f"{name}: no baseline yet"
    b = summary["baseline"]
    head = f"{name}: baseline {b['mean']:.3g} +- {b['std']:.2g} (n={b['n']}), threshold {summary['threshold']:.3g}"
    if not summary["reached"]:
        top = max((c["dim"] for c in summary["curve"]), default=None)
        return f"{head}; d_int90 not reached up to d = {top}"
    boot = summary.get("bootstrap") or {}
    unc = f" [bootstrap 16-84%: {boot['p16']:.3g}-{boot['p84']:.3g}]" if boot.get("p16") is not None else ""
    return f"{head}; d_int90 = {summary['d_int90']} (interpolated {summary['d_int90_interp']:.3g}){unc}"
