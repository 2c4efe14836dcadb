import json
import math

import fake_trainer
import numpy as np
import pytest

from rlsub import analysis, sweep, trainers
from rlsub.config import ConfigError
from rlsub.report import compare_tasks


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setitem(trainers.TRAINERS, "fake", "fake_trainer")
    fake_trainer.CALLS.clear()
    monkeypatch.setattr(fake_trainer, "FAIL_AT_CALL", None)
    (tmp_path / "fake.yaml").write_text("knee: 100\n")
    return tmp_path


def write_sweep(tmp_path, name="fake_sweep", **fields):
    body = {"trainer": "fake", "config": str(tmp_path / "fake.yaml"), "dims": [10, 50, 80, 100, 200],
            "seeds": [0, 1, 2], "bootstrap": 200, **fields}
    path = tmp_path / f"{name}.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in body.items()) + "\n")
    return path


def points(curve, baseline, metric_min=0.0):
    rows = [{"dim": "full", "seed": s, "value": v, "metric_min": metric_min} for s, v in enumerate(baseline)]
    for d, values in curve.items():
        rows += [{"dim": d, "seed": s, "value": v, "metric_min": metric_min} for s, v in enumerate(values)]
    return rows


def test_analyse_shifts_rl_returns_by_their_minimum():
    # Pong-like: returns in [-21, 21]; baseline 19 -> threshold -21 + 0.9 * 40 = 15
    rows = points({100: [-21, -20], 1000: [10, 12], 3000: [16, 18]}, [19, 19], metric_min=-21)
    a = analysis.analyse(rows, 0.9, n_boot=0)
    assert a["threshold"] == pytest.approx(15.0)
    assert a["d_int90"] == 3000
    assert a["d_int90_interp"] == pytest.approx(math.exp(math.log(1000) + (15 - 11) / (17 - 11) * math.log(3)))


def test_analyse_curve_that_never_reaches_threshold():
    a = analysis.analyse(points({10: [0.1, 0.2], 20: [0.3, 0.3]}, [1.0, 1.0]), 0.9, n_boot=50)
    assert a["reached"] is False and a["d_int90"] is None
    assert a["bootstrap"]["unreached_frac"] == 1.0 and a["bootstrap"]["median"] is None


def test_analyse_noisy_seeds_gives_a_bootstrap_range():
    a = analysis.analyse(points({10: [0.5, 0.7, 0.6], 20: [0.8, 0.95, 0.85], 40: [0.95, 1.0, 0.97]},
                             [1.0, 0.98, 1.02]), 0.9, n_boot=500)
    # means: 0.6, 0.8667, 0.9733; threshold 0.9 -> grid 40, interpolated between 20 and 40
    assert a["d_int90"] == 40
    assert 20 < a["d_int90_interp"] < 40
    boot = a["bootstrap"]
    assert boot["p16"] <= a["d_int90_interp"] <= boot["p84"]
    assert 0 <= boot["unreached_frac"] < 0.5


def test_grid_sweep_finds_knee(fake):
    config = sweep.resolve(write_sweep(fake), fake / "results")
    summary = sweep.run_sweep(config, quiet=True)
    # value = min(1, d/100): 90% of the baseline (1.0) first at d = 100; interpolated 80 -> 100 on log d
    assert summary["d_int90"] == 100
    assert summary["d_int90_interp"] == pytest.approx(math.exp(math.log(80) + 0.5 * math.log(100 / 80)))
    lines = (fake / "results" / "fake_sweep" / "points.jsonl").read_text().splitlines()
    assert len(lines) == 3 + 5 * 3
    assert json.loads((fake / "results" / "fake_sweep" / "summary.json").read_text())["d_int90"] == 100


def test_sweep_resumes_after_interruption(fake):
    fake_trainer.FAIL_AT_CALL = 5
    config = sweep.resolve(write_sweep(fake), fake / "results")
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(config, quiet=True)
    assert len(fake_trainer.CALLS) == 5
    killed = fake_trainer.CALLS[-1]
    finished = len((fake / "results" / "fake_sweep" / "points.jsonl").read_text().splitlines())
    assert finished == 4
    fake_trainer.CALLS.clear()
    fake_trainer.FAIL_AT_CALL = None
    summary = sweep.run_sweep(config, quiet=True)
    # the 4 finished points are not run again; the killed one is
    assert len(fake_trainer.CALLS) == 18 - 4
    assert fake_trainer.CALLS[0] == killed
    assert summary["n_points"] == 18 and summary["d_int90"] == 100


