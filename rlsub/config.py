"""Config files: YAML merged onto a trainer's defaults, with one clear error for bad input."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from rlsub.errors import UserError


class ConfigError(UserError):
    """A config that cannot be used: missing file, bad YAML, unknown key, wrong type."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 and 1E5 as floats (YAML 1.2 does; PyYAML's 1.1 rules
    want a dot, so ``lr: 1e-3`` would otherwise arrive as the string '1e-3')."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text to Python values, with 1e-3 read as a float."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def merge(defaults: dict[str, Any], overrides: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """defaults updated with overrides; nested dicts merge; an unknown key is an error."""
    out = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if key not in out:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(out))}")
        if isinstance(out[key], dict) and out[key] and isinstance(value, dict):
            out[key] = merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_config(path: str | Path, defaults: dict[str, Any]) -> dict[str, Any]:
    """Read YAML at path and merge it onto defaults (unknown keys rejected)."""
    return merge(defaults, load_yaml(path), str(path))
