"""The configs shipped with rlsub, found by name from any folder.

``configs/`` of the source tree is installed with the package (``rlsub/_configs`` in a wheel, see
setup.py; an editable install reads the source tree's ``configs/`` directly). ``--config`` takes a
file path or a shipped config's name: ``cartpole_es`` (``rlsub sweep``), ``cartpole`` (``rlsub es``
looks in ``es/``, ``rlsub dqn`` in ``dqn/``), or the name with its folder, ``dqn/cartpole``.
``rlsub configs`` lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

from rlsub.config import ConfigError

#: the folder of shipped configs each command looks in first
KIND_OF_COMMAND = {"es": "es", "dqn": "dqn", "train": "supervised", "sweep": "sweeps"}


def configs_dir() -> Path | None:
    """The folder of shipped configs: inside the installed package, else the source tree's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_configs", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    return None


def shipped() -> list[tuple[str, Path]]:
    """(name with its folder, path) of every shipped config, sorted: ``[("dqn/cartpole", ...), ...]``."""
    root = configs_dir()
    if root is None:
        return []
    return sorted((p.relative_to(root).with_suffix("").as_posix(), p) for p in root.rglob("*.yaml"))


def describe(path: Path) -> str:
    """A config's first comment line near its top (its one-line description), or ''."""
    for line in path.read_text().splitlines()[:5]:
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def find(name: str, kind: str | None = None) -> str:
    """The config file ``name`` means: an existing file as given, else a shipped config by name
    (looked up in ``kind``'s folder first). One ConfigError if it is neither, or ambiguous."""
    if Path(name).expanduser().is_file():
        return str(Path(name).expanduser())
    found = _by_name(name, kind)
    if found is None:
        raise ConfigError(f"config file not found: {name} (nor is it a shipped config's name; "
                          f"`rlsub configs` lists them)")
    return found


def resolve_relative(value: str, base_file: str | os.PathLike, kind: str | None = None) -> str:
    """A config file named inside another config file (a sweep's ``config:``): an absolute path, a
    path relative to the folder of ``base_file`` (not to the working folder), or a shipped config's
    name."""
    path = Path(value).expanduser()
    if path.is_absolute():
        if path.is_file():
            return str(path)
        raise ConfigError(f"{base_file}: config file {value} does not exist")
    beside = Path(base_file).parent / path
    if beside.is_file():
        return _shown(beside)
    found = _by_name(value, kind)
    if found is None:
        raise ConfigError(f"{base_file}: config {value!r} is neither a file relative to this file's folder "
                          f"({beside}) nor a shipped config's name (`rlsub configs` lists them)")
    return found


def _by_name(name: str, kind: str | None) -> str | None:
    """The shipped config called ``name`` (``cartpole``, ``es/cartpole``, ``configs/es/cartpole.yaml``),
    or None; ConfigError if the name fits several and ``kind`` does not decide."""
    key = name[:-5] if name.endswith(".yaml") else name
    key = key[len("configs/"):] if key.startswith("configs/") else key
    table = dict(shipped())
    if key in table:
        return _shown(table[key])
    if kind and f"{kind}/{key}" in table:
        return _shown(table[f"{kind}/{key}"])
    matches = [n for n in table if n.rsplit("/", 1)[-1] == key]
    if len(matches) == 1:
        return _shown(table[matches[0]])
    if matches:
        raise ConfigError(f"config {name!r} is ambiguous: say one of {', '.join(matches)}")
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies below it (as recorded in summaries), else absolute."""
    path = Path(os.path.abspath(path))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
