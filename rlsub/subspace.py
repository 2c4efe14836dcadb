"""The subspace-parameterised model: any ``nn.Module`` trained through ``theta_D = theta_0 + P theta_d``.

:class:`SubspaceModel` is the one abstraction that ES, DQN and supervised training share. theta_d
(d numbers, initialised to zero) is its only ``nn.Parameter``; theta_0 (the wrapped module's
initial parameters, flattened) and the projection P are frozen buffers; each forward computes
theta_D and runs the module functionally (``torch.func.functional_call``). Buffers of the wrapped
module, such as batch-norm running statistics, stay the module's own and keep working.

Beside the projection, two swappable pieces shape the map (each a registry of small classes):
an augmentation phi composed before P (:mod:`rlsub.augment`: ``theta_0 + P phi(theta_d)``) and a
subspace shape (:mod:`rlsub.shapes`: the hyperplane through theta_0, or the hypersphere
``theta_D = P theta_d``, ``||theta_D|| = r0`` with its step rule, installed by :meth:`attach_optimizer`).
With ``trainable_projection`` a dense P becomes a second ``nn.Parameter``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from rlsub.augment import Augmentation, make_augmentation
from rlsub.config import ConfigError
from rlsub.projections import MAX_DENSE_BYTES, GiB, Projection, ProjectionError, make_projection
from rlsub.shapes import Shape, make_shape


class SubspaceModel(nn.Module):
    """Wraps ``module`` so that its parameters are ``theta_0 + P theta_d``.

    Args:
        module: the network; its current parameters become theta_0. They are removed from the
            module (so that nothing but theta_d can be trained) and supplied at each call.
        d: subspace dimension, 1 <= d <= D.
        projection: ``dense``, ``sparse``, ``fastfood`` or ``auto`` (see :mod:`rlsub.projections`).
        seed: projection seed; P is a pure function of (projection, D, d, seed).
        subspace: ``hyperplane`` (default) or ``hypersphere`` (see :mod:`rlsub.shapes`).
        radius_ratio: hyperplane: theta_0 rescaled to this multiple of r_X = ||theta_0|| (None:
            unscaled); hypersphere: the fixed radius r0 / r_X (None: 1).
        augment: ``none``, ``power`` or ``rff`` (see :mod:`rlsub.augment`); P gets the augmented width.
        augment_options: keyword arguments of the augmentation (rff: ``features``, ``scale``).
        trainable_projection: P (dense only) becomes an ``nn.Parameter`` trained with theta_d.
        projection_options: extra keyword arguments for the projection class.
    """

    def __init__(
        self,
        module: nn.Module,
        d: int,
        projection: str = "fastfood",
        seed: int = 0,
        *,
        subspace: str = "hyperplane",
        radius_ratio: float | None = None,
        augment: str = "none",
        augment_options: dict | None = None,
        trainable_projection: bool = False,
        **projection_options,
    ):
        super().__init__()
        named = list(module.named_parameters())  # shared (tied) parameters appear once
        if not named:
            raise ProjectionError("the wrapped module has no parameters to project")
        self.param_names = [name for name, _ in named]
        self.param_shapes = [tuple(p.shape) for _, p in named]
        self.param_sizes = [p.numel() for _, p in named]
        theta_0 = torch.cat([p.detach().reshape(-1).to(torch.float32) for _, p in named])
        D = theta_0.numel()
        self.shape: Shape = make_shape(subspace, radius_ratio)
        self.augment: Augmentation = make_augmentation(augment, d, seed, **(augment_options or {}))
        width = self.augment.width
        if width != d and width > D:
            raise ProjectionError(f"augment {augment!r} makes P {D} x {width}: its width d + features must not exceed D")
        self.trainable_projection = bool(trainable_projection)
        if self.trainable_projection:
            check_trainable(projection, D, width, projection_options.get("max_dense_bytes", MAX_DENSE_BYTES))
            projection_options = {**projection_options, "trainable": True}
        self.projection: Projection = make_projection(projection, D, width, seed, **projection_options)
        # Parameters leave the module: theta_d must be the only nn.Parameter anywhere below us.
        # Each name stays registered with the value None (as an absent bias is), so attribute
        # access and repr keep working; functional_call supplies the tensors at each call.
        for name in self.param_names:
            owner, attr = _owner(module, name)
            owner._parameters[attr] = None
        self.module = module
        # theta_0 and P are regenerated from their seeds, so state_dict() holds only theta_d and the
        # module's own buffers (a dense P of MNIST-FC at d = 750 alone would be 598 MB).
        self.register_buffer("theta_0", theta_0, persistent=False)
        for name, buf in list(self.projection.named_buffers(recurse=False)):
            self.projection.register_buffer(name, buf, persistent=False)
        for name, buf in list(self.augment.named_buffers(recurse=False)):
            self.augment.register_buffer(name, buf, persistent=False)
        self.theta_d = nn.Parameter(torch.zeros(self.augment.d))
        self.shape.setup(self)

    @property
    def D(self) -> int:
        return self.projection.D

    @property
    def d(self) -> int:
        """Dimension of theta_d (P may be wider: see ``projection.d`` under an augmentation)."""
        return self.augment.d

    @property
    def seed(self) -> int:
        return self.projection.seed

    @property
    def projection_kind(self) -> str:
        return self.projection.kind

    @property
    def r_X(self) -> float:
        """Norm of the network's standard initialisation (before any rescaling)."""
        return self.shape.r_X

    @property
    def r0(self) -> float:
        """The starting radius (hyperplane: ||theta_0|| after rescaling) or the sphere's fixed radius."""
        return self.shape.r0

    def offset(self, theta_d: torch.Tensor) -> torch.Tensor:
        """P phi(theta_d): [d] -> [D] or [n, d] -> [n, D] (phi the augmentation, identity by default)."""
        return self.projection(self.augment(theta_d))

    def theta_D(self, theta_d: torch.Tensor | None = None) -> torch.Tensor:
        """theta_0 + P theta_d (or the shape's and augmentation's variant): [D], or [n, D] for a batch
        theta_d [n, d]; defaults to self.theta_d."""
        theta_d = self.theta_d if theta_d is None else theta_d
        return self.shape.combine(self.theta_0, self.offset(theta_d))

    @torch.no_grad()
    def radius(self) -> float:
        """||theta_D||_2 now."""
        return float(self.theta_D().double().norm())

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> list:
        """Install the shape's step rule on ``optimizer`` (hypersphere: gradient made tangent before each
        step, theta_D put back on the sphere after it); returns the hook handles (none for a hyperplane)."""
        return self.shape.attach(self, optimizer)

    def options(self) -> dict:
        """The keyword arguments (beyond module, d, projection, seed) that rebuild this model's map."""
        out = {"subspace": self.shape.name, "radius_ratio": self.shape.radius_ratio, "augment": self.augment.name,
               "trainable_projection": self.trainable_projection}
        if self.augment.name == "rff":
            out["augment_options"] = {"features": self.augment.features, "scale": self.augment.scale}
        if self.projection_kind == "dense":
            out.update(normalize_columns=self.projection.normalize_columns, init=self.projection.init)
        return out

    def num_trained(self) -> int:
        """How many numbers training changes: d, plus D x width with a trainable P."""
        return sum(p.numel() for p in self.parameters())

    def params_from_flat(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat theta_D [D] into the module's named parameter tensors (views)."""
        views = torch.split(flat, self.param_sizes)
        return {n: v.view(s) for n, v, s in zip(self.param_names, views, self.param_shapes)}

    def forward(self, *args, **kwargs):
        return self.call_with(self.theta_D(), *args, **kwargs)

    def call_with(self, theta_D: torch.Tensor, *args, **kwargs):
        """Run the module with explicit native parameters theta_D [D] (no projection involved)."""
        return functional_call(self.module, self.params_from_flat(theta_D), args, kwargs, strict=False)

    @torch.no_grad()
    def get_flat(self) -> np.ndarray:
        """theta_d as a float32 numpy copy (for ES)."""
        return self.theta_d.detach().cpu().numpy().copy()

    @torch.no_grad()
    def set_flat(self, theta_d) -> None:
        """Set theta_d from an array-like of length d."""
        value = torch.as_tensor(np.asarray(theta_d, dtype=np.float32))
        if value.shape != (self.d,):
            raise ProjectionError(f"theta_d must have shape ({self.d},), got {tuple(value.shape)}")
        self.theta_d.copy_(value)

    @torch.no_grad()
    def materialize(self) -> nn.Module:
        """A plain copy of the wrapped module whose parameters are the current theta_D."""
        import copy

        plain = copy.deepcopy(self.module)
        for name, value in self.params_from_flat(self.theta_D().detach()).items():
            owner, attr = _owner(plain, name)
            owner.register_parameter(attr, nn.Parameter(value.clone()))
        return plain

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # state dicts written before P and theta_0 left state_dict() carry them: regenerated, so skipped
        # (a trainable P is a parameter, kept in state_dict and loaded)
        own = {prefix + k for k in self.state_dict()}
        for key in [k for k in state_dict if (k.startswith(prefix + "projection.") or k == prefix + "theta_0")
                    and k not in own]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"D={self.D}, d={self.d}, projection={self.projection_kind}, seed={self.seed}, "
                f"subspace={self.shape.name}; the module's parameters come from theta_0 + P theta_d at each call "
                "(its repr shows them as absent)")