def test_read_metrics_stops_at_a_cut_line_or_names_it_when_the_run_must_be_whole(tmp_path):
    from rlsub.errors import UserError
    from rlsub.rundir import read_metrics

    assert read_metrics(tmp_path) == [] and read_metrics(tmp_path, strict=True) == []
    (tmp_path / "metrics.jsonl").write_text('{"timesteps": 1}\n\n{"timesteps": 2}\n{"timesteps": 3, "ret')
    assert read_metrics(tmp_path) == [{"timesteps": 1}, {"timesteps": 2}]  # blank line skipped, cut line dropped
    with pytest.raises(UserError, match=r"metrics.jsonl: line 4 is not a JSON row"):
        read_metrics(tmp_path, strict=True)


def test_sweep_names_a_finished_point_whose_metrics_are_damaged(fake):
    from rlsub.errors import UserError

    config = sweep.resolve(write_sweep(fake, dims=[10, 100], seeds=[0]), fake / "results")
    sweep.run_sweep(config, quiet=True)
    run = fake / "results" / "fake_sweep" / "runs" / "d100_s0"
    (run / "metrics.jsonl").write_text('{"timesteps": 5, "score": 1.0}\n{"timesteps": 10, "sc\n{"timesteps": 20}\n')
    with pytest.raises(UserError, match=r"d100_s0/metrics.jsonl: line 2 is not a JSON row"):
        sweep.run_sweep(config, quiet=True)


def test_summary_leaves_out_points_of_other_seeds_or_settings_found_on_disk(fake):
    results = fake / "results"
    sweep.run_sweep(sweep.resolve(write_sweep(fake, dims=[10, 100], seeds=[0, 1]), results), quiet=True)
    # the same folder summarised for seed 1 only: seed 0's points stay on disk, out of the numbers
    summary = sweep.run_sweep(sweep.resolve(write_sweep(fake, dims=[10, 100], seeds=[1]), results), quiet=True)
    assert summary["seeds"] == [1] and summary["n_points"] == 3
    assert sorted(p["point"] for p in summary["left_out"]) == ["d100_s0", "d10_s0", "dfull_s0"]
    assert all("seed 0 is not among" in p["reason"] for p in summary["left_out"])
    kept = [json.loads(line)["point"] for line in (results / "fake_sweep" / "points.jsonl").read_text().splitlines()]
    assert sorted(kept) == ["d100_s1", "d10_s1", "dfull_s1"]
    assert (results / "fake_sweep" / "runs" / "d10_s0" / "summary.json").exists()
    # other settings for the subspace points (the baseline's kept): the old points at other d are left out
    summary = sweep.run_sweep(sweep.resolve(write_sweep(fake, dims=[50], seeds=[1], overrides={"top": 2.0},
                                                        baseline_overrides={"top": 1.0}), results), quiet=True)
    assert summary["n_points"] == 2 and summary["baseline"]["mean"] == 1.0
    assert summary["curve"] == [{"dim": 50, "mean": 1.0, "n": 1, "std": 0.0, "values": [1.0]}]  # 2.0 x 50 / 100
    reasons = {p["point"]: p["reason"] for p in summary["left_out"]}
    assert "top: 1.0 -> 2.0" in reasons["d10_s1"] and "top: 1.0 -> 2.0" in reasons["d100_s1"]


