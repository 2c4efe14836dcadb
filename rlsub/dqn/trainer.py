"""The DQN trainer: stable-baselines3 DQN with the Q-network trained in a random subspace.

Follows the trainer contract of :mod:`rlsub.trainers` (``DEFAULTS``, ``resolve``, ``train``). The
policy is :class:`rlsub.dqn.policies.SubspaceDQNPolicy` (MLP) or ``SubspaceCnnPolicy`` (Atari:
AtariWrapper and frame stacking); ``dim: full`` trains the same network in the full space.

A run directory holds ``config.json``, ``metrics.jsonl`` (every ``log_every`` steps: timesteps,
episodes, mean return of the last 100 training episodes, the periodic evaluation return when one
was run, wall time, fps), ``summary.json``, ``theta_d.npy`` (``theta_D.npy`` for full space), SB3's
own logs (``progress.csv`` and TensorBoard events), the SB3 model zip ``model.zip`` and the result
of a final deterministic evaluation over ``eval_episodes`` episodes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlsub.config import (
    Bool,
    ConfigError,
    Dim,
    Float,
    Int,
    List,
    Mapping,
    OneOf,
    Section,
    Str,
    merge,  # noqa: F401 - part of the trainer module's interface, as in the other trainers
    resolve_config,
)
from rlsub.es.envs import metric_min, register_ale
from rlsub.loading import save_fingerprint
from rlsub.models import ACTIVATIONS
from rlsub.rundir import RunDir, check_out_dir

#: Every config key with its default; a config file may only set these keys.
DEFAULTS: dict[str, Any] = {
    "env": "CartPole-v1",
    "env_kwargs": {},          # passed to gymnasium.make
    "atari": False,            # SB3 AtariWrapper (84x84 grey, frame skip 4, ...) + frame stacking
    "frame_stack": 4,          # frames stacked (VecFrameStack), Atari only
    "policy": "mlp",           # mlp | cnn (Nature-DQN convolutions + 512 units + head)
    "net_arch": [20, 20],      # hidden layers (for cnn: of the head after the 512-unit layer)
    "activation": "relu",
    "dim": "full",             # subspace dimension d, or "full" for the full-space baseline
    "projection": "auto",      # dense | sparse | fastfood | auto
    "seed": 0,                 # DQN seed (SB3 seeds its RNGs, the env and the action space)
    "init_seed": None,         # theta_0; None: seed
    "projection_seed": None,   # P; None: seed
    "timesteps": 50_000,
    "eval_episodes": 10,       # final deterministic evaluation
    "eval_every": 10_000,      # periodic evaluation every this many steps (0: none)
    "eval_every_episodes": 5,
    "select": "best",          # the model a run's value comes from: best (highest periodic
                               # evaluation, as rl-baselines3-zoo keeps) | final (the last)
    "solved_episodes": 0,      # a fixed-criterion test of the selected model: this many episodes
    "solved_max_steps": None,  # ... capped at this many steps (200: CartPole-v0's episodes)
    "solved_return": None,     # ... solved when their mean return reaches this (195 for CartPole-v0)
    "log_every": 1_000,        # a metrics.jsonl row every this many steps
    "metric_min": None,        # the lowest possible return (0 for CartPole, -21 for Pong)
    "threads": 1,              # torch.set_num_threads
    "save_model": True,        # write the SB3 zip model.zip
    "reward_scale": 1.0,       # training rewards times this (Q-values scale with it); evaluation
                               # and the logged returns stay unscaled
    "lr_schedule": "constant", # constant | linear (dqn.learning_rate decays linearly to 0 over the
                               # run, rl-baselines3-zoo's "lin_" learning rates)
    "dqn": {                   # stable_baselines3.DQN keyword arguments
        "learning_rate": 1e-4,
        "buffer_size": 1_000_000,
        "learning_starts": 100,
        "batch_size": 32,
        "tau": 1.0,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 10_000,
        "exploration_fraction": 0.1,
        "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.05,
        "max_grad_norm": 10.0,
        "optimize_memory_usage": False,
    },
}

POLICIES = ("mlp", "cnn")
SELECT = ("best", "final")
LR_SCHEDULES = ("constant", "linear")

#: the type and range of every key of DEFAULTS (checked by rlsub.config.check)
SCHEMA: dict = {
    "env": Str(),
    "env_kwargs": Mapping(),
    "atari": Bool(),
    "frame_stack": Int(min=1),
    "policy": Str(choices=POLICIES),
    "net_arch": List(Int(min=1)),
    "activation": Str(choices=sorted(ACTIVATIONS)),
    "dim": Dim(),
    "projection": Str(choices=("dense", "sparse", "fastfood", "auto")),
    "seed": Int(min=0),
    "init_seed": Int(min=0, null=True),
    "projection_seed": Int(min=0, null=True),
    "timesteps": Int(min=1),
    "eval_episodes": Int(min=1),
    "eval_every": Int(min=0),
    "eval_every_episodes": Int(min=1),
    "select": Str(choices=SELECT),
    "solved_episodes": Int(min=0),
    "solved_max_steps": Int(min=1, null=True),
    "solved_return": Float(null=True),
    "log_every": Int(min=0),
    "metric_min": Float(null=True),
    "threads": Int(min=1),
    "save_model": Bool(),
    "reward_scale": Float(gt=0),
    "lr_schedule": Str(choices=LR_SCHEDULES),
    "dqn": Section({
        "learning_rate": Float(gt=0),
        "buffer_size": Int(min=1),
        "learning_starts": Int(min=0),
        "batch_size": Int(min=1),
        "tau": Float(gt=0, max=1),
        "gamma": Float(min=0, max=1),
        "train_freq": OneOf(Int(min=1), List(OneOf(Int(min=1), Str(choices=("step", "episode"))), min_len=2)),
        "gradient_steps": Int(min=-1),
        "target_update_interval": Int(min=1),
        "exploration_fraction": Float(min=0, max=1),
        "exploration_initial_eps": Float(min=0, max=1),
        "exploration_final_eps": Float(min=0, max=1),
        "max_grad_norm": Float(gt=0),
        "optimize_memory_usage": Bool(),
    }),
}


def resolve(config_path: str | None, overrides: dict) -> dict:
    """DEFAULTS <- YAML at config_path <- the non-None overrides; checked against SCHEMA (ConfigError on
    bad input)."""
    config = resolve_config(DEFAULTS, SCHEMA, config_path, overrides, "overrides")
    scale = config["reward_scale"]
    if config["atari"] and scale != 1.0:
        raise ConfigError("reward_scale is for non-Atari environments (Atari rewards are clipped to [-1, 1])")
    if config["select"] == "best" and not config["eval_every"]:
        raise ConfigError("select: best needs periodic evaluations (eval_every > 0)")
    if config["solved_episodes"] and not isinstance(config["solved_return"], (int, float)):
        raise ConfigError("solved_episodes > 0 needs solved_return (the mean return that counts as solved)")
    for key in ("init_seed", "projection_seed"):
        config[key] = config["seed"] if config[key] is None else config[key]
    _check_env(config["env"])
    run_metric_min(config)  # the d_int90 shift must be known before anything runs
    return config


def run_metric_min(config: dict) -> float:
    """The lowest possible return: ``metric_min`` when set, else derived from the environment."""
    return metric_min(config["env"], config["metric_min"])


def dimension(config: dict) -> int:
    """D of the Q-network a resolved config asks for, without training (for checking d <= D early)."""
    env = make_env(config, config["seed"], evaluation=True)
    try:
        model = build_model({**config, "dim": "full", "save_model": False,
                             "dqn": {**config["dqn"], "buffer_size": 1}}, env)
        return int(model.policy.q_net.D)
    finally:
        env.close()


def _check_env(env_id: str) -> None:
    import gymnasium as gym

    register_ale()
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"unknown environment {env_id!r} ({exc})") from None


def make_env(config: dict, seed: int, evaluation: bool = False, max_steps: int | None = None):
    """The vectorised environment (one env) a config asks for, seeded for its first reset;
    ``max_steps`` caps its episodes (e.g. 200 for CartPole-v0's episodes)."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    register_ale()
    kwargs = dict(config["env_kwargs"])
    if max_steps is not None:
        kwargs["max_episode_steps"] = max_steps
    scale = float(config["reward_scale"])
    if not config["atari"]:
        # Monitor (inside make_vec_env) records the unscaled episode returns; the scaling wraps it
        wrap = dict(wrapper_class=_scale_reward, wrapper_kwargs=dict(scale=scale)) if scale != 1.0 and not evaluation \
            else {}
        return make_vec_env(config["env"], n_envs=1, seed=seed, env_kwargs=kwargs, **wrap)
    # Evaluation sees the true score: no reward clipping, no end of episode at a lost life.
    wrapper = dict(clip_reward=False, terminal_on_life_loss=False) if evaluation else None
    env = make_atari_env(config["env"], n_envs=1, seed=seed, env_kwargs=kwargs, wrapper_kwargs=wrapper)
    return VecFrameStack(env, n_stack=config["frame_stack"])


def _scale_reward(env, scale: float):
    import gymnasium as gym

    return gym.wrappers.TransformReward(env, lambda r: scale * r)


def build_model(config: dict, env):
    """The SB3 DQN model for a resolved config (subspace policy, or its full-space twin)."""
    from stable_baselines3 import DQN

    from rlsub.dqn.policies import SubspaceCnnPolicy, SubspaceDQNPolicy
    from rlsub.models import ACTIVATIONS

    if config["activation"] not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {config['activation']!r}; choose one of {sorted(ACTIVATIONS)}")
    policy = SubspaceCnnPolicy if config["policy"] == "cnn" else SubspaceDQNPolicy
    dqn_kwargs = dict(config["dqn"])
    if config["lr_schedule"] == "linear":
        # SB3 calls a schedule with the remaining progress, 1 at the start and 0 at the end
        dqn_kwargs["learning_rate"] = _LinearSchedule(float(dqn_kwargs["learning_rate"]))
    policy_kwargs = dict(net_arch=list(config["net_arch"]), activation_fn=ACTIVATIONS[config["activation"]],
                         dim=config["dim"], projection=config["projection"],
                         projection_seed=config["projection_seed"], init_seed=config["init_seed"])
    try:
        return DQN(policy, env, policy_kwargs=policy_kwargs, seed=config["seed"], verbose=0, device="cpu",
                   **dqn_kwargs)
    except (TypeError, AssertionError) as exc:  # an unknown SB3 argument; a continuous action space
        raise ConfigError(f"bad dqn settings for {config['env']}: {exc}") from None


class _LinearSchedule:
    """learning_rate x remaining progress (a class, not a lambda, so that model.zip pickles it)."""

    def __init__(self, initial: float):
        self.initial = initial

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


def evaluate(model, env, episodes: int) -> tuple[float, float]:
    """Mean and standard deviation of the return over ``episodes`` deterministic episodes."""
    from stable_baselines3.common.evaluation import evaluate_policy

    mean, std = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, warn=False)
    return float(mean), float(std)


