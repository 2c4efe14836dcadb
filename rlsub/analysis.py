"""The statistics of a sweep: d_int90 from finished points, its uncertainty, and how it moves with budget.

Takes point summaries (the ``summary.json`` of each run, plus for the budget curve the rows of its
``metrics.jsonl``) and returns numbers; running points is :mod:`rlsub.sweep`'s job.

d_int90 (Li et al. 2018): the smallest d whose mean over seeds reaches 90% of the full-space
baseline, after shifting the metric so that its lowest possible value is 0. Beside the grid value:
an estimate interpolated on log d between the grid points around the threshold, and a bootstrap
over seeds. Bootstrap draws that never reach the threshold on the grid are kept as censored (above
the largest d), so the percentiles stay honest: a percentile that falls among them is reported as
``None`` ("above the grid"), with the share of such draws beside it.

A sweep may run a second optimizer at the same (d, seed) points (same subspace: same projection
seed). Each point then has one value per optimizer; :func:`analyse_sweep` reports d_int90 per
optimizer and for the best of them per point ("best of both"), which is the estimate of what the
subspace holds rather than of what one optimizer finds in it.
"""

from __future__ import annotations

import math

import numpy as np

#: the metrics.jsonl key holding a run's periodic evaluation of its summary metric, per trainer
#: (supervised runs log test accuracy per epoch; train accuracy only as a running average)
EVAL_KEYS = {"eval_return": "eval_return", "test_accuracy": "test_acc", "train_accuracy": "train_acc_running"}


def fmt_number(x, digits: int = 3) -> str:
    """A figure for reports and the terminal: integers with thousands separators, other numbers to
    ``digits`` significant digits, written out from 1,000 up (1,050 rather than 1.05e+03); None as "-"."""
    if x is None:
        return "-"
    if isinstance(x, int) or float(x).is_integer():
        return f"{int(x):,}"
    if abs(x) >= 1000:
        return f"{round(float(f'{x:.{digits}g}')):,}"
    return f"{x:.{digits}g}"


def by_dim(points: list[dict], key: str = "value") -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for p in points:
        if p["dim"] != "full" and p.get(key) is not None:
            out.setdefault(int(p["dim"]), []).append(float(p[key]))
    return dict(sorted(out.items()))


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


def threshold_of(baseline: list[float], lo: float, frac: float) -> float:
    return lo + frac * (float(np.mean(baseline)) - lo)


def bootstrap(base: list[float], curve: dict[int, list[float]], lo: float, frac: float, n_boot: int,
              seed: int) -> dict:
    """Resample seeds (baseline and every d) ``n_boot`` times; unreached draws count as above the grid."""
    rng = np.random.default_rng(seed)
    dims = list(curve)
    estimates = np.empty(n_boot)
    for b in range(n_boot):
        th = threshold_of(rng.choice(base, size=len(base)), lo, frac)
        ms = [float(np.mean(rng.choice(curve[d], size=len(curve[d])))) for d in dims]
        est = d_int(dims, ms, th)[1]
        estimates[b] = np.inf if est is None else est

    def pct(q: float) -> float | None:
        v = float(np.percentile(estimates, q, method="inverted_cdf"))
        return None if math.isinf(v) else v

    return {"n": n_boot, "unreached_frac": float(np.mean(np.isinf(estimates))), "median": pct(50),
            "p16": pct(16), "p84": pct(84), "censored_above": dims[-1] if dims else None}