def test_resume_refuses_points_run_with_another_config(fake):
    config = sweep.resolve(write_sweep(fake, dims=[50]), fake / "results")
    sweep.run_sweep(config, quiet=True)
    points_file = fake / "results" / "fake_sweep" / "points.jsonl"
    before = points_file.read_text()
    (fake / "fake.yaml").write_text("knee: 100\ntop: 2.0\n")
    fake_trainer.CALLS.clear()
    with pytest.raises(ConfigError, match=r"another config \(top: 1.0 -> 2.0\)"):
        sweep.run_sweep(config, quiet=True)
    assert fake_trainer.CALLS == [] and points_file.read_text() == before  # nothing run, nothing lost
    # a key added to the trainer since the points ran matches when it holds its default
    for run in (fake / "results" / "fake_sweep" / "runs").iterdir():
        recorded = json.loads((run / "config.json").read_text())
        del recorded["noise"]
        (run / "config.json").write_text(json.dumps(recorded))
    (fake / "fake.yaml").write_text("knee: 100\n")
    assert sweep.run_sweep(config, quiet=True)["n_points"] == 6 and fake_trainer.CALLS == []
    (fake / "fake.yaml").write_text("knee: 100\nnoise: 0.5\n")
    with pytest.raises(ConfigError, match="noise"):
        sweep.run_sweep(config, quiet=True)


def test_adaptive_search_needs_fewer_runs_than_a_dense_grid(fake):
    (fake / "fake.yaml").write_text("knee: 300\n")
    config = sweep.resolve(write_sweep(fake, mode="adaptive", dims=[], seeds=[0],
                                       adaptive={"d_min": 1, "d_max": 1000, "ratio": 1.1, "max_dims": 20}),
                           fake / "results")
    summary = sweep.run_sweep(config, quiet=True)
    dims = [c["dim"] for c in summary["curve"]]
    assert len(dims) <= 12  # a grid with 10% spacing over 1..1000 needs ~73 points
    # true d_int90 = 270; the bracket ends within 10%
    assert 270 <= summary["d_int90"] <= 297
    below = max(d for d in dims if d < summary["d_int90"])
    assert below < 270 and summary["d_int90"] / below <= 1.1 or summary["d_int90"] - below <= 1


def test_bad_sweep_configs(fake):
    with pytest.raises(ConfigError, match="unknown key 'dimz'"):
        sweep.resolve(write_sweep(fake, dimz=[1]))
    with pytest.raises(ConfigError, match="unknown trainer"):
        sweep.resolve(write_sweep(fake, trainer="nope"))
    with pytest.raises(ConfigError, match="non-empty 'dims'"):
        sweep.resolve(write_sweep(fake, dims=[]))


