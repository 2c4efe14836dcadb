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


MODELS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "lenet": lenet}


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