def analyse(points: list[dict], threshold_frac: float = 0.9, n_boot: int = 1000, boot_seed: int = 0,
            fixed_threshold: float | None = None, fixed_key: str | None = None) -> dict:
    """Baseline, threshold, d_int90 (grid and interpolated) and a bootstrap over seeds, for points of
    one optimizer (or already merged). ``fixed_threshold`` adds d at a fixed criterion on
    ``fixed_key`` of each point (e.g. the paper's "solved" test), independent of the baseline."""
    base = [float(p["value"]) for p in points if p["dim"] == "full"]
    curve = by_dim(points)
    dims = list(curve)
    lo = min((float(p.get("metric_min") or 0.0) for p in points), default=0.0)
    out: dict = {"metric_min": lo, "threshold_frac": threshold_frac,
                 "curve": [{"dim": d, "mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v),
                            "values": v} for d, v in curve.items()]}
    if fixed_threshold is not None and fixed_key:
        fixed = by_dim(points, fixed_key)
        base_fixed = [float(p[fixed_key]) for p in points if p["dim"] == "full" and p.get(fixed_key) is not None]
        d_f, interp_f = d_int(list(fixed), [float(np.mean(v)) for v in fixed.values()], fixed_threshold)
        out["fixed_criterion"] = {"key": fixed_key, "threshold": fixed_threshold, "d": d_f, "d_interp": interp_f,
                                  "baseline_mean": float(np.mean(base_fixed)) if base_fixed else None,
                                  "curve": [{"dim": d, "mean": float(np.mean(v)), "n": len(v)} for d, v in fixed.items()]}
    if not base:
        out.update(baseline=None, threshold=None, d_int90=None, d_int90_interp=None, reached=False)
        return out
    threshold = threshold_of(base, lo, threshold_frac)
    d90, interp = d_int(dims, [float(np.mean(v)) for v in curve.values()], threshold)
    above = [c["dim"] for c in out["curve"] if c["mean"] > float(np.mean(base))]
    out.update(baseline={"mean": float(np.mean(base)), "std": float(np.std(base)), "n": len(base), "values": base},
               threshold=threshold, d_int90=d90, d_int90_interp=interp, reached=d90 is not None,
               baseline_below_dims=above)
    if dims and n_boot > 0:
        out["bootstrap"] = bootstrap(base, curve, lo, threshold_frac, n_boot, boot_seed)
    return out


def best_of(points: list[dict]) -> list[dict]:
    """One point per (dim, seed): the one with the highest value among the optimizers that ran it."""
    best: dict[tuple, dict] = {}
    for p in points:
        key = (p["dim"], p["seed"])
        if key not in best or float(p["value"]) > float(best[key]["value"]):
            best[key] = p
    return list(best.values())


def optimizer_of(point: dict) -> str:
    return point.get("optimizer") or "default"


def analyse_sweep(points: list[dict], threshold_frac: float = 0.9, n_boot: int = 1000, boot_seed: int = 0,
                  fixed_threshold: float | None = None, fixed_key: str | None = None) -> dict:
    """:func:`analyse` of the best value per point, plus (with more than one optimizer) each
    optimizer's own analysis against the same baseline under ``by_optimizer``."""
    kw = dict(threshold_frac=threshold_frac, n_boot=n_boot, boot_seed=boot_seed, fixed_threshold=fixed_threshold,
              fixed_key=fixed_key)
    baseline = [p for p in points if p["dim"] == "full"]
    optimizers = sorted({optimizer_of(p) for p in points if p["dim"] != "full"})
    out = analyse(best_of(points), **kw)
    if len(optimizers) > 1:
        out["by_optimizer"] = {}
        for name in optimizers:
            own = [p for p in points if p["dim"] != "full" and optimizer_of(p) == name]
            out["by_optimizer"][name] = {k: v for k, v in analyse(baseline + own, **kw).items()
                                         if k in ("curve", "d_int90", "d_int90_interp", "reached", "bootstrap",
                                                  "fixed_criterion")}
        out["value_rule"] = "best of " + " and ".join(optimizers) + " per (d, seed)"
    return out


# --- d_int90 as a function of budget ----------------------------------------------------------


