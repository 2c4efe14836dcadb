"""Network registry: every architecture rlsub trains, built deterministically from a seed.

``build_model(name, seed=..., **kwargs)`` constructs the network with its usual (PyTorch default)
initialisation drawn from a private RNG stream: the global torch RNG is forked, seeded and restored,
so the same seed gives the same theta_0 in any process and the caller's RNG state is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (200, 200), activation: str = "relu") -> nn.Module:
    """Fully connected in_dim -> hidden... -> out_dim; inputs of any shape are flattened first."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [int(in_dim), *[int(h) for h in hidden]]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-1], int(out_dim)))
    return nn.Sequential(*layers)


def lenet(in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> nn.Module:
    """LeNet-5 as in Li et al.: conv6 5x5, pool, conv16 5x5, pool, fc120, fc84, fc10 (ReLU)."""
    side = ((image_size - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class VirtualBatchNorm(nn.BatchNorm1d):
    """Batch norm whose statistics are fixed from a reference batch (Salimans et al. 2016).

    Normalises inputs of any shape [n, C, ...] over all but the channel dimension. Call
    :func:`set_reference_statistics` once with a reference batch; afterwards (eval mode) outputs no
    longer depend on the batch, as ES needs for single-observation policies.
    """

    def forward(self, x):
        shape = x.shape
        flat = x.reshape(shape[0], shape[1], -1)
        return super().forward(flat).reshape(shape)


def set_reference_statistics(module: nn.Module, reference: torch.Tensor, forward=None) -> None:
    """Fix every VirtualBatchNorm's statistics to those of ``reference`` (one pass, then eval mode)."""
    norms = [m for m in module.modules() if isinstance(m, VirtualBatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: exactly the reference batch's statistics
    module.train()
    with torch.no_grad():
        (forward or module)(reference)
    module.eval()


def pong_conv(in_channels: int = 4, image_size: int = 84, num_actions: int = 6) -> nn.Module:
    """The Atari policy of uber-research/deep-neuroevolution: conv16 8x8 s4, conv32 4x4 s2, fc256.

    SAME padding and (virtual) batch norm after each hidden layer, ReLU. With 84x84x4 inputs and
    6 actions D = 1,005,974: 1,005,366 weights and biases plus 608 batch-norm scales and offsets.
    """
    p1 = _same_pad(image_size, 8, 4)
    s1 = -(-image_size // 4)
    p2 = _same_pad(s1, 4, 2)
    s2 = -(-s1 // 2)
    return nn.Sequential(
        nn.ZeroPad2d((p1[0], p1[1], p1[0], p1[1])), nn.Conv2d(in_channels, 16, 8, stride=4),
        VirtualBatchNorm(16), nn.ReLU(),
        nn.ZeroPad2d((p2[0], p2[1], p2[0], p2[1])), nn.Conv2d(16, 32, 4, stride=2),
        VirtualBatchNorm(32), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * s2 * s2, 256), VirtualBatchNorm(256), nn.ReLU(),
        nn.Linear(256, num_actions),
    )


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "lenet": lenet, "pong_conv": pong_conv}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add an architecture to the registry (trainers look networks up by name)."""
    MODELS[name] = factory


def build_model(name: str, seed: int = 0, **kwargs) -> nn.Module:
    """Build registry entry ``name`` with its initialisation drawn from ``seed`` (global RNG untouched)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[name](**kwargs)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
