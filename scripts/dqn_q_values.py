"""Q-values of trained DQN run directories (their model.zip), to tell a learnt Q-function from a
collapsed or diverged one: the mean Q-value per action over 300 states of random CartPole-v1 play
(environment and actions seeded, so every call sees the same states), the share of those states
whose greedy action is 0, and |theta| (theta_d, or all parameters for a full-space run).

Usage: python scripts/dqn_q_values.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch


def random_play_states(n: int = 300, seed: int = 1) -> torch.Tensor:
    env = gym.make("CartPole-v1")
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    states = []
    while len(states) < n:
        states.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return torch.tensor(np.array(states), dtype=torch.float32)


def main() -> None:
    from stable_baselines3 import DQN

    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    states = random_play_states()
    for run in map(Path, sys.argv[1:]):
        model = DQN.load(run / "model.zip", device="cpu")
        with torch.no_grad():
            q = model.q_net(states)
        theta = torch.cat([p.flatten() for p in model.q_net.parameters()])
        value = json.loads((run / "summary.json").read_text())["value"]
        print(f"{run.name:16s} eval {value:7.2f}  mean Q per action {q.mean(0).numpy().round(1)}  "
              f"greedy action 0 in {(q.argmax(1) == 0).float().mean().item():.2f} of states  "
              f"|theta| {theta.norm().item():.1f}")


if __name__ == "__main__":
    main()
