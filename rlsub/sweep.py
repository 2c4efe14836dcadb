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

from rlsub.analysis import analyse_sweep, budget_curve, budget_of, fmt_number
from rlsub.config import (
    Bool,
    ConfigError,
    Dim,
    Float,
    Int,
    List,
    Mapping,
    Section,
    Str,
    check,
    explicit_nulls,
    merge,
    resolve_config,
)
from rlsub.errors import UserError
from rlsub.rundir import RunDir, check_writable, git_commit, machine, read_metrics, write_json
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
    "spread_points": False,  # ES under mpirun: one point per rank (True) or every rank on each point;
                             # the other trainers always spread their points over the ranks
    "cross_check": None,  # {optimizer, max_dim, below_threshold_only, overrides}: re-run points at
                          # d <= max_dim with a second optimizer in the same subspace (ES)
    "fixed_criterion": None,  # {key, threshold, label}: d reaching a fixed value of a summary key
                              # (e.g. the paper's "solved" test), beside the baseline-relative d_int90
    "budget_label": None,  # words the report puts before the budget (e.g. "budget-limited: ...")
    "final_eval": None,  # {episodes, seed} (RL): a point's value is the mean return of its final policy
                         # over this many noiseless episodes (reset seeds seed, seed + 1, ...), evaluated
                         # once it has finished and kept in its folder (final_eval.json); the trainer's
                         # own last evaluation stays in points.jsonl as value_training_eval
}

CROSS_CHECK_SCHEMA = {"optimizer": Str(), "max_dim": Int(min=1), "below_threshold_only": Bool(),
                      "overrides": Mapping()}
CROSS_CHECK_DEFAULTS = {"optimizer": "cma_es", "max_dim": 16, "below_threshold_only": False, "overrides": {}}
FINAL_EVAL_SCHEMA = {"episodes": Int(min=1), "seed": Int(min=0)}
FINAL_EVAL_DEFAULTS = {"episodes": 50, "seed": 100_000}


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
    "spread_points": Bool(),
    "cross_check": Mapping(null=True),  # checked against CROSS_CHECK_SCHEMA
    "fixed_criterion": Mapping(null=True),
    "budget_label": Str(null=True),
    "final_eval": Mapping(null=True),  # checked against FINAL_EVAL_SCHEMA
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
    if not config["config"]:
        raise ConfigError(f"{path}: 'config' must name the trainer's config file, got {config['config']!r}")
    # relative to the sweep file's folder (or a shipped config's name), not to the working folder
    from rlsub.named_configs import resolve_relative

    kind = {"es": "es", "dqn": "dqn", "supervised": "supervised"}.get(config["trainer"])
    config["config"] = resolve_relative(config["config"], path, kind)
    if config["mode"] == "grid" and not config["dims"]:
        raise ConfigError(f"{path}: a grid sweep needs a non-empty 'dims' list")
    if "full" in config["dims"]:
        raise ConfigError(f"{path}: 'full' is the baseline, not a grid point")
    config["dims"] = sorted(set(config["dims"]))
    config["baseline_seeds"] = config["baseline_seeds"] or config["seeds"]
    if config["cross_check"] is not None:
        if config["trainer"] != "es":
            raise ConfigError(f"{path}: cross_check re-runs ES points with another optimizer; trainer is "
                              f"{config['trainer']!r}")
        config["cross_check"] = check(merge(CROSS_CHECK_DEFAULTS, config["cross_check"], f"{path}: cross_check"),
                                      CROSS_CHECK_SCHEMA, f"{path}: cross_check")
    if config["final_eval"] is not None:
        if config["trainer"] not in ("es", "dqn"):
            raise ConfigError(f"{path}: final_eval re-evaluates RL policies; trainer is {config['trainer']!r}")
        config["final_eval"] = check(merge(FINAL_EVAL_DEFAULTS, config["final_eval"], f"{path}: final_eval"),
                                     FINAL_EVAL_SCHEMA, f"{path}: final_eval")
    fixed = config["fixed_criterion"]
    if fixed is not None and (not isinstance(fixed, dict) or set(fixed) - {"key", "threshold", "label"}
                              or not isinstance(fixed.get("key"), str)
                              or not isinstance(fixed.get("threshold"), (int, float))):
        raise ConfigError(f"{path}: fixed_criterion needs key (a summary key) and threshold (a number), got {fixed!r}")
    from rlsub.paper import PAPER

    if config["paper_task"] is not None and config["paper_task"] not in PAPER:
        raise ConfigError(f"{path}: paper_task must be one of {', '.join(sorted(PAPER))} or null, "
                          f"got {config['paper_task']!r}")
    a = config["adaptive"]
    if a["d_max"] is not None and a["d_max"] < a["d_min"]:
        raise ConfigError(f"{path}: adaptive.d_max ({a['d_max']}) is below adaptive.d_min ({a['d_min']})")
    config["results"] = str(Path(results_root) / config["name"])
    return config


