"""Config files: YAML merged onto a trainer's defaults, with one clear error for bad input."""

from __future__ import annotations

import copy
import math
import numbers
import re
from dataclasses import dataclass
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


class _Null:
    """``--set key=null`` (and ``key: null`` in sweep overrides): set the key to None. A plain None
    in overrides means "not given" in the trainer contract, so an explicit null travels as this."""

    def __repr__(self) -> str:
        return "None"


NULL = _Null()


def explicit_nulls(overrides: dict) -> dict:
    """``overrides`` with each top-level None replaced by :data:`NULL` (set to None, not "not given")."""
    return {k: NULL if v is None else v for k, v in overrides.items()}


def merge(defaults: dict[str, Any], overrides: dict[str, Any], where: str = "config",
          schema: dict | None = None) -> dict[str, Any]:
    """defaults updated with overrides; nested dicts merge; an unknown key is an error. With a
    ``schema``, free-form mappings (``Mapping()``, e.g. env_kwargs) merge key by key unchecked."""
    out = copy.deepcopy(defaults)
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {overrides!r}")
    for key, value in overrides.items():
        if key not in out:
            raise ConfigError(f"{where}: unknown key {key!r}; known keys: {', '.join(sorted(out))}")
        value = None if value is NULL else value
        spec = schema.get(key) if schema else None
        if spec is not None and spec.kind == "mapping" and isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = _merge_free(out[key], value)
        elif isinstance(out[key], dict) and out[key] and isinstance(value, dict):
            out[key] = merge(out[key], value, f"{where}.{key}", spec.fields if spec is not None else None)
        else:
            out[key] = value
    return out