def value_at(point: dict, rows: list[dict], frac: float) -> float | None:
    """The value ``point`` would have had with ``frac`` of its budget, from its logged evaluations:
    the last evaluation within the budget (the best one for DQN runs that select their best model);
    a run that stopped early (target reached) keeps its final value; at frac = 1, its value; None
    before its first evaluation.

    The point carries its budget (see :func:`budget_of`): ``budget_key`` (the metrics.jsonl column
    that counts it), ``budget`` and ``budget_offset`` (1 where rows count from 0: row g ends g + 1
    generations or epochs)."""
    if frac >= 1.0:
        return float(point["value"])
    bkey, budget, offset = point.get("budget_key"), point.get("budget"), point.get("budget_offset", 0)
    ekey = EVAL_KEYS.get(point.get("metric"))
    if bkey is None or ekey is None or not budget:
        return None
    limit = frac * budget
    evals = [float(r[ekey]) for r in rows
             if r.get(ekey) is not None and bkey in r and float(r[bkey]) + offset <= limit + 1e-9]
    last_logged = max((float(r[bkey]) + offset for r in rows if bkey in r), default=0.0)
    if last_logged < limit and point.get("stopped_early"):
        return float(point["value"])
    if not evals:
        return None  # no evaluation yet at this budget: the point has no value there
    if point.get("trainer") == "dqn" and point.get("select") == "best":
        return max(evals)
    return evals[-1]


def budget_of(summary: dict, config: dict) -> dict:
    """A point's budget from its summary and resolved config: key, amount, offset, unit, stopped_early."""
    trainer = summary.get("trainer")
    if trainer == "es":
        target = config.get("target_return")
        stopped = target is not None and float(summary["value"]) >= float(target)
        if config.get("max_timesteps"):
            return {"budget_key": "timesteps", "budget": config["max_timesteps"], "budget_offset": 0,
                    "budget_unit": "environment steps", "stopped_early": stopped}
        return {"budget_key": "generation", "budget": config.get("generations"), "budget_offset": 1,
                "budget_unit": "generations", "stopped_early": stopped}
    if trainer == "dqn":
        return {"budget_key": "timesteps", "budget": config.get("timesteps"), "budget_offset": 0,
                "budget_unit": "environment steps", "stopped_early": False}
    if trainer == "supervised":
        return {"budget_key": "epoch", "budget": config.get("epochs"), "budget_offset": 1, "budget_unit": "epochs",
                "stopped_early": False}
    return {}


def budget_curve(points: list[dict], rows: dict[str, list[dict]], threshold_frac: float = 0.9,
                 fractions=None) -> dict:
    """d_int90 (grid and interpolated, best value per point) at fractions of the budget, with the
    baseline re-evaluated at the same fraction; ``rows`` maps a point's name to its metrics rows."""
    fractions = list(fractions or [round(0.05 * k, 2) for k in range(1, 21)])
    out = []
    for f in fractions:
        at = []
        for p in points:
            v = value_at(p, rows.get(p["point"], []), f)
            if v is not None:
                at.append({**p, "value": v})
        a = analyse(best_of(at), threshold_frac, n_boot=0)
        out.append({"fraction": f, "d_int90": a["d_int90"], "d_int90_interp": a["d_int90_interp"],
                    "baseline": (a["baseline"] or {}).get("mean"), "threshold": a["threshold"]})
    late = [c for c in out if c["fraction"] >= 0.75]
    grid = {c["d_int90"] for c in late}
    interp = [c["d_int90_interp"] for c in late]
    settled = (len(grid) == 1 and None not in grid and all(v is not None for v in interp)
               and max(interp) <= 1.1 * min(interp))
    budgets = sorted({(p.get("optimizer") or "default", p.get("budget"), p.get("budget_unit")) for p in points
                      if p.get("budget")}, key=str)
    return {"fractions": out, "settled": bool(settled),
            "settled_rule": "grid d_int90 unchanged and interpolated estimate within 10% over the last quarter "
                            "of the budget",
            "budgets": [{"optimizer": o, "budget": b, "unit": u} for o, b, u in budgets]}