def _point_config(config: dict, dim, seed: int, optimizer: str | None = None) -> dict:
    """The trainer config of one point (ConfigError for bad overrides); ``optimizer`` for a
    cross-check point."""
    trainer = get_trainer(config["trainer"])
    overrides = explicit_nulls(copy.deepcopy(config["overrides"]))
    if dim == "full":
        overrides.update(explicit_nulls(copy.deepcopy(config["baseline_overrides"])))
    if optimizer:
        overrides.update(explicit_nulls(copy.deepcopy(config["cross_check"]["overrides"])), optimizer=optimizer)
    overrides.update(dim=dim, seed=seed)
    try:
        return trainer.resolve(config["config"], overrides)
    except ConfigError as exc:
        what = f" optimizer={optimizer}" if optimizer else ""
        raise ConfigError(f"sweep {config['name']}, point d={dim} seed={seed}{what}: {exc}") from None


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
            if config["cross_check"] and d <= config["cross_check"]["max_dim"]:
                _point_config(config, d, seed, config["cross_check"]["optimizer"])
    dimension = getattr(get_trainer(config["trainer"]), "dimension", None)
    if dimension is None:
        return None
    D = int(dimension(base))
    too_big = [d for d in dims if d > D]
    if too_big:
        what = "adaptive.d_max" if config["mode"] == "adaptive" else "dims"
        raise ConfigError(f"sweep {config['name']}: {what} holds d = {too_big[0]}, above the network's D = {D}")
    return D


# --- running ----------------------------------------------------------------------------------


def point_name(dim, seed: int, optimizer: str | None = None) -> str:
    """``d<dim>_s<seed>``, with ``__<optimizer>`` for a cross-check point."""
    return f"d{dim}_s{seed}" + (f"__{optimizer}" if optimizer else "")


def _read_points(results: Path, final_eval: dict | None = None, config: dict | None = None,
                 left_out: list | None = None) -> list[dict]:
    """Every finished point's summary, with its folder name (``point``) and budget (from its config);
    UserError naming the file for one that is damaged or that does not hold the point its folder is
    named after (a copy, a duplicate). With ``final_eval`` ({episodes, seed}) a point's value is its
    final policy's mean return over those episodes (:func:`final_evaluation`). With the sweep's
    ``config``, only the points of this sweep as configured now: a point of another seed, or run with
    other settings or another budget, is left out (appended to ``left_out`` as {point, reason})."""
    rows = []
    runs = results / "runs"
    if runs.is_dir():
        for summary in sorted(runs.glob("*/summary.json")):
            try:
                row = json.loads(summary.read_text())
                names = {point_name(row["dim"], row["seed"]), point_name(row["dim"], row["seed"], row.get("optimizer"))}
                float(row["value"])
            except (ValueError, KeyError, TypeError) as exc:
                raise UserError(f"{summary} is damaged ({type(exc).__name__}: {exc}); move its folder away "
                                f"to run the point again") from None
            if summary.parent.name not in names:
                raise UserError(f"{summary} holds the point {min(names)}, not {summary.parent.name} (a copied or "
                                f"duplicate run?); move it away")
            if row.get("metric_min") is None:
                raise UserError(f"{summary} has no metric_min (the lowest possible value of its metric); "
                                f"add it, or move its folder away to run the point again")
            reason = None if config is None else _left_out(config, row, summary.parent)
            if reason is not None:
                if left_out is not None:
                    left_out.append({"point": summary.parent.name, "reason": reason})
                continue
            config_path = summary.parent / "config.json"
            recorded = json.loads(config_path.read_text()) if config_path.exists() else {}
            if final_eval is not None:
                fe = final_evaluation(summary.parent, final_eval)
                row = {**row, "value_training_eval": row["value"], "value": fe["value"],
                       "final_eval_episodes": fe["episodes"]}
            rows.append({**row, "point": summary.parent.name, **budget_of(row, recorded)})
    return rows


