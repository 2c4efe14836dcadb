"""Bad input, tried as a new user would: every case ends in exit status 2, exactly one line on
stderr naming the problem, nothing on stdout, and no file written or changed.

Each case runs the real CLI in-process (``rlsub.cli.main``) from an empty working folder that
holds only what the case set up (configs, earlier runs, data files); the folder's files and their
bytes are compared before and after. Cases that need a finished run write its files directly.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import fake_trainer
import numpy as np
import pytest
import torch

from rlsub import trainers
from rlsub.cli import main

ROOT = Path(__file__).resolve().parents[1]
ES_CARTPOLE = str(ROOT / "configs" / "es" / "cartpole.yaml")
DQN_CARTPOLE = str(ROOT / "configs" / "dqn" / "cartpole.yaml")
MNIST_FC = str(ROOT / "configs" / "supervised" / "mnist_fc.yaml")
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def es_yaml(tmp: Path, line: str) -> str:
    """An ES config file: the CartPole one with ``line`` in place of the key it sets."""
    text = "\n".join(l for l in Path(ES_CARTPOLE).read_text().splitlines()
                     if l.split(":")[0].strip() != line.split(":")[0].strip())
    return str(write(tmp / "bad.yaml", text + "\n" + line + "\n"))


def es_run(tmp: Path, seed: int = 0, checkpoint: bytes | None = None) -> str:
    """A finished ES run folder (its config record, summary and, optionally, checkpoint bytes)."""
    from rlsub.es import trainer

    run = tmp / "run"
    config = trainer.resolve(ES_CARTPOLE, {"seed": seed})
    write(run / "config.json", json.dumps({**config, "D": 562, "d": 4}))
    write(run / "metrics.jsonl", '{"generation": 0}\n')
    write(run / "summary.json", json.dumps({"task": "CartPole-v1", "value": 500.0}))
    if checkpoint is not None:
        write(run / "checkpoint.npz", checkpoint)
    return str(run)


def good_npz() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, x=np.zeros(4), generation=np.array(3), timesteps=np.array(10), episodes=np.array(2),
             elapsed=np.array(1.0), seed=np.array(0), m=np.zeros(4), v=np.zeros(4), t=np.array(3))
    return buf.getvalue()


def supervised_run(tmp: Path, checkpoint: bytes | None = None) -> str:
    from rlsub.supervised import trainer

    run = tmp / "srun"
    config = trainer.resolve(MNIST_FC, {"data_dir": str(tmp / "data")})
    write(run / "config.json", json.dumps({**config, "D": 199210, "d": 750}))
    if checkpoint is not None:
        write(run / "checkpoint.pt", checkpoint)
    return str(run)


def good_pt() -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"net": {"theta_d": torch.zeros(750)}, "epoch": 1, "elapsed": 1.0}, buf)
    return buf.getvalue()


def mnist_dir(tmp: Path, train_images: bytes) -> str:
    """A data folder whose MNIST training images are ``train_images`` (the other files are stubs:
    the training images are decoded first)."""
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        write(tmp / "data" / "mnist" / name, b"stub")
    write(tmp / "data" / "mnist" / "train-images-idx3-ubyte.gz", train_images)
    return str(tmp / "data")


def truncated_gz() -> bytes:
    src = SHARED_MNIST / "t10k-labels-idx1-ubyte.gz"
    if src.exists():
        return src.read_bytes()[:2000]
    import gzip

    return gzip.compress(bytes(range(256)) * 40)[:500]


def corrupted_gz() -> bytes:
    import gzip

    data = bytearray(gzip.compress(bytes(range(256)) * 40))
    for i in range(20, 60):
        data[i] ^= 0x5A
    return bytes(data)


def sweep_yaml(tmp: Path, **fields) -> str:
    body = {"trainer": "fake", "config": str(write(tmp / "fake.yaml", "knee: 100\n")), "dims": [10, 100],
            "seeds": [0, 1], "bootstrap": 10, **fields}
    return str(write(tmp / "s.yaml", "".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}\n"
                                             for k, v in body.items())))


def sweep_results(tmp: Path, summary_text: str, folder: str = "d10_s0") -> str:
    write(tmp / "res" / "s" / "runs" / folder / "summary.json", summary_text)
    return str(tmp / "res")


def point_summary(dim, seed) -> str:
    return json.dumps({"dim": dim, "seed": seed, "value": 0.5, "metric_min": 0.0, "task": "fake", "D": 1000})


def sweep_summary(tmp: Path, folder: str, text: str) -> None:
    write(tmp / "res" / folder / "summary.json", text)


# (id, command line builder taking the case's folder, a fragment the one error line must hold)
CASES = [
    # --- ES config values of the wrong type or range
    ("es-sigma-abc", lambda t: ["es", "--config", es_yaml(t, "sigma: abc")], "sigma must be a positive number, got 'abc'"),
    ("es-lr-list", lambda t: ["es", "--config", es_yaml(t, "lr: [1, 2]")], "lr must be a positive number, got [1, 2]"),
    ("es-model-kwargs-list", lambda t: ["es", "--config", es_yaml(t, "model_kwargs: [1, 2]")],
     "model_kwargs must be a mapping"),
    ("es-env-kwargs-unknown", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "env_kwargs.gravity_x=3",
                                         "--out", str(t / "r")], "unexpected keyword argument 'gravity_x'"),
    ("es-max-episode-steps-negative", lambda t: ["es", "--config", es_yaml(t, "max_episode_steps: -5")],
     "max_episode_steps must be a positive integer or null, got -5"),
    ("es-unknown-key", lambda t: ["es", "--config", es_yaml(t, "population: 10")], "unknown key 'population'"),
    ("es-bad-yaml", lambda t: ["es", "--config", str(write(t / "y.yaml", "sigma: [1\nlr: 2\n"))], "not valid YAML"),
    ("es-missing-config", lambda t: ["es", "--config", str(t / "nope.yaml")], "config file not found"),
    ("es-top-level-list", lambda t: ["es", "--config", str(write(t / "y.yaml", "- 1\n- 2\n"))], "must be a mapping"),
    ("es-unknown-env", lambda t: ["es", "--config", es_yaml(t, "env: NoSuchEnv-v0")], "cannot make environment"),
    ("es-metric-min-unknown", lambda t: ["es", "--config", es_yaml(t, "env: MountainCarContinuous-v0")],
     "set metric_min in the config"),
    ("es-dim-zero", lambda t: ["es", "--config", ES_CARTPOLE, "--dim", "0"], "dim must be >= 1"),
    ("es-dim-above-D", lambda t: ["es", "--config", ES_CARTPOLE, "--dim", "563", "--out", str(t / "r")],
     "exceeds the policy's D = 562"),
    ("es-seed-negative", lambda t: ["es", "--config", ES_CARTPOLE, "--seed", "-1"], "seed must be a non-negative"),
    ("es-optimizer", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "optimizer=sgd"], "optimizer must be one of"),
    ("es-cma-popsize", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "cma.popsize=1"], "cma.popsize must be"),
    ("es-cma-unknown", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "cma.lambda=4"], "unknown key 'lambda'"),
    ("es-cma-not-mapping", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "cma=4"], "cma must be a mapping"),
    ("es-max-timesteps", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "max_timesteps=0"], "max_timesteps must"),
    ("es-set-no-value", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "sigma"], "--set expects KEY=VALUE"),
    ("es-set-empty-part", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "cma..popsize=3"], "--set expects"),
    ("es-set-bad-yaml", lambda t: ["es", "--config", ES_CARTPOLE, "--set", "sigma=[1"], "not a YAML value"),
    ("es-argparse-seed", lambda t: ["es", "--config", ES_CARTPOLE, "--seed", "abc"], "invalid int value: 'abc'"),
    # --- outputs: existing runs, files where folders should be
    ("es-out-finished-run", lambda t: ["es", "--config", ES_CARTPOLE, "--out", es_run(t)], "already holds a run"),
    ("es-out-is-file", lambda t: ["es", "--config", ES_CARTPOLE, "--out", str(write(t / "f", "x"))],
     "exists and is not a folder"),
    ("es-out-under-file", lambda t: ["es", "--config", ES_CARTPOLE, "--out", str(write(t / "f", "x") / "r")],
     "is a file, not a folder"),
    # --- resume: another seed / setting, damaged checkpoints
    ("es-resume-other-seed", lambda t: ["es", "--resume", es_run(t, checkpoint=good_npz()), "--seed", "7"],
     "seed 0 -> 7"),
    ("es-resume-other-sigma", lambda t: ["es", "--resume", es_run(t, checkpoint=good_npz()), "--set", "sigma=0.3"],
     "sigma 0.5 -> 0.3"),
    ("es-resume-truncated-checkpoint", lambda t: ["es", "--resume", es_run(t, checkpoint=good_npz()[:300])],
     "checkpoint.npz is damaged"),
    ("es-resume-no-checkpoint", lambda t: ["es", "--resume", es_run(t)], "no checkpoint"),
    ("es-resume-no-run", lambda t: ["es", "--resume", str(t / "nothing")], "not found"),
    ("es-resume-with-out", lambda t: ["es", "--resume", es_run(t), "--out", str(t / "x")], "drop --config/--out"),
    # --- DQN
    ("dqn-lr-abc", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "dqn.learning_rate=abc"],
     "dqn.learning_rate must be a positive number"),
    ("dqn-unknown-sb3-key", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "dqn.lr=1"], "unknown key 'lr'"),
    ("dqn-net-arch", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "net_arch=5"], "net_arch must be a list"),
    ("dqn-select", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "select=worst"], "select must be one of"),
    ("dqn-solved-episodes", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "solved_episodes=-1"],
     "solved_episodes must be a non-negative integer"),
    ("dqn-train-freq", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "dqn.train_freq=[4, epoch]"],
     "dqn.train_freq must be"),
    ("dqn-metric-min-unknown", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "env=MountainCarContinuous-v0",
                                          "--set", "metric_min=null"], "set metric_min"),
    ("dqn-continuous-actions", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--set", "env=Pendulum-v1",
                                          "--set", "metric_min=null", "--out", str(t / "r")], "only supports"),
    ("dqn-out-finished-run", lambda t: ["dqn", "--config", DQN_CARTPOLE, "--timesteps", "100", "--out", es_run(t)],
     "already holds a run"),
    # --- supervised
    ("train-lr-list", lambda t: ["train", "--config", MNIST_FC, "--set", "lr=[1, 2]"], "lr must be a positive number"),
    ("train-model-kwargs-list", lambda t: ["train", "--config", MNIST_FC, "--set", "model_kwargs=[1, 2]"],
     "model_kwargs must be a mapping"),
    ("train-shuffle-labels", lambda t: ["train", "--config", MNIST_FC, "--set", "shuffle_labels=2"],
     "shuffle_labels must be a number >= 0 and <= 1"),
    ("train-shuffle-labels-negative", lambda t: ["train", "--config", MNIST_FC, "--set", "shuffle_labels=-0.1"],
     "shuffle_labels must be a number >= 0 and <= 1"),
    ("train-subset-above-dataset", lambda t: ["train", "--config", MNIST_FC, "--subset", "60001", "--out", str(t / "r")],
     "subset must be between 1 and 60000 for mnist"),
    ("train-resume-other-seed", lambda t: ["train", "--resume", supervised_run(t, good_pt()), "--seed", "3"],
     "seed 0 -> 3"),
    ("train-resume-truncated-checkpoint", lambda t: ["train", "--resume", supervised_run(t, good_pt()[:100])],
     "checkpoint.pt is damaged"),
    ("train-resume-with-config", lambda t: ["train", "--resume", supervised_run(t, good_pt()), "--config", MNIST_FC],
     "drop --config/--out"),
    ("train-mnist-truncated-gz", lambda t: ["train", "--config", MNIST_FC, "--data-dir", mnist_dir(t, truncated_gz()),
                                            "--out", str(t / "r")], "train-images-idx3-ubyte.gz is corrupt"),
    ("train-mnist-corrupted-gz", lambda t: ["train", "--config", MNIST_FC, "--data-dir", mnist_dir(t, corrupted_gz()),
                                            "--out", str(t / "r")], "train-images-idx3-ubyte.gz is corrupt"),
    ("train-out-is-file", lambda t: ["train", "--config", MNIST_FC, "--out", str(write(t / "f", "x"))],
     "exists and is not a folder"),
    # --- sweeps
    ("sweep-threshold-high", lambda t: ["sweep", "--config", sweep_yaml(t, threshold="high"), "--results", str(t)],
     "threshold must be a number > 0 and <= 1, got 'high'"),
    ("sweep-dims-int", lambda t: ["sweep", "--config", sweep_yaml(t, dims=4), "--results", str(t)],
     "dims must be a list"),
    ("sweep-seeds-int", lambda t: ["sweep", "--config", sweep_yaml(t, seeds=5), "--results", str(t)],
     "seeds must be a non-empty list of non-negative integers, got 5"),
    ("sweep-seeds-zero", lambda t: ["sweep", "--config", sweep_yaml(t, seeds=0), "--results", str(t)],
     "seeds must be a non-empty list of non-negative integers, got 0"),
    ("sweep-seeds-empty", lambda t: ["sweep", "--config", sweep_yaml(t, seeds=[]), "--results", str(t)],
     "seeds must be a non-empty list"),
    ("sweep-mode", lambda t: ["sweep", "--config", sweep_yaml(t, mode="binary"), "--results", str(t)],
     "mode must be one of"),
    ("sweep-paper-task-typo", lambda t: ["sweep", "--config", sweep_yaml(t, paper_task="mnist-fc"), "--results", str(t)],
     "paper_task must be one of"),
    ("sweep-adaptive-range", lambda t: ["sweep", "--config", sweep_yaml(t, mode="adaptive"), "--set", "adaptive.d_min=50",
                                        "--set", "adaptive.d_max=10", "--results", str(t)], "adaptive.d_max (10) is below"),
    ("sweep-unknown-trainer", lambda t: ["sweep", "--config", sweep_yaml(t, trainer="ppo"), "--results", str(t)],
     "unknown trainer 'ppo'"),
    ("sweep-bad-override", lambda t: ["sweep", "--config", sweep_yaml(t, overrides={"knee": "x", "nope": 1}),
                                      "--results", str(t)], "unknown key 'nope'"),
    ("sweep-set", lambda t: ["sweep", "--config", sweep_yaml(t), "--set", "bootstrap=-1", "--results", str(t)],
     "bootstrap must be a non-negative integer"),
    ("sweep-d-above-D", lambda t: ["sweep", "--config", sweep_yaml(t, dims=[10, 2000]), "--results", str(t)],
     "dims holds d = 2000, above the network's D = 1000"),
    ("sweep-supervised-d-above-D", lambda t: ["sweep", "--config", sweep_yaml(
        t, trainer="supervised", config=str(ROOT / "configs" / "supervised" / "mnist_fc5_shuffled_labels.yaml"),
        dims=[190000, 1000000]), "--results", str(t)], "dims holds d = 1000000, above the network's D = 959610"),
    ("sweep-supervised-adaptive-above-D", lambda t: ["sweep", "--config", sweep_yaml(
        t, trainer="supervised", config=str(ROOT / "configs" / "supervised" / "mnist_fc5_shuffled_labels.yaml"),
        mode="adaptive", adaptive={"d_min": 1000, "d_max": 2000000}), "--results", str(t)],
     "adaptive.d_max holds d = 2000000, above the network's D = 959610"),
    ("sweep-es-d-above-D", lambda t: ["sweep", "--config", sweep_yaml(t, trainer="es", config=ES_CARTPOLE,
                                                                      dims=[4, 600]), "--results", str(t)],
     "above the network's D = 562"),
    ("sweep-corrupt-point", lambda t: ["sweep", "--config", sweep_yaml(t),
                                       "--results", sweep_results(t, '{"dim": 10, "se')],
     "runs/d10_s0/summary.json is damaged"),
    ("sweep-duplicate-point", lambda t: ["sweep", "--config", sweep_yaml(t),
                                         "--results", sweep_results(t, point_summary(100, 0))],
     "holds the point d100_s0, not d10_s0"),
    ("sweep-point-without-metric-min", lambda t: ["sweep", "--config", sweep_yaml(t), "--results",
                                                  sweep_results(t, json.dumps({"dim": 10, "seed": 0, "value": 1}))],
     "has no metric_min"),
    ("sweep-results-under-file", lambda t: ["sweep", "--config", sweep_yaml(t), "--results", str(write(t / "f", "x"))],
     "is a file, not a folder"),
    ("sweep-argparse-missing-config", lambda t: ["sweep"], "the following arguments are required: --config"),
    # --- compare-tasks
    ("compare-missing-folder", lambda t: ["compare-tasks", "--results", str(t / "nothing")], "not found"),
    ("compare-corrupt-summary", lambda t: (sweep_summary(t, "a", '{"sweep": "a", '),
                                           ["compare-tasks", "--results", str(t / "res")])[1], "a/summary.json is damaged"),
    ("compare-out-under-file", lambda t: ["compare-tasks", "--results", str(write(t / "res" / "x", "")).rsplit("/", 1)[0],
                                          "--out", str(write(t / "f", "x") / "REPORT.md")], "Not a directory"),
    ("compare-duplicate-sweeps", lambda t: (sweep_summary(t, "a", json.dumps({"sweep": "a", "paper_task": "mnist_fc"})),
                                            sweep_summary(t, "b", json.dumps({"sweep": "b", "paper_task": "mnist_fc"})),
                                            ["compare-tasks", "--results", str(t / "res")])[2], "two sweeps measure mnist_fc"),
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def case_env(tmp_path, monkeypatch, tmp_path_factory):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # default output folders (runs/...) would land here
    monkeypatch.setenv("RLSUB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setitem(trainers.TRAINERS, "fake", "fake_trainer")
    fake_trainer.CALLS.clear()
    return work


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name,build,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(name, build, fragment, case_env, capsys):
    argv = build(case_env)
    before = snapshot(case_env)
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"rlsub {argv[0]}: error: "), err
    assert fragment in err, err
    assert "Traceback" not in err and out == ""
    assert snapshot(case_env) == before, "files were written or changed"
    assert fake_trainer.CALLS == []  # nothing was trained


def test_the_table_covers_every_category():
    assert len(CASES) >= 60
    for prefix in ("es-", "dqn-", "train-", "sweep-", "compare-"):
        assert any(c[0].startswith(prefix) for c in CASES)


# --- output errors raised by the operating system -------------------------------------------


@pytest.fixture(scope="module")
def sweep_template(tmp_path_factory):
    """A finished fake sweep and its report (made once): the outputs an OSError must leave intact."""
    folder = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setitem(trainers.TRAINERS, "fake", "fake_trainer")
        config = sweep_yaml(folder)
        assert main(["sweep", "--config", config, "--results", str(folder / "res"), "--quiet"]) == 0
        assert main(["compare-tasks", "--results", str(folder / "res")]) == 0
    return folder


@pytest.fixture
def finished_sweep(sweep_template, case_env, capsys):
    import shutil

    shutil.copytree(sweep_template, case_env, dirs_exist_ok=True)
    capsys.readouterr()
    fake_trainer.CALLS.clear()
    return str(sweep_yaml(case_env))


def _fail_writes(monkeypatch, error: OSError):
    """Every write of a whole file (text, JSON, numpy, plots) writes a few bytes, then fails."""
    import matplotlib.figure

    def failing_text(self, *args, **kwargs):
        with open(self, "wb") as f:
            f.write(b"partial")
        raise error

    monkeypatch.setattr(Path, "write_text", failing_text)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, fname, *a, **k: failing_text(Path(fname)))
    monkeypatch.setattr(np, "save", lambda file, *a, **k: failing_text(Path(file)))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   PermissionError(errno.EACCES, "Permission denied")], ids=["disk-full", "read-only"])
@pytest.mark.parametrize("command", ["sweep", "compare-tasks"])
def test_output_errors_are_one_line_and_keep_the_previous_files(error, command, finished_sweep, case_env, capsys,
                                                                monkeypatch):
    before = snapshot(case_env)
    _fail_writes(monkeypatch, error)
    argv = (["sweep", "--config", finished_sweep, "--results", str(case_env / "res"), "--quiet"]
            if command == "sweep" else ["compare-tasks", "--results", str(case_env / "res")])
    code, out, err = run_cli(argv, capsys)
    monkeypatch.undo()
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"rlsub {command}: error: "), err
    assert error.strerror in err
    assert snapshot(case_env) == before  # atomic writes: the old files whole, no temporary left behind


def test_read_only_output_folder_is_refused_before_anything_runs(case_env, capsys, monkeypatch):
    ro = case_env / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: make the permission check see a read-only folder
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    else:
        ro.chmod(0o555)
    before = snapshot(case_env)
    for argv in (["es", "--config", ES_CARTPOLE, "--out", str(ro / "run")],
                 ["sweep", "--config", sweep_yaml(case_env), "--results", str(ro)]):
        before = snapshot(case_env)
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and err.count("\n") == 1 and "is not writable" in err, err
        assert snapshot(case_env) == before
    ro.chmod(0o755)