def test_report_from_fixture_results(fake, capsys):
    results = fake / "results"
    for name, knee, paper_task in [("mnist", 700, "mnist_fc"), ("cp", 5, "cartpole_es")]:
        (fake / "fake.yaml").write_text(f"knee: {knee}\n")
        dims = [1, 2, 4, 5, 8] if knee == 5 else [100, 400, 630, 700, 1000]
        config = sweep.resolve(write_sweep(fake, name=name, dims=dims, seeds=[0], paper_task=paper_task), results)
        sweep.run_sweep(config, quiet=True)
    out, rows = compare_tasks(results)
    text = out.read_text()
    by_key = {r["key"]: r for r in rows}
    mnist, cp = by_key["mnist_fc"], by_key["cartpole_es"]
    # value = min(1, d / knee): 90% of the baseline exactly at d = 0.9 knee (630) for MNIST; d = 5 for CartPole
    assert mnist["d_int90"] == 630 and cp["d_int90"] == 5
    assert cp["ratio_mnist"] == pytest.approx(cp["d_int90_interp"] / mnist["d_int90_interp"])
    assert cp["compression"] == pytest.approx(1000 / cp["d_int90_interp"])
    assert not by_key["pong_es"]["measured"]
    assert "rlsub sweep --config configs/sweeps/pong_es.yaml" in text
    assert "pong_es/README.md" not in text
    assert "learning_curves.png" not in text  # the fake runs log no evaluations: no such plot, none named
    (results / "pong_es").mkdir()  # runs of a task that give no d_int90, described in a README beside them
    (results / "pong_es" / "README.md").write_text("two runs\n")
    pong = next(line for line in compare_tasks(results)[0].read_text().splitlines() if line.startswith("| Pong"))
    assert "runs without a d_int90 in `pong_es/README.md`; a sweep: `rlsub sweep --config configs/sweeps/pong_es.yaml" in pong
    assert "| CartPole, ES, MLP 4-20-20-2 | RL | 1,000 | 5 (" in text
    assert "x easier" in cp_row(text)
    assert (results / "plots" / "curves.png").stat().st_size > 1000
    assert (results / "plots" / "d_int90.png").stat().st_size > 1000
    from rlsub.cli import main

    assert main(["compare-tasks", "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if "cartpole_es" in x)
    assert line.split()[:2] == ["cartpole_es", "5"] and line.split()[-1] == "4"  # grid d_int90, ..., paper


def test_budget_label_heads_the_report_budget(fake):
    results = fake / "results"
    (fake / "fake.yaml").write_text("knee: 5\n")
    config = sweep.resolve(write_sweep(fake, name="cp", dims=[1, 2, 4, 5, 8], seeds=[0], paper_task="cartpole_es",
                                       budget_label="budget-limited (one seed)"), results)
    summary = sweep.run_sweep(config, quiet=True)
    assert summary["budget_label"] == "budget-limited (one seed)"
    out, _ = compare_tasks(results)
    budget_cell = cp_row(out.read_text()).rstrip(" |").split(" | ")[-1]
    assert budget_cell.startswith("**budget-limited (one seed)**: 6 runs, 1 seed,")
    with pytest.raises(ConfigError, match="budget_label"):
        sweep.resolve(write_sweep(fake, budget_label=5))


def test_report_budget_names_a_baseline_budget_that_differs_from_the_subspace_points():
    """A sweep whose baseline runs longer than its subspace points (Humanoid: 6M vs 2M steps) says
    both; one budget for all points reads as one."""
    from rlsub.report import _budget

    points = [{"dim": d, "budget": 2_000_000 if d != "full" else 6_000_000, "budget_unit": "environment steps",
               "timesteps": 10} for d in (100, 700, "full")]
    side = {s: sorted({(p["budget"], p["budget_unit"]) for p in points if (p["dim"] == "full") == (s == "full")})
            for s in ("subspace", "full")}
    summary = {"n_points": 3, "seeds": [0], "budget": {
        "per_point": [["-", 2_000_000, "environment steps"], ["-", 6_000_000, "environment steps"]],
        "per_side": json.loads(json.dumps(side)), "timesteps_total": 30, "wall_time_s_total": 60}}
    assert _budget(summary) == ("3 runs, 1 seed, 30 env steps, 2,000,000 environment steps per subspace run, "
                                "6,000,000 environment steps for the full-space baseline, 1.0 min")
    summary["budget"]["per_point"] = [["-", 2_000_000, "environment steps"]]
    assert _budget(summary) == "3 runs, 1 seed, 30 env steps, 2,000,000 environment steps per run, 1.0 min"


def test_sweep_summary_keeps_the_budget_of_each_side(fake, monkeypatch):
    """summary.json's budget.per_side: the subspace points' budgets and the baseline's, apart."""
    real = sweep._read_points

    def with_budgets(results, *args):
        rows = real(results, *args)
        for r in rows:
            r.update(budget=600 if r["dim"] == "full" else 200, budget_unit="epochs")
        return rows

    monkeypatch.setattr(sweep, "_read_points", with_budgets)
    config = sweep.resolve(write_sweep(fake, dims=[10, 50], seeds=[0]), fake / "results")
    summary = sweep.run_sweep(config, quiet=True)
    assert summary["budget"]["per_side"] == {"subspace": [(200, "epochs")], "full": [(600, "epochs")]}
    saved = json.loads((fake / "results" / "fake_sweep" / "summary.json").read_text())
    assert saved["budget"]["per_side"] == {"subspace": [[200, "epochs"]], "full": [[600, "epochs"]]}


def test_result_line_says_when_the_upper_bootstrap_percentile_lies_above_the_grid():
    """Over 16% of resamples reaching no d of the grid leaves p84 undefined (None): the terminal line
    says "> top d" instead of failing to format it."""
    summary = {"sweep": "h", "baseline": {"mean": 705.6, "std": 44.7, "n": 2}, "threshold": 635.0, "reached": True,
               "d_int90": 2000, "d_int90_interp": 1553.0,
               "bootstrap": {"p16": 1130.7, "p84": None, "censored_above": 7000}}
    assert sweep.format_result(summary) == ("h: baseline 706 +- 45 (n=2), threshold 635; d_int90 = 2,000 "
                                            "(interpolated 1,553) [bootstrap 16-84%: 1,130 to > 7,000]")
    summary["bootstrap"]["p84"] = 3000.0
    assert sweep.format_result(summary).endswith("[bootstrap 16-84%: 1,130-3,000]")
    summary.update(reached=False, baseline={"mean": 1052.1, "std": 0.0, "n": 1}, threshold=946.9,
                   curve=[{"dim": 100}, {"dim": 7000}])
    assert sweep.format_result(summary) == "h: baseline 1,050 +- 0 (n=1), threshold 947; d_int90 not reached up to d = 7,000"


def cp_row(text):
    return next(line for line in text.splitlines() if line.startswith("| CartPole, ES"))


@pytest.mark.mpi
def test_mpi_sweep_spreads_points_over_ranks(fake):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = write_sweep(fake, dims=[10, 50, 100], seeds=[0, 1])
    script = fake / "run.py"
    script.write_text(
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import fake_trainer\n"
        "from rlsub import sweep, trainers\n"
        "trainers.TRAINERS['fake'] = 'fake_trainer'\n"
        f"config = sweep.resolve({str(path)!r}, {str(fake / 'results')!r})\n"
        "summary = sweep.run_sweep(config, quiet=True)\n"
        "from mpi4py import MPI\n"
        "rank = MPI.COMM_WORLD.Get_rank()\n"
        # one file per rank: the ranks' stdout lines can interleave on their way through mpirun
        f"out = {str(fake)!r} + f'/calls_{{rank}}.json'\n"
        "json.dump({'calls': fake_trainer.CALLS, 'd_int90': summary['d_int90']}, open(out, 'w'))\n"
    )
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    proc = subprocess.run([str(bin_dir / "mpirun"), "-n", "2", sys.executable, str(script)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    calls = {}
    for rank in (0, 1):
        record = json.loads((fake / f"calls_{rank}.json").read_text())
        calls[rank] = [tuple(c) for c in record["calls"]]
        assert record["d_int90"] == 100
    assert calls[0] and calls[1]
    assert not set(calls[0]) & set(calls[1])  # no point ran twice
    assert len(calls[0]) + len(calls[1]) == 2 + 3 * 2
    lines = (fake / "results" / "fake_sweep" / "points.jsonl").read_text().splitlines()
    assert len(lines) == 8


def test_every_shipped_sweep_config_resolves_and_names_a_paper_task_or_is_a_study():
    from pathlib import Path

    from rlsub.paper import PAPER

    configs = sorted(Path("configs/sweeps").glob("*.yaml"))
    assert {c.stem for c in configs} >= set(PAPER)  # the report's commands all exist
    for path in configs:
        config = sweep.resolve(path)
        assert config["paper_task"] in PAPER or path.stem == "mnist_fc5_memorisation"  # beyond the paper
        trainer = trainers.get_trainer(config["trainer"])
        first = config["dims"][0] if config["dims"] else config["adaptive"]["d_min"]
        trainer.resolve(config["config"], {**config["overrides"], "dim": first, "seed": 0})


def test_sweep_prints_i_of_n_each_result_elapsed_and_eta(fake, capsys):
    config = sweep.resolve(write_sweep(fake, dims=[10, 100], seeds=[0]), fake / "results")
    sweep.run_sweep(config)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "/3 " in ln]
    assert [ln.split(" d=")[0] for ln in lines] == ["[fake_sweep] 1/3", "[fake_sweep] 2/3", "[fake_sweep] 3/3"]
    assert "d=full seed=0: score 1 (" in lines[0] and "d=10 seed=0: score 0.1 (" in lines[1]
    assert all("elapsed 0:00:0" in ln and "ETA 0:00:00" in ln for ln in lines)
    sweep.run_sweep(config)  # finished points are reused, and said to be
    assert "(reused); elapsed" in capsys.readouterr().err
    # an RL sweep valued by its final policies: the line's number is the run's last training evaluation
    sweep._Progress({"name": "h", "final_eval": {"episodes": 50, "seed": 100000}}, 1, 1, False).point(
        0, (100, 1, None), {"metric": "eval_return", "value": 554.7}, 1.0, True)
    assert "[h] 1/1 d=100 seed=1: last training eval_return 554.7 (reused)" in capsys.readouterr().err


def test_final_eval_values_points_by_their_final_policy_over_many_episodes(tmp_path, monkeypatch):
    """final_eval: a point's value is its final policy's mean return over N noiseless episodes from
    reset seeds S, S + 1, ...: checked against rollouts written out here (theta_D = theta_0 + P
    theta_d through the module itself, greedy actions, gymnasium's CartPole); kept in the run's
    folder and reused, evaluated again when theta_d changes."""
    import gymnasium as gym
    import numpy as np
    import torch

    from rlsub.es import trainer as es

    path = tmp_path / "cp.yaml"
    path.write_text("trainer: es\nconfig: cartpole\ndims: [2]\nseeds: [0]\nbootstrap: 0\n"
                    "overrides: {generations: 3, pairs: 4, eval_episodes: 1, target_return: null}\n"
                    "final_eval: {episodes: 4, seed: 7}\n")
    config = sweep.resolve(path, results_root=tmp_path / "results")
    sweep.run_sweep(config, quiet=True)
    rows = {r["point"]: r for r in map(json.loads, (tmp_path / "results" / "cp" / "points.jsonl").open())}
    assert set(rows) == {"dfull_s0", "d2_s0"}
    rule = json.loads((tmp_path / "results" / "cp" / "summary.json").read_text())["value_rule"]
    assert rule.startswith("mean return of the final policy over 4 noiseless episodes (reset seeds 7-10")
    for name, row in rows.items():
        run = tmp_path / "results" / "cp" / "runs" / name
        summary = json.loads((run / "summary.json").read_text())
        assert row["value_training_eval"] == summary["value"] and row["final_eval_episodes"] == 4
        tconfig = json.loads((run / "config.json").read_text())
        env = gym.make("CartPole-v1")
        model, _ = es.build_policy(es.resolve(None, {k: tconfig[k] for k in ("env", "model", "model_kwargs", "dim",
                                                                               "projection", "seed")}), env)
        theta_D = model.theta_D(torch.from_numpy(np.load(run / "theta_d.npy")))
        returns = []
        for k in range(4):
            obs, _ = env.reset(seed=7 + k)
            total, done = 0.0, False
            while not done:
                with torch.no_grad():
                    out = model.call_with(theta_D, torch.as_tensor(obs, dtype=torch.float32)[None])
                obs, reward, terminated, truncated, _ = env.step(int(out.argmax()))
                total, done = total + reward, terminated or truncated
            returns.append(total)
        assert row["value"] == pytest.approx(np.mean(returns))
        kept = json.loads((run / "final_eval.json").read_text())
        assert kept["returns"] == pytest.approx(returns) and kept["seed"] == 7
    # reused while theta_d is the same ...
    from rlsub import loading

    def refuse(*_):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(loading, "load_run", refuse)
    sweep.write_outputs(config, "")
    # ... and evaluated again when the run was re-done (another theta_d)
    run = tmp_path / "results" / "cp" / "runs" / "d2_s0"
    np.save(run / "theta_d.npy", np.load(run / "theta_d.npy") + np.float32(1.0))
    with pytest.raises(AssertionError, match="evaluated again"):
        sweep.write_outputs(config, "")


@pytest.mark.parametrize("body, message", [
    ("trainer: supervised\nconfig: mnist_fc\ndims: [10]\nfinal_eval: {episodes: 5}\n", "final_eval re-evaluates RL"),
    ("trainer: es\nconfig: cartpole\ndims: [2]\nfinal_eval: {episodes: 0}\n", "episodes"),
    ("trainer: es\nconfig: cartpole\ndims: [2]\nfinal_eval: {episode: 5}\n", "episode"),
])
def test_final_eval_bad_input_is_one_clear_error(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        sweep.resolve(path)


def _cartpole_sweep(tmp_path, name: str, overrides: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"trainer: es\nconfig: cartpole\ndims: [2]\nseeds: [0]\nbootstrap: 0\noverrides: {{{overrides}}}\n")
    return sweep.resolve(path, results_root=tmp_path / "results")


def test_a_sweep_whose_budget_grew_continues_its_points_as_if_run_with_it_from_the_start(tmp_path, capsys):
    """Raising the generations of a finished sweep continues each point from its checkpoint; the
    result is the run a sweep with the larger budget from the start gives (theta_d bit for bit),
    the record says so, and shrinking the budget again is refused."""
    import numpy as np

    base = "pairs: 4, eval_episodes: 1, eval_every: 1, target_return: null"
    sweep.run_sweep(_cartpole_sweep(tmp_path, "grow", f"{base}, generations: 2"), quiet=True)
    runs = tmp_path / "results" / "grow" / "runs"
    assert [json.loads(line)["generation"] for line in (runs / "d2_s0" / "metrics.jsonl").open()] == [0, 1]
    summary = sweep.run_sweep(_cartpole_sweep(tmp_path, "grow", f"{base}, generations: 5"))
    assert "continuing from" in capsys.readouterr().err
    sweep.run_sweep(_cartpole_sweep(tmp_path, "fresh", f"{base}, generations: 5"), quiet=True)
    fresh = tmp_path / "results" / "fresh" / "runs"
    for point in ("d2_s0", "dfull_s0"):
        grown_rows = [json.loads(line) for line in (runs / point / "metrics.jsonl").open()]
        assert [r["generation"] for r in grown_rows] == [0, 1, 2, 3, 4]
        assert np.array_equal(np.load(runs / point / "theta_d.npy"), np.load(fresh / point / "theta_d.npy"))
        assert np.abs(np.load(runs / point / "theta_d.npy")).sum() > 0
        record = json.loads((runs / point / "config.json").read_text())
        assert record["generations"] == 5
        assert record["resumed_with"] == [{"key": "generations", "from": 2, "to": 5, "at": 2}]
    values = {p["point"]: p["value"] for p in map(json.loads, (tmp_path / "results" / "grow" / "points.jsonl").open())}
    fresh_values = {p["point"]: p["value"] for p in
                    map(json.loads, (tmp_path / "results" / "fresh" / "points.jsonl").open())}
    assert values == fresh_values and summary["n_points"] == 2
    with pytest.raises(ConfigError, match=r"generations: 5 -> 3"):
        sweep.run_sweep(_cartpole_sweep(tmp_path, "grow", f"{base}, generations: 3"), quiet=True)


def test_a_point_left_at_a_smaller_budget_stays_out_of_the_summary(tmp_path):
    """A point at another d, finished at the old budget (its checkpoint could continue it), is not mixed
    into the summary of the sweep whose budget grew."""
    base = "pairs: 4, eval_episodes: 1, eval_every: 1, target_return: null"
    path = tmp_path / "mix.yaml"
    path.write_text(f"trainer: es\nconfig: cartpole\ndims: [2, 3]\nseeds: [0]\nbootstrap: 0\n"
                    f"overrides: {{{base}, generations: 2}}\n")
    sweep.run_sweep(sweep.resolve(path, results_root=tmp_path / "results"), quiet=True)
    summary = sweep.run_sweep(_cartpole_sweep(tmp_path, "mix", f"{base}, generations: 4"), quiet=True)  # d = 2 only
    assert summary["n_points"] == 2 and [c["dim"] for c in summary["curve"]] == [2]
    assert summary["budget"]["per_point"] == [("openai_es", 4, "generations")]
    assert summary["left_out"] == [{"point": "d3_s0", "reason": "its budget is below the sweep's (generations -> 4)"}]


def test_a_point_that_stopped_at_its_target_takes_a_larger_budget_without_running(tmp_path):
    """A point that reached target_return before its budget ran out would stop at the same place
    with a larger one: nothing runs, its record takes the new budget."""
    base = "pairs: 4, eval_episodes: 1, eval_every: 1, target_return: 9.0"
    sweep.run_sweep(_cartpole_sweep(tmp_path, "early", f"{base}, generations: 4"), quiet=True)
    run = tmp_path / "results" / "early" / "runs" / "d2_s0"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] and summary["generations"] < 4
    metrics = (run / "metrics.jsonl").read_text()
    sweep.run_sweep(_cartpole_sweep(tmp_path, "early", f"{base}, generations: 8"), quiet=True)
    assert (run / "metrics.jsonl").read_text() == metrics
    record = json.loads((run / "config.json").read_text())
    assert record["generations"] == 8
    assert record["resumed_with"] == [{"key": "generations", "from": 4, "to": 8, "at": summary["generations"]}]


def test_learning_curves_average_the_seeds_own_evaluations_per_d(tmp_path):
    """report.learning_curves against hand-computed means: the budget's unit picks the x axis, a cross-check
    optimizer's runs are left out, the mean runs up to the shortest running seed with each seed
    interpolated linearly, and a run stopped at its target counts at its last value after it stopped."""
    from rlsub.report import learning_curves, plot_learning_curves

    folder = tmp_path / "results" / "cp"
    runs = {"d2_s0": (2, "openai_es", False, [(0, 10.0), (10, 30.0), (20, 50.0)]),
            "d2_s1": (2, "openai_es", True, [(0, 20.0), (4, 40.0)]),  # reached its target at generation 4
            "d2_s2": (2, "openai_es", False, [(0, 0.0), (16, 80.0)]),
            "d2_s0_cma_es": (2, "cma_es", False, [(0, 500.0), (20, 500.0)]),
            "dfull_s0": ("full", "openai_es", False, [(0, 100.0), (8, 200.0)])}
    lines = []
    for name, (dim, optimizer, stopped, evals) in runs.items():
        (folder / "runs" / name).mkdir(parents=True)
        rows = [{"generation": g, "timesteps": 1000 * g + 7, "eval_return": v} for g, v in evals]
        rows.insert(1, {"generation": 1, "timesteps": 1007, "return_mean": -1.0})  # no evaluation logged
        (folder / "runs" / name / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        lines.append(json.dumps({"point": name, "dim": dim, "optimizer": optimizer, "stopped_early": stopped}))
    (folder / "points.jsonl").write_text("\n".join(lines) + "\n")
    summary = {"sweep": "cp", "trainer": "es", "_path": str(folder / "summary.json"),
               "budget": {"cross_check": {"optimizer": "cma_es"}},
               "budget_curve": {"budgets": [{"budget": 20, "unit": "generations", "optimizer": "openai_es"},
                                            {"budget": 20, "unit": "generations", "optimizer": "cma_es"}]}}
    unit, curves = learning_curves(summary, points=5)
    assert unit == "generations" and set(curves) == {2, "full"}
    c = curves[2]
    assert len(c["seeds"]) == 3 and c["x"].tolist() == [0.0, 4.0, 8.0, 12.0, 16.0]
    s0 = [10.0, 18.0, 26.0, 34.0, 42.0]   # 10 + 2 g up to 10, then 30 + 2 (g - 10)
    s1 = [20.0, 40.0, 40.0, 40.0, 40.0]   # stopped at 4: its last value from there on
    s2 = [0.0, 20.0, 40.0, 60.0, 80.0]
    np.testing.assert_allclose(c["mean"], np.mean([s0, s1, s2], axis=0))
    np.testing.assert_allclose(curves["full"]["mean"], [100.0, 125.0, 150.0, 175.0, 200.0])
    summary["budget_curve"]["budgets"] = [{"budget": 20000, "unit": "environment steps", "optimizer": "openai_es"}]
    assert learning_curves(summary, points=3)[1]["full"]["x"].tolist() == [7.0, 4007.0, 8007.0]
    path = plot_learning_curves({"cartpole_es": summary, "no_logs": {"sweep": "x", "_path": str(tmp_path / "s.json")}},
                                tmp_path / "plots")
    assert path == tmp_path / "plots" / "learning_curves.png" and path.stat().st_size > 10_000