def _left_out(config: dict, row: dict, run_dir: Path) -> str | None:
    """Why the finished point in ``run_dir`` is not a point of this sweep as configured now (None if it
    is): a seed outside the sweep's seeds, a cross-check point of a sweep without one, or a record that
    differs from the config the sweep would run it with (other settings, or a budget that has since
    grown or shrunk). Such points stay on disk; the summary and the analysis leave them out, so one
    sweep's numbers never mix seeds or budgets it was not asked for."""
    full = row["dim"] == "full"
    seeds = config["baseline_seeds"] if full else config["seeds"]
    if row["seed"] not in seeds:
        return f"seed {row['seed']} is not among the sweep's {'baseline ' if full else ''}seeds {list(seeds)}"
    optimizer = None
    if run_dir.name != point_name(row["dim"], row["seed"]):  # a cross-check point (its optimizer in its name)
        if config["cross_check"] is None:
            return "a cross-check point, and the sweep has no cross_check"
        optimizer = config["cross_check"]["optimizer"]
    trainer = get_trainer(config["trainer"])
    tconfig = _point_config(config, row["dim"], row["seed"], optimizer)
    grown = _grown_budget(run_dir, tconfig, trainer)
    if grown:
        return "its budget is below the sweep's (" + ", ".join(f"{k} -> {tconfig[k]}" for k in grown) + ")"
    diffs = _config_changes(run_dir, tconfig, getattr(trainer, "DEFAULTS", {}))
    return None if diffs is None else f"run with another config ({diffs})"


def final_evaluation(run_dir: Path, spec: dict) -> dict:
    """The finished run's final policy evaluated over ``spec['episodes']`` noiseless episodes (reset
    seeds ``spec['seed'] + k``), as ``rlsub eval RUN --episodes N --seed S`` gives it. Kept in
    ``final_eval.json`` and reused while the episodes, seed and theta_d are the same (a run that is
    re-done gets evaluated again)."""
    import hashlib

    path = run_dir / "final_eval.json"
    theta_hash = hashlib.sha256((run_dir / "theta_d.npy").read_bytes()).hexdigest()
    if path.exists():
        try:
            kept = json.loads(path.read_text())
        except ValueError:
            kept = {}
        if (kept.get("episodes"), kept.get("seed"), kept.get("theta_d_sha256")) == (
                spec["episodes"], spec["seed"], theta_hash):
            return kept
    from rlsub.loading import load_run

    t = time.time()
    result = load_run(run_dir).evaluate(episodes=spec["episodes"], seed=spec["seed"])
    kept = {"value": result["value"], "std": result["std"], "episodes": spec["episodes"], "seed": spec["seed"],
            "returns": result["returns"], "lengths": result["lengths"], "theta_d_sha256": theta_hash,
            "command": f"rlsub eval {run_dir} --episodes {spec['episodes']} --seed {spec['seed']}",
            "git_commit": git_commit(), "machine": machine(), "wall_time_s": time.time() - t}
    write_json(path, kept)
    return kept


def _point_row(summary: dict) -> dict:
    keep = ("task", "trainer", "D", "d", "dim", "projection", "seed", "optimizer", "metric", "value",
            "value_training_eval", "final_eval_episodes", "metric_min", "solved_value", "timesteps", "epochs", "generations", "budget", "budget_unit",
            "stopped_early", "wall_time_s", "git_commit")
    return {"point": summary["point"], **{k: summary.get(k) for k in keep if k in summary}}