class TrainingStopped(Exception):
    """Raised by train() when its ``on_eval`` hook asked to stop (e.g. a pruned search trial)."""


def _metrics_callback(run: RunDir, config: dict, eval_env, started: float, on_eval=None):
    from stable_baselines3.common.callbacks import BaseCallback

    class MetricsRows(BaseCallback):
        """Writes a metrics.jsonl row every ``log_every`` steps (with an evaluation every ``eval_every``)."""

        def __init__(self):
            super().__init__()
            self.episodes = 0
            self.best = (-np.inf, None, None)  # (evaluation return, timesteps, q_net parameters)
            self.stopped = False

        def _on_step(self) -> bool:
            self.episodes += int(np.sum(self.locals.get("dones", [])))
            t = self.num_timesteps
            if any(config[k] and t % config[k] == 0 for k in ("log_every", "eval_every")):
                self.row(t)
            return not self.stopped

        def row(self, t: int) -> None:
            recent = [info["r"] for info in self.model.ep_info_buffer]
            elapsed = time.time() - started
            row = {"timesteps": t, "episodes": self.episodes,
                   "recent_return": float(np.mean(recent)) if recent else None,
                   "exploration_rate": float(self.model.exploration_rate),
                   "wall_time_s": round(elapsed, 3), "fps": round(t / max(elapsed, 1e-9), 1)}
            if config["eval_every"] and t % config["eval_every"] == 0:
                row["eval_return"], _ = evaluate(self.model, eval_env, config["eval_every_episodes"])
                if row["eval_return"] > self.best[0]:  # ties keep the earlier model
                    q = self.model.policy.q_net
                    self.best = (row["eval_return"], t, [p.detach().clone() for p in q.parameters()])
                if on_eval is not None and on_eval(t, row["eval_return"]) is False:
                    self.stopped = True
            run.log(row)

    return MetricsRows()


