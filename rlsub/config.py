"""Config files: YAML merged onto a trainer's defaults, with one clear error for bad input."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from rlsub.errors import UserError


class ConfigError(UserError):
    """A config that cannot be used: missing file, bad YAML, unknown key, wrong type."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
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
