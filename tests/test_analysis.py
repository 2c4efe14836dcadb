"""rlsub.analysis against hand-computed expectations: censored bootstrap, optimizers, budget curves."""

import math

import numpy as np
import pytest

from rlsub import analysis


def pts(curve, baseline, optimizer=None, metric_min=0.0, **extra):
    rows = [{"dim": "full", "seed": s, "value": v, "metric_min": metric_min, **extra} for s, v in enumerate(baseline)]
    for d, values in curve.items():
        rows += [{"dim": d, "seed": s, "value": v, "metric_min": metric_min, "optimizer": optimizer, **extra}
                 for s, v in enumerate(values)]
    return rows


def test_bootstrap_keeps_unreached_draws_as_censored():
    # baseline 1.0 (threshold 0.9); at d = 20 a resample reaches 0.9 only if it never draws the 0.5:
    # probability (2/3)^3 = 0.296, so 70.4% of draws never reach the threshold on the grid
    a = analysis.analyse(pts({10: [0.0, 0.0, 0.0], 20: [1.0, 1.0, 0.5]}, [1.0, 1.0, 1.0]), 0.9, n_boot=4000)
    boot = a["bootstrap"]
    assert boot["unreached_frac"] == pytest.approx(1 - (2 / 3) ** 3, abs=0.03)
    # the reached draws all interpolate to the same d: 90% of the way from 10 to 20 on log d
    assert boot["p16"] == pytest.approx(10 * 2**0.9)
    # the median and the 84th percentile lie among the censored draws: above the grid, not a number
    assert boot["median"] is None and boot["p84"] is None and boot["censored_above"] == 20


def test_bootstrap_of_a_curve_reached_by_every_draw_is_finite():
    a = analysis.analyse(pts({10: [0.2, 0.3, 0.25], 20: [0.95, 0.97, 0.96]}, [1.0, 1.0, 1.0]), 0.9, n_boot=300)
    boot = a["bootstrap"]
    assert boot["unreached_frac"] == 0 and boot["p16"] <= boot["median"] <= boot["p84"] < 20


def test_best_of_both_takes_the_better_optimizer_per_point():
    es = pts({2: [0.1, 0.2], 4: [0.5, 0.95]}, [1.0, 1.0], optimizer="openai_es")
    cma = [p for p in pts({2: [0.3, 0.0], 4: [0.99, 0.4]}, [], optimizer="cma_es")]
    a = analysis.analyse_sweep(es + cma, 0.9, n_boot=0)
    # per point maxima: d=2 -> 0.3, 0.2 (mean 0.25); d=4 -> 0.99, 0.95 (mean 0.97) >= 0.9
    assert [c["mean"] for c in a["curve"]] == pytest.approx([0.25, 0.97])
    assert a["d_int90"] == 4
    # alone, neither optimizer reaches the threshold at d = 4 (means 0.725 and 0.695)
    assert a["by_optimizer"]["openai_es"]["d_int90"] is None
    assert a["by_optimizer"]["cma_es"]["d_int90"] is None
    assert a["value_rule"] == "best of cma_es and openai_es per (d, seed)"


def test_fixed_criterion_is_independent_of_the_baseline():
    rows = pts({10: [100, 120], 25: [190, 200], 50: [199, 200]}, [150, 150])
    for r, s in zip(rows, [150, 150, 100, 120, 190, 200, 199, 200]):
        r["solved_value"] = s
    a = analysis.analyse(rows, 0.9, n_boot=0, fixed_threshold=195, fixed_key="solved_value")
    # baseline 150 -> threshold 135: d = 25; fixed 195: mean 195 at d = 25 as well, 110 at 10
    assert a["d_int90"] == 25
    assert a["fixed_criterion"]["d"] == 25 and a["fixed_criterion"]["d_interp"] == pytest.approx(25.0)
    # the baseline lies below the subspace points at d = 25 and 50: flagged
    assert a["baseline_below_dims"] == [25, 50]


def es_point(dim, seed, value, evals, budget=100, stopped=False):
    """An ES point with evaluations at the given generations (rows count generations from 0)."""
    p = {"point": f"d{dim}_s{seed}", "dim": dim, "seed": seed, "value": value, "metric": "eval_return",
         "metric_min": 0.0, "trainer": "es", "budget_key": "generation", "budget": budget, "budget_offset": 1,
         "budget_unit": "generations", "stopped_early": stopped}
    rows = [{"generation": g - 1, "eval_return": v} for g, v in evals]
    return p, rows


def test_value_at_reads_the_last_evaluation_within_the_budget():
    p, rows = es_point(4, 0, 300.0, [(20, 50.0), (40, 120.0), (60, 250.0), (100, 300.0)])
    assert analysis.value_at(p, rows, 0.1) is None  # no evaluation yet: no value
    assert analysis.value_at(p, rows, 0.2) == 50.0
    assert analysis.value_at(p, rows, 0.59) == 120.0
    assert analysis.value_at(p, rows, 0.6) == 250.0
    assert analysis.value_at(p, rows, 1.0) == 300.0
    # a run that stopped at its target after 40 generations keeps its value for larger budgets
    q, qrows = es_point(4, 1, 500.0, [(20, 100.0), (40, 500.0)], stopped=True)
    assert analysis.value_at(q, qrows, 0.3) == 100.0 and analysis.value_at(q, qrows, 0.8) == 500.0
    # DQN runs that select their best model: the best evaluation so far
    d = {"dim": 25, "seed": 0, "value": 400.0, "metric": "eval_return", "metric_min": 0, "trainer": "dqn",
         "select": "best", "budget_key": "timesteps", "budget": 1000, "budget_offset": 0}
    drows = [{"timesteps": 250, "eval_return": 300.0}, {"timesteps": 500, "eval_return": 100.0},
             {"timesteps": 750, "eval_return": 200.0}]
    assert analysis.value_at(d, drows, 0.5) == 300.0 and analysis.value_at(d, drows, 0.8) == 300.0


def test_budget_curve_tracks_d_int90_as_the_budget_grows():
    points, rows = [], {}
    # baseline reaches 500 by generation 20; d = 2 reaches 480 only at generation 100, d = 8 at 40
    for seed in (0, 1):
        for dim, evals in (("full", [(20, 500.0)]), (2, [(20, 100.0), (100, 480.0)]), (8, [(20, 200.0), (40, 490.0)])):
            p, r = es_point(dim, seed, evals[-1][1], evals)
            points.append(p)
            rows[p["point"]] = r
    c = analysis.budget_curve(points, rows, 0.9, fractions=[0.2, 0.4, 0.8, 1.0])
    grid = [f["d_int90"] for f in c["fractions"]]
    assert grid == [None, 8, 8, 2]  # threshold 450: nothing at 20%, d = 8 from 40%, d = 2 at 100%
    assert c["settled"] is False  # d_int90 still moved in the last quarter of the budget
    c2 = analysis.budget_curve(points, rows, 0.9, fractions=[0.2, 0.4, 0.8, 0.9])
    assert c2["settled"] is True


def test_d_int_exact_grid_and_interpolation():
    d, interp = analysis.d_int([1, 2, 4, 8], [0.1, 0.5, 0.95, 1.0], 0.9)
    assert d == 4
    assert interp == pytest.approx(2 * 2 ** (0.4 / 0.45))
    assert analysis.d_int([1, 2], [0.95, 1.0], 0.9) == (1, 1.0)
    assert analysis.d_int([1, 2, 4], [0.1, 0.2, 0.3], 0.9) == (None, None)
    assert math.isfinite(np.log(interp))
