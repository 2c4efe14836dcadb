"""Subspace shapes: how theta_D is built from theta_0 and the offset ``P phi(theta_d)``, plus a step rule.

The Goldilocks-zone experiments (Fort & Scherlis 2019; the poster of J. Chang, Stanford) train on

- ``hyperplane``: ``theta_D = theta_0 + P theta_d`` (Li et al. 2018). ``radius_ratio`` (the config's
  ``init_radius_ratio``) rescales theta_0 to ``radius_ratio * r_X`` first; None leaves it unscaled.
- ``hypersphere``: ``theta_D = P theta_d`` with ``||theta_D||_2 = r0 = radius_ratio * r_X`` held
  fixed. The constraint is exact at every step: before each optimiser step the radial component
  of the gradient is removed (in theta_D: ``theta_D . P dtheta_d = (P^T theta_D) . dtheta_d``, so
  the theta_d gradient is made orthogonal to ``n = P^T theta_D``; a plain SGD step then has no
  radial component), and after it theta_d is rescaled by ``r0 / ||P theta_d||``, which rescales
  theta_D onto the sphere exactly because theta_D is linear in theta_d (Adam's step, which is not
  along the gradient, gets its radial part removed here). The search space is the (d-1)-sphere of
  radius r0 in span(P). It starts in the direction of span(P) closest to theta_0:
  ``theta_d = c argmin_t ||P t - theta_0||`` (least squares by conjugate gradients on P^T P, which
  is near the identity, so a few iterations suffice), with c chosen so that ``||P theta_d|| = r0``.

r_X is the norm of the network's standard initialisation theta_0 (Xavier / He / PyTorch default),
the radius the Goldilocks zone is measured against. A shape is a small object registered in
:data:`SHAPES`; :class:`rlsub.subspace.SubspaceModel` calls ``setup`` once, ``combine`` in every
forward and ``attach`` when a trainer hands it its optimiser.
"""

from __future__ import annotations

import math

import torch

from rlsub.config import ConfigError


class Shape:
    """Base class: the hyperplane through theta_0 (``combine`` = theta_0 + offset), no step rule."""

    name = ""

    def __init__(self, radius_ratio: float | None = None):
        if radius_ratio is not None and not radius_ratio > 0:
            raise ConfigError(f"radius_ratio must be a positive number, got {radius_ratio!r}")
        self.radius_ratio = radius_ratio
        self.r_X = self.r0 = None

    def setup(self, model) -> None:
        """Once, after theta_0, P and theta_d exist: record r_X and r0, adjust theta_0 / theta_d."""
        self.r_X = float(model.theta_0.double().norm())

    def combine(self, theta_0: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """theta_D [D] (or [n, D]) from theta_0 [D] and the offset P phi(theta_d) [D] (or [n, D])."""
        return theta_0 + offset

    def attach(self, model, optimizer: torch.optim.Optimizer) -> list:
        """Install the step rule on ``optimizer`` (hook handles; none for the hyperplane)."""
        return []


class Hyperplane(Shape):
    """theta_D = theta_0 + P phi(theta_d), theta_0 optionally rescaled to radius_ratio * r_X."""

    name = "hyperplane"

    def setup(self, model) -> None:
        super().setup(model)
        if self.radius_ratio is not None:
            model.theta_0.mul_(self.radius_ratio)
        self.r0 = float(model.theta_0.double().norm())


class Hypersphere(Shape):
    """theta_D = P theta_d on the sphere ||theta_D|| = r0 = radius_ratio * r_X (see the module docstring)."""

    name = "hypersphere"

    def __init__(self, radius_ratio: float | None = None):
        super().__init__(1.0 if radius_ratio is None else radius_ratio)

    def setup(self, model) -> None:
        super().setup(model)
        if model.augment.name != "none":
            raise ConfigError(f"subspace: hypersphere needs a linear map (augment: none), got augment: "
                              f"{model.augment.name}; rescaling theta_d rescales theta_D only when it is linear")
        if model.trainable_projection:
            raise ConfigError("subspace: hypersphere does not combine with trainable_projection (a step in P "
                              "would move theta_D off the sphere)")
        self.r0 = self.radius_ratio * self.r_X
        with torch.no_grad():
            model.theta_d.copy_(closest_point(model.projection, model.theta_0))
            self.renormalise(model)

    def combine(self, theta_0: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        return offset

    @torch.no_grad()
    def renormalise(self, model) -> None:
        """theta_d *= r0 / ||P theta_d||, so that ||theta_D|| = r0."""
        r = float(model.projection(model.theta_d).double().norm())
        if math.isfinite(r) and r > 0:  # a diverged step (nan) is left for the trainer to report
            model.theta_d.mul_(self.r0 / r)

    @torch.no_grad()
    def remove_radial(self, model) -> None:
        """theta_d.grad -= (g . n / n . n) n with n = P^T theta_D: no radial component in theta_D."""
        g = model.theta_d.grad
        if g is None:
            return
        n = model.projection.transpose(model.projection(model.theta_d)).double()
        g.sub_((n * (g.double() @ n / (n @ n))).to(g.dtype))

    def attach(self, model, optimizer: torch.optim.Optimizer) -> list:
        return [optimizer.register_step_pre_hook(lambda opt, args, kwargs: self.remove_radial(model)),
                optimizer.register_step_post_hook(lambda opt, args, kwargs: self.renormalise(model))]


@torch.no_grad()
def closest_point(projection, target: torch.Tensor, tol: float = 1e-10, max_iter: int = 200) -> torch.Tensor:
    """argmin_t ||P t - target||_2, t [d] for target [D]: conjugate gradients on P^T P t = P^T target."""
    def normal(v):
        return projection.transpose(projection(v.float())).double()

    b = projection.transpose(target).double()
    x = b.clone()  # exact when P's columns are orthonormal
    r = b - normal(x)
    p, rs = r.clone(), float(r @ r)
    for _ in range(max_iter):
        if rs <= tol * float(b @ b):
            break
        ap = normal(p)
        alpha = rs / float(p @ ap)
        x += alpha * p
        r -= alpha * ap
        rs, rs_old = float(r @ r), rs
        p = r + (rs / rs_old) * p
    return x.float()


SHAPES: dict[str, type[Shape]] = {"hyperplane": Hyperplane, "hypersphere": Hypersphere}


def make_shape(name: str, radius_ratio: float | None = None) -> Shape:
    """The subspace shape ``name`` (hyperplane | hypersphere)."""
    if name not in SHAPES:
        raise ConfigError(f"unknown subspace {name!r}; choose one of {sorted(SHAPES)}")
    return SHAPES[name](radius_ratio)
