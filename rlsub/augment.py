"""Augmentations: nonlinear features of theta_d composed before the projection, ``theta_D = theta_0 + P phi(theta_d)``.

From the slides "Searching for a more minimal intrinsic dimension of objective landscapes" (Lam &
Lee 2020, a follow-up of Li et al. 2018): instead of ``P theta_d``, project an augmented vector

- ``none``: phi(t) = t (the linear subspace of Li et al.);
- ``power``: phi(t) = [t; t^2] (element-wise square);
- ``rff``: phi(t) = [t; cos(B t) - 1; sin(B t)], random Fourier features with B [F, d] of i.i.d.
  N(0, scale^2) entries regenerated from the seed. The slides write cos(B t); we subtract the
  constant 1 so that phi(0) = 0 and theta_d = 0 is still the network's own initialisation
  (otherwise the start would be shifted by the sum of F columns of P, a vector of norm ~sqrt(F)).

P is sized to the augmented width (``width(d)``); d counts theta_d only. Each augmentation is a
small ``nn.Module`` whose randomness lives in buffers, registered in :data:`AUGMENTATIONS`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rlsub.config import ConfigError

#: a fixed code that keeps B's random stream apart from every projection's (see projections._KIND_CODES)
_RFF_CODE = 101


class Augmentation(nn.Module):
    """phi: [..., d] -> [..., width(d)], with phi(0) = 0 (so theta_d = 0 gives theta_D = theta_0)."""

    name = ""

    def __init__(self, d: int, seed: int = 0):
        super().__init__()
        self.d, self.seed = d, seed  # checked by make_projection (an integer in [1, D])

    @property
    def width(self) -> int:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"d={self.d}, width={self.width}"


class NoAugmentation(Augmentation):
    """phi(t) = t."""

    name = "none"

    @property
    def width(self) -> int:
        return self.d

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        return theta_d


class PowerAugmentation(Augmentation):
    """phi(t) = [t; t^2]."""

    name = "power"

    @property
    def width(self) -> int:
        return 2 * self.d

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        return torch.cat([theta_d, theta_d * theta_d], dim=-1)


class RFFAugmentation(Augmentation):
    """phi(t) = [t; cos(B t) - 1; sin(B t)] with B [features, d], entries N(0, scale^2) from the seed."""

    name = "rff"

    def __init__(self, d: int, seed: int = 0, features: int = 0, scale: float = 1.0):
        super().__init__(d, seed)
        self.features, self.scale = int(features), float(scale)
        rng = rff_rng(seed, self.d, self.features)
        b = rng.standard_normal((self.features, self.d)) * self.scale
        self.register_buffer("B", torch.from_numpy(b.astype(np.float32)))

    @property
    def width(self) -> int:
        return self.d + 2 * self.features

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        z = theta_d @ self.B.T
        return torch.cat([theta_d, torch.cos(z) - 1.0, torch.sin(z)], dim=-1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", features={self.features}, scale={self.scale}"


def rff_rng(seed: int, d: int, features: int) -> np.random.Generator:
    """The Generator B comes from: a function of (seed, d, features) only."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _RFF_CODE, d, features])))


AUGMENTATIONS: dict[str, type[Augmentation]] = {
    "none": NoAugmentation,
    "power": PowerAugmentation,
    "rff": RFFAugmentation,
}


def make_augmentation(name: str, d: int, seed: int = 0, **options) -> Augmentation:
    """The augmentation ``name`` for a d-dimensional theta_d; options go to its class (rff: features, scale)."""
    if name not in AUGMENTATIONS:
        raise ConfigError(f"unknown augment {name!r}; choose one of {sorted(AUGMENTATIONS)}")
    return AUGMENTATIONS[name](d, seed, **options)
