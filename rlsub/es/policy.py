"""ES policies: a network in the subspace, an actor that runs it, and the episode loop.

The search variable x (d numbers, or D for the full-space baseline through the identity
projection) gives the native parameters ``theta_D = theta_0 + P x`` once per episode. Multilayer
perceptrons then run in numpy on views into theta_D (a 376-256-256-17 forward costs a few
microseconds, against tens for a torch call). Other networks (the Atari conv policy) run as a plain
torch module whose parameters are views into one flat tensor: theta_D is copied in once per episode
(a memcpy), and each step is an ordinary forward in inference mode, without ``functional_call``'s
per-call swapping of parameters. Both give the same numbers as ``SubspaceModel.call_with``.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rlsub.es.core import ObsStats
from rlsub.models import VirtualBatchNorm, set_reference_statistics
from rlsub.subspace import SubspaceModel, _owner

#: in-place activations for the numpy path: fn(h, out=h)
_NP_ACTIVATIONS = {nn.Tanh: np.tanh, nn.ReLU: lambda z, out: np.maximum(z, 0.0, out=out)}


class Actor:
    """Chooses actions with native parameters theta_D: greedy for discrete actions, clipped outputs
    for boxes. ``obs_norm`` (an :class:`ObsStats`, or None) normalises and clips observations."""

    def __init__(self, model: SubspaceModel, action_space: spaces.Space):
        self.model = model
        self.module = model.module
        self.module.eval()
        self.discrete = isinstance(action_space, spaces.Discrete)
        if not self.discrete:
            self.low, self.high = action_space.low, action_space.high
        self._plan = _numpy_plan(self.module, model)
        self._vbn = any(isinstance(m, VirtualBatchNorm) for m in self.module.modules())
        self._layers = None
        self.mean, self.std = None, None
        if self._plan is None:
            self._flat, self._plain = _plain_module(model)

    def set_params(self, theta_D: np.ndarray, obs_stats: ObsStats | None, reference: np.ndarray | None = None):
        """Use theta_D [D] (float32) and the current observation statistics for the next steps."""
        self.theta_D = theta_D
        if obs_stats is not None:
            self.mean, self.std = obs_stats.mean.astype(np.float32), obs_stats.std.astype(np.float32)
        if self._plan is not None:
            self._layers = [(fn, theta_D[a:b].reshape(shape), theta_D[b:c]) if fn == "linear" else (fn, None, None)
                            for fn, a, b, c, shape in self._plan]
        else:
            self._flat.copy_(torch.from_numpy(theta_D))
            if self._vbn:
                if reference is None:
                    raise ValueError("a network with virtual batch norm needs a reference batch")
                set_reference_statistics(self._plain, torch.from_numpy(reference))

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        # In-place numpy on small vectors: each ufunc call costs a microsecond or two of overhead,
        # comparable to the arithmetic itself, so temporaries are avoided on the per-step path.
        x = np.array(obs, dtype=np.float32)  # a copy: the caller's observation is left alone
        if self.mean is not None:
            x -= self.mean
            x /= self.std
            np.minimum(x, 5.0, out=x)
            np.maximum(x, -5.0, out=x)
        if self._layers is not None:
            h = x.reshape(-1)
            for fn, w, b in self._layers:
                if fn == "linear":
                    h = w @ h
                    h += b
                else:
                    h = fn(h, out=h)
            return h
        with torch.inference_mode():
            return self._plain(torch.from_numpy(x)[None])[0].numpy()

    def act(self, obs: np.ndarray, noise_rng: np.random.Generator | None = None, action_noise: float = 0.0):
        out = self.outputs(obs)
        if self.discrete:
            return int(np.argmax(out))
        if action_noise and noise_rng is not None:
            noise = noise_rng.standard_normal(out.shape).astype(np.float32)
            noise *= action_noise
            out += noise
        np.minimum(out, self.high, out=out)
        np.maximum(out, self.low, out=out)
        return out


def _plain_module(model: SubspaceModel) -> tuple[torch.Tensor, nn.Module]:
    """(flat [D], a copy of the wrapped module whose parameters are views into flat)."""
    import copy

    plain = copy.deepcopy(model.module)
    flat = torch.zeros(model.D)
    for name, view in model.params_from_flat(flat).items():
        owner, attr = _owner(plain, name)
        owner._parameters[attr] = nn.Parameter(view, requires_grad=False)
    plain.eval()
    return flat, plain


def _numpy_plan(module: nn.Module, model: SubspaceModel):
    """For an nn.Sequential of Flatten / Linear / Tanh / ReLU: the slices of theta_D per layer."""
    if not isinstance(module, nn.Sequential):
        return None
    offsets, pos = {}, 0
    for name, size, shape in zip(model.param_names, model.param_sizes, model.param_shapes):
        offsets[name] = (pos, pos + size, shape)
        pos += size
    plan = []
    for idx, layer in enumerate(module):
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            wa, wb, wshape = offsets[f"{idx}.weight"]
            ba, bb, _ = offsets[f"{idx}.bias"]
            if wb != ba:
                return None
            plan.append(("linear", wa, wb, bb, wshape))
        elif type(layer) in _NP_ACTIVATIONS:
            plan.append((_NP_ACTIVATIONS[type(layer)], 0, 0, 0, None))
        else:
            return None
    return plan


def rollout(env, actor: Actor, env_seed: int, max_steps: int | None, record_obs: bool = False,
            action_noise: float = 0.0, noise_seed: int | None = None):
    """One episode; returns (return, length, obs_sum, obs_sumsq) with the sums None unless recorded."""
    obs, _ = env.reset(seed=env_seed)
    noise_rng = np.random.default_rng(noise_seed) if action_noise else None
    total, steps = 0.0, 0
    s = ssq = None
    if record_obs:
        s = np.zeros(np.shape(obs))
        ssq = np.zeros(np.shape(obs))
    while True:
        if record_obs:
            o = np.asarray(obs, dtype=np.float64)
            s += o
            ssq += o * o
        obs, reward, terminated, truncated, _ = env.step(actor.act(obs, noise_rng, action_noise))
        total += float(reward)
        steps += 1
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            break
    return total, steps, s, ssq


def reference_batch(env, size: int, seed: int) -> np.ndarray:
    """Observations from random play (seeded) for virtual batch norm: [size, *obs_shape] float32."""
    rng = np.random.default_rng(seed)
    env.action_space.seed(int(rng.integers(2**31)))
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    batch = []
    while len(batch) < size:
        for _ in range(int(rng.integers(1, 20))):
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
        batch.append(np.asarray(obs, dtype=np.float32))
    return np.stack(batch)
