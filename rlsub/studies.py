"""Grids of supervised runs for the seeds' follow-up studies (the Goldilocks zone, nonlinear projections).

A study is a list of points (a resolved config and a run folder each). :func:`run_point` runs one
through :func:`rlsub.supervised.trainer.train`, resumably: a finished point (``summary.json``) is
reused after checking that it was run with the same config, a half-run one continues from its
checkpoint, and a finished run folder is pruned of files too large to commit (the checkpoint,
TensorBoard events). The statistics the studies share (bootstrap ranges over seeds, the growth
exponent of the radius r(t)) are pure functions of numbers, here too.

A study's ``summary.json`` carries ``"study": NAME`` and no ``"sweep"`` key, so the sweep report
(:func:`rlsub.report.load_sweeps`) passes over it; :mod:`rlsub.report` adds a section per study.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from rlsub.errors import UserError

#: files a finished study run does not keep: large, and needed only to continue a run or, for a trained
#: P (D x width floats, tens of MB), to reload it; its summary and metrics keep what the study reports
PRUNE = ("checkpoint.pt", "projection_PT.npy")
PRUNE_GLOBS = ("events.out.tfevents.*",)


def run_point(config: dict, out: str | Path, quiet: bool = True) -> tuple[dict, bool]:
    """Run (or reuse, or continue) one point; returns its summary and whether it was trained now."""
    from rlsub.supervised import trainer

    out = Path(out)
    done = out / "summary.json"
    if done.exists():
        recorded = json.loads((out / "config.json").read_text())
        changed = sorted(k for k in config if k not in trainer.RESUMABLE and recorded.get(k) != config[k])
        if changed:
            raise UserError(f"{out} was run with another config ({', '.join(changed)} differ); "
                            "move it away to run the point again")
        return json.loads(done.read_text()), False
    resume = (out / trainer.CHECKPOINT).exists()
    if out.exists() and not resume:  # started, but no epoch finished: nothing to continue from
        shutil.rmtree(out)
    trainer.train(config, out, resume=resume, quiet=quiet)
    prune(out)
    return json.loads(done.read_text()), True  # as written, with its commit, machine and command


def prune(out: Path) -> None:
    """Remove what a finished run does not need to be reloaded or reported."""
    for name in PRUNE:
        (out / name).unlink(missing_ok=True)
    for pattern in PRUNE_GLOBS:
        for path in out.glob(pattern):
            path.unlink()


def bootstrap_mean(values, n: int = 2000, seed: int = 0, lo: float = 16.0, hi: float = 84.0) -> dict:
    """Mean of ``values`` with the lo-hi percentile range of the mean over bootstrap resamples."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(x) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0, "values": []}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n, len(x)))].mean(axis=1)
    return {"mean": float(x.mean()), "lo": float(np.percentile(means, lo)), "hi": float(np.percentile(means, hi)),
            "n": int(len(x)), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0, "values": x.tolist()}


def growth_exponent(steps, radii, r0: float | None = None, min_step: int = 1) -> dict:
    """The power law of the radius's growth: least squares of log(r^2 - r0^2) on log(t).

    The poster's random-walk argument gives <r^2> = r0^2 + D sigma^2 t, i.e. r^2 - r0^2 proportional
    to t (``beta`` = 1) and r proportional to sqrt(t) once r >> r0 (``r_exponent`` = beta / 2 =
    0.5). r0 is the radius at t = 0 (default: the radius of the first row, which must be step 0).
    The same fit over the first tenth of the steps (``r_exponent_early``) and the second half
    (``r_exponent_late``) shows whether one power law holds throughout; ``loglog_r`` is the slope
    of log r itself on log t over the second half (the direct reading of "r grows like t^a",
    biased low while r0 is not negligible)."""
    t = np.asarray(steps, dtype=np.float64)
    r = np.asarray(radii, dtype=np.float64)
    if r0 is None:
        if t[0] != 0:
            raise ValueError("growth_exponent: without r0 the first row must be step 0")
        r0 = float(r[0])
    keep = (t >= max(min_step, 1)) & (r * r - r0 * r0 > 0) & np.isfinite(r)
    if keep.sum() < 3:
        return {"beta": None, "r_exponent": None, "loglog_r": None, "points": int(keep.sum())}
    def slope(mask, y):
        return float(np.polyfit(np.log(t[mask]), np.log(y[mask]), 1)[0]) if mask.sum() >= 3 else None

    excess = np.where(keep, r * r - r0 * r0, 1.0)
    early, late = keep & (t <= t[keep].max() / 10), keep & (t >= t[keep].max() / 2)
    beta, b_early, b_late = slope(keep, excess), slope(early, excess), slope(late, excess)
    return {"beta": beta, "r_exponent": beta / 2, "points": int(keep.sum()), "r0": r0,
            "r_exponent_early": None if b_early is None else b_early / 2,
            "r_exponent_late": None if b_late is None else b_late / 2, "loglog_r": slope(late, r)}


def save_figure(fig, path: str | Path) -> None:
    """Write a matplotlib figure atomically (its folder made if missing) and close it."""
    import matplotlib.pyplot as plt

    from rlsub.subspace import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)


def add_study_arguments(parser, name: str, epochs: int, root: Path) -> None:
    """The options every study script takes: budget, seeds, where it writes, summarise only."""
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(root / "results" / name))
    parser.add_argument("--plot", default=str(root / "results" / "plots" / f"{name}.png"))
    parser.add_argument("--summarise", action="store_true", help="only summarise the finished runs")


def mean_std(values) -> dict:
    """Mean and sample standard deviation (n - 1) of the non-None values."""
    x = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not x:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(x)), "std": float(np.std(x, ddof=1)) if len(x) > 1 else 0.0, "n": len(x)}
