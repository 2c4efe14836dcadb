"""Environments ES trains on, by gymnasium id, with the preprocessing each needs.

``make_env(env_id)`` builds the environment; Atari ids (``ALE/...``) get the usual preprocessing:
frame skip 4 (max-pooled), 84x84 grey, 4 stacked frames, no sticky-action override beyond the
id's default. ``metric_min(env_id)`` is the lowest return an episode can have, used to shift
returns before taking 90% of a baseline (Li et al. 2018); for an environment it cannot derive it
for, the config must set it.
"""

from __future__ import annotations

import math
import time

import gymnasium as gym

from rlsub.config import ConfigError

#: the lowest possible episode return per environment family (for the d_int90 shift)
_METRIC_MIN = {
    "CartPole": 0.0,  # +1 per step
    "Pong": -21.0,  # the opponent scores 21 points first
    # Humanoid: alive bonus +5 per step minus control and contact costs; costs are small and the
    # lowest observed returns are positive, so 0 is used (unverified bound).
    "Humanoid": 0.0,
}

#: the lowest reward of one step, by id prefix: the lowest return is that times the episode limit
_STEP_REWARD_MIN = {
    "Acrobot-": -1.0,  # -1 per step until the goal
    "MountainCar-": -1.0,  # -1 per step until the goal
    # -(theta^2 + 0.1 thdot^2 + 0.001 u^2) with |theta| <= pi, |thdot| <= 8, |u| <= 2
    "Pendulum-": -(math.pi**2 + 0.1 * 8**2 + 0.001 * 2**2),
}


def metric_min(env_id: str, configured: float | None = None, max_episode_steps: int | None = None) -> float:
    """The lowest return an episode of ``env_id`` can have: ``configured`` when set, else derived from
    the environment (a known bound, or the lowest step reward times the episode limit); ConfigError
    when neither is known (it is never guessed: a wrong value moves the 90% threshold)."""
    if configured is not None:
        return float(configured)
    for key, value in _METRIC_MIN.items():
        if key in env_id:
            return value
    for prefix, step_min in _STEP_REWARD_MIN.items():
        if env_id.startswith(prefix):
            limits = [n for n in (max_episode_steps, _spec_steps(env_id)) if n]
            if limits:
                return step_min * min(limits)
    raise ConfigError(f"the lowest possible return of {env_id!r} is not known to rlsub; set metric_min in "
                      f"the config (returns are shifted by it before taking 90% of the baseline)")


def _spec_steps(env_id: str) -> int | None:
    try:
        return gym.spec(env_id).max_episode_steps
    except gym.error.Error:
        return None


def check_env_id(env_id: str) -> None:
    """ConfigError unless gymnasium knows ``env_id`` (without building the environment)."""
    register_ale()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make environment {env_id!r}: {exc}{_ale_hint(env_id)}") from None
    if "ale_py" in str(spec.entry_point) and not env_id.startswith("ALE/"):
        # ale-py's old-style ids (Pong-v4, PongNoFrameskip-v4) would skip the Atari preprocessing
        raise ConfigError(f"cannot use {env_id!r}: Atari games are run by their ALE/ id, which gets the "
                          f"preprocessing (frame skip, 84x84 grey, 4 frames){_ale_hint(env_id).replace(';', ',', 1)}")


def _ale_hint(env_id: str) -> str:
    """For an Atari game named without its namespace (Pong-v5, PongNoFrameskip-v4): the ALE id."""
    if env_id.startswith("ALE/"):
        return ""
    register_ale()
    game = env_id.split("-")[0].replace("NoFrameskip", "").replace("Deterministic", "")
    candidates = sorted(i for i in gym.registry if i.startswith(f"ALE/{game}-"))
    return f"; Atari games need the ALE/ namespace, e.g. {candidates[-1]!r}" if candidates else ""


def register_ale() -> None:
    """Make the ``ALE/...`` ids known to gymnasium (ale-py ships the ROMs)."""
    import ale_py

    gym.register_envs(ale_py)


def make_env(env_id: str, **kwargs) -> gym.Env:
    """Build ``env_id`` (Atari ids preprocessed as described above); unknown ids raise ConfigError."""
    atari = env_id.startswith("ALE/")
    if atari:
        register_ale()
    try:
        if atari:
            env = gym.make(env_id, frameskip=1, **kwargs)
            env = gym.wrappers.AtariPreprocessing(env, frame_skip=4, screen_size=84, grayscale_obs=True,
                                                  noop_max=30, scale_obs=True)
            return gym.wrappers.FrameStackObservation(env, 4)
        return gym.make(env_id, **kwargs)
    except gym.error.Error as exc:
        raise ConfigError(f"cannot make environment {env_id!r}: {exc}") from None
    except TypeError as exc:  # an env_kwargs key the environment does not take
        raise ConfigError(f"cannot make environment {env_id!r} with env_kwargs {kwargs}: {exc}") from None


class EnvClock(gym.Wrapper):
    """Counts the seconds spent inside ``reset`` and ``step`` (``.seconds``), so a trainer can tell
    simulation time from its own overhead (policy, projection, bookkeeping)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.seconds = 0.0

    def reset(self, **kwargs):
        t = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            self.seconds += time.perf_counter() - t

    def step(self, action):
        t = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            self.seconds += time.perf_counter() - t