def _merge_free(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _merge_free(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) \
            else copy.deepcopy(value)
    return out


def load_config(path: str | Path, defaults: dict[str, Any]) -> dict[str, Any]:
    """Read YAML at path and merge it onto defaults (unknown keys rejected)."""
    return merge(defaults, load_yaml(path), str(path))


# --- typed schema ---------------------------------------------------------------------------------
#
# Every trainer (and the sweep config) declares, beside its DEFAULTS, a table ``SCHEMA`` of
# key -> :class:`Spec`. :func:`resolve_config` is the one path from YAML, command-line flags,
# ``--set`` and resume records to a config: merge onto DEFAULTS (unknown keys rejected), then
# :func:`check` every value against its Spec. A key in DEFAULTS without a Spec is an error too, so
# a new key cannot skip validation.


@dataclass(frozen=True)
class Spec:
    """What one config value may be.

    ``kind``: int | float | bool | str | dim (a positive int or 'full') | mapping (free-form dict of
    string keys, passed through to a library) | section (a nested dict with its own ``fields``) |
    list (of ``items``) | oneof (any of ``options``). ``null``: None is allowed. ``min`` / ``max`` bound numbers (and list
    lengths via ``min_len``); ``gt`` is a strict lower bound; ``choices`` lists the allowed values.
    """

    kind: str
    null: bool = False
    min: float | None = None
    max: float | None = None
    gt: float | None = None
    choices: tuple | None = None
    items: Spec | None = None
    fields: dict | None = None
    min_len: int = 0
    options: tuple = ()

    def describe(self) -> str:
        """'a positive integer or null', ... (for error messages)."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "int" and self.max is None and self.min in (0, 1):
            text = "a positive integer" if self.min == 1 else "a non-negative integer"
        elif self.kind == "int":
            text = "an integer" + _bounds(self)
        elif self.kind == "float" and self.gt == 0 and self.min is None and self.max is None:
            text = "a positive number"
        elif self.kind == "float":
            text = "a number" + _bounds(self)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "str":
            text = "a string"
        elif self.kind == "dim":
            text = "a positive integer or 'full'"
        elif self.kind in ("mapping", "section"):
            text = "a mapping of keys to values"
        elif self.kind == "oneof":
            text = " or ".join(o.describe() for o in self.options)
        elif self.kind == "list":
            what = self.items.describe() if self.items else "values"
            text = ("a non-empty list" if self.min_len else "a list") + f" of {_plural(what)}"
        else:
            text = self.kind
        return text + (" or null" if self.null else "")


def _plural(what: str) -> str:
    """'a positive integer or null' -> 'positive integers or null' (after 'a list of')."""
    what = what[3:] if what.startswith("an ") else what[2:] if what.startswith("a ") else what
    return re.sub(r"\b(integer|number|string|mapping)\b", r"\1s", what, count=1)


def _bounds(spec: Spec) -> str:
    parts = []
    if spec.gt is not None:
        parts.append(f"> {spec.gt:g}")
    if spec.min is not None:
        parts.append(f">= {spec.min:g}")
    if spec.max is not None:
        parts.append(f"<= {spec.max:g}")
    return (" " + " and ".join(parts)) if parts else ""


def Int(min=None, max=None, null=False) -> Spec:  # noqa: N802 - reads as a type in the tables
    return Spec("int", null=null, min=min, max=max)


def Float(min=None, max=None, gt=None, null=False) -> Spec:  # noqa: N802
    return Spec("float", null=null, min=min, max=max, gt=gt)


def Bool() -> Spec:  # noqa: N802
    return Spec("bool")


def Str(choices=None, null=False) -> Spec:  # noqa: N802
    return Spec("str", null=null, choices=tuple(choices) if choices is not None else None)


def Dim(null=False) -> Spec:  # noqa: N802
    return Spec("dim", null=null)


def Mapping(null=False) -> Spec:  # noqa: N802
    return Spec("mapping", null=null)


def Section(fields: dict) -> Spec:  # noqa: N802
    return Spec("section", fields=fields)


def List(items: Spec, min_len: int = 0, null=False) -> Spec:  # noqa: N802
    return Spec("list", items=items, min_len=min_len, null=null)


def OneOf(*options: Spec, null=False) -> Spec:  # noqa: N802
    return Spec("oneof", options=options, null=null)


def _is_int(v) -> bool:
    # numbers.Integral covers numpy integers without importing numpy (rlsub --help stays light)
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and type(v).__name__ != "bool_"


def _check_value(value, spec: Spec, name: str):
    """``value`` checked against ``spec`` (dim strings parsed); ConfigError naming ``name``."""
    bad = ConfigError(f"{name} must be {spec.describe()}, got {value!r}")
    if value is None:
        if spec.null:
            return None
        raise bad
    if spec.choices is not None and value not in spec.choices:
        raise bad
    if spec.kind == "int" or spec.kind == "float":
        ok = _is_int(value) if spec.kind == "int" else (
            _is_int(value) or (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)))
        if not ok:
            raise bad
        if (spec.gt is not None and not value > spec.gt) or (spec.min is not None and value < spec.min) \
                or (spec.max is not None and value > spec.max):
            raise bad
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if spec.kind == "str":
        if not isinstance(value, str):
            raise bad
        return value
    if spec.kind == "dim":
        if isinstance(value, str) and value.strip().lower() == "full":
            return "full"
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise bad from None
        if not _is_int(value):
            raise bad
        if value < 1:
            raise ConfigError(f"{name} must be >= 1 (or 'full'), got {value}")
        return int(value)
    if spec.kind == "mapping":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise bad
        return value
    if spec.kind == "section":
        if not isinstance(value, dict):
            raise bad
        return check(value, spec.fields, name)
    if spec.kind == "list":
        if not isinstance(value, (list, tuple)) or len(value) < spec.min_len:
            raise bad
        return [_check_value(v, spec.items, f"{name}[{i}]") for i, v in enumerate(value)]
    if spec.kind == "oneof":
        for option in spec.options:
            try:
                return _check_value(value, option, name)
            except ConfigError:
                pass
        raise bad
    raise ConfigError(f"{name}: unknown schema kind {spec.kind!r}")  # pragma: no cover - a schema bug


def check(config: dict, schema: dict, where: str = "config") -> dict:
    """``config`` with every value checked against ``schema`` (key -> Spec); ConfigError on the first
    bad value. Keys without a Spec are errors: unknown to the user, or missing from the schema."""
    out = {}
    for key, value in config.items():
        name = key if where in ("config", "") else f"{where}.{key}"
        if key not in schema:
            raise ConfigError(f"{name}: unknown key; known keys: {', '.join(sorted(schema))}")
        out[key] = _check_value(value, schema[key], name)
    return out


def resolve_config(defaults: dict, schema: dict, config_path: str | Path | None, overrides: dict,
                   where: str = "command line") -> dict:
    """DEFAULTS <- YAML at ``config_path`` <- the non-None ``overrides``, checked against ``schema``.

    The one path by which every trainer and the sweep build a config (YAML, flags, ``--set``, a
    resumed run's record); cross-key checks stay with the caller.
    """
    config = merge(defaults, load_yaml(config_path), str(config_path), schema) if config_path \
        else copy.deepcopy(defaults)
    config = merge(config, {k: v for k, v in overrides.items() if v is not None}, where, schema)
    return check(config, schema)


def parse_sets(items: list[str]) -> dict:
    """``--set`` values: ``["dqn.learning_starts=1000", ...]`` -> ``{"dqn": {"learning_starts": 1000}}``.

    Values are read as YAML (``1e-4`` a float, ``[20, 20]`` a list, ``null`` None); their types are
    checked later against the schema, like every other config value.
    """
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set expects KEY=VALUE (KEY dotted for nested keys), got {item!r}")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: not a YAML value ({' '.join(str(exc).split())})") from None
        *path, last = key.split(".")
        node = out
        for part in path:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} was already set to a value")
            node = child
        node[last] = NULL if value is None and not path else value
    return out
