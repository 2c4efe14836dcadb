"""The numerical pieces of OpenAI-ES (Salimans et al. 2017), free of environments and MPI.

Higher fitness is better everywhere. Perturbation noise is a pure function of
``(seed, generation, index)``, so any rank can regenerate any perturbation from three integers:
only those integers and the returns cross ranks.
"""

from __future__ import annotations

import numpy as np

try:  # C helpers built by `pip install -e .` (bit-identical to the numpy they replace)
    from rlsub import _step
except ImportError:  # pragma: no cover - exercised only on a broken install
    _step = None

#: what the C helpers refuse (another dtype, a non-contiguous array, a length that differs): the
#: numpy operations then run instead, and raise their own error if the input is wrong for them too
NOT_FAST = (TypeError, ValueError, BufferError)


def perturbation(seed: int, generation: int, index: int, dim: int, out: np.ndarray | None = None) -> np.ndarray:
    """eps ~ N(0, I_dim), float32, for mirrored pair ``index`` of ``generation`` (written into ``out``, a
    float32 array of shape [dim], when given: the same numbers, no new array)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 1, generation, index])))
    return rng.standard_normal(dim, dtype=np.float32, out=out)


def pair_into(plus: np.ndarray, minus: np.ndarray, center: np.ndarray, delta: np.ndarray, sigma: float) -> None:
    """A mirrored pair's parameters: delta *= sigma (float32 times a Python float: float32
    arithmetic, as sigma * delta), plus = center + delta, minus = center - delta. One pass over the D
    floats in C instead of three in numpy, with the same roundings."""
    if _step is not None:
        try:
            _step.pair(plus, minus, center, delta, sigma)
            return
        except NOT_FAST:
            pass
    delta *= sigma
    np.add(center, delta, out=plus)
    np.subtract(center, delta, out=minus)


def episode_seed(seed: int, kind: int, generation: int, index: int) -> int:
    """An environment reset seed from (run seed, purpose, generation, index); kind 0 train, 1 eval."""
    return int(np.random.SeedSequence([seed, 2 + kind, generation, index]).generate_state(1)[0])


def records_obs(seed: int, generation: int, item: int, prob: float) -> bool:
    """Whether item ``item`` of a generation adds its observations to the running statistics: always
    at ``prob`` >= 1, else a uniform draw from (run seed, generation, item) below ``prob``, so the same
    items record whatever the number of ranks and whichever rank runs them."""
    if prob >= 1.0:
        return True
    return bool(np.random.default_rng(np.random.SeedSequence([seed, 6, generation, item])).random() < prob)


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of x scaled to [-0.5, 0.5]; tied values share their average rank.

    The reference code breaks ties by position, which turns equal returns (common in CartPole,
    where many policies fail after the same number of steps) into a spurious gradient.
    """
    flat = np.asarray(x, dtype=np.float64).ravel()
    order = flat.argsort(kind="stable")
    ranks = np.empty(flat.size, dtype=np.float64)
    ranks[order] = np.arange(flat.size, dtype=np.float64)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = sums[inverse] / counts[inverse]
    if flat.size > 1:
        ranks = ranks / (flat.size - 1) - 0.5
    else:
        ranks[:] = 0.0
    return ranks.reshape(np.shape(x))


def mirrored_gradient(eps: np.ndarray, f_plus: np.ndarray, f_minus: np.ndarray, sigma: float) -> np.ndarray:
    """sum_i (f+_i - f-_i) eps_i / (2 n sigma): the antithetic estimate of the gradient of
    E[f(theta + sigma eps)]; eps is [n, dim]."""
    weights = np.asarray(f_plus, dtype=np.float64) - np.asarray(f_minus, dtype=np.float64)
    return (weights @ eps.astype(np.float64)) / (2 * len(weights) * sigma)


class Adam:
    """Adam ascent on a flat float64 vector (the reference code's form of the bias correction)."""

    def __init__(self, dim: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.m = np.zeros(dim)
        self.v = np.zeros(dim)
        self.t = 0

    def step(self, grad: np.ndarray) -> np.ndarray:
        """The increment that ascends along ``grad``."""
        self.t += 1
        a = self.lr * np.sqrt(1 - self.beta2**self.t) / (1 - self.beta1**self.t)
        self.m = self.beta1 * self.m + (1 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1 - self.beta2) * grad * grad
        return a * self.m / (np.sqrt(self.v) + self.epsilon)

    def state(self) -> dict:
        return {"adam_m": self.m, "adam_v": self.v, "adam_t": np.array(self.t)}

    def load(self, state: dict) -> None:
        self.m, self.v, self.t = np.array(state["adam_m"]), np.array(state["adam_v"]), int(state["adam_t"])


class ObsStats:
    """Running observation mean and std from sums (float64); std floored, inputs clipped to [-5, 5]."""

    def __init__(self, shape, eps: float = 1e-2):
        self.sum = np.zeros(shape)
        self.sumsq = np.full(shape, eps)
        self.count = eps

    def add(self, s: np.ndarray, ssq: np.ndarray, count: float) -> None:
        self.sum += s
        self.sumsq += ssq
        self.count += count

    @property
    def mean(self) -> np.ndarray:
        return self.sum / self.count

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.sumsq / self.count - np.square(self.mean), 1e-2))

    def state(self) -> dict:
        return {"obs_sum": self.sum, "obs_sumsq": self.sumsq, "obs_count": np.array(self.count)}

    def load(self, state: dict) -> None:
        self.sum, self.sumsq = np.array(state["obs_sum"]), np.array(state["obs_sumsq"])
        self.count = float(state["obs_count"])