def write_outputs(config: dict, command: str) -> dict:
    """Rewrite points.jsonl and summary.json from the finished points; returns the summary."""
    results = Path(config["results"])
    left_out: list[dict] = []
    points = _read_points(results, config["final_eval"], config, left_out)
    rows = [_point_row(p) for p in points]
    rows.sort(key=lambda r: (r["dim"] == "full", r["dim"] if r["dim"] != "full" else 0, r["seed"], r["point"]))
    atomic_write_text(results / "points.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    fixed = config["fixed_criterion"] or {}
    analysis = analyse_sweep(points, config["threshold"], config["bootstrap"], config["bootstrap_seed"],
                             fixed_threshold=fixed.get("threshold"), fixed_key=fixed.get("key"))
    if fixed:
        analysis["fixed_criterion"]["label"] = fixed.get("label")
    fe = config["final_eval"]
    if fe is not None:
        rule = (f"mean return of the final policy over {fe['episodes']} noiseless episodes (reset seeds "
                f"{fe['seed']}-{fe['seed'] + fe['episodes'] - 1}; rlsub eval RUN --episodes {fe['episodes']} "
                f"--seed {fe['seed']}; the budget curve uses the runs' own evaluations during training)")
        analysis["value_rule"] = f"{analysis['value_rule']}, each as the {rule}" if analysis.get("value_rule") else rule
    if points:
        analysis["budget_curve"] = budget_curve(points, {p["point"]: read_metrics(results / "runs" / p["point"], strict=True) for p in points},
                                                config["threshold"])
    first = points[0] if points else {}
    summary = {
        "sweep": config["name"], "trainer": config["trainer"], "task": first.get("task"),
        "paper_task": config["paper_task"], "D": first.get("D"), "metric": first.get("metric"),
        "mode": config["mode"], "seeds": config["seeds"], "n_points": len(points),
        "budget_label": config["budget_label"], "final_eval": config["final_eval"],
        "budget": {"overrides": config["overrides"], "baseline_overrides": config["baseline_overrides"],
                   "cross_check": config["cross_check"],
                   "per_point": sorted({(p.get("optimizer") or "-", p.get("budget"), p.get("budget_unit"))
                                        for p in points if p.get("budget")}, key=str),
                   "per_side": {side: sorted({(p.get("budget"), p.get("budget_unit")) for p in points
                                              if p.get("budget") and (p.get("dim") == "full") == (side == "full")})
                                for side in ("subspace", "full")},
                   "timesteps_total": sum(p.get("timesteps") or 0 for p in points),
                   "epochs_per_point": first.get("epochs"),
                   "wall_time_s_total": sum(p.get("wall_time_s") or 0 for p in points)},
        "data_sources": sorted({str(p.get("data_source") or p.get("source")) for p in points
                                if p.get("data_source") or p.get("source")}),
        "command": command, "config_file": config["config"], "git_commit": git_commit(), "machine": machine(),
        "left_out": left_out,  # finished points on disk that are not points of this sweep as configured
        **analysis,
    }
    write_json(results / "summary.json", summary)
    return summary


def _run_point(config: dict, point: tuple, quiet: bool, comm=None) -> dict:
    """Run (or skip, if finished) one point ``(dim, seed, optimizer or None)``; returns its summary.
    ``comm``: the ranks that run it together (ES), or None for one process. A point stopped half-way
    continues from its checkpoint (trainers that have one) if it ran the same config."""
    dim, seed, optimizer = point
    trainer = get_trainer(config["trainer"])
    tconfig = _point_config(config, dim, seed, optimizer)
    run_dir = Path(config["results"]) / "runs" / point_name(dim, seed, optimizer)
    done = run_dir / "summary.json"
    defaults = getattr(trainer, "DEFAULTS", {})
    rank0 = comm is None or comm.Get_rank() == 0
    grown = _grown_budget(run_dir, tconfig, trainer)
    if done.exists():
        _check_same_config(run_dir, tconfig, defaults, allow=grown)
        try:
            summary = json.loads(done.read_text())
        except ValueError as exc:
            raise UserError(f"{done} is damaged ({exc}); move its folder away to run the point again") from None
        if not grown:
            return summary
        if summary.get("stopped_early"):
            # it reached its target before its budget ran out, so a larger budget ends it at the same
            # place: the record takes the new budget, nothing runs
            if rank0:
                RunDir(run_dir).record_resume(tconfig, tuple(grown), summary.get("generations", summary.get("epochs")))
            if comm is not None:
                comm.Barrier()
            return summary
    checkpoint = getattr(trainer, "CHECKPOINT", None)
    resume = bool(checkpoint) and (run_dir / checkpoint).exists() and (run_dir / "config.json").exists()
    if resume:  # a point stopped half-way (or given a larger budget) continues from its last checkpoint
        _check_same_config(run_dir, tconfig, defaults, allow=grown)
    elif rank0 and run_dir.exists():  # one with nothing to continue from starts again from scratch
        shutil.rmtree(run_dir)
    if comm is not None:
        comm.Barrier()
    if not quiet and rank0:
        opt = f" optimizer={optimizer}" if optimizer else ""
        print(f"[{config['name']}] point dim={dim} seed={seed}{opt}", file=sys.stderr)
    params = inspect.signature(trainer.train).parameters
    kwargs = {"quiet": True} if "quiet" in params else {}
    if resume:
        kwargs["resume"] = True
        if not quiet and rank0:
            larger = "".join(f", {k} -> {tconfig[k]}" for k in grown)
            print(f"[{config['name']}] ... continuing from {run_dir / checkpoint}{larger}", file=sys.stderr)
    if "comm" in params and comm is not None:
        kwargs["comm"] = comm
    return trainer.train(tconfig, run_dir, **kwargs)


def _grown_budget(run_dir: Path, tconfig: dict, trainer) -> list[str]:
    """The budget keys (the trainer's ``BUDGET``: ES generations and max_timesteps, supervised
    epochs) that ``tconfig`` raises above the point's record (None, no limit, is above any number),
    when the point has a checkpoint to continue from; [] otherwise. With such keys a sweep whose
    budget grew continues its points where they stopped instead of running them again."""
    keys, checkpoint = getattr(trainer, "BUDGET", ()), getattr(trainer, "CHECKPOINT", None)
    path = run_dir / "config.json"
    if not keys or not checkpoint or not (run_dir / checkpoint).exists() or not path.exists():
        return []
    try:
        recorded = json.loads(path.read_text())
    except ValueError:
        return []  # reported by _check_same_config
    return [k for k in keys if k in recorded and k in tconfig and _larger(tconfig[k], recorded[k])]


def _larger(new, old) -> bool:
    if new is None or old is None:
        return new is None and old is not None
    return new > old


def _config_changes(run_dir: Path, tconfig: dict, defaults: dict, allow: list | tuple = ()) -> str | None:
    """How the point's record in ``run_dir`` differs from ``tconfig`` ("key: recorded -> now; ..."), or
    None when it matches (``allow``: keys that may differ, a budget that grew). A key the record lacks
    (added to rlsub since) matches when it holds the trainer's default."""
    path = run_dir / "config.json"
    if not path.exists():
        return None
    try:
        recorded = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is damaged ({exc}); move its folder away to run the point again") from None
    now = json.loads(json.dumps(tconfig))  # the same normalisation (tuples -> lists) as the file
    changed = sorted(k for k in now if k in recorded and recorded[k] != now[k] and k not in allow)
    changed += sorted(k for k in now if k not in recorded
                      and (k not in defaults or json.loads(json.dumps(defaults[k])) != now[k]))
    if not changed:
        return None
    return "; ".join(f"{k}: {recorded.get(k, '(absent)')!r} -> {now[k]!r}" for k in changed[:5])


def _check_same_config(run_dir: Path, tconfig: dict, defaults: dict, allow: list | tuple = ()) -> None:
    """A finished point is reused only if it ran the config this sweep would run now (see
    :func:`_config_changes`)."""
    diffs = _config_changes(run_dir, tconfig, defaults, allow)
    if diffs:
        raise ConfigError(f"{run_dir} was run with another config ({diffs}). A sweep resumes only with the "
                          f"settings it started with, or a larger budget: restore them, or move the results "
                          f"folder away to start afresh.")


def _adaptive_next(config: dict, points: list[dict], D: int) -> list[int]:
    """The next d to evaluate by log-scale bisection, or [] when the bracket is narrow enough."""
    a = config["adaptive"]
    d_min, d_max = int(a["d_min"]), int(a["d_max"] or D)
    analysis = analyse_sweep(points, config["threshold"], n_boot=0)
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
        check_writable(results, "the sweep's results")
        _read_points(results)  # a damaged point summary is reported before anything runs
    results.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_json(results / "sweep_config.json", config)
    t0 = time.time()
    plan = [("full", s, None) for s in config["baseline_seeds"]]
    if config["mode"] == "grid":
        plan += [(d, s, None) for d in config["dims"] for s in config["seeds"]]
    _execute(config, plan, comm, quiet, command)
    if config["mode"] == "adaptive":
        D = json.loads((results / "runs" / point_name("full", config["baseline_seeds"][0]) / "summary.json").read_text())["D"]
        while True:
            nxt = _on_rank0(comm, lambda: _adaptive_next(config, _read_points(results, config["final_eval"], config), D))
            if not nxt:
                break
            _execute(config, [(d, s, None) for d in nxt for s in config["seeds"]], comm, quiet, command)
    if config["cross_check"] is not None:
        plan = _on_rank0(comm, lambda: _cross_check_plan(config, _read_points(results, config["final_eval"], config)))
        _execute(config, plan, comm, quiet, command)
    summary = write_outputs(config, command) if rank == 0 else None
    if comm is not None:
        summary = comm.bcast(summary, root=0)
    if not quiet and rank == 0:
        for p in summary.get("left_out", []):
            print(f"[{config['name']}] left out of the summary: {p['point']}: {p['reason']}", file=sys.stderr)
        print(f"[{config['name']}] done in {time.time() - t0:.0f} s", file=sys.stderr)
    return summary


def _on_rank0(comm, fn):
    """fn() computed on rank 0 (it may evaluate policies and write their final_eval.json) and sent to
    every rank."""
    if comm is None:
        return fn()
    out = None
    if comm.Get_rank() == 0:
        try:
            out = ("ok", fn())
        except Exception as exc:  # raised on every rank, not only on rank 0 (the others would wait)
            out = ("error", exc)
    kind, value = comm.bcast(out, root=0)
    if kind == "error":
        raise value
    return value


def _cross_check_plan(config: dict, points: list[dict]) -> list[tuple]:
    """The points to re-run with the cross-check optimizer: every (d, seed) of the first optimizer at
    d <= max_dim, or only those below the threshold (``below_threshold_only``)."""
    cc = config["cross_check"]
    first = [p for p in points if "__" not in p["point"]]
    threshold = analyse_sweep(first, config["threshold"], n_boot=0)["threshold"]
    plan = []
    for p in sorted(first, key=lambda p: (str(p["dim"]), p["seed"])):
        if p["dim"] == "full" or int(p["dim"]) > cc["max_dim"]:
            continue
        if cc["below_threshold_only"] and threshold is not None and float(p["value"]) >= threshold:
            continue
        plan.append((int(p["dim"]), p["seed"], cc["optimizer"]))
    return sorted(plan, key=lambda t: (t[0], t[1]))


def _execute(config: dict, plan: list, comm, quiet: bool, command: str) -> None:
    size = comm.Get_size() if comm is not None else 1
    rank = comm.Get_rank() if comm is not None else 0
    if size == 1 or (config["trainer"] == "es" and not config["spread_points"]):
        # one process, or every rank working on each ES point together
        progress = _Progress(config, len(plan), 1, quiet or rank != 0)
        for k, point in enumerate(plan):
            reused = _finished(config, point)
            t = time.time()
            summary = _run_point(config, point, quiet, comm if config["trainer"] == "es" else None)
            if rank == 0 and not reused:  # a reused point changes nothing: the outputs are written at the end
                write_outputs(config, command)
            progress.point(k, point, summary, time.time() - t, reused)
    else:
        _spread(config, plan, comm, quiet, command)


def _finished(config: dict, point: tuple) -> bool:
    """Whether the point is done at this sweep's budget (finished, and its budget did not grow)."""
    run_dir = Path(config["results"]) / "runs" / point_name(*point)
    if not (run_dir / "summary.json").exists():
        return False
    trainer = get_trainer(config["trainer"])
    return not _grown_budget(run_dir, _point_config(config, *point), trainer)


def _spread(config: dict, plan: list, comm, quiet: bool, command: str) -> None:
    """Points spread over the ranks, one process each, taken from a shared queue: a rank claims the
    next unclaimed point by creating its claim file (O_EXCL, so exactly one rank gets it); a rank
    that finishes early takes the next, so long and short points balance. Claims from a stopped
    sweep are cleared at the start; finished points are recognised by their summary as always.
    Every rank prints its own points' progress lines."""
    from mpi4py import MPI

    claims = Path(config["results"]) / "claims"
    if comm.Get_rank() == 0:
        shutil.rmtree(claims, ignore_errors=True)
        claims.mkdir(parents=True)
    comm.Barrier()
    progress = _Progress(config, len(plan), comm.Get_size(), quiet)
    for k, point in enumerate(plan):
        try:
            os.close(os.open(claims / point_name(*point), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            continue
        reused = _finished(config, point)
        t = time.time()
        summary = _run_point(config, point, quiet, MPI.COMM_SELF if config["trainer"] == "es" else None)
        if not reused:
            write_outputs(config, command)
        progress.point(k, point, summary, time.time() - t, reused)
    comm.Barrier()
    if comm.Get_rank() == 0:
        shutil.rmtree(claims, ignore_errors=True)


class _Progress:
    """One stderr line per finished point: i/N, its result, elapsed time and an ETA from the points
    run so far (reused points are not counted in the average)."""

    def __init__(self, config: dict, total: int, parallel: int, quiet: bool):
        self.name, self.total, self.parallel, self.quiet = config["name"], total, parallel, quiet
        self.started, self.times = time.time(), []
        # with final_eval the sweep values a point by its final policy, evaluated when the outputs are
        # written; the line shows the run's own last evaluation, and says so
        self.value_words = "last training " if config.get("final_eval") else ""

    def point(self, k: int, point: tuple, summary: dict, seconds: float, reused: bool) -> None:
        dim, seed, optimizer = point
        if not reused:
            self.times.append(seconds)
        if self.quiet:
            return
        left = self.total - k - 1
        eta = _clock(left * float(np.mean(self.times)) / self.parallel) if self.times else "?"
        how = "reused" if reused else f"{seconds:.1f} s"
        opt = f" {optimizer}" if optimizer else ""
        print(f"[{self.name}] {k + 1}/{self.total} d={dim} seed={seed}{opt}: {self.value_words}{summary.get('metric')} "
              f"{summary.get('value', float('nan')):.4g} ({how}); elapsed {_clock(time.time() - self.started)}, "
              f"ETA {eta}", file=sys.stderr)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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
    b, f = summary["baseline"], fmt_number
    head = f"{name}: baseline {f(b['mean'])} +- {f(b['std'], 2)} (n={b['n']}), threshold {f(summary['threshold'])}"
    if not summary["reached"]:
        top = max((c["dim"] for c in summary["curve"]), default=None)
        return f"{head}; d_int90 not reached up to d = {f(top)}"
    boot = summary.get("bootstrap") or {}
    unc = ""
    if boot.get("p16") is not None:  # p84 is None when over 16% of the resamples reach no d of the grid
        hi = f"-{f(boot['p84'])}" if boot.get("p84") is not None else f" to > {f(boot.get('censored_above'))}"
        unc = f" [bootstrap 16-84%: {f(boot['p16'])}{hi}]"
    return f"{head}; d_int90 = {f(summary['d_int90'])} (interpolated {f(summary['d_int90_interp'])}){unc}"
