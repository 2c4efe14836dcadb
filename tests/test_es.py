import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlsub.cli import main
from rlsub.es import trainer
from rlsub.es.core import Adam, ObsStats, centered_ranks, mirrored_gradient, perturbation
from rlsub.es.envs import EnvClock, make_env
from rlsub.es.policy import ActionNoise, Actor
from rlsub.models import build_model
from rlsub.subspace import SubspaceModel

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def cartpole(**overrides):
    base = {"generations": 4, "pairs": 6, "eval_every": 2, "eval_episodes": 2, "sigma": 0.5, "lr": 0.2,
            "target_return": 10_000,  # never: these tests count generations
            "l2": 0.0, "obs_norm": True}
    return trainer.resolve("configs/es/cartpole.yaml", {**base, **overrides})


def test_centered_ranks_exact():
    np.testing.assert_allclose(centered_ranks(np.array([3.0, 1.0, 2.0, 5.0, 4.0])), [0.0, -0.5, -0.25, 0.5, 0.25])
    # ties share their average rank
    np.testing.assert_allclose(centered_ranks(np.array([3.0, 1.0, 2.0, 2.0, 5.0])), [0.25, -0.5, -0.125, -0.125, 0.5])
    np.testing.assert_allclose(centered_ranks(np.array([[1.0, 2.0], [4.0, 3.0]])), [[-0.5, -1 / 6], [0.5, 1 / 6]])
    np.testing.assert_allclose(centered_ranks(np.array([7.0, 7.0, 7.0])), [0.0, 0.0, 0.0])


def test_mirrored_estimate_points_along_true_gradient_of_quadratic():
    rng = np.random.default_rng(0)
    dim, n, sigma = 20, 2000, 0.1
    A = np.diag(np.linspace(0.5, 2.0, dim))
    theta = rng.standard_normal(dim)

    def f(v):
        return -0.5 * v @ A @ v

    eps = rng.standard_normal((n, dim))
    g = mirrored_gradient(eps, [f(theta + sigma * e) for e in eps], [f(theta - sigma * e) for e in eps], sigma)
    true = -A @ theta
    cos = g @ true / np.linalg.norm(g) / np.linalg.norm(true)
    assert cos > 0.95
    # unbiased for a quadratic: the magnitude matches too
    assert abs(np.linalg.norm(g) / np.linalg.norm(true) - 1) < 0.1


def test_adam_first_step_is_lr_times_sign():
    adam = Adam(3, lr=0.01)
    step = adam.step(np.array([2.0, -0.5, 0.1]))
    np.testing.assert_allclose(step, [0.01, -0.01, 0.01], rtol=1e-5)


def test_perturbations_are_functions_of_integers():
    a = perturbation(0, 3, 5, 10)
    assert np.array_equal(a, perturbation(0, 3, 5, 10))
    assert not np.array_equal(a, perturbation(0, 3, 6, 10))
    assert not np.array_equal(a, perturbation(1, 3, 5, 10))


def test_numpy_actor_matches_torch_forward():
    env = make_env("CartPole-v1")
    net = build_model("mlp", seed=0, in_dim=4, out_dim=2, hidden=[20, 20], activation="tanh")
    model = SubspaceModel(net, 4, projection="dense", seed=0)
    model.set_flat(np.array([0.5, -1.0, 2.0, 0.1]))
    actor = Actor(model, env.action_space)
    assert actor._plan is not None
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None)
    obs = np.array([0.1, -0.2, 0.03, 0.4], dtype=np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(obs)[None])[0].numpy()
    np.testing.assert_allclose(actor.outputs(obs), expect, rtol=1e-5, atol=1e-6)


