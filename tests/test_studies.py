"""The follow-up studies' pieces: per-step radius logging, a trained P's own step size, the study
runner (resume, reuse, refuse), its statistics, the claims' bookkeeping and the report sections,
each checked against numbers built independently."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsub.config import ConfigError
from rlsub.errors import UserError
from rlsub.models import build_model
from rlsub.studies import bootstrap_mean, growth_exponent, mean_std, run_point

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RLSUB_DATA") or ROOT.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST in {DATA}")


pytestmark = pytest.mark.usefixtures("one_thread")


def _script(name):
    spec = importlib.util.spec_from_file_location(f"_study_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(**extra):
    from rlsub.supervised import trainer

    return trainer.resolve(None, {"dataset": "mnist", "data_dir": str(DATA), "model_kwargs": {"hidden": [16]},
                                  "dim": 12, "subset": 300, "epochs": 2, "batch_size": 50, "lr": 0.05, **extra})


# --- statistics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 1.0, 1.7])
def test_growth_exponent_recovers_the_power_law_of_r2_minus_r0_2(beta):
    t = np.arange(0, 2001, 10)
    r0, c = 1.3, 0.02
    r = np.sqrt(r0**2 + c * t**beta)  # the random-walk form with an arbitrary exponent
    fit = growth_exponent(t, r)
    assert fit["beta"] == pytest.approx(beta, abs=1e-9)
    assert fit["r_exponent"] == pytest.approx(beta / 2, abs=1e-9)
    assert fit["r0"] == r0 and fit["points"] == len(t) - 1
    assert fit["r_exponent_early"] == pytest.approx(beta / 2, abs=1e-9)
    assert fit["r_exponent_late"] == pytest.approx(beta / 2, abs=1e-9)
    # the direct log r / log t slope over the late half, computed by hand
    late = t >= 1000
    slope = np.polyfit(np.log(t[late]), np.log(r[late]), 1)[0]
    assert fit["loglog_r"] == pytest.approx(slope, abs=1e-12)
    assert fit["loglog_r"] < beta / 2 + 1e-12  # r0 > 0 pulls the direct slope below beta / 2


def test_growth_exponent_windows_see_a_change_of_regime():
    t = np.arange(0, 3001, 10)
    r = np.where(t <= 100, 0.1 + 0.01 * t, 1.1 * np.sqrt(np.maximum(t, 1) / 100.0))  # linear, then sqrt
    fit = growth_exponent(t, r, r0=0.1)
    assert fit["r_exponent_late"] == pytest.approx(0.5, abs=1e-3)
    early = t[(t >= 1) & (t <= 300)]
    re = r[(t >= 1) & (t <= 300)]
    assert fit["r_exponent_early"] == pytest.approx(np.polyfit(np.log(early), np.log(re**2 - 0.01), 1)[0] / 2)
    assert fit["r_exponent_early"] > 0.6


def test_growth_exponent_needs_a_start_and_growth():
    with pytest.raises(ValueError, match="step 0"):
        growth_exponent([10, 20, 30], [1.0, 2.0, 3.0])
    flat = growth_exponent([0, 10, 20, 30], [2.0, 2.0, 1.9, 2.0])  # never above r0: nothing to fit
    assert flat["beta"] is None and flat["points"] == 0


def test_bootstrap_range_is_the_standard_error_for_many_resamples():
    x = np.random.default_rng(3).normal(0.8, 0.05, size=25)
    b = bootstrap_mean(x, n=40_000, seed=1)
    assert b["mean"] == pytest.approx(x.mean(), abs=1e-15) and b["n"] == 25
    se = x.std(ddof=0) / np.sqrt(len(x))  # the bootstrap distribution of the mean has this sd
    assert (b["hi"] - b["lo"]) / 2 == pytest.approx(se, rel=0.05)
    assert b["lo"] < b["mean"] < b["hi"]
    assert b["std"] == pytest.approx(x.std(ddof=1))
    same = bootstrap_mean([0.5, 0.5, 0.5])
    assert same["lo"] == same["hi"] == same["mean"] == 0.5
    assert bootstrap_mean([None])["mean"] is None
    assert mean_std([1.0, 3.0, None]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2.0)), "n": 2}


# --- the trainer: radius every log_every steps, a trained P's own step size -------------------------


@needs_mnist
def test_log_every_logs_the_radius_of_theta_D_at_each_step_interval(tmp_path):
    import rlsub
    from rlsub.supervised import trainer

    config = tiny(log_every=2, init_radius_ratio=0.3)
    summary = trainer.train(config, tmp_path / "run", quiet=True)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "test_acc" not in r]
    epochs = [r for r in rows if "test_acc" in r]
    per_epoch = 300 // 50
    assert [r["step"] for r in steps] == list(range(0, 2 * per_epoch + 1, 2))
    assert [r["step"] for r in epochs] == [per_epoch, 2 * per_epoch] and len(epochs) == 2
    assert steps[0]["radius"] == pytest.approx(summary["r0"], rel=1e-6)  # step 0: theta_0 rescaled to 0.3 r_X
    assert summary["r0"] == pytest.approx(0.3 * summary["r_X"], rel=1e-6)
    assert steps[-1]["radius"] == epochs[-1]["radius"] == summary["radius_final"]
    # independently: the norm of the rebuilt network's parameters
    net = rlsub.load_run(tmp_path / "run").model.materialize()
    flat = np.concatenate([p.detach().numpy().ravel() for p in net.parameters()]).astype(np.float64)
    assert summary["radius_final"] == pytest.approx(np.linalg.norm(flat), rel=1e-5)
    assert all(r["epoch"] == (r["step"] - 1) // per_epoch for r in steps if r["step"] > 0)


@needs_mnist
def test_log_every_rows_are_cut_back_with_the_epochs_on_resume(tmp_path):
    from rlsub.supervised import trainer

    whole = trainer.train(tiny(log_every=3, epochs=2), tmp_path / "whole", quiet=True)
    trainer.train(tiny(log_every=3, epochs=1), tmp_path / "part", quiet=True)
    (tmp_path / "part" / "summary.json").unlink()
    part = trainer.train(tiny(log_every=3, epochs=2), tmp_path / "part", resume=True, quiet=True)
    read = [[json.loads(x) for x in (tmp_path / f / "metrics.jsonl").read_text().splitlines()] for f in ("whole", "part")]
    assert [(r["step"], r["radius"]) for r in read[0]] == [(r["step"], r["radius"]) for r in read[1]]
    assert part["radius_final"] == whole["radius_final"]


def test_projection_lr_gives_a_trained_P_its_own_adam_step():
    from rlsub.subspace import SubspaceModel
    from rlsub.supervised import trainer

    net = SubspaceModel(build_model("mlp", seed=0, in_dim=4, out_dim=2, hidden=[8]), 3, projection="dense", seed=0,
                        trainable_projection=True)
    with torch.no_grad():
        net.theta_d.copy_(torch.tensor([0.5, -1.0, 2.0]))  # so that P's gradient (outer product) is not 0
    config = {"trainable_projection": True, "projection_lr": 1e-4}
    opt = torch.optim.Adam(trainer.param_groups(net, config), lr=0.1)
    before_t, before_p = net.theta_d.detach().clone(), net.projection.PT.detach().clone()
    net(torch.randn(5, 4, generator=torch.Generator().manual_seed(0))).square().sum().backward()
    opt.step()
    # Adam's first step moves every coordinate with a non-zero gradient by its lr (up to eps)
    dt = (net.theta_d.detach() - before_t).abs()
    dp = (net.projection.PT.detach() - before_p).abs()
    np.testing.assert_allclose(dt.numpy(), 0.1, rtol=1e-3)
    moved = dp[dp > 0].numpy()
    assert moved.size > 0.5 * dp.numel()
    np.testing.assert_allclose(moved, 1e-4, rtol=1e-3)
    one = trainer.param_groups(net, {"trainable_projection": True, "projection_lr": None})
    assert len(one) == 1 and len(one[0]["params"]) == 2


@pytest.mark.parametrize("overrides, message", [
    ({"projection_lr": 1e-3}, "projection_lr applies to trainable_projection: true"),
    ({"projection": "dense", "trainable_projection": True, "projection_lr": 0}, "projection_lr must be"),
    ({"log_every": 0}, "log_every must be"),
    ({"subspace": "hypersphere", "radius_ratio": 0.0}, "radius_ratio must be a positive number"),
])
def test_bad_study_settings_are_one_config_error_each(overrides, message):
    from rlsub.supervised import trainer

    with pytest.raises(ConfigError, match=message):
        trainer.resolve(None, overrides)


# --- the study runner -----------------------------------------------------------------------------


@needs_mnist
def test_run_point_reuses_finished_points_refuses_changed_ones_and_restarts_unstarted(tmp_path):
    out = tmp_path / "p"
    first, trained = run_point(tiny(epochs=1), out)
    assert trained and not (out / "checkpoint.pt").exists() and not list(out.glob("events.out.tfevents.*"))
    again, trained = run_point(tiny(epochs=1), out)
    assert not trained and again == first
    with pytest.raises(UserError, match="another config .*lr"):
        run_point(tiny(epochs=1, lr=0.01), out)
    # a folder with a config but no finished epoch (killed early) is started afresh
    (out / "summary.json").unlink()
    (out / "metrics.jsonl").write_text("")
    fresh, trained = run_point(tiny(epochs=1), out)
    assert trained and fresh["test_accuracy"] == first["test_accuracy"]  # same seed, same run


# --- the claims and the report sections -------------------------------------------------------------


def _cell(mode, ratio, acc, end):
    return {"mode": mode, "ratio": ratio, "seeds": 2,
            "test_accuracy": {"mean": acc, "lo": acc - 0.01, "hi": acc + 0.01, "n": 2, "values": [acc - 0.01, acc + 0.01]},
            "radius_final_over_rX": {"mean": end, "std": 0.0, "n": 2}, "r0_over_rX": {"mean": ratio, "std": 0, "n": 2}}


def _goldilocks_cells():
    hyper = {0.1: (0.90, 1.2), 0.3: (0.91, 1.1), 1.0: (0.92, 1.3), 3.0: (0.60, 3.05), 10.0: (0.30, 10.2)}
    sphere = {0.1: 0.11, 0.3: 0.50, 1.0: 0.88, 3.0: 0.85, 10.0: 0.20}
    cells = {f"hyperplane/{r:g}": _cell("hyperplane", r, a, e) for r, (a, e) in hyper.items()}
    cells.update({f"hypersphere/{r:g}": _cell("hypersphere", r, a, r) for r, a in sphere.items()})
    return cells


def test_goldilocks_claims_on_a_grid_where_all_three_hold_and_where_they_fail():
    g = _script("goldilocks")
    exps = [{"r_exponent": 0.48}, {"r_exponent": 0.55}, {"r_exponent": 0.5}]
    c = g.claims(_goldilocks_cells(), {}, exps)
    assert c["best_hyperplane"] == 0.92 and c["good_threshold"] == pytest.approx(0.828)
    assert c["1_below_rX_grows_as_sqrt_t"]["holds"]
    assert c["1_below_rX_grows_as_sqrt_t"]["r_exponent"]["mean"] == pytest.approx(0.51)
    c2 = c["2_above_rX_stays_and_fails"]
    assert c2["holds"] and c2["final_over_initial_radius"] == {"3": pytest.approx(3.05 / 3), "10": pytest.approx(1.02)}
    c3 = c["3_hypersphere_good_only_near_rX"]
    assert c3["holds"] and c3["good_at_ratios"] == [1.0, 3.0] and c3["best_ratio"] == 1.0
    # the other way: grows linearly (exponent 1), good far from r_X on the sphere, fine from above
    cells = _goldilocks_cells()
    cells["hypersphere/10"] = _cell("hypersphere", 10.0, 0.9, 10.0)
    cells["hyperplane/3"] = _cell("hyperplane", 3.0, 0.9, 3.0)
    c = g.claims(cells, {}, [{"r_exponent": 1.0}, {"r_exponent": 0.98}])
    assert not c["1_below_rX_grows_as_sqrt_t"]["sqrt_t"] and not c["1_below_rX_grows_as_sqrt_t"]["holds"]
    assert not c["2_above_rX_stays_and_fails"]["holds"] and not c["3_hypersphere_good_only_near_rX"]["holds"]


def _goldilocks_summary():
    return {"study": "goldilocks", "command": "python scripts/goldilocks.py --epochs 2", "git_commit": "abc",
            "epochs": 2, "seeds": [0, 1], "ratios": [0.1, 0.3, 1.0, 3.0, 10.0],
            "tasks": {"cifar_fc": {"d": 9000, "D": 656810, "r_X": 26.5, "data_source": "cifar10 JPEG re-encoding",
                                   "cells": _goldilocks_cells(),
                                   "growth_all": {"r_exponent": {"mean": 0.4321, "std": 0.0123, "n": 4}},
                                   "claims": _script("goldilocks").claims(_goldilocks_cells(), {}, [{"r_exponent": 0.5}])}}}


def _nonlinear_summary():
    def cell(name, d, acc, trained):
        return {"map": name, "d": d, "trained_parameters": trained, "projection_width": d,
                "test_accuracy": {"mean": acc, "lo": acc - 0.002, "hi": acc + 0.003, "n": 3, "values": [acc] * 3}}
    cells = {"linear/50": cell("linear", 50, 0.5, 50), "power/50": cell("power", 50, 0.501, 50),
             "rff/50": cell("rff", 50, 0.6, 50), "trainable/50": cell("trainable", 50, 0.95, 50 + 50 * 1000),
             "linear/200": cell("linear", 200, 0.8, 200), "power/200": cell("power", 200, 0.79, 200),
             "rff/200": cell("rff", 200, 0.7, 200), "rff_low/200": cell("rff_low", 200, 0.9, 200)}
    return {"study": "nonlinear", "command": "python scripts/nonlinear.py --epochs 1", "git_commit": "abc", "epochs": 1,
            "seeds": [0, 1, 2], "dims": [50, 200], "maps": ["linear", "power", "rff", "rff_low", "unnormalised", "trainable"],
            "cells": cells, "refused": {"trainable/200": "too large"},
            "verdict": _script("nonlinear").verdict(cells, [50, 200])}


def test_nonlinear_verdict_reads_the_bootstrap_ranges():
    v = _nonlinear_summary()["verdict"]
    assert v["50"]["holds"] and v["50"]["rff_minus_linear"] == pytest.approx(0.1)
    assert v["50"]["power_overlaps_linear"]  # 0.501 +- : ranges [0.499, 0.504] and [0.498, 0.503] meet
    assert not v["200"]["holds"] and v["200"]["rff_below_linear"] and not v["200"]["power_overlaps_linear"]
    low = v["200 (rff_low)"]  # above linear, but power (0.79 [0.788-0.793]) is apart from linear (0.8 [0.798-0.803])
    assert low["rff_above_linear"] and low["rff_minus_linear"] == pytest.approx(0.1) and not low["holds"]
    assert "50 (rff_low)" not in v  # no rff_low runs at d = 50


def test_compare_tasks_adds_a_section_per_study_and_does_not_take_them_for_sweeps(tmp_path):
    from rlsub.report import compare_tasks, load_studies, load_sweeps

    for name, s in (("goldilocks", _goldilocks_summary()), ("nonlinear", _nonlinear_summary())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text(json.dumps(s))
    assert load_sweeps(tmp_path) == {}
    assert sorted(load_studies(tmp_path)) == ["goldilocks", "nonlinear"]
    out, _ = compare_tasks(tmp_path)
    text = out.read_text()
    gold = text[text.index("## The Goldilocks zone"):text.index("## Nonlinear")]
    assert "| 0.1 | 0.9000 [0.8900-0.9100] (n=2) | 1.2 | 0.1100 [0.1000-0.1200] (n=2) |" in gold
    assert "| 10 | 0.3000 [0.2900-0.3100] (n=2) | 10.2 | 0.2000 [0.1900-0.2100] (n=2) |" in gold
    assert "r ~ t^0.432 (sd 0.012 over 4 runs" in gold
    assert "CIFAR-10 JPEG re-encoding" in gold
    assert "hypersphere good only near r_X: holds" in gold
    non = text[text.index("## Nonlinear"):]
    assert "| rff | 0.6000 [0.5980-0.6030] (n=3) | 0.7000 [0.6980-0.7030] (n=3) |" in non
    assert "| trainable | 0.9500 [0.9480-0.9530] (n=3) | not run |" in non
    assert "| unnormalised | - | - |" in non
    assert "d = 50: 50,050" in non
    assert "d = 50: holds (rff - linear +0.1000" in non and "d = 200: does not hold (rff - linear -0.1000" in non
    assert "d = 200 (rff_low): does not hold (rff_low - linear +0.1000" in non
    assert "| rff_low | - | 0.9000 [0.8980-0.9030] (n=3) |" in non
    # without the studies' files, no sections
    for name in ("goldilocks", "nonlinear"):
        (tmp_path / name / "summary.json").unlink()
    out, _ = compare_tasks(tmp_path)
    assert "Goldilocks" not in out.read_text() and "Nonlinear" not in out.read_text()


def test_a_damaged_study_summary_is_one_clear_error(tmp_path):
    from rlsub.report import load_studies

    (tmp_path / "goldilocks").mkdir()
    (tmp_path / "goldilocks" / "summary.json").write_text("{not json")
    with pytest.raises(UserError, match="goldilocks/summary.json is damaged"):
        load_studies(tmp_path)


# --- memorisation scaling ------------------------------------------------------------------------


def _memo_points(n: int, ratio_at_threshold: float, seeds=(0, 1)) -> list[dict]:
    """Points of one sweep whose seed-mean curve is linear in log d and crosses 0.9 (90% of a baseline
    of 1.0) at d = ratio_at_threshold * n; the seeds differ by +-0.01 around the mean."""
    d_star = ratio_at_threshold * n
    points = [{"dim": "full", "seed": s, "value": 1.0, "metric_min": 0.0} for s in seeds]
    for d in (n // 4, n, 4 * n):
        mean = 0.9 + 0.2 * (np.log(d) - np.log(d_star)) / np.log(4)
        points += [{"dim": d, "seed": s, "value": float(mean + (0.01 if k else -0.01)), "metric_min": 0.0}
                   for k, s in enumerate(seeds)]
    return points


def test_memorisation_estimate_interpolates_on_log_d():
    m = _script("memorisation")
    # baseline 1.0, threshold 0.9; d = 100 at 0.8 and d = 400 at 1.0: halfway on log d is d = 200
    points = [{"dim": "full", "seed": 0, "value": 1.0}, {"dim": 100, "seed": 0, "value": 0.8},
              {"dim": 400, "seed": 0, "value": 1.0}]
    assert m.estimate(points, 0.9) == pytest.approx(200.0)
    assert m.estimate([p for p in points if p["dim"] != 400], 0.9) is None  # never reached
    assert m.estimate(_memo_points(1000, 1.5), 0.9) == pytest.approx(1500.0)


def test_memorisation_fit_recovers_a_line_and_a_power_law():
    m = _script("memorisation")
    ns = np.array([1000.0, 2000.0, 5000.0, 10000.0])
    line = m.fit(ns, 300.0 + 1.25 * ns)
    assert line["a"] == pytest.approx(300.0) and line["b"] == pytest.approx(1.25)
    assert line["line_at"] == pytest.approx(300.0 + 1.25 * 60000)
    power = m.fit(ns, 7.0 * ns ** 0.8)
    assert power["k"] == pytest.approx(0.8) and power["c"] == pytest.approx(7.0)
    assert power["power_at"] == pytest.approx(7.0 * 60000 ** 0.8)
    assert power["power_at_paper"] == pytest.approx(7.0 * 50000 ** 0.8)


def test_memorisation_summary_fits_the_sweeps_and_the_report_shows_them(tmp_path):
    from rlsub.report import compare_tasks

    m = _script("memorisation")
    results = tmp_path / "memorisation"
    for n in (1000, 2000, 4000):
        folder = results / f"n{n}"
        folder.mkdir(parents=True)
        points = _memo_points(n, 2.0)
        (folder / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
        curve = [{"dim": d, "mean": float(np.mean([p["value"] for p in points if p["dim"] == d]))}
                 for d in (n // 4, n, 4 * n)]
        (folder / "summary.json").write_text(json.dumps({
            "d_int90": 4 * n, "d_int90_interp": m.estimate(points, 0.9), "reached": True,
            "baseline": {"mean": 1.0, "n": 2}, "threshold": 0.9, "curve": curve,
            "bootstrap": {"p16": 1.9 * n, "p84": 2.1 * n}, "budget_curve": {"settled": True},
            "budget": {"wall_time_s_total": 60.0, "epochs_per_point": 200}, "git_commit": "abc"}))
    control = results / "real_n1000"  # the real-label control: not fitted, listed beside the random labels
    control.mkdir()
    (control / "summary.json").write_text(json.dumps({
        "d_int90": 400, "d_int90_interp": 320.0, "baseline": {"mean": 1.0, "n": 2}, "curve": [],
        "bootstrap": None, "budget_curve": {"settled": True}, "budget": {"epochs_per_point": 200}}))
    full = tmp_path / "full60k"  # the all-images sweep: not reached at any d, shown beside the prediction
    full.mkdir()
    (full / "summary.json").write_text(json.dumps({
        "d_int90": None, "d_int90_interp": None, "baseline": {"mean": 0.6, "n": 1}, "threshold": 0.54,
        "budget_label": "budget-limited: 200 epochs", "budget": {"epochs_per_point": 200},
        "curve": [{"dim": 50000, "mean": 0.1}, {"dim": 400000, "mean": 0.11}]}))
    args = m.main.__globals__["argparse"].Namespace(results=str(results), plot=str(tmp_path / "memo.png"),
                                                   threshold=0.9, bootstrap=200, bootstrap_seed=0,
                                                   full_sweep=str(full))
    s = m.summarise(args)
    assert [r["n"] for r in s["rows"]] == [1000, 2000, 4000] and [c["n"] for c in s["real_label_controls"]] == [1000]
    assert [r["dims_per_label"] for r in s["rows"]] == pytest.approx([2.0, 2.0, 2.0])
    assert s["fit"]["b"] == pytest.approx(2.0) and s["fit"]["a"] == pytest.approx(0.0, abs=1e-6)
    assert s["fit"]["k"] == pytest.approx(1.0)
    fb = s["fit_bootstrap"]  # the seeds' +-0.01 moves each estimate a little either way, never past 2.0 +- 10%
    assert fb["unreached_draws"] == 0 and 1.8 < fb["b"]["p16"] <= 2.0 <= fb["b"]["p84"] < 2.2
    assert (tmp_path / "memo.png").stat().st_size > 0
    readme = (results / "README.md").read_text()
    assert "| 1,000 | 1.0000 | 400 | 320 | 2,000 | 6.2x |" in readme  # 2,000 / 320
    assert "**2.00 dimensions per memorised label**" in readme and "| 2,000 | 200 | 2 | 1.0000 | 0.9000 | 8,000 | 4,000 |" in readme
    out, _ = compare_tasks(tmp_path)
    text = out.read_text()
    section = text[text.index("## Memorisation scaling"):]
    assert "| 4,000 | 200 | 2 | 1.0000 | 16,000 | 8,000 | 7,600-8,400 | 2.00 | True |" in section
    assert "Predicted at N = 50,000: 100,000" in section and "At N = 60,000: 120,000" in section
    assert "Measured at N = 60,000 (budget-limited: 200 epochs): baseline 0.6000, not reached up to d = 400,000" in section
    assert s["fit"]["line_at_paper"] == pytest.approx(100000.0)
    assert "threshold not reached at any d measured; accuracy by d: 50,000: 0.100, 400,000: 0.110." in readme
    assert "every one of its 50,000 training labels random" in readme
    # a reached 60,000-image sweep run with another step than the fitted ones: the ratio and the caveat
    (full / "summary.json").write_text(json.dumps({
        "d_int90": 400000, "d_int90_interp": 240000.0, "baseline": {"mean": 0.98, "n": 1}, "threshold": 0.882,
        "budget_label": "budget-limited: 200 epochs", "budget": {"epochs_per_point": 200},
        "curve": [{"dim": 50000, "mean": 0.5}, {"dim": 400000, "mean": 0.95}]}))
    for folder, lr in ((full, 0.001), (results / "n1000", 0.01)):
        (folder / "runs" / "d250_s0").mkdir(parents=True)
        (folder / "runs" / "d250_s0" / "config.json").write_text(json.dumps({"dim": 250, "lr": lr}))
    s = m.summarise(args)
    readme = (results / "README.md").read_text()
    assert "d_int90 400,000 (interpolated 240,000, 4.00 dimensions per label)" in readme
    assert "Measured / predicted (line): 2.00x. The fitted sweeps ran with theta_d's step 0.01" in readme
    assert "the 60,000-image sweep with 0.001" in readme


def test_report_baseline_section_reads_the_baseline_at_quarters_of_its_own_budget(tmp_path):
    from rlsub.report import baseline_section, plot_baselines

    values = {0.25: 0.5, 0.5: 0.8, 0.75: 0.9, 1.0: 0.95}
    sweep = {"metric": "test_accuracy", "metric_min": 0.1,
             "budget": {"cross_check": {"optimizer": "cma_es"}},
             "budget_curve": {"budgets": [{"budget": 500, "optimizer": "cma_es", "unit": "generations"},
                                          {"budget": 200, "optimizer": "openai_es", "unit": "generations"}],
                              "fractions": [{"fraction": 0.05, "baseline": None}]
                              + [{"fraction": f, "baseline": v} for f, v in values.items()]}}
    lines = baseline_section({"toy_task": sweep, "no_curve": {"metric": "x", "budget_curve": {"fractions": []}}})
    rows = [line for line in lines if line.startswith("| toy_task")]
    # last quarter: (0.95 - 0.9) / (0.95 - 0.1) = 5.9%; the budget is the sweep's own optimizer's (200)
    assert rows == ["| toy_task | test_accuracy | 200 generations | 0.5 | 0.8 | 0.9 | 0.95 | +5.9% |"]
    assert not any(line.startswith("| no_curve") for line in lines)
    # a baseline run longer than the subspace points (summary budget.per_side): its own budget
    longer = {**sweep, "budget": {**sweep["budget"], "per_side": {"subspace": [[200, "generations"]],
                                                                   "full": [[600, "generations"]]}}}
    rows = [line for line in baseline_section({"toy_task": longer}) if line.startswith("| toy_task")]
    assert rows[0].startswith("| toy_task | test_accuracy | 600 generations |")
    path = plot_baselines({"toy_task": sweep}, tmp_path)
    assert path is not None and path.stat().st_size > 0
    assert baseline_section({}) == [] and plot_baselines({}, tmp_path) is None


def test_report_shows_no_bootstrap_range_for_a_one_seed_sweep():
    from rlsub.report import build_rows, markdown

    def sweep(seeds):
        return {"sweep": "mnist_fc", "D": 199210, "d_int90": 1000, "d_int90_interp": 900.0, "reached": True,
                "bootstrap": {"p16": 900.0, "p84": 900.0, "unreached_frac": 0.0}, "baseline": {"mean": 0.97},
                "metric": "test_accuracy", "seeds": seeds, "n_points": 3, "threshold": 0.873,
                "curve": [{"dim": 500, "mean": 0.8}, {"dim": 1000, "mean": 0.9}],
                "budget": {"epochs_per_point": 5, "wall_time_s_total": 60.0}}
    one = markdown(build_rows({"mnist_fc": sweep([0])}), "results")
    three = markdown(build_rows({"mnist_fc": sweep([0, 1, 2])}), "results")
    row = [line for line in one.splitlines() if line.startswith("| MNIST, FC")][0]
    assert "| - (1 seed) |" in row
    row = [line for line in three.splitlines() if line.startswith("| MNIST, FC")][0]
    assert "| 900-900 |" in row


def test_report_details_name_the_largest_d_of_a_sweep_that_never_reached_the_threshold():
    from rlsub.report import build_rows, markdown

    sweep = {"sweep": "humanoid_es", "D": 166673, "d_int90": None, "d_int90_interp": None, "reached": False,
             "bootstrap": {"p16": None, "p84": None, "unreached_frac": 1.0}, "baseline": {"mean": 1052.1},
             "metric": "eval_return", "seeds": [0, 1], "n_points": 6, "threshold": 900.0,
             "value_rule": "mean return of the final policy",
             "curve": [{"dim": 100, "mean": 400.0}, {"dim": 7000, "mean": 700.0}],
             "budget": {"timesteps_per_point": 1000, "wall_time_s_total": 60.0}}
    text = markdown(build_rows({"humanoid_es": sweep}), "results")
    row = [line for line in text.splitlines() if line.startswith("| Humanoid")][0]
    assert "| not reached (> 7,000) |" in row
    assert "| 1,050 eval_return |" in row and "| 6 runs, 2 seeds," in row  # not 1.05e+03
    one = markdown(build_rows({"humanoid_es": {**sweep, "seeds": [1]}}), "results")
    assert "| 6 runs, 1 seed," in [line for line in one.splitlines() if line.startswith("| Humanoid")][0]
    assert "- value per point: mean return of the final policy; d_int90 not reached (> 7,000)" in text


def test_d_int90_plot_marks_an_unreached_task_at_its_largest_d_and_a_reached_one_at_its_d_int90():
    from rlsub.report import build_rows, d_int90_marks

    base = {"metric": "eval_return", "seeds": [0, 1], "n_points": 4, "threshold": 900.0,
            "bootstrap": {"p16": None, "p84": None}, "baseline": {"mean": 1000.0},
            "budget": {"timesteps_per_point": 1000, "wall_time_s_total": 60.0}}
    sweeps = {"humanoid_es": {**base, "sweep": "humanoid_es", "D": 166673, "reached": False, "d_int90": None,
                              "d_int90_interp": None,
                              "curve": [{"dim": 100, "mean": 400.0}, {"dim": 7000, "mean": 700.0}]},
              "cartpole_es": {**base, "sweep": "cartpole_es", "D": 3000, "reached": True, "d_int90": 8,
                              "d_int90_interp": 6.5,
                              "curve": [{"dim": 2, "mean": 400.0}, {"dim": 8, "mean": 950.0}]}}
    rows = build_rows(sweeps)
    marks = d_int90_marks(rows)
    at = {r["key"]: i for i, r in enumerate(rows)}
    h, c = at["humanoid_es"], at["cartpole_es"]
    assert marks["above"][h] == 7000 and np.isnan(marks["grid"][h]) and np.isnan(marks["interp"][h])
    assert (marks["grid"][c], marks["interp"][c]) == (8, 6.5) and np.isnan(marks["above"][c])
    unmeasured = [i for i, r in enumerate(rows) if not r["measured"]]
    assert unmeasured and all(np.isnan(marks[k][i]) for k in marks for i in unmeasured)


def test_budget_plot_breaks_the_line_where_no_d_reaches_and_marks_that_fraction_at_the_largest_d():
    from rlsub.report import budget_marks

    s = {"curve": [{"dim": 100}, {"dim": 7000}], "budget_curve": {"fractions": [
        {"fraction": 0.25, "d_int90": None, "d_int90_interp": None, "threshold": None},  # no baseline yet
        {"fraction": 0.5, "d_int90": 100, "d_int90_interp": 80.0, "threshold": 500.0},
        {"fraction": 0.75, "d_int90": None, "d_int90_interp": None, "threshold": 600.0},
        {"fraction": 1.0, "d_int90": 7000, "d_int90_interp": 5000.0, "threshold": 700.0}]}}
    xs, ys, above, top = budget_marks(s)
    assert xs == [0.25, 0.5, 0.75, 1.0] and top == 7000
    assert np.isnan(ys[0]) and ys[1] == 80.0 and np.isnan(ys[2]) and ys[3] == 5000.0
    assert above == [0.75]  # not 0.25: without a baseline there is no threshold to miss
