"""The command line as a whole: start-up time, flags shared across commands, run folder names."""

import argparse
import re
import subprocess
import sys
import time

from rlsub.cli import COMMANDS, build_parser, main


def test_help_imports_no_heavy_library():
    code = ("import sys, rlsub.cli; rlsub.cli.build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'gymnasium', 'mpi4py', 'stable_baselines3', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlsub.cli", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - t < 3.0  # about 0.3 s on an idle machine (it was 4-5 s with torch)


def _options(parser: argparse.ArgumentParser) -> dict[str, dict[str, argparse.Action]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {s: act for act in p._actions for s in act.option_strings} for name, p in sub.choices.items()}


def test_same_flag_means_the_same_in_every_command():
    from rlsub.projections import PROJECTIONS

    options = _options(build_parser())
    assert set(options) == set(COMMANDS)
    projection = {name: tuple(o["--projection"].choices) for name, o in options.items() if "--projection" in o}
    assert set(projection) >= {"es", "dqn", "train", "info"}
    assert set(projection.values()) == {tuple(sorted(set(PROJECTIONS) - {"identity"}, key=list(PROJECTIONS).index))
                                        + ("auto",)}
    for name in ("es", "dqn", "train", "sweep", "eval"):
        assert isinstance(options[name]["--quiet"], argparse._StoreTrueAction), name


def test_every_trainer_names_its_default_run_folder_the_same_way():
    from rlsub.dqn import trainer as dqn
    from rlsub.es import trainer as es
    from rlsub.rundir import default_run_dir
    from rlsub.supervised import trainer as supervised

    pattern = r"runs/{}__{}__d{}__s{}__\d{{8}}-\d{{6}}"
    assert re.fullmatch(pattern.format("CartPole-v1", "es", 4, 0),
                        es._default_out(es.resolve("configs/es/cartpole.yaml", {})).as_posix())
    assert re.fullmatch(pattern.format("mnist_fc", "supervised", 750, 1),
                        supervised.default_out(supervised.resolve("configs/supervised/mnist_fc.yaml",
                                                                  {"seed": 1})).as_posix())
    config = dqn.resolve("configs/dqn/pong.yaml", {})
    assert re.fullmatch(pattern.format("ALE-Pong-v5", "dqn", config["dim"], 0),
                        default_run_dir(config["env"], "dqn", config["dim"], config["seed"]).as_posix())


def test_dqn_shows_progress_and_ends_with_one_sentence(tmp_path, capsys):
    args = ["dqn", "--config", "configs/dqn/cartpole.yaml", "--dim", "8", "--timesteps", "300",
            "--eval-episodes", "2", "--set", "net_arch=[8, 8]", "--set", "eval_every=0", "--set", "select=final", "--set", "log_every=100",
            "--set", "dqn.learning_starts=50", "--set", "dqn.buffer_size=1000", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"CartPole-v1: d=8 seed=0 eval return [\d.]+ \+- [\d.]+ after 300 timesteps, [\d.]+ s -> .*/r",
                        lines[0])
    assert "300/300" in captured.err  # the progress bar's last state
    assert main(args[:-2] + ["--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert "300/300" not in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.csv").exists()
