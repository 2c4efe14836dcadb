"""ES policies: a network in the subspace, an actor that runs it, and the episode loop.

The search variable x (d numbers, or D for the full-space baseline through the identity
projection) gives the native parameters ``theta_D = theta_0 + P x`` once per episode. Multilayer
perceptrons then run in numpy on views into theta_D (a 376-256-256-17 forward costs a few
microseconds, against tens for a torch call). Convolutional networks built from padding, Conv2d,
Linear, virtual batch norm and activations (the Atari policy) run as a short list of numpy and C
operations (:class:`FoldedNet`): virtual batch norm has statistics fixed per parameter vector (those
of the reference batch), so in evaluation it is an affine map per channel, folded once per episode
into the weights and bias of the layer before it; symmetric zero padding is folded into the
convolution. A step is then two convolutions and two matrix-vector products, without module calls
or per-step normalisation; within an episode the convolutions and the wide linear layer work on
what changed in their input since the step before (:class:`_DeltaConv`: Atari frames change in
well under 1% of their pixels from step to step). Other networks run as a plain torch module whose parameters are views
into one flat tensor (theta_D copied in once per episode). All give the numbers of
``SubspaceModel.call_with`` (the folded net up to float rounding: the folded weights are rounded
products, and the delta forms sum in their own order). The elementwise work around the numpy path (observation normalisation, the last bias,
action noise and clipping, observation sums) goes through ``rlsub._step``, C functions that do the
same float operations in one call each instead of a dozen ufunc calls a step (bit-identical).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlsub.es.core import NOT_FAST, ObsStats, _step
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
        self._finish_now = False  # set per parameter vector: float32 theta_D for the C call
        self.mean, self.std = None, None
        self._x = None  # the normalised observation (reused from step to step)
        self._folded = FoldedNet.build(model) if self._plan is None else None
        if self._plan is None and self._folded is None:
            self._flat, self._plain = _plain_module(model)
        # continuous actions from an MLP ending in a linear layer: its bias, the action noise and
        # the clipping to the action box in one C call (float32 bounds, as the box arithmetic is)
        self._finish = (_step is not None and not self.discrete and self._plan is not None
                        and bool(self._plan) and self._plan[-1][0] == "linear"
                        and self.low.dtype == np.float32 and self.high.dtype == np.float32
                        and self.low.shape == self.high.shape == (self._plan[-1][4][0],))

    @property
    def needs_reference(self) -> bool:
        """Whether set_params needs a reference batch (the network has virtual batch norm)."""
        return self._plan is None and self._vbn

    def set_params(self, theta_D: np.ndarray, obs_stats: ObsStats | None, reference: np.ndarray | None = None):
        """Use theta_D [D] (float32) and the current observation statistics for the next steps."""
        self.theta_D = theta_D
        if obs_stats is not None:
            self.mean, self.std = obs_stats.mean.astype(np.float32), obs_stats.std.astype(np.float32)
        if self._plan is not None:
            self._layers = [(fn, theta_D[a:b].reshape(shape), theta_D[b:c]) if fn == "linear" else (fn, None, None)
                            for fn, a, b, c, shape in self._plan]
            self._finish_now = self._finish and theta_D.dtype == np.float32 and theta_D.flags.c_contiguous
        elif self._folded is not None:
            if self._vbn and reference is None:
                raise ValueError("a network with virtual batch norm needs a reference batch")
            self._folded.set_params(theta_D, reference if self._vbn else None)
        else:
            self._flat.copy_(torch.from_numpy(theta_D))
            if self._vbn:
                if reference is None:
                    raise ValueError("a network with virtual batch norm needs a reference batch")
                set_reference_statistics(self._plain, torch.from_numpy(reference))

    def outputs(self, obs: np.ndarray) -> np.ndarray:
        # In-place numpy on small vectors: each ufunc call costs a microsecond or two of overhead,
        # comparable to the arithmetic itself, so temporaries are avoided on the per-step path.
        if self._folded is not None and self.mean is None:
            # read only, so no copy (pixels arrive as float32 already)
            return self._folded(np.asarray(obs, dtype=np.float32))
        x = self._normalised(obs)
        if self._layers is not None:
            return self._mlp(x, last_bias=True)
        if self._folded is not None:
            return self._folded(x)
        with torch.inference_mode():
            return self._plain(torch.from_numpy(x)[None])[0].numpy()

    def _normalised(self, obs: np.ndarray) -> np.ndarray:
        """The observation as float32, normalised and clipped to +-5 when there are statistics;
        always a buffer or copy of this actor (the caller's observation is left alone)."""
        if self.mean is None:
            return np.array(obs, dtype=np.float32)
        x = self._obs_buffer()
        if _step is not None:
            try:
                _step.obs_norm(x, obs, self.mean, self.std, 5.0)
                return x
            except NOT_FAST:
                pass
        # the observation is rounded to float32 before the subtraction, as np.array(obs, float32) - mean would
        np.subtract(obs, self.mean, out=x, dtype=np.float32)
        x /= self.std
        np.minimum(x, 5.0, out=x)
        np.maximum(x, -5.0, out=x)
        return x

    def _mlp(self, x: np.ndarray, last_bias: bool) -> np.ndarray:
        """The numpy path: the layers on x (float32); ``last_bias=False`` leaves out the bias of the
        last layer (a linear one), which :meth:`act` then adds with the noise and clipping."""
        h = x.reshape(-1)
        last = len(self._layers) - 1
        for i, (fn, w, b) in enumerate(self._layers):
            if fn == "linear":
                h = w @ h
                if last_bias or i < last:
                    h += b
            else:
                h = fn(h, out=h)
        return h

    def _obs_buffer(self) -> np.ndarray:
        if self._x is None or self._x.shape != self.mean.shape:
            self._x = np.empty(self.mean.shape, dtype=np.float32)
        return self._x

    def begin_episode(self) -> None:
        """Call at every episode start: layers that keep a reference input within an episode
        (the Atari policy's) forget it."""
        if self._folded is not None:
            self._folded.begin_episode()

    def act(self, obs: np.ndarray, noise: ActionNoise | None = None):
        """The action for ``obs``; ``noise`` (continuous actions only) is added before clipping."""
        if self._finish_now:
            out = self._mlp(self._normalised(obs), last_bias=False)
            # out + bias + noise, clipped to the box: the float32 operations of the path below
            _step.finish(out, self._layers[-1][2], None if noise is None else noise.next(out.shape), self.low,
                         self.high)
            return out
        out = self.outputs(obs)
        if self.discrete:
            return int(np.argmax(out))
        if noise is not None:
            out += noise.next(out.shape)
        np.minimum(out, self.high, out=out)
        np.maximum(out, self.low, out=out)
        return out


class ActionNoise:
    """Gaussian action noise of one episode, N(0, 1) draws rounded to float32 and scaled in float32:
    the numbers that ``default_rng(seed).standard_normal(shape)`` gives step after step, drawn ``chunk`` steps at a
    time (a Generator's normals come one after another whatever the size of each draw), so a step
    costs one addition instead of a draw, a cast and a scaling."""

    def __init__(self, seed: int | None, scale: float, chunk: int = 32):
        self.rng, self.scale, self.chunk = np.random.default_rng(seed), scale, chunk
        self.rows, self.i = None, 0

    def next(self, shape: tuple) -> np.ndarray:
        if self.rows is None or self.i == len(self.rows):
            self.rows = self.rng.standard_normal((self.chunk, *shape)).astype(np.float32)
            self.rows *= self.scale  # float32 times a Python float: float32 arithmetic
            self.i = 0
        self.i += 1
        return self.rows[self.i - 1]


class FoldedNet:
    """An nn.Sequential of ZeroPad2d / Conv2d / Linear / VirtualBatchNorm / ReLU / Tanh / Flatten run
    as plain numpy / C operations on one observation (torch only for dense convolutions), each
    virtual batch norm folded into the layer before it once per parameter vector.

    With reference statistics (mean m, unbiased variance v, as ``set_reference_statistics`` records
    them) a virtual batch norm after ``z = W h + b`` gives ``(z - m) gamma / sqrt(v + eps) + beta``,
    which is the layer ``W' h + b'`` with ``W' = W s``, ``b' = (b - m) s + beta``, s = gamma /
    sqrt(v + eps) per output channel. The statistics of each norm come from one pass of the
    reference batch through the layers before it, normalised as batch norm does in training mode
    (biased variance), as ``set_reference_statistics`` computes them.
    """

    def __init__(self, steps: list[tuple], offsets: dict[str, tuple[int, int, tuple]]):
        self.steps, self.offsets = steps, offsets
        self.ops: list = []  # functions of one tensor [1, ...] -> [1, ...], set by set_params

    @classmethod
    def build(cls, model: SubspaceModel) -> FoldedNet | None:
        """The plan for ``model.module``, or None when it holds any other layer."""
        module = model.module
        if not isinstance(module, nn.Sequential):
            return None
        offsets = _offsets(model)
        layers = list(module.named_children())
        steps: list[tuple] = []
        i = 0
        while i < len(layers):
            name, layer = layers[i]
            nxt = layers[i + 1][1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.ZeroPad2d):
                l, r, t, b = layer.padding
                if isinstance(nxt, nn.Conv2d) and l == r and t == b and isinstance(nxt.padding, tuple):
                    pad = (t, l)  # folded into the convolution below
                else:
                    steps.append(("pad", tuple(layer.padding)))
                    pad = None
                i += 1
                if pad is None:
                    continue
                name, layer = layers[i]
                nxt = layers[i + 1][1] if i + 1 < len(layers) else None
            else:
                pad = (0, 0)
            if isinstance(layer, nn.Conv2d):
                if (layer.groups != 1 or layer.dilation != (1, 1) or not isinstance(layer.padding, tuple)
                        or layer.padding_mode != "zeros" or f"{name}.bias" not in offsets):
                    return None
                padding = (layer.padding[0] + pad[0], layer.padding[1] + pad[1])
                step = ["conv", name, (layer.stride, padding)]
            elif isinstance(layer, nn.Linear) and f"{name}.bias" in offsets:
                step = ["linear", name, None]
            elif isinstance(layer, (nn.ReLU, nn.Tanh)):
                steps.append(("relu" if isinstance(layer, nn.ReLU) else "tanh",))
                i += 1
                continue
            elif isinstance(layer, nn.Flatten) and layer.start_dim == 1 and layer.end_dim == -1:
                steps.append(("flatten",))
                i += 1
                continue
            else:
                return None
            i += 1
            if isinstance(nxt, VirtualBatchNorm):
                if f"{layers[i][0]}.weight" not in offsets:  # a norm without scale and offset
                    return None
                step.append((layers[i][0], nxt.eps))
                i += 1
            else:
                step.append(None)
            steps.append(tuple(step))
        if not steps or steps[0][0] not in ("conv", "linear", "pad"):  # in-place activations must not touch obs
            return None
        return cls(steps, offsets)

    def _view(self, flat: torch.Tensor, name: str) -> torch.Tensor:
        a, b, shape = self.offsets[name]
        return flat[a:b].view(shape)

    def set_params(self, theta_D: np.ndarray, reference: np.ndarray | None) -> None:
        """Fold theta_D [D] (and the reference batch's statistics) into the per-step operations."""
        flat = torch.from_numpy(np.asarray(theta_D, dtype=np.float32))
        h = torch.from_numpy(np.asarray(reference, dtype=np.float32)) if reference is not None else None
        ops: list = []  # functions of one observation's activations (numpy float32, no batch axis)
        with torch.no_grad():
            for i, step in enumerate(self.steps):
                kind = step[0]
                if kind in ("conv", "linear"):
                    _, name, geometry, norm = step
                    w, b = self._view(flat, f"{name}.weight"), self._view(flat, f"{name}.bias")
                    fn = partial(F.conv2d, stride=geometry[0], padding=geometry[1]) if kind == "conv" else F.linear
                    if norm is not None:
                        if h is None:
                            raise ValueError("a network with virtual batch norm needs a reference batch")
                        h, w, b = _fold_norm(fn, h, w, b, self._view(flat, f"{norm[0]}.weight"),
                                             self._view(flat, f"{norm[0]}.bias"), norm[1])
                    elif h is not None:
                        h = fn(h, w, b)
                    if kind == "conv":
                        ops.append(_DeltaConv(w, b, *geometry))
                    elif _SkipZeros.takes(self.steps[:i], w):
                        ops.append(_SkipZeros(w, b))
                    else:
                        ops.append(_Linear(w, b))
                elif kind == "pad":
                    if h is not None:
                        h = F.pad(h, step[1])
                    if ops and isinstance(ops[-1], _ActInto):
                        continue  # the activation before writes into the padded buffer
                    ops.append(_Pad(step[1]))
                elif kind == "flatten":
                    if h is not None:
                        h = h.reshape(h.shape[0], -1)
                    ops.append(_flatten)
                else:
                    if h is not None:
                        h = torch.clamp_min(h, 0.0) if kind == "relu" else torch.tanh(h)
                    nxt = self.steps[i + 1] if i + 1 < len(self.steps) else None
                    ops.append(_ActInto(kind, nxt[1] if nxt is not None and nxt[0] == "pad" else None))
        self.ops = ops

    def begin_episode(self) -> None:
        """Forget the layers' reference inputs (see :class:`_DeltaConv`), so that an episode's
        outputs do not depend on the episodes before it (nor on how episodes fall to MPI ranks)."""
        for op in self.ops:
            if isinstance(op, (_DeltaConv, _SkipZeros)):
                op.reset()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Outputs for one observation (float32, not modified): numpy arrays from layer to layer
        (a torch call on one observation's small tensors costs microseconds of dispatch)."""
        x = obs
        for op in self.ops:
            x = op(x)
        return x


def _fold_norm(fn, h, w, b, gamma, beta, eps):
    """(the reference batch after the layer and its norm, folded weight, folded bias)."""
    z = fn(h, w, b)
    dims = [0, *range(2, z.dim())]
    # two passes in float64, rounded to float32: the numbers of torch.var_mean(z, dims, correction=0)
    # (a float64 Welford) but for a rare last bit, and 4x faster on the Atari policy's reference batch
    # (1.8 vs 7.9 ms per parameter vector, a quarter of folding it)
    z64 = z.double()
    mean64 = z64.mean(dim=dims)
    dev = z64 - mean64.view((-1,) + (1,) * (z.dim() - 2))
    var_b, mean = (dev * dev).mean(dim=dims).float(), mean64.float()
    n = z.numel() // z.shape[1]
    var_u = var_b * (n / max(n - 1, 1))  # what batch norm records as its running variance
    shape = (-1,) + (1,) * (z.dim() - 2)
    # the reference pass goes on normalised as batch norm does in training mode (biased variance)
    h = (z - mean.view(shape)) / torch.sqrt(var_b.view(shape) + eps) * gamma.view(shape) + beta.view(shape)
    s = gamma / torch.sqrt(var_u + eps)
    return h, w * s.view((-1,) + (1,) * (w.dim() - 1)), (b - mean) * s + beta


class _Linear:
    """y = W x + b for one observation (numpy: a matrix-vector product)."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        self.w, self.b = w.contiguous().numpy(), b.contiguous().numpy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self.w @ x if x.ndim == 1 else x @ self.w.T
        y += self.b
        return y


class _Pad:
    """Zero padding (left, right, top, bottom) of the last two axes."""

    def __init__(self, pad: tuple):
        left, right, top, bottom = pad
        self.widths = ((top, bottom), (left, right))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0),) * (x.ndim - 2) + self.widths)


def _flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1)


class _SkipZeros:
    """A wide linear layer after a ReLU: y = W h + b reading only the columns of W where h is
    nonzero (rlsub._step.matvec_skip_zeros on W transposed once per parameter vector). For the Atari
    policy's 3,872 x 256 layer about 44% of h is nonzero, so about 1.7 of its 4 MB of weights are
    read a step; in a Pong episode this layer took 105 us a step as a dense product. The sum runs in
    increasing input index (another rounding than torch's F.linear).

    Within an episode, as :class:`_DeltaConv`: y = y_prev + W (h - h_prev) over the entries of h
    that changed since the step before (rlsub._step.matvec_delta), when fewer changed than are
    nonzero (in Pong about a quarter of h changes from step to step)."""

    MIN_INPUTS = 1024  # narrower layers: the dense product is cheap and the transposition not worth it

    def __init__(self, w: torch.Tensor, b: torch.Tensor):
        self.wt = w.t().contiguous().numpy()
        self.b = b.contiguous().numpy()
        self.reset()

    def reset(self) -> None:
        self.href = self.yref = None
        self.since = 0

    @classmethod
    def takes(cls, before: list, w: torch.Tensor) -> bool:
        kinds = [s[0] for s in before if s[0] != "flatten"]
        return _step is not None and w.shape[1] >= cls.MIN_INPUTS and bool(kinds) and kinds[-1] == "relu"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = x.reshape(-1)
        if not h.flags.c_contiguous:
            h = np.ascontiguousarray(h)
        y = np.empty(self.wt.shape[1], dtype=np.float32)  # new: the activation after writes in place
        if self.href is not None and self.since < _DeltaConv.REFRESH:
            if _step.matvec_delta(y, self.wt, h, self.href, self.yref) >= 0:
                self.since += 1
                return y
        _step.matvec_skip_zeros(y, self.wt, h, self.b)
        self.href, self.yref, self.since = h.copy(), y.copy(), 0
        return y


class _DeltaConv:
    """A convolution that, within an episode, computes conv(x) as conv(x_prev) + conv(x - x_prev)
    over the inputs that changed since the step before (rlsub._step.conv_delta): exact in real
    arithmetic, zero padding included, in another float rounding than the dense product.
    Consecutive Atari frame stacks differ in about 0.4% of their pixels (paddles, ball, score), so
    the first layer of the Atari policy reads about 100 of its 28,224 inputs a step, the second a
    few percent of its own: in a Pong episode 80 and 70 us a step as dense products. The dense
    product runs (and starts a new reference) at the episode's first step, when more than LIMIT of
    the inputs changed (the delta would cost about as much), when a change is not finite, and
    every REFRESH steps, so that the rounding of the running sum cannot drift over a long
    episode. Its result depends only on the episode's observations since the last dense step, not
    on earlier episodes (begin_episode) or the MPI rank count."""

    # the share of changed inputs above which the dense product runs: with 12% of them changed (at
    # random places) the Atari policy's conv 1 costs about as much either way (69 vs 75 us alone on
    # the development machine), its conv 2 still less as a delta (27 vs 71 us)
    LIMIT = 0.125
    REFRESH = 64  # delta steps between two dense ones (also for _SkipZeros)

    def __init__(self, w: torch.Tensor, b: torch.Tensor, stride: tuple, padding: tuple):
        self.w, self.b, self.stride, self.padding = w.contiguous(), b.contiguous(), stride, padding
        self.wt = w.permute(1, 2, 3, 0).contiguous().numpy()  # [C, KH, KW, F]: a filter row per tap
        self.reset()

    def reset(self) -> None:
        self.xref = self.base = None
        self.since = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.xref is not None and self.since < self.REFRESH and x.shape == self.xref.shape:
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            out = np.empty(self.base.shape, dtype=np.float32)  # new: the activation after writes in place
            if _step.conv_delta(out, self.work, x, self.xref, self.base, self.wt, self.geometry, self.limit) >= 0:
                self.since += 1
                return out
        y = F.conv2d(torch.from_numpy(x)[None], self.w, self.b, stride=self.stride, padding=self.padding)[0].numpy()
        if _step is not None:
            self.xref, self.base, self.since = np.array(x, dtype=np.float32), y.copy(), 0
            (c, h, w), (f, _, kh, kw), (oh, ow) = x.shape, self.w.shape, y.shape[1:]
            self.geometry = (c, h, w, f, kh, kw, *self.stride, *self.padding, oh, ow)
            self.work = np.empty(y.size, dtype=np.float32)
            self.limit = int(self.LIMIT * x.size)
        return y


class _ActInto:
    """A ReLU or Tanh, in place; followed by zero padding, it writes into the inside of a zero
    buffer kept from step to step (one operation instead of two, no new array)."""

    def __init__(self, kind: str, pad: tuple | None):
        self.relu, self.pad = kind == "relu", pad
        self.buffer = self.inside = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x
        if self.pad is not None:
            if self.buffer is None or self.inside.shape != x.shape:
                left, right, top, bottom = self.pad
                *lead, hh, ww = x.shape
                self.buffer = np.zeros((*lead, hh + top + bottom, ww + left + right), dtype=np.float32)
                self.inside = self.buffer[..., top:top + hh, left:left + ww]
            out = self.inside
        if self.relu:
            np.maximum(x, 0.0, out=out)
        else:
            np.tanh(x, out=out)
        return out if self.pad is None else self.buffer


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


def _offsets(model: SubspaceModel) -> dict[str, tuple[int, int, tuple]]:
    """Parameter name -> (start, stop, shape) of its slice of theta_D."""
    offsets, pos = {}, 0
    for name, size, shape in zip(model.param_names, model.param_sizes, model.param_shapes):
        offsets[name] = (pos, pos + size, shape)
        pos += size
    return offsets


def _numpy_plan(module: nn.Module, model: SubspaceModel):
    """For an nn.Sequential of Flatten / Linear / Tanh / ReLU: the slices of theta_D per layer."""
    if not isinstance(module, nn.Sequential):
        return None
    offsets = _offsets(model)
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
    actor.begin_episode()
    noise = ActionNoise(noise_seed, action_noise) if action_noise else None
    total, steps = 0.0, 0
    s = ssq = None
    if record_obs:
        s = np.zeros(np.shape(obs))
        ssq = np.zeros(np.shape(obs))
    while True:
        if record_obs:
            _add_obs(s, ssq, obs)
        obs, reward, terminated, truncated, _ = env.step(actor.act(obs, noise))
        total += float(reward)
        steps += 1
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            break
    return total, steps, s, ssq


def _add_obs(s: np.ndarray, ssq: np.ndarray, obs) -> None:
    """s += obs; ssq += obs * obs in float64 (one C call when the observation is a float array)."""
    if _step is not None:
        try:
            _step.accumulate(s, ssq, obs)
            return
        except NOT_FAST:
            pass
    o = np.asarray(obs, dtype=np.float64)
    s += o
    ssq += o * o


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