def test_numpy_actor_normalises_clips_and_leaves_the_observation_alone():
    from gymnasium import spaces

    box = spaces.Box(-0.4, 0.4, shape=(3,), dtype=np.float32)
    net = build_model("mlp", seed=1, in_dim=5, out_dim=3, hidden=[8], activation="tanh")
    model = SubspaceModel(net, 3, projection="dense", seed=0)
    model.set_flat(np.array([3.0, -2.0, 1.0]))
    actor = Actor(model, box)
    stats = ObsStats((5,))
    stats.add(np.array([1.0, 2.0, 0.0, -1.0, 0.5]) * 4, np.array([1.0, 5.0, 0.01, 2.0, 0.3]) * 4, 4)
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, stats)
    obs = np.array([3.0, -40.0, 0.2, -1.0, 0.5])  # float64, as MuJoCo gives; -40 is clipped to -5 std
    before = obs.copy()
    x = np.clip((obs.astype(np.float32) - stats.mean.astype(np.float32)) / stats.std.astype(np.float32), -5, 5)
    assert x.min() == -5.0
    with torch.no_grad():
        expect = model(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(actor.outputs(obs), expect, rtol=1e-5, atol=1e-6)
    noise = np.random.default_rng(7).standard_normal(3).astype(np.float32) * 0.3
    action = actor.act(obs, ActionNoise(7, 0.3))
    np.testing.assert_allclose(action, np.clip(expect + noise, -0.4, 0.4), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(obs, before)


def test_env_clock_counts_time_inside_the_environment():
    import time

    import gymnasium as gym

    class Slow(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, shape=(1,))
        action_space = gym.spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            time.sleep(0.01)
            return np.zeros(1, dtype=np.float32), {}

        def step(self, action):
            time.sleep(0.02)
            return np.zeros(1, dtype=np.float32), 1.0, False, False, {}

    env = EnvClock(Slow())
    env.reset()
    for _ in range(3):
        env.step(0)
    assert 0.07 <= env.seconds < 0.5
    counted = env.seconds
    time.sleep(0.02)  # outside the environment: not counted
    assert env.seconds == counted


def test_short_cartpole_run_learns(tmp_path):
    config = cartpole(generations=12, pairs=10, eval_every=4, eval_episodes=5, seed=0, dim=4, obs_norm=False)
    summary = trainer.train(config, tmp_path / "run", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    # a random 4-20-20-2 policy balances for ~10-30 steps; ES at d=4 gets far beyond that
    assert summary["value"] >= 200
    assert rows[-1]["return_mean"] > 2 * rows[0]["return_mean"]
    # most of a CartPole generation is policy and bookkeeping, but some of it is the environment
    assert all(0.0 < r["env_time_frac"] < 1.0 for r in rows)
    # the optimizer's own share is disjoint from the environment's: together at most the generation
    assert all(0.0 < r["opt_time_frac"] and r["env_time_frac"] + r["opt_time_frac"] <= 1.0 for r in rows)
    for name in ("config.json", "metrics.jsonl", "summary.json", "theta_d.npy", "checkpoint.npz"):
        assert (tmp_path / "run" / name).exists()
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("task", "trainer", "D", "d", "projection", "seed", "metric", "value", "timesteps",
                "wall_time_s", "git_commit"):
        assert key in s
    assert s["D"] == 562 and s["d"] == 4 and s["trainer"] == "es"


def test_resume_gives_the_same_theta_d(tmp_path):
    full = cartpole(generations=6, checkpoint_every=3, seed=1)
    trainer.train(full, tmp_path / "a", quiet=True)
    trainer.train(cartpole(generations=3, checkpoint_every=3, seed=1), tmp_path / "b", quiet=True)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 3
    trainer.train(cartpole(generations=6, checkpoint_every=3, seed=1), tmp_path / "b", resume=True, quiet=True)
    a = np.load(tmp_path / "a" / "theta_d.npy")
    b = np.load(tmp_path / "b" / "theta_d.npy")
    assert np.array_equal(a, b)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 6
    # the record holds the budget the run finished with, and the change
    recorded = json.loads((tmp_path / "b" / "config.json").read_text())
    assert recorded["generations"] == 6
    assert recorded["resumed_with"] == [{"key": "generations", "from": 3, "to": 6, "at": 3}]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["generations_budget"] == 6


def test_full_space_baseline_uses_identity_projection(tmp_path):
    summary = trainer.train(cartpole(dim="full", generations=2), tmp_path / "full", quiet=True)
    assert summary["d"] is None and summary["dim"] == "full" and summary["projection"] is None
    assert np.load(tmp_path / "full" / "theta_d.npy").shape == (562,)


def test_bytes_communicated_grow_with_population_not_d(tmp_path):
    def comm_bytes(**kw):
        out = tmp_path / "_".join(f"{k}{v}" for k, v in kw.items())
        trainer.train(cartpole(generations=1, **kw), out, quiet=True)
        return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["comm_bytes"]

    b4 = comm_bytes(dim=4, pairs=6)
    assert comm_bytes(dim=100, pairs=6) == b4
    assert comm_bytes(dim="full", pairs=6) == b4
    assert comm_bytes(dim=4, pairs=12) == 2 * b4


def test_obs_stat_prob_records_the_seeded_share_of_pairs(tmp_path):
    """The statistics' count is eps (0.01) plus the steps of the recording pairs' episodes: all training
    steps at prob 1, none at a vanishing prob, and at 0.5 the pairs the seeded draw picks, each
    (seed, generation, pair) drawn as the docstring of records_obs says. CartPole pays 1 a step, so a
    generation's training steps are its mean return times its 16 episodes."""
    def run(prob, **kw):
        out = tmp_path / f"p{prob}"
        trainer.train(cartpole(generations=3, pairs=8, obs_stat_prob=prob, **kw), out, quiet=True)
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        steps = sum(r["return_mean"] * 16 for r in rows)
        return float(np.load(out / "obs_norm.npz")["obs_count"]) - 0.01, steps, out

    count, steps, _ = run(1.0)
    assert count == pytest.approx(steps) and steps > 0
    count, steps, out = run(1e-12)
    assert count == pytest.approx(0.0)
    assert np.abs(np.load(out / "theta_d.npy")).sum() > 0  # training went on with the initial statistics
    picks = [[np.random.default_rng(np.random.SeedSequence([0, 6, g, k])).random() < 0.5 for k in range(8)]
             for g in range(3)]
    assert 0 < sum(map(sum, picks)) < 24  # this seed picks some pairs and not others
    count, steps, _ = run(0.5)
    assert 0 < count < steps


@pytest.mark.parametrize("args,match", [
    (["--dim", "563"], "exceeds the policy's D = 562"),
    (["--dim", "0"], "dim must be >= 1"),
])
def test_cli_bad_dim(args, match, capsys, tmp_path):
    assert main(["es", "--config", "configs/es/cartpole.yaml", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err


def test_cli_unknown_key_and_unknown_env(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: CartPole-v1\npopulation_size: 10\n")
    assert main(["es", "--config", str(bad)]) == 2
    assert "unknown key 'population_size'" in capsys.readouterr().err
    bad.write_text("env: NoSuchEnv-v0\n")
    assert main(["es", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "cannot make environment 'NoSuchEnv-v0'" in capsys.readouterr().err


def _mpirun(n, args, timeout=300):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    return subprocess.run([str(VENV_BIN / "mpirun"), "-n", str(n), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.mpi
def test_mpi_two_ranks_give_the_same_theta_d_as_one(tmp_path):
    common = ["--config", "configs/es/cartpole.yaml", "--generations", "5", "--pairs", "7", "--seed", "3",
              "--quiet"]
    for n in (1, 2):
        proc = _mpirun(n, [str(VENV_BIN / "rlsub"), "es", *common, "--out", str(tmp_path / f"n{n}")])
        assert proc.returncode == 0, proc.stderr
    a, b = np.load(tmp_path / "n1" / "theta_d.npy"), np.load(tmp_path / "n2" / "theta_d.npy")
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    assert json.loads((tmp_path / "n2" / "summary.json").read_text())["n_ranks"] == 2


@pytest.mark.mpi
def test_mpi_a_failing_rank_ends_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import sys\n"
        "from rlsub.es import trainer\n"
        "from rlsub.cli import main\n"
        "def broken(config, out_dir=None, resume=False, quiet=False):\n"
        "    comm = trainer._comm()\n"
        "    if comm.Get_rank() == 1:\n"
        "        raise RuntimeError('simulated crash on rank 1')\n"
        "    comm.Barrier()  # rank 0 would wait here forever without the abort\n"
        "trainer.train = broken\n"
        "sys.exit(main(['es', '--config', 'configs/es/cartpole.yaml']))\n"
    )
    proc = _mpirun(2, [sys.executable, str(script)], timeout=120)
    assert proc.returncode != 0
    assert "rank 1/2 failed: simulated crash on rank 1" in proc.stderr


# --- CMA-ES (pycma) as the second optimizer -------------------------------------------------------


def test_cma_es_asks_what_pycma_asks_with_the_same_random_numbers():
    """The wrapper against pycma used directly: same candidates, same update (pycma minimises, so
    the wrapper must hand it minus the returns)."""
    import cma

    from rlsub.es.optimizers import CMAES, _Randn

    config = {"seed": 5, "sigma": 0.3, "cma": {"popsize": 6, "sigma0": None, "diagonal": False}}
    ours = CMAES(3, config)
    ref = cma.CMAEvolutionStrategy(np.zeros(3), 0.3, {"randn": _Randn(5), "popsize": 6, "verbose": -9})

    def returns(X):  # higher is better: a peak at (1, -2, 0.5)
        return -np.sum((np.asarray(X) - [1.0, -2.0, 0.5]) ** 2, axis=1)

    for g in range(25):
        ours.begin(g, np.zeros(3, dtype=np.float32), lambda v: np.asarray(v, dtype=np.float32))
        X = ref.ask()
        np.testing.assert_array_equal(np.array(ours._X), np.array(X))
        ours.tell(g, returns(X)[:, None])
        ref.tell(X, list(-returns(X)))
    np.testing.assert_array_equal(ours.x, ref.mean)
    assert np.linalg.norm(ours.x - [1.0, -2.0, 0.5]) < 0.05  # and it climbed to the peak


def test_openai_es_l2_decay_pulls_the_offset_towards_zero():
    """Equal returns give no gradient: the only force left is the L2 decay on x (theta_D - theta_0),
    and Adam's first step moves every coordinate by lr against its sign."""
    from rlsub.es.optimizers import OpenAIES

    opt = OpenAIES(3, {"seed": 0, "sigma": 0.1, "l2": 0.5, "pairs": 4, "lr": 0.01})
    opt.x = np.array([2.0, -1.0, 0.5])
    opt.tell(0, np.ones((4, 2)))
    np.testing.assert_allclose(opt.x, [1.99, -0.99, 0.49], rtol=1e-6)


def test_cma_es_run_resumes_exactly_and_records_its_optimizer(tmp_path):
    cma = {"optimizer": "cma_es", "cma": {"popsize": 6, "sigma0": 2.0, "diagonal": False}}
    trainer.train(cartpole(generations=6, checkpoint_every=3, seed=2, **cma), tmp_path / "a", quiet=True)
    trainer.train(cartpole(generations=3, checkpoint_every=3, seed=2, **cma), tmp_path / "b", quiet=True)
    s = trainer.train(cartpole(generations=6, checkpoint_every=3, seed=2, **cma), tmp_path / "b", resume=True,
                      quiet=True)
    a, b = np.load(tmp_path / "a" / "theta_d.npy"), np.load(tmp_path / "b" / "theta_d.npy")
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    assert s["optimizer"] == "cma_es"
    rows = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["episodes"] == 6 * (r["generation"] + 1) for r in rows)
    assert all("cma_sigma" in r for r in rows)


@pytest.mark.parametrize("overrides,match", [
    ({"optimizer": "adam"}, "optimizer must be one of 'cma_es', 'openai_es', got 'adam'"),
    ({"cma": {"popsize": "8"}}, "cma.popsize must be an integer"),
    ({"cma": {"popsize": 1}}, "cma.popsize must be an integer >= 2"),
    ({"cma": {"sigma0": -1}}, "cma.sigma0 must be a positive number"),
    ({"cma": {"diagonal": "yes"}}, "cma.diagonal must be true or false"),
    ({"max_timesteps": 0}, "max_timesteps must be a positive integer"),
])
def test_optimizer_settings_are_checked(overrides, match):
    with pytest.raises(trainer.ConfigError, match=match):
        trainer.resolve("configs/es/cartpole.yaml", overrides)


def test_cma_es_with_a_full_covariance_over_humanoid_is_refused_before_anything_is_written(tmp_path):
    config = trainer.resolve("configs/es/humanoid_v4.yaml", {"dim": "full", "optimizer": "cma_es"})
    with pytest.raises(trainer.ConfigError, match=r"166,673 dimensions needs about 667 GB.*diagonal: true"):
        trainer.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


def test_max_timesteps_ends_a_run_after_the_generation_that_reaches_it(tmp_path):
    s = trainer.train(cartpole(generations=50, max_timesteps=1500, seed=0), tmp_path / "r", quiet=True)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["timesteps"] >= 1500 > rows[-2]["timesteps"] and s["generations"] == len(rows) < 50


@pytest.mark.mpi
def test_mpi_cma_es_gives_the_same_theta_d_for_1_2_and_3_ranks(tmp_path):
    cfg = tmp_path / "cma.yaml"
    cfg.write_text(Path("configs/es/cartpole.yaml").read_text()
                    + "optimizer: cma_es\ncma: {popsize: 7, sigma0: 2.0}\nobs_norm: true\n")
    for n in (1, 2, 3):
        proc = _mpirun(n, [str(VENV_BIN / "rlsub"), "es", "--config", str(cfg), "--generations", "5", "--seed", "4",
                           "--quiet", "--out", str(tmp_path / f"n{n}")])
        assert proc.returncode == 0, proc.stderr
    runs = [np.load(tmp_path / f"n{n}" / "theta_d.npy") for n in (1, 2, 3)]
    assert np.abs(runs[0]).sum() > 0 and all(np.array_equal(runs[0], r) for r in runs[1:])


def test_openai_es_update_in_blocks_matches_the_formula():
    """Populations above one block sum their noise block by block: the same estimate as the
    one-matrix formula sum (w+ - w-) eps / (2 n), computed here independently."""
    from rlsub.es import optimizers

    rng = np.random.default_rng(0)
    returns = rng.standard_normal((37, 2))
    ranks = centered_ranks(returns)
    eps = np.stack([perturbation(3, 4, i, 5) for i in range(37)]).astype(np.float64)
    g = ((ranks[:, 0] - ranks[:, 1]) @ eps) / (2 * 37)
    # Adam's first step: lr sqrt(1 - b2) / (1 - b1) m / (sqrt(v) + eps) = lr g / (|g| + eps / sqrt(1 - b2))
    expect = 0.01 * g / (np.abs(g) + 1e-8 / np.sqrt(0.001))
    for block in (64, 11, 1):  # one block; blocks of 11 pairs; one pair a block
        opt = optimizers.OpenAIES(5, {"seed": 3, "sigma": 0.1, "l2": 0.0, "pairs": 37, "lr": 0.01,
                                      "update_block_pairs": block})
        opt.tell(4, returns)
        np.testing.assert_allclose(opt.x, expect, rtol=1e-6)


def test_scale_model_counts_only_the_block_owners_latencies():
    """The scale simulation's generation model, against the arithmetic written out: 10,000 pairs in
    blocks of 12 (834 blocks) on 1,440 ranks: 834 ranks own one block each, so the all-to-all costs
    833 latencies (not 1,439), plus the slices' bytes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_es_scale_sim", ROOT / "scripts" / "es_scale_sim.py")
    sim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sim)
    a, b = 30e-6, 1.25e9
    row = sim.model_row(10_000, 12, 1440, 700, 100, block_s=0.004, adam_s=0.001, gathered_bytes=1e6, step_ms=0.8,
                        alpha=a, beta=b)
    update = 1 * 0.004 + 0.001
    swap = 833 * a + (700 + 834 * 1) * 8 / b  # ceil(700 / 834) = 1 coordinate from each block
    share = np.log2(1440) * a + 1439 / 1440 * 700 * 8 / b
    rows = np.log2(1440) * a + 1439 / 1440 * 1e6 / b
    episodes = 2 * 10_000 * 100 * 0.8e-3 / 1440
    extra = update + swap + share + rows
    assert row["blocks"] == 834 and row["update_s"] == pytest.approx(update)
    assert row["update_comm_s"] == pytest.approx(swap + share) and row["allgather_s"] == pytest.approx(rows)
    assert row["overhead_frac"] == pytest.approx(extra / (episodes + extra))
    # more blocks than ranks: every rank owns ceil(K / R) blocks and all R take part in the all-to-all
    row = sim.model_row(10_000, 2, 1000, 700, 100, block_s=0.001, adam_s=0.0, gathered_bytes=0, step_ms=0.8,
                        alpha=a, beta=b)
    assert row["update_s"] == pytest.approx(5 * 0.001)
    assert row["update_comm_s"] == pytest.approx(999 * a + (5 * 700 + 5000 * 1) * 8 / b
                                                 + np.log2(1000) * a + 999 / 1000 * 700 * 8 / b)


def test_step_scan_means_the_evaluations_in_the_second_half_of_the_budget(tmp_path, capsys):
    """scripts/step_scan.py, the rule the Humanoid baseline's settings were chosen by: the mean of
    the evaluations logged after budget / 2 and up to the budget (later ones ignored), by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_step_scan", ROOT / "scripts" / "step_scan.py")
    scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scan)
    run = tmp_path / "a"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"lr": 0.003, "sigma": 0.01}))
    rows = [{"generation": 0, "timesteps": 100}, {"timesteps": 400, "eval_return": 10.0},
            {"timesteps": 600, "eval_return": 30.0}, {"timesteps": 900, "return_mean": 5.0},
            {"timesteps": 1000, "eval_return": 50.0}, {"timesteps": 1200, "eval_return": 999.0}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = scan.scan_row(run, 1000, ["lr", "sigma"])
    assert r["evaluations"] == 3 and r["second_half_mean"] == pytest.approx(40.0)
    # evaluations (600, 30) and (1000, 50) in the second half: 20 per 400 steps, 50,000 per 1M steps
    assert r["second_half_slope"] == pytest.approx(50_000.0)
    assert (r["lr"], r["sigma"], r["last"], r["last_at"]) == (0.003, 0.01, 50.0, 1000)
    sys_argv = sys.argv
    try:
        sys.argv = ["step_scan.py", str(run), "--budget", "1000", "--key", "lr", "--key", "sigma"]
        scan.main()
    finally:
        sys.argv = sys_argv
    assert "| a | 0.003 | 0.01 | 3 | 40.0 | +50000.0 | 50.0 (1,000) |" in capsys.readouterr().out


def test_extension_status_tells_reached_running_and_stopped_points_apart(tmp_path, monkeypatch, capsys):
    """scripts/extension_status.py on a hand-made sweep folder: a point finished at the new budget (final-
    evaluated, and only it), one whose log runs past its last finished invocation (in progress), one
    finished at the old budget without a checkpoint; the table lands between the markers of a file."""
    import importlib.util

    import rlsub.sweep

    spec = importlib.util.spec_from_file_location("_ext_status", ROOT / "scripts" / "extension_status.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    res = tmp_path / "sw"
    (res / "runs").mkdir(parents=True)
    (res / "sweep_config.json").write_text(json.dumps({"final_eval": {"episodes": 3, "seed": 7}}))
    points = {"d10_s0": (10, 1000, [500, 1000], True), "d20_s0": (20, 200, [100, 200, 600], True),
              "d30_s0": (30, 200, [100, 200], False), "dfull_s0": (None, 1005, [1005], False)}
    for name, (d, finished, steps, checkpoint) in points.items():
        run = res / "runs" / name
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"d": d, "seed": 0}))
        (run / "summary.json").write_text(json.dumps({"timesteps": finished, "wall_time_s": 120.0}))
        (run / "metrics.jsonl").write_text("".join(json.dumps({"timesteps": t, "eval_return": t / 10}) + "\n"
                                                   for t in steps))
        if checkpoint:
            (run / "checkpoint.npz").write_bytes(b"")
    with open(res / "runs" / "d20_s0" / "metrics.jsonl", "a") as f:
        f.write('{"timesteps": 7')  # a run stopped mid-write: the cut line is not read
    evaluated = []
    monkeypatch.setattr(rlsub.sweep, "final_evaluation", lambda run, spec: evaluated.append((run.name, spec))
                        or {"value": 42.0, "std": 1.5, "episodes": spec["episodes"]})
    rows = {r["run"]: r for r in ext.status(res, 1000, evaluate=True)}
    assert sorted(evaluated) == [("d10_s0", {"episodes": 3, "seed": 7}), ("dfull_s0", {"episodes": 3, "seed": 7})]
    assert [r["run"] for r in ext.status(res, 1000)] == ["d10_s0", "d20_s0", "d30_s0", "dfull_s0"]
    assert rows["d20_s0"]["steps_now"] == 600 and not rows["d20_s0"]["reached"]
    table = ext.markdown(list(rows.values()), 1000)
    assert "| d10_s0 | 10 | 0 | 1,000 | yes | 100.0 | 42.0 +- 1.5 (3 episodes) | 2 min |" in table
    assert "| d20_s0 | 20 | 0 | 600 | no: in progress or paused (checkpoint) | 60.0 | - | - |" in table
    assert "| d30_s0 | 30 | 0 | 200 | no: finished at 200, no checkpoint here | 20.0 | - | - |" in table
    assert "| dfull_s0 | full | 0 | 1,005 | yes |" in table
    held = {r["run"]: r for r in ext.status(res, 1000, baseline_budget=2000)}  # the baseline held to its own budget
    assert held["d10_s0"]["reached"] and not held["dfull_s0"]["reached"]
    table = ext.markdown(list(held.values()), 1000, 2000)
    assert "| reached 1,000 (full space 2,000) |" in table
    assert "| dfull_s0 | full | 0 | 1,005 | no: finished at 1,005, no checkpoint here |" in table
    doc = tmp_path / "EXT.md"
    doc.write_text(f"intro\n{ext.BEGIN}\nold table\n{ext.END}\ntail\n")
    ext.main([str(res), "--budget", "1000", "--write", str(doc)])
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n") and "old table" not in text
    assert f"--budget 1000 --write {doc}" in text and "| d20_s0 | 20 |" in text
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- extension-status -->"):
        ext.main([str(res), "--budget", "1000", "--write", str(doc)])
    assert doc.read_text() == "no markers\n"
    with pytest.raises(SystemExit, match="no runs/ folder"):
        ext.main([str(tmp_path / "nothing"), "--budget", "1000"])


@pytest.mark.mpi
def test_mpi_update_shared_over_ranks_gives_the_same_theta_d_for_1_2_and_3_ranks(tmp_path):
    """Above one block, the ranks share the update's noise sums (all-to-all + all-gather): theta_d
    stays bit-identical for 1, 2 and 3 ranks, also with more ranks than blocks."""
    cfg = tmp_path / "cp.yaml"
    cfg.write_text("env: CartPole-v1\nmodel_kwargs: {hidden: [8]}\ndim: 6\npairs: 10\nsigma: 1.0\neval_every: 4\neval_episodes: 1\n")
    runs = {}
    for block, ranks in ((3, (1, 2, 3)), (6, (1, 3))):  # 4 blocks; 2 blocks (rank 2 computes none)
        for n in ranks:
            out = tmp_path / f"b{block}n{n}"
            proc = _mpirun(n, [str(VENV_BIN / "rlsub"), "es", "--config", str(cfg), "--generations", "4",
                               "--seed", "2", "--set", f"update_block_pairs={block}", "--quiet", "--out", str(out)])
            assert proc.returncode == 0, proc.stderr
            runs[block, n] = np.load(out / "theta_d.npy")
    assert np.abs(runs[3, 1]).sum() > 0
    assert all(np.array_equal(runs[3, 1], runs[3, n]) for n in (2, 3))
    assert np.array_equal(runs[6, 1], runs[6, 3])
    # block sizes change the order of the additions only: the same update to rounding
    np.testing.assert_allclose(runs[3, 1], runs[6, 1], rtol=1e-6, atol=1e-9)


@pytest.mark.mpi
def test_mpi_obs_stat_prob_gives_the_same_theta_d_and_statistics_for_1_and_2_ranks(tmp_path):
    common = ["--config", "configs/es/cartpole.yaml", "--generations", "4", "--pairs", "7", "--seed", "3",
              "--set", "obs_norm=true", "--set", "obs_stat_prob=0.5", "--quiet"]
    for n in (1, 2):
        proc = _mpirun(n, [str(VENV_BIN / "rlsub"), "es", *common, "--out", str(tmp_path / f"n{n}")])
        assert proc.returncode == 0, proc.stderr
    a, b = np.load(tmp_path / "n1" / "theta_d.npy"), np.load(tmp_path / "n2" / "theta_d.npy")
    assert np.array_equal(a, b) and np.abs(a).sum() > 0
    sa, sb = np.load(tmp_path / "n1" / "obs_norm.npz"), np.load(tmp_path / "n2" / "obs_norm.npz")
    assert all(np.array_equal(sa[k], sb[k]) for k in ("obs_sum", "obs_sumsq", "obs_count"))
    assert 0.01 < float(sa["obs_count"])


def test_hostfile_that_names_no_host_is_one_clear_error(tmp_path):
    empty = tmp_path / "hosts"
    empty.write_text("# every node is down\n\n")
    proc = subprocess.run(["scripts/mpirun_hosts.sh", str(empty), "2", "true"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"mpirun_hosts: error: host file {empty} names no hosts (one host a line, e.g. node01:16)"]


@pytest.mark.mpi
def test_mpi_hostfile_launch_on_localhost(tmp_path):
    """The cluster launch line (scripts/es_at_scale.md) on this machine: a host file naming localhost."""
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:3\n")
    common = ["--config", "configs/es/cartpole.yaml", "--generations", "3", "--pairs", "7", "--seed", "5", "--quiet"]
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = subprocess.run(["scripts/mpirun_hosts.sh", str(hosts), "3", str(VENV_BIN / "rlsub"), "es", *common,
                           "--out", str(tmp_path / "n3")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "n3" / "summary.json").read_text())["n_ranks"] == 3
    one = _mpirun(1, [str(VENV_BIN / "rlsub"), "es", *common, "--out", str(tmp_path / "n1")])
    assert one.returncode == 0, one.stderr
    assert np.array_equal(np.load(tmp_path / "n1" / "theta_d.npy"), np.load(tmp_path / "n3" / "theta_d.npy"))


def test_resume_refuses_observation_statistics_of_another_size(tmp_path):
    """A checkpoint whose observation statistics do not fit the environment (Humanoid-v4 gives 376
    numbers, v5 348): one clear error, the run left as it was."""
    trainer.train(cartpole(generations=2, checkpoint_every=1), tmp_path / "r", quiet=True)
    ckpt = tmp_path / "r" / "checkpoint.npz"
    state = dict(np.load(ckpt))
    state.update(obs_sum=np.zeros(348), obs_sumsq=np.ones(348))
    np.savez(ckpt, **state)
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}
    with pytest.raises(trainer.UserError, match=r"statistics of \(348,\) observations, but the environment gives \(4,\)"):
        trainer.train(cartpole(generations=4, checkpoint_every=1), tmp_path / "r", resume=True, quiet=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before


@pytest.mark.parametrize("env_id", ["Pong-v5", "PongNoFrameskip-v4"])
def test_atari_id_without_the_ale_namespace_names_the_right_id(env_id, capsys, tmp_path):
    assert main(["es", "--config", "configs/es/pong.yaml", "--set", f"env={env_id}", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Atari games need the ALE/ namespace, e.g. 'ALE/Pong-v5'" in err[0]
    assert not (tmp_path / "r").exists()
