"""Fault injection: processes SIGKILLed at random moments, then resumed. Nothing finished may be
lost or rerun, and the resumed result must equal an uninterrupted run's.

Slow (they start real processes); each is bounded in time. The MPI one kills one rank of
``mpirun -n 2 rlsub es``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
ES_CARTPOLE = str(ROOT / "configs" / "es" / "cartpole.yaml")

SWEEP_SCRIPT = (
    "import sys; sys.path.insert(0, {tests!r})\n"
    "from rlsub import trainers; trainers.TRAINERS['fake'] = 'fake_trainer'\n"
    "from rlsub.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _env() -> dict:
    return dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))


def _finished(results: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted((results / "runs").glob("*/summary.json"))}


def _write_sweep(folder: Path, sleep: float) -> Path:
    (folder / "fake.yaml").write_text(f"knee: 100\nnoise: 0.05\nsleep: {sleep}\n")
    path = folder / "s.yaml"
    path.write_text(f"trainer: fake\nconfig: {folder / 'fake.yaml'}\ndims: [10, 60, 90, 200]\n"
                    f"seeds: [0, 1]\nthreshold: 0.9\nbootstrap: 50\n")
    return path


@pytest.mark.slow
def test_sweep_killed_at_random_moments_loses_no_finished_point(tmp_path, monkeypatch):
    from rlsub import sweep, trainers

    script = tmp_path / "run_sweep.py"
    script.write_text(SWEEP_SCRIPT.format(tests=str(TESTS)))
    ref, hit = tmp_path / "ref", tmp_path / "hit"
    ref.mkdir()
    hit.mkdir()
    monkeypatch.setitem(trainers.TRAINERS, "fake", "fake_trainer")  # the uninterrupted run, in-process
    expected = sweep.run_sweep(sweep.resolve(_write_sweep(ref, 0.0), ref / "res"), quiet=True)

    config = _write_sweep(hit, 0.1)
    results = hit / "res" / "s"
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(6):
        before = _finished(results) if results.exists() else {}
        t_start = time.time()
        proc = subprocess.Popen([sys.executable, str(script), "sweep", "--config", str(config),
                                 "--results", str(hit / "res"), "--quiet"], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if attempt < 4:  # once the sweep is running (past its imports and checks), kill it at a random moment
            try:
                _wait_for(lambda t=t_start: (results / "sweep_config.json").exists() and
                          (results / "sweep_config.json").stat().st_mtime > t, 30, proc)
                time.sleep(float(rng.uniform(0.0, 0.8)))
            except AssertionError:
                pass  # finished already
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=60)
        after = _finished(results) if results.exists() else {}
        for name, data in before.items():  # every point finished before this run is still there, unchanged
            assert after.get(name) == data, f"finished point {name} was lost or rerun"
        if proc.returncode == 0:
            break
    assert proc.returncode == 0, proc.stderr.read()
    assert kills >= 2
    got = json.loads((results / "summary.json").read_text())
    assert got["n_points"] == expected["n_points"] == 10
    assert got["d_int90"] == expected["d_int90"] and got["d_int90_interp"] == pytest.approx(expected["d_int90_interp"])
    assert got["curve"] == expected["curve"] and got["baseline"] == expected["baseline"]


def _generation(checkpoint: Path) -> int:
    try:
        with np.load(checkpoint) as f:
            return int(f["generation"])
    except Exception:  # not written yet (or being replaced)
        return -1


def _wait_for(pred, timeout: float, proc: subprocess.Popen | None = None) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError("timed out")


GENERATIONS = 12
ES_ARGS = ["--config", ES_CARTPOLE, "--seed", "1", "--pairs", "4", "--generations", str(GENERATIONS),
           "--set", "checkpoint_every=2", "--set", "target_return=null", "--set", "eval_every=4"]


def _reference_theta(tmp_path: Path) -> np.ndarray:
    """theta_d of the same run uninterrupted (in-process, one rank: the same theta_d as two)."""
    from rlsub.config import parse_sets
    from rlsub.es import trainer

    config = trainer.resolve(ES_CARTPOLE, {"seed": 1, "pairs": 4, "generations": GENERATIONS,
                                           **parse_sets(["checkpoint_every=2", "target_return=null",
                                                         "eval_every=4"])})
    trainer.train(config, tmp_path / "ref", quiet=True)
    return np.load(tmp_path / "ref" / "theta_d.npy")


def _check_resumed(run: Path, expected: np.ndarray) -> None:
    assert np.array_equal(np.load(run / "theta_d.npy"), expected)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == list(range(GENERATIONS))  # one row per generation, none twice


@pytest.mark.slow
def test_es_killed_before_its_first_generation_resumes(tmp_path):
    expected = _reference_theta(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.Popen([str(VENV_BIN / "rlsub"), "es", *ES_ARGS, "--out", str(run), "--quiet"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: _generation(run / "checkpoint.npz") == 0, 60, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # rerunning into the same folder is refused (it would mix two runs' metrics) ...
    again = subprocess.run([str(VENV_BIN / "rlsub"), "es", *ES_ARGS, "--out", str(run)], env=_env(),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    # ... and resuming continues it to the same theta_d as an uninterrupted run
    resumed = subprocess.run([str(VENV_BIN / "rlsub"), "es", "--resume", str(run), "--quiet"], env=_env(),
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _check_resumed(run, expected)


def _rank_pids(marker: str) -> dict[int, int]:
    """pid of each MPI rank whose command line holds ``marker`` (from /proc)."""
    found = {}
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc_dir / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker not in cmdline or "mpirun" in cmdline or "hydra" in cmdline:
            continue
        for item in environ:
            if item.startswith(b"PMI_RANK="):
                found[int(item.split(b"=", 1)[1])] = int(proc_dir.name)
    return found


@pytest.mark.slow
@pytest.mark.mpi
def test_killing_one_mpi_rank_ends_the_job_and_the_run_resumes(tmp_path):
    expected = _reference_theta(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.Popen([str(VENV_BIN / "mpirun"), "-n", "2", str(VENV_BIN / "rlsub"), "es", *ES_ARGS,
                             "--out", str(run)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        _wait_for(lambda: _generation(run / "checkpoint.npz") >= 2, 90, proc)
        ranks = _rank_pids(str(run))
        assert set(ranks) == {0, 1}, ranks
        os.kill(ranks[1], signal.SIGKILL)
        t_kill = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert time.time() - t_kill < 30  # the other rank does not hang in a collective
    assert f"rlsub es --resume {run}" in err  # the job said where it writes and how to continue
    assert _generation(run / "checkpoint.npz") < GENERATIONS
    resumed = subprocess.run([str(VENV_BIN / "mpirun"), "-n", "2", str(VENV_BIN / "rlsub"), "es", "--resume", str(run),
                              "--quiet"], env=_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    _check_resumed(run, expected)
