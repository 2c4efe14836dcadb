"""rlsub.load_run, `rlsub eval` and `rlsub export` on committed runs: the numbers they reproduce."""

import json
import os
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

import rlsub
from rlsub.cli import main
from rlsub.es.core import episode_seed
from rlsub.export import export_bytes, export_run

ROOT = Path(__file__).resolve().parent.parent
ES_D1 = ROOT / "results/cartpole_es/runs/d1_s0"  # its eval returns vary from episode to episode
ES_FULL = ROOT / "results/cartpole_es/runs/dfull_s0"
DQN_D25 = ROOT / "results/cartpole_dqn/runs/d25_s0"  # select: best, 50-episode final evaluation
DQN_FULL = ROOT / "results/cartpole_dqn/runs/dfull_s0"
MNIST_D750 = ROOT / "results/mnist_fc/runs/d750_s0"
HUMANOID_RUN = ROOT / "results/es/short_runs/humanoid_v4_d700"  # a run with observation normalisation


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_es_eval_reproduces_the_recorded_episode_returns():
    run = rlsub.load_run(ES_D1)
    recorded = summary(ES_D1)
    # the run's final evaluation: generation generations-1, episode k from episode_seed(seed, 1, gen, k)
    gen = recorded["generations"] - 1
    assert run.episode_seeds(3, None) == [episode_seed(0, 1, gen, k) for k in range(3)]
    result = run.evaluate()
    assert result["returns"] == recorded["eval_returns"]  # episode by episode
    assert result["value"] == recorded["value"] and len(set(recorded["eval_returns"])) > 1
    # other seeds give other episodes
    assert run.evaluate(episodes=3, seed=123)["returns"] != recorded["eval_returns"][:3]