def check_trainable(kind: str, D: int, width: int, max_dense_bytes: int) -> None:
    """ConfigError unless a trainable P is dense and, with its gradient and Adam's two moments, fits the cap."""
    if kind != "dense":
        raise ConfigError(f"trainable_projection needs projection: dense, got {kind!r}")
    need = 4 * D * width * 4
    if need > max_dense_bytes:
        raise ConfigError(f"trainable_projection: a dense {D} x {width} P with its gradient and Adam's two moments "
                          f"needs {need / GiB:.2f} GiB, above max_dense_bytes = {max_dense_bytes / GiB:.2f} GiB; "
                          "use a smaller d or network")


def _owner(module: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    *path, attr = dotted.split(".")
    for part in path:
        module = getattr(module, part)
    return module, attr


# --- checkpoints: (config, seed, theta_d) -------------------------------------------------------


def save_checkpoint(path: str | os.PathLike, model: SubspaceModel, config: dict) -> None:
    """Write a checkpoint folder: ``config.json`` (how to rebuild the module and P), ``theta_d.npy``
    and, for a module with buffers (batch-norm running statistics), ``buffers.npz``.

    ``config`` must let ``build`` (see :func:`load_checkpoint`) rebuild the same module, including
    the seed its initialisation came from; the projection's kind, d and seed and the model's
    :meth:`~SubspaceModel.options` (shape, augmentation, dense-P options) are added here; a trained P
    is a parameter of the state dict and goes to ``buffers.npz`` with the module's buffers.
    Files are written atomically (temporary file, then rename).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    full = dict(config, projection=model.projection_kind, d=model.d, projection_seed=model.seed, D=model.D,
                subspace_options=model.options())
    atomic_write_text(path / "config.json", json.dumps(full, indent=2, sort_keys=True))
    atomic_save_npy(path / "theta_d.npy", model.get_flat())
    buffers = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items() if k != "theta_d"}
    if buffers:
        atomic_write(path / "buffers.npz", lambda tmp: np.savez(tmp, **buffers))


def load_checkpoint(path: str | os.PathLike, build: Callable[[dict], nn.Module]) -> SubspaceModel:
    """Rebuild a model from a checkpoint folder; ``build(config)`` returns the freshly initialised module."""
    path = Path(path)
    config = json.loads((path / "config.json").read_text())
    model = SubspaceModel(build(config), config["d"], config["projection"], config["projection_seed"],
                          **config.get("subspace_options", {}))
    if model.D != config["D"]:
        raise ProjectionError(f"rebuilt module has D = {model.D}, checkpoint says {config['D']}")
    model.set_flat(np.load(path / "theta_d.npy"))
    if (path / "buffers.npz").exists():
        with np.load(path / "buffers.npz") as saved:
            buffers = {k: torch.from_numpy(saved[k]) for k in saved.files}
        model.load_state_dict({"theta_d": model.theta_d.detach().clone(), **buffers})
    return model


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``, so readers
    see the old file or the new one, never half of one. The temporary keeps ``path``'s suffix
    (np.save, np.savez and savefig go by it) and is removed if ``write`` fails."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:  # name the file being written (the temporary's name would confuse)
        if exc.filename is None or str(exc.filename) == str(tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to path atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """np.save to path atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: np.save(tmp, array))
