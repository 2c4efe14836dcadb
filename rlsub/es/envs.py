"""Environments ES trains on, by gymnasium id, with the preprocessing each needs.

``make_env(env_id)`` builds the environment; Atari ids (``ALE/...``) get the usual preprocessing:
frame skip 4 (max-pooled), 84x84 grey, 4 stacked frames, no sticky-action override beyond the
id's default. ``metric_min(env_id)`` is the lowest return an episode can have, used to shift
returns before taking 90% of a baseline (Li et al. 2018).
"""

from __future__ import annotations

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


def metric_min(env_id: str) -> float:
    for key, value in _METRIC_MIN.items():
        if key in env_id:
            return value
    return 0.0


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