def test_eval_cli_prints_the_result_beside_the_recorded_value(capsys):
    assert main(["eval", str(ES_D1), "--episodes", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean return" in out and "over 2 episodes" in out and "recorded" not in out  # other episodes
    assert main(["eval", str(ES_D1), "--quiet"]) == 0
    out = capsys.readouterr().out
    value = summary(ES_D1)["value"]
    assert f"mean return {value:.2f}" in out and f"(recorded {value:.2f})" in out


def test_export_round_trip_is_bit_identical_and_small(tmp_path, capsys):
    out = tmp_path / "cartpole_d1.npz"
    assert main(["export", str(ES_D1), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    size = out.stat().st_size
    assert f"{size:,} bytes" in printed and "2,248 bytes" in printed  # 562 float32 parameters
    assert export_bytes(ES_D1)["bytes"] == size  # the report's figure, without rebuilding the model
    a, b = rlsub.load_run(ES_D1), rlsub.load_run(out)
    assert b.record.fingerprint is not None
    assert a.theta_D.dtype == np.float32 and np.array_equal(a.theta_D, b.theta_D)
    assert b.evaluate(episodes=4)["returns"] == summary(ES_D1)["eval_returns"][:4]
    # the full-space baseline exports its D numbers (identity projection) and round-trips too
    full = tmp_path / "full.npz"
    export_run(ES_FULL, full)
    assert np.array_equal(rlsub.load_run(ES_FULL).theta_D, rlsub.load_run(full).theta_D)


def test_mnist_fc_export_is_a_few_kilobytes_against_800_kb(tmp_path):
    info = export_run(MNIST_D750, tmp_path / "mnist.npz")
    assert info["full_bytes"] == 4 * 199_210 and info["numbers"] == 750
    assert info["bytes"] < 6_000 < info["full_bytes"] / 100  # about 3 kB of theta_d plus the config
    assert export_bytes({"run_dir": str(MNIST_D750)})["bytes"] == info["bytes"]
    a, b = rlsub.load_run(MNIST_D750), rlsub.load_run(tmp_path / "mnist.npz")
    assert np.array_equal(a.model.theta_D().detach().numpy(), b.model.theta_D().detach().numpy())


@pytest.mark.skipif(not Path(os.environ.get("RLSUB_DATA", "/work/shared/data"), "mnist").is_dir(),
                    reason="MNIST not available")
def test_supervised_eval_reproduces_the_test_accuracy(monkeypatch):
    monkeypatch.setenv("RLSUB_DATA", os.environ.get("RLSUB_DATA", "/work/shared/data"))
    result = rlsub.load_run(MNIST_D750).evaluate()
    assert result["value"] == summary(MNIST_D750)["test_accuracy"] and result["examples"] == 10_000


def test_dqn_run_loads_and_reproduces_its_final_evaluation(tmp_path):
    run = rlsub.load_run(DQN_D25)
    q = run.model.policy.q_net
    assert q.d == 25 and q.D == 562 and run.subspace_model is q.q_net
    np.testing.assert_array_equal(q.q_net.get_flat(), np.load(DQN_D25 / "theta_d.npy"))
    # the final evaluation's episodes on the trainer's evaluation environment (seed + 10,000), after
    # replaying the resets of its periodic evaluations: mean and spread as recorded
    result = run.evaluate()
    assert result["replayed"] and result["episodes"] == summary(DQN_D25)["eval_episodes"]
    assert (result["value"], result["std"]) == (summary(DQN_D25)["value"], summary(DQN_D25)["value_std"])
    export_run(DQN_D25, tmp_path / "dqn.npz")
    again = rlsub.load_run(tmp_path / "dqn.npz").evaluate(episodes=3)
    assert again["returns"] == result["returns"][:3]
    assert rlsub.load_run(DQN_D25).evaluate(episodes=3, seed=5)["replayed"] is False


@pytest.mark.slow  # 50 episodes of up to 500 SB3 predict calls
def test_dqn_full_space_run_reproduces_its_final_evaluation():
    run = rlsub.load_run(DQN_FULL)
    assert run.subspace_model is None and run.model.policy.q_net.D == 562
    result = run.evaluate()
    assert (result["value"], result["std"]) == (summary(DQN_FULL)["value"], summary(DQN_FULL)["value_std"])


def test_render_writes_one_frame_per_step_and_the_reset(tmp_path, capsys):
    run = rlsub.load_run(ES_D1)
    frames = []
    result = run.evaluate(episodes=1, max_steps=30, frames=frames)
    assert result["lengths"] == [30] and len(frames) == 31 and frames[0].shape == (400, 600, 3)

    gif = tmp_path / "c.gif"
    assert main(["eval", str(ES_D1), "--episodes", "1", "--max-steps", "30", "--render", "gif",
                 "--out", str(gif), "--fps", "25"]) == 0
    assert "31 frames" in capsys.readouterr().out
    from PIL import Image

    with Image.open(gif) as im:
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
    # pillow folds a frame identical to the one before into a longer duration: the playing time is kept
    distinct = 1 + sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    assert len(durations) == distinct and sum(durations) == 31 * 40

    mp4 = tmp_path / "c.mp4"
    assert main(["eval", str(ES_D1), "--episodes", "1", "--max-steps", "30", "--render", "mp4",
                 "--out", str(mp4)]) == 0
    import imageio.v2 as imageio

    with imageio.get_reader(mp4) as reader:
        assert reader.count_frames() == 31


# --- bad input: one line on stderr, exit status 2 ----------------------------------------------------


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "is neither a run directory" in one_error_line(capsys)
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "no such run directory or export file" in one_error_line(capsys)
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    assert main(["eval", str(tmp_path / "x.npz")]) == 2
    assert "rlsub export" in one_error_line(capsys)


def test_eval_of_a_run_without_theta_d(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ES_D1, run)
    (run / "theta_d.npy").unlink()
    assert main(["eval", str(run)]) == 2
    assert "no theta_d.npy" in one_error_line(capsys)
    assert main(["export", str(run), "--out", str(tmp_path / "e.npz")]) == 2
    assert "no theta_d.npy" in one_error_line(capsys)


def test_eval_of_an_es_run_without_its_observation_statistics(tmp_path, capsys):
    """As a run written before rlsub kept obs_norm.npz: its statistics are lost, so it cannot be replayed."""
    run = tmp_path / "run"
    shutil.copytree(HUMANOID_RUN, run)
    for name in ("obs_norm.npz", "checkpoint.npz"):
        (run / name).unlink(missing_ok=True)
    assert main(["eval", str(run)]) == 2
    assert "neither obs_norm.npz nor a checkpoint.npz" in one_error_line(capsys)


def test_eval_of_an_export_whose_fingerprint_does_not_match(tmp_path, capsys):
    good = tmp_path / "good.npz"
    export_run(ES_D1, good)
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["fingerprint"] = arrays["fingerprint"].copy()
    arrays["fingerprint"][2] *= 1.001  # P v_0 . u: as if P had changed
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    assert main(["eval", str(bad)]) == 2
    line = one_error_line(capsys)
    assert "do not match the recorded fingerprint" in line and "projection dense" in line
    # a different projection seed recorded in the config is caught the same way
    meta = json.loads(zlib.decompress(arrays["meta"].tobytes()))
    meta["config"]["seed"] = 1
    arrays["meta"] = np.frombuffer(zlib.compress(json.dumps(meta).encode()), dtype=np.uint8)
    arrays["fingerprint"] = np.load(good)["fingerprint"]
    np.savez(bad, **arrays)
    assert main(["eval", str(bad)]) == 2
    assert "fingerprint" in one_error_line(capsys)


@pytest.mark.filterwarnings("ignore:.*not in the possible render_modes")
def test_render_for_an_environment_that_cannot_render(tmp_path, capsys):
    import gymnasium as gym
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    class NoRender(CartPoleEnv):
        metadata = {"render_modes": [], "render_fps": 50}

    if "NoRenderCartPole-v0" not in gym.registry:
        gym.register("NoRenderCartPole-v0", entry_point=NoRender, max_episode_steps=500)
    run = tmp_path / "run"
    shutil.copytree(ES_D1, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "env": "NoRenderCartPole-v0"}))
    assert main(["eval", str(run), "--episodes", "1", "--max-steps", "5"]) == 0  # evaluates ...
    capsys.readouterr()
    assert main(["eval", str(run), "--render", "gif", "--out", str(tmp_path / "v.gif")]) == 2  # ... cannot render
    assert "cannot render frames" in one_error_line(capsys)
    assert not (tmp_path / "v.gif").exists()
    assert main(["eval", str(MNIST_D750), "--render", "gif"]) == 2
    assert "a supervised run is evaluated on its test set" in one_error_line(capsys)
    assert main(["eval", str(ES_D1), "--render", "gif", "--out", str(tmp_path / "v.mp4")]) == 2
    assert "writes a .gif file" in one_error_line(capsys)


# --- run directories: metrics also as CSV and TensorBoard scalars -------------------------------------


def test_run_summary_records_the_commit_the_run_started_at(tmp_path, monkeypatch):
    """A run outlives commits made while it trains: its summary names the commit at its start, and the
    one at its end only when it differs."""
    from rlsub import rundir

    commits = iter(["aaa", "bbb"])
    monkeypatch.setattr(rundir, "git_commit", lambda: next(commits))
    run = rundir.RunDir(tmp_path / "moved")
    run.write_summary({"value": 1.0})
    s = json.loads((tmp_path / "moved" / "summary.json").read_text())
    assert s["git_commit"] == "aaa" and s["git_commit_at_end"] == "bbb"
    monkeypatch.setattr(rundir, "git_commit", lambda: "ccc")
    run = rundir.RunDir(tmp_path / "same")
    run.write_summary({"value": 1.0})
    s = json.loads((tmp_path / "same" / "summary.json").read_text())
    assert s["git_commit"] == "ccc" and "git_commit_at_end" not in s


def test_rundir_log_writes_csv_and_tensorboard_scalars(tmp_path):
    import csv

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlsub.rundir import RunDir

    run = RunDir(tmp_path)
    run.log({"generation": 0, "timesteps": 100, "return_mean": 12.5})
    run.log({"generation": 1, "timesteps": 250, "return_mean": 20.0, "eval_return": 31.0})  # a new column
    run.log({"generation": 2, "timesteps": 400, "return_mean": 22.0, "note": "text is not a scalar"})
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["return_mean"] for r in rows] == ["12.5", "20.0", "22.0"]
    assert [r["eval_return"] for r in rows] == ["", "31.0", ""] and rows[2]["note"] == "text is not a scalar"
    events = list(tmp_path.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert sorted(acc.Tags()["scalars"]) == ["eval_return", "generation", "return_mean"]
    assert [(e.step, e.value) for e in acc.Scalars("return_mean")] == [(100, 12.5), (250, 20.0), (400, 22.0)]
    assert [(e.step, e.value) for e in acc.Scalars("eval_return")] == [(250, 31.0)]
    run.truncate_metrics(2, "generation")  # a resumed run cuts the CSV back as well
    with open(tmp_path / "metrics.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2


# --- a fresh ES run with observation normalisation: obs_norm.npz, checkpoint fallback, fingerprint ------


def test_fresh_es_run_with_obs_norm_is_rebuilt_exactly(tmp_path, capsys):
    from rlsub.es import trainer

    config = trainer.resolve("configs/es/cartpole.yaml", {
        "generations": 3, "pairs": 4, "eval_every": 3, "eval_episodes": 3, "obs_norm": True,
        "projection": "fastfood", "dim": 6, "seed": 7, "target_return": 10_000})
    run_dir = tmp_path / "run"
    recorded = trainer.train(config, run_dir, quiet=True)
    assert (run_dir / "obs_norm.npz").exists() and (run_dir / "fingerprint.npy").exists()
    assert (run_dir / "metrics.csv").exists() and list(run_dir.glob("events.out.tfevents.*.rlsub"))
    loaded = rlsub.load_run(run_dir)
    assert loaded.obs_stats is not None and loaded.model.projection_kind == "fastfood"
    np.testing.assert_array_equal(loaded.obs_stats.mean, np.load(run_dir / "obs_norm.npz")["obs_sum"]
                                  / float(np.load(run_dir / "obs_norm.npz")["obs_count"]))
    assert loaded.evaluate()["returns"] == recorded["eval_returns"]
    # statistics also travel in the export
    export_run(run_dir, tmp_path / "e.npz")
    assert rlsub.load_run(tmp_path / "e.npz").evaluate()["returns"] == recorded["eval_returns"]
    # a run from before obs_norm.npz: the statistics come from checkpoint.npz, and eval says so
    (run_dir / "obs_norm.npz").unlink()
    assert main(["eval", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "from checkpoint.npz" in captured.err and "(recorded" in captured.out
    (run_dir / "checkpoint.npz").unlink()
    assert main(["eval", str(run_dir)]) == 2
    assert "neither obs_norm.npz nor a checkpoint.npz" in one_error_line(capsys)


def test_run_directory_fingerprint_is_checked(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(ES_D1, run)
    fp = rlsub.load_run(ES_D1).fingerprint()
    np.save(run / "fingerprint.npy", fp)
    assert main(["eval", str(run), "--episodes", "1", "--quiet"]) == 0
    capsys.readouterr()
    fp[1] *= 1.01  # |theta_0|: as if the initialisation had changed
    np.save(run / "fingerprint.npy", fp)
    assert main(["eval", str(run)]) == 2
    assert "do not match the recorded fingerprint" in one_error_line(capsys)


def test_export_needs_an_npz_name_and_export_bytes_a_run(tmp_path, capsys):
    assert main(["export", str(ES_D1), "--out", str(tmp_path / "model.zip")]) == 2
    assert "must end in .npz" in one_error_line(capsys)
    with pytest.raises(ValueError, match="run_dir"):
        export_bytes({"task": "CartPole-v1", "d": 4})


@pytest.mark.slow  # about 30 s: Pong's D = 1,005,974 policy and a 128-frame reference batch
def test_pong_policy_regenerates_its_virtual_batch_norm_reference():
    import torch

    run = rlsub.load_run(ROOT / "results/es/short_runs/pong_d6000")
    # the actor runs the folded net: each of the 3 norms is folded, with the reference batch's statistics,
    # into the layer before it, so the folded weights are not theta_D's own
    folded = run.actor._folded
    assert run.actor.needs_reference and folded is not None
    assert sum(s[-1] is not None for s in folded.steps if s[0] in ("conv", "linear")) == 3
    own = folded._view(torch.from_numpy(run.theta_D), "1.weight")
    weight = folded.ops[0].w  # the first convolution's folded weight
    assert weight.shape == own.shape and not torch.equal(weight, own)
    assert run.evaluate(episodes=1, max_steps=20)["lengths"] == [20]


def test_report_column_gives_the_size_of_the_export_at_d_int90(tmp_path):
    """compare-tasks' export column: the bytes of the file `rlsub export` writes for the run at the
    grid d_int90 (first seed), beside 4 D."""
    from rlsub.report import compare_tasks

    src = ROOT / "results/cartpole_es"
    s = summary(src)
    d, seed = s["d_int90"], s["seeds"][0]
    dest = tmp_path / "results" / "cartpole_es"
    (dest / "runs").mkdir(parents=True)
    shutil.copy(src / "summary.json", dest / "summary.json")
    shutil.copytree(src / "runs" / f"d{d}_s{seed}", dest / "runs" / f"d{d}_s{seed}")
    info = export_run(dest / "runs" / f"d{d}_s{seed}", tmp_path / "e.npz")
    size = (tmp_path / "e.npz").stat().st_size
    assert info["bytes"] == size
    report, _ = compare_tasks(tmp_path / "results")
    row = next(line for line in Path(report).read_text().splitlines() if line.startswith("| CartPole, ES"))
    size_words = f"{size / 1e3:.3g} kB" if size >= 1e3 else f"{size} B"
    assert f"{size_words} vs 2.25 kB ({2248 / size:.3g}x)" in row