def train(config: dict, out_dir: Path, resume: bool = False, quiet: bool = False, on_eval=None) -> dict:
    """Train, evaluate and write the run directory; returns the summary. ``quiet``: no progress bar.
    ``on_eval(timesteps, eval_return)`` is called after every periodic evaluation; if it returns
    False, training stops there and TrainingStopped is raised (scripts/tune_dqn.py prunes this way)."""
    from stable_baselines3.common.logger import configure

    if resume:
        raise ConfigError("DQN runs cannot be resumed (SB3's replay buffer is not checkpointed); start a new run")
    check_out_dir(out_dir)  # a finished run must not be overwritten
    torch.set_num_threads(config["threads"])
    env = make_env(config, config["seed"])
    eval_env = make_env(config, config["seed"] + 10_000, evaluation=True)
    model = build_model(config, env)  # d > D and other bad settings fail here, before any file is written
    run = RunDir(out_dir)
    run.write_config(config)
    model.set_logger(configure(str(run.path), ["csv", "tensorboard"]))
    q = model.policy.q_net
    started = time.time()
    callback = _metrics_callback(run, config, eval_env, started, on_eval)
    callbacks = [callback]
    if not quiet:
        from rlsub.dqn.callbacks import ProgressBar

        callbacks.append(ProgressBar(config["timesteps"]))
    model.learn(total_timesteps=config["timesteps"], callback=callbacks)
    if callback.stopped:
        env.close()
        eval_env.close()
        raise TrainingStopped(f"stopped by on_eval at {model.num_timesteps} timesteps")
    train_time = time.time() - started
    selected_at = model.num_timesteps
    if config["select"] == "best" and callback.best[2] is not None:
        best_return, selected_at, params = callback.best
        with torch.no_grad():
            for p, v in zip(q.parameters(), params):
                p.copy_(v)
    # the selected model's value comes from fresh episodes, not from the evaluation that chose it
    # (the maximum of noisy evaluations is biased upwards)
    value, std = evaluate(model, eval_env, config["eval_episodes"])
    solved = {}
    if config["solved_episodes"]:
        solved_env = make_env(config, config["seed"] + 20_000, evaluation=True, max_steps=config["solved_max_steps"])
        s_mean, s_std = evaluate(model, solved_env, config["solved_episodes"])
        solved_env.close()
        solved = {"solved_value": s_mean, "solved_std": s_std, "solved": s_mean >= config["solved_return"],
                  "solved_episodes": config["solved_episodes"], "solved_max_steps": config["solved_max_steps"],
                  "solved_return": config["solved_return"]}
    run.log({"timesteps": model.num_timesteps, "selected_timesteps": selected_at, "final_eval_return": value,
             "final_eval_std": std, "eval_episodes": config["eval_episodes"], **solved,
             "wall_time_s": round(time.time() - started, 3)})
    if q.subspace:
        run.save_theta(q.q_net.get_flat())
        save_fingerprint(run.path, q.q_net)  # lets rlsub eval refuse a differently rebuilt theta_0 / P
    else:
        run.save_theta(torch.nn.utils.parameters_to_vector(q.q_net.parameters()).detach().numpy(), "theta_D.npy")
    model_bytes = None
    if config["save_model"]:
        model.save(run.path / "model.zip")
        model_bytes = (run.path / "model.zip").stat().st_size
    env.close()
    eval_env.close()
    summary = {
        "task": config["env"], "trainer": "dqn", "D": q.D, "d": q.d, "dim": q.dim,
        "projection": q.projection_kind, "seed": config["seed"], "metric": "eval_return", "value": value,
        "value_std": std, "select": config["select"], "selected_timesteps": selected_at, **solved,
        "metric_min": run_metric_min(config), "timesteps": config["timesteps"],
        "eval_episodes": config["eval_episodes"], "wall_time_s": round(time.time() - run.started, 2),
        "train_time_s": round(train_time, 2), "fps": round(config["timesteps"] / train_time, 1),
        "model_zip_bytes": model_bytes,
    }
    run.write_summary(summary)
    return summary
