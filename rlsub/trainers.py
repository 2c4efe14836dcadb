"""What every trainer (ES, DQN, supervised) shares: the trainer contract, ``--dim`` and network building.

A trainer is a module listed in :data:`TRAINERS` that provides

- ``DEFAULTS: dict``: every config key with its default (a config file may only set these keys);
- ``SCHEMA: dict``: every key of DEFAULTS with its type and range (:class:`rlsub.config.Spec`),
  checked on every path into a config (YAML, flags, ``--set``, sweep overrides, resume);
- ``RESUMABLE: tuple`` (optional): the keys a ``--resume`` may change (the budget);
- ``BUDGET: tuple`` (optional, within RESUMABLE): the keys that say how long a run goes; a sweep
  whose values of them grew continues its finished points from their checkpoints;
- ``dimension(config) -> int`` (optional): D of the network, built without training, so that a
  sweep can check every d <= D before it runs anything;
- ``resolve(config_path: str | None, overrides: dict) -> dict``: the fully resolved config (YAML
  merged onto DEFAULTS, then the non-None ``overrides`` such as ``dim``, ``projection``, ``seed``
  and the budget), raising :class:`rlsub.config.ConfigError` on bad input;
- ``train(config: dict, out_dir: Path, resume: bool = False) -> dict``: runs, writes a run
  directory (:mod:`rlsub.rundir`) and returns the summary it wrote.

Summaries share these keys, read by sweeps and reports: ``task, trainer, D, d`` (None for the
full-space baseline), ``dim`` (int or "full"), ``projection`` (None for full), ``seed``, ``metric``
(its name; higher is better), ``value``, ``metric_min`` (the lowest value the metric can take:
0 for accuracy, the minimum possible return for RL), ``wall_time_s`` and a budget
(``timesteps`` or ``epochs``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from torch import nn

from rlsub.config import ConfigError, merge
from rlsub.models import build_model, num_params
from rlsub.rundir import read_json
from rlsub.subspace import SubspaceModel

#: trainer name -> module path
TRAINERS: dict[str, str] = {
    "es": "rlsub.es.trainer",
    "dqn": "rlsub.dqn.trainer",
    "supervised": "rlsub.supervised.trainer",
}


def get_trainer(name: str) -> ModuleType:
    if name not in TRAINERS:
        raise ConfigError(f"unknown trainer {name!r}; choose one of {sorted(TRAINERS)}")
    return importlib.import_module(TRAINERS[name])


def parse_dim(value) -> int | str:
    """``--dim`` as given: a positive integer or the string 'full' (checked against D later)."""
    if isinstance(value, str):
        if value.strip().lower() == "full":
            return "full"
        try:
            value = int(value)
        except ValueError:
            raise ConfigError(f"dim must be a positive integer or 'full', got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"dim must be a positive integer or 'full', got {value!r}")
    if value < 1:
        raise ConfigError(f"dim must be >= 1 (or 'full'), got {value}")
    return value


def build_network(
    model: str,
    model_kwargs: dict,
    init_seed: int,
    dim,
    projection: str = "fastfood",
    projection_seed: int = 0,
    what: str = "network",
    subspace_options: dict | None = None,
) -> tuple[nn.Module, int, int | None]:
    """The network a config asks for: (module, D, d), with d None for ``dim == 'full'``.

    The module's initialisation (theta_0) comes from ``init_seed``; for a subspace ``dim`` it is
    wrapped in :class:`SubspaceModel` with P from ``(projection, D, dim, projection_seed)``.
    ``what`` names the network in the error for d > D ("policy", "network"); ``subspace_options``
    go to :class:`SubspaceModel` (subspace shape, augmentation, trainable or dense-P options).
    """
    dim = parse_dim(dim)
    try:
        net = build_model(model, seed=init_seed, **model_kwargs)
    except (TypeError, ValueError) as exc:  # unknown model, activation or keyword
        raise ConfigError(f"cannot build model {model!r} with {model_kwargs}: {exc}") from None
    D = num_params(net)
    if dim == "full":
        return net, D, None
    if dim > D:
        raise ConfigError(f"dim = {dim} exceeds the {what}'s D = {D}")
    return SubspaceModel(net, dim, projection=projection, seed=projection_seed, **(subspace_options or {})), D, dim


def load_run_config(run_dir: str | Path, defaults: dict) -> dict:
    """The resolved config of an existing run directory (for resuming it): the keys of ``defaults``
    from its ``config.json``, without what the trainer derived and recorded beside them (D, d, ...)."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ConfigError(f"cannot resume: {path} not found")
    try:
        recorded = read_json(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot resume: {path} is damaged ({exc})") from None
    if not isinstance(recorded, dict):
        raise ConfigError(f"cannot resume: {path} is not a config record")
    return {k: v for k, v in recorded.items() if k in defaults}


def resume_config(trainer: ModuleType, run_dir: str | Path, overrides: dict) -> dict:
    """The config to resume ``run_dir`` with: its record, then ``overrides`` (the non-None ones),
    which may change only the trainer's ``RESUMABLE`` keys (its budget). Anything else (seed, dim,
    a hyperparameter) would continue the run as another one under the same name: ConfigError."""
    base = load_run_config(run_dir, trainer.DEFAULTS)
    given = {k: v for k, v in overrides.items() if v is not None}
    recorded = trainer.resolve(None, base)
    config = trainer.resolve(None, merge(base, given, "command line"))
    changed = [k for k in given if config[k] != recorded[k] and k not in getattr(trainer, "RESUMABLE", ())]
    if changed:
        diffs = ", ".join(f"{k} {recorded[k]!r} -> {config[k]!r}" for k in changed)
        raise ConfigError(f"cannot resume {run_dir} with other settings ({diffs}): a run keeps the settings it "
                          f"started with; start a new run with --out instead")
    return config
