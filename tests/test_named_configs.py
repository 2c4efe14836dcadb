"""Configs travel: shipped configs found by name from any folder, sweep configs naming their trainer
config relative to the sweep file, the configs inside a built wheel, a relative RLSUB_DATA."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from rlsub import cli, named_configs, sweep
from rlsub.config import ConfigError
from rlsub.supervised.data import data_root

REPO = Path(__file__).resolve().parents[1]
ON_DISK = sorted(p.relative_to(REPO / "configs").with_suffix("").as_posix()
                 for p in (REPO / "configs").rglob("*.yaml"))


def test_every_shipped_config_is_listed_by_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert [name for name, _ in named_configs.shipped()] == ON_DISK
    assert cli.main(["configs"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "/" in line.split(" ")[0]]
    assert listed == ON_DISK
    assert cli.main(["configs", "dqn"]) == 0
    out = capsys.readouterr().out
    assert "dqn/cartpole" in out and "es/cartpole" not in out


def test_names_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    es = (REPO / "configs/es/cartpole.yaml").resolve()
    assert Path(named_configs.find("cartpole", "es")).resolve() == es
    assert Path(named_configs.find("es/cartpole")).resolve() == es
    assert Path(named_configs.find("configs/es/cartpole.yaml")).resolve() == es
    assert Path(named_configs.find("cartpole", "dqn")).resolve() == (REPO / "configs/dqn/cartpole.yaml").resolve()
    assert Path(named_configs.find("cartpole_es", "sweeps")).resolve() == \
        (REPO / "configs/sweeps/cartpole_es.yaml").resolve()
    with pytest.raises(ConfigError, match="ambiguous: say one of dqn/cartpole, es/cartpole"):
        named_configs.find("cartpole")
    with pytest.raises(ConfigError, match="config file not found: cartpole_typo .nor is it a shipped"):
        named_configs.find("cartpole_typo", "es")
    # a file of the working folder wins over a shipped name
    (tmp_path / "cartpole").write_text("generations: 1\n")
    assert named_configs.find("cartpole", "es") == "cartpole"


def test_sweep_config_paths_are_relative_to_the_sweep_file(tmp_path, monkeypatch):
    (tmp_path / "proj" / "sweeps").mkdir(parents=True)
    (tmp_path / "proj" / "es").mkdir()
    (tmp_path / "proj" / "es" / "mine.yaml").write_text("env: CartPole-v1\ngenerations: 1\n")
    sweep_file = tmp_path / "proj" / "sweeps" / "s.yaml"
    sweep_file.write_text("trainer: es\nconfig: ../es/mine.yaml\ndims: [2]\nseeds: [0]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = sweep.resolve(sweep_file, tmp_path / "out")
    assert Path(config["config"]).resolve() == (tmp_path / "proj" / "es" / "mine.yaml").resolve()
    # a shipped config's name works too; a path relative to the working folder does not
    sweep_file.write_text("trainer: es\nconfig: es/cartpole\ndims: [2]\nseeds: [0]\n")
    assert Path(sweep.resolve(sweep_file, tmp_path / "out")["config"]).resolve() == \
        (REPO / "configs/es/cartpole.yaml").resolve()
    (elsewhere / "local.yaml").write_text("generations: 1\n")
    sweep_file.write_text("trainer: es\nconfig: local.yaml\ndims: [2]\nseeds: [0]\n")
    with pytest.raises(ConfigError, match="neither a file relative to this file's folder"):
        sweep.resolve(sweep_file, tmp_path / "out")


def test_shipped_sweeps_resolve_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ON_DISK:
        if name.startswith("sweeps/"):
            config = sweep.resolve(named_configs.find(name), tmp_path / "out")
            assert Path(config["config"]).is_file(), name


def test_relative_rlsub_data_is_resolved_once_at_start(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLSUB_DATA", "data")
    cli._absolute_data_env()
    assert os.environ["RLSUB_DATA"] == str(tmp_path / "data")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")  # a later change of folder no longer moves the data
    assert data_root() == tmp_path / "data"


@pytest.mark.slow
def test_a_built_wheel_carries_every_config(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("rlsub-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    inside = sorted(n[len("rlsub/_configs/"):-len(".yaml")] for n in names
                    if n.startswith("rlsub/_configs/") and n.endswith(".yaml"))
    assert inside == ON_DISK
