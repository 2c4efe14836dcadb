"""DQN in the subspace: SB3 sees theta_d alone (optimiser, gradients, target updates, save/load)."""

import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.utils import polyak_update
from torch import nn

from rlsub.cli import main
from rlsub.dqn import trainer
from rlsub.dqn.policies import SubspaceCnnPolicy, SubspaceDQNPolicy

TINY = dict(learning_starts=50, batch_size=16, buffer_size=1000, train_freq=4, target_update_interval=50)


def cartpole_model(dim=8, projection="dense", **kwargs):
    policy_kwargs = dict(dim=dim, projection=projection, projection_seed=0, net_arch=[8, 8])
    return DQN(SubspaceDQNPolicy, gym.make("CartPole-v1"), policy_kwargs=policy_kwargs, seed=0,
               **dict(TINY, **kwargs))


def q_values(net, obs):
    with torch.no_grad():
        return net(torch.as_tensor(obs))


OBS = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)


@pytest.mark.parametrize("projection", ["dense", "sparse", "fastfood"])
def test_theta_d_is_the_only_parameter_and_all_the_optimiser_sees(projection):
    model = cartpole_model(projection=projection)
    names = [n for n, _ in model.policy.named_parameters()]
    assert names == ["q_net.q_net.theta_d", "q_net_target.q_net.theta_d"]
    params = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
    assert len(params) == 1 and params[0] is model.policy.q_net.q_net.theta_d
    for module in model.policy.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            assert not list(module.parameters(recurse=False))
    # Online and target networks share theta_0 and P (rebuilt from the same seeds).
    online, target = model.policy.q_net.q_net, model.policy.q_net_target.q_net
    assert torch.equal(online.theta_0, target.theta_0)
    assert torch.equal(online.projection.materialize(), target.projection.materialize())


def test_gradients_reach_only_theta_d_and_training_moves_it():
    model = cartpole_model()
    sub = model.policy.q_net.q_net
    theta_0 = sub.theta_0.clone()
    loss = model.policy.q_net(torch.as_tensor(OBS)).pow(2).sum()
    loss.backward()
    grads = {n: p.grad for n, p in model.policy.named_parameters()}
    assert grads["q_net.q_net.theta_d"].abs().sum() > 0 and grads["q_net_target.q_net.theta_d"] is None
    assert all(not b.requires_grad for b in model.policy.buffers())
    model.policy.optimizer.zero_grad()
    model.learn(300)
    assert sub.theta_d.abs().sum() > 0
    assert torch.equal(sub.theta_0, theta_0)


def test_hard_and_polyak_target_updates_act_on_theta_d():
    model = cartpole_model()
    model.learn(200)
    online, target = model.policy.q_net, model.policy.q_net_target
    q_values(target, OBS)  # fills the target's inference cache, which the updates must invalidate
    with torch.no_grad():
        online.q_net.theta_d.add_(0.1)
    polyak_update(online.parameters(), target.parameters(), 1.0)
    assert torch.equal(target.q_net.theta_d, online.q_net.theta_d)
    assert torch.equal(q_values(target, OBS), q_values(online, OBS))
    old = target.q_net.theta_d.detach().clone()
    with torch.no_grad():
        online.q_net.theta_d.mul_(-2.0)
    polyak_update(online.parameters(), target.parameters(), 0.25)
    expected = 0.75 * old + 0.25 * online.q_net.theta_d.detach()
    assert torch.allclose(target.q_net.theta_d, expected, rtol=0, atol=1e-7)
    # theta_D is affine in theta_d, so the averaged theta_d gives the averaged theta_D.
    averaged = 0.75 * online.q_net.theta_D(old) + 0.25 * online.q_net.theta_D().detach()
    assert torch.allclose(target.q_net.theta_D(), averaged, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    model = cartpole_model()
    model.learn(200)
    model.save(tmp_path / "m.zip")
    loaded = DQN.load(tmp_path / "m.zip")
    assert torch.equal(q_values(loaded.policy.q_net, OBS), q_values(model.policy.q_net, OBS))
    actions, _ = model.predict(OBS, deterministic=True)
    assert np.array_equal(loaded.predict(OBS, deterministic=True)[0], actions)
    # P is regenerated from its seed: the zip holds theta_d (and its optimiser state), not P.
    with zipfile.ZipFile(tmp_path / "m.zip") as z, z.open("policy.pth") as f:
        state = torch.load(f)
    assert sorted(state) == ["q_net.q_net.theta_d", "q_net_target.q_net.theta_d"]


def test_full_space_baseline_has_the_same_init():
    sub, full = cartpole_model(dim=8), cartpole_model(dim="full")
    flat = torch.nn.utils.parameters_to_vector(full.policy.q_net.q_net.parameters())
    assert torch.equal(flat, sub.policy.q_net.q_net.theta_0)
    assert torch.equal(q_values(full.policy.q_net, OBS), q_values(sub.policy.q_net, OBS))
    assert sum(p.numel() for p in full.policy.optimizer.param_groups[0]["params"]) == 4 * 8 + 8 + 72 + 18


def test_cnn_variant_on_small_images_has_theta_d_only():
    space = spaces.Box(0, 255, (1, 36, 36), np.uint8)
    policy = SubspaceCnnPolicy(space, spaces.Discrete(3), lambda _: 1e-3, dim=16, projection="fastfood")
    assert [n for n, _ in policy.named_parameters()] == ["q_net.q_net.theta_d", "q_net_target.q_net.theta_d"]
    assert policy.q_net.D == (1 * 64 * 32 + 32) + 32832 + 36928 + (64 * 512 + 512) + (512 * 3 + 3)
    obs = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (5, 1, 36, 36), dtype=np.uint8))
    q = policy.q_net(obs)
    assert q.shape == (5, 3)
    q.sum().backward()
    assert policy.q_net.q_net.theta_d.grad.abs().sum() > 0


