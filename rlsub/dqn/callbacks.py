"""stable-baselines3 callbacks of the DQN trainer beyond its metrics rows."""

from __future__ import annotations

import sys

from stable_baselines3.common.callbacks import BaseCallback


class ProgressBar(BaseCallback):
    """A tqdm bar over training timesteps with the mean return of the last 100 episodes
    (SB3's own ``progress_bar=True`` needs rich, which rlsub does not otherwise use)."""

    def __init__(self, total: int, every: int = 500):
        super().__init__()
        self.total, self.every, self.bar = total, every, None

    def _on_training_start(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="step", file=sys.stderr, dynamic_ncols=True, desc="dqn")

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0 or self.num_timesteps >= self.total:
            self.bar.n = self.num_timesteps
            recent = [info["r"] for info in self.model.ep_info_buffer]
            if recent:
                self.bar.set_postfix_str(f"return {sum(recent) / len(recent):.1f}", refresh=False)
            self.bar.refresh()
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.n = self.num_timesteps
            self.bar.close()
