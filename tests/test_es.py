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
from rlsub.es.policy import Actor
from rlsub.models import build_model
from rlsub.subspace import SubspaceModel

VENV_BIN = Path(sys.executable).parent


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
    action = actor.act(obs, np.random.default_rng(7), 0.3)
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