@pytest.mark.parametrize("dim", ["0", "-3", "563"])
def test_cli_rejects_bad_dim(dim, tmp_path, capsys):
    code = main(["dqn", "--config", "configs/dqn/cartpole.yaml", f"--dim={dim}", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "dim" in err
    assert not (tmp_path / "r").exists()


def test_config_errors():
    with pytest.raises(trainer.ConfigError, match="unknown key"):
        trainer.resolve(None, {"bogus": 1})
    with pytest.raises(trainer.ConfigError, match="unknown environment"):
        trainer.resolve(None, {"env": "NoSuchEnv-v0"})
    with pytest.raises(trainer.ConfigError, match="cannot be resumed"):
        trainer.train(trainer.resolve(None, {}), "unused", resume=True)


def test_trainer_writes_a_run_directory(tmp_path):
    overrides = dict(dim=8, net_arch=[8, 8], timesteps=300, eval_episodes=2, eval_every=200,
                     eval_every_episodes=1, log_every=100, metric_min=0, dqn=TINY)
    summary = trainer.train(trainer.resolve("configs/dqn/cartpole.yaml", overrides), tmp_path)
    for name in ("config.json", "metrics.jsonl", "summary.json", "theta_d.npy", "model.zip", "progress.csv"):
        assert (tmp_path / name).exists(), name
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert summary["D"] == 4 * 8 + 8 + 72 + 18 and summary["d"] == 8 and summary["trainer"] == "dqn"
    assert json.loads((tmp_path / "summary.json").read_text())["value"] == summary["value"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["timesteps"] for r in rows[:3]] == [100, 200, 300] and "eval_return" in rows[1]
    assert np.load(tmp_path / "theta_d.npy").shape == (8,)


def test_reward_scale_scales_training_rewards_only():
    config = trainer.resolve("configs/dqn/cartpole.yaml", {"reward_scale": 0.25})
    train_env = trainer.make_env(config, seed=0)
    eval_env = trainer.make_env(config, seed=0, evaluation=True)
    for env, per_step in ((train_env, 0.25), (eval_env, 1.0)):
        env.reset()
        rewards, infos = [], []
        for _ in range(200):
            _, r, done, info = env.step(np.array([0]))  # always push left: episodes of ~10 steps
            rewards.append(float(r[0]))
            if done[0]:
                infos.append(info[0]["episode"])
        assert set(rewards) == {per_step}
        # the Monitor's episode return (what metrics.jsonl logs) is the unscaled one: one per step
        assert infos and all(ep["r"] == ep["l"] for ep in infos)
    for bad in (0, -1, "x", True):
        with pytest.raises(trainer.ConfigError, match="reward_scale"):
            trainer.resolve(None, {"reward_scale": bad})
    with pytest.raises(trainer.ConfigError, match="reward_scale is for non-Atari"):
        trainer.resolve("configs/dqn/pong.yaml", {"reward_scale": 0.5})


def test_select_best_keeps_the_model_of_the_best_periodic_evaluation(tmp_path):
    overrides = dict(dim=8, net_arch=[8, 8], timesteps=1200, eval_episodes=3, eval_every=200,
                     eval_every_episodes=2, log_every=200, metric_min=0, dqn=TINY, select="best",
                     env_kwargs={"max_episode_steps": 60},  # short episodes keep the test fast
                     solved_episodes=4, solved_max_steps=30, solved_return=25)
    summary = trainer.train(trainer.resolve("configs/dqn/cartpole.yaml", overrides), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["eval_return"], r["timesteps"]) for r in rows if "eval_return" in r]
    best_return = max(v for v, _ in evals)
    first_best = min(t for v, t in evals if v == best_return)  # ties keep the earlier model
    assert summary["selected_timesteps"] == first_best and summary["select"] == "best"
    # the saved theta_d is the selected model's: re-evaluating it on the same fresh episodes as the
    # trainer's final evaluation (same seed, same order) gives the recorded value
    config = trainer.resolve("configs/dqn/cartpole.yaml", overrides)
    model = trainer.build_model(config, trainer.make_env(config, 0))
    model.policy.q_net.q_net.set_flat(np.load(tmp_path / "theta_d.npy"))
    eval_env = trainer.make_env(config, config["seed"] + 10_000, evaluation=True)
    for _ in evals:  # the periodic evaluations consumed these episodes first
        trainer.evaluate(model, eval_env, 2)
    assert trainer.evaluate(model, eval_env, 3)[0] == summary["value"]
    # the fixed criterion: 4 episodes capped at 30 steps, so a mean return of at most 30
    assert 0 < summary["solved_value"] <= 30 and summary["solved"] == (summary["solved_value"] >= 25)


def test_select_and_solved_settings_are_checked():
    with pytest.raises(trainer.ConfigError, match="select must be one of 'best', 'final'"):
        trainer.resolve(None, {"select": "last"})
    with pytest.raises(trainer.ConfigError, match="needs periodic evaluations"):
        trainer.resolve(None, {"select": "best", "eval_every": 0})
    with pytest.raises(trainer.ConfigError, match="needs solved_return"):
        trainer.resolve(None, {"solved_episodes": 10})


def test_linear_lr_schedule_decays_the_optimiser_learning_rate_to_zero(tmp_path):
    """lr_schedule: linear: the rate is lr x remaining progress (the formula at several points), the
    optimiser ends the run at 0 where a constant schedule keeps lr, and model.zip keeps it."""
    lr, T = 1e-3, 400
    overrides = dict(dim=8, net_arch=[8, 8], timesteps=T, eval_episodes=1, eval_every=200,
                     eval_every_episodes=1, log_every=200, metric_min=0, lr_schedule="linear",
                     dqn=dict(TINY, learning_rate=lr))
    config = trainer.resolve("configs/dqn/cartpole.yaml", overrides)
    model = trainer.build_model(config, trainer.make_env(config, 0))
    for p in (1.0, 0.5, 0.25, 0.0):
        assert model.lr_schedule(p) == pytest.approx(lr * p, abs=1e-15)
    model.learn(total_timesteps=T)  # the last gradient step is at t = T: remaining progress 0
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-15)
    constant = trainer.resolve("configs/dqn/cartpole.yaml", {**overrides, "lr_schedule": "constant"})
    other = trainer.build_model(constant, trainer.make_env(constant, 0))
    other.learn(total_timesteps=T)
    assert other.policy.optimizer.param_groups[0]["lr"] == pytest.approx(lr)
    model.save(tmp_path / "m.zip")
    assert DQN.load(tmp_path / "m.zip").lr_schedule(0.5) == pytest.approx(lr / 2)
    with pytest.raises(trainer.ConfigError, match="lr_schedule must be one of"):
        trainer.resolve(None, {"lr_schedule": "cosine"})


def test_on_eval_returning_false_stops_training_after_that_evaluation(tmp_path):
    overrides = dict(dim=8, net_arch=[8, 8], timesteps=1000, eval_episodes=1, eval_every=200,
                     eval_every_episodes=1, log_every=100, metric_min=0, dqn=TINY)
    seen = []
    with pytest.raises(trainer.TrainingStopped):
        trainer.train(trainer.resolve("configs/dqn/cartpole.yaml", overrides), tmp_path / "a",
                      on_eval=lambda t, v: seen.append((t, v)) or len(seen) < 2)
    assert [t for t, _ in seen] == [200, 400]
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["timesteps"] == 400 and not (tmp_path / "a" / "summary.json").exists()
