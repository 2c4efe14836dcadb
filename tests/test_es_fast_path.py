"""The ES policy path's fast forms against independent constructions: the folded Atari policy
against its module with virtual batch norm, chunked action noise against step-by-step draws, and
whole ES runs against theta_d recorded before the fast paths
existed (commit 82e99c4, same configs and seeds)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlsub.es import trainer
from rlsub.es.policy import ActionNoise, Actor, FoldedNet
from rlsub.models import VirtualBatchNorm, build_model, set_reference_statistics
from rlsub.subspace import SubspaceModel

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
#: x (theta_d, float64), step counts and observation statistics of runs made with commit 82e99c4
RECORDED = ROOT / "tests" / "data" / "es_theta_d_before_issue11.npz"


def _pong_model(d: int = 40, image_size: int = 36):
    """A small pong_conv (SAME padding: symmetric (2, 2) before conv 1, asymmetric (1, 2) before conv 2)
    in a Fastfood subspace, moved away from theta_0 so every norm has its own scale and offset."""
    net = build_model("pong_conv", seed=3, in_channels=2, image_size=image_size, num_actions=5)
    model = SubspaceModel(net, d, projection="fastfood", seed=4)
    model.set_flat(np.random.default_rng(5).standard_normal(d) * 3.0)
    return model


def _reference_outputs(model: SubspaceModel, theta: np.ndarray, reference: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """Outputs of the network as torch defines it: the module with theta_D loaded, its virtual batch
    norms' statistics set from the reference batch, run in eval mode."""
    module = model.materialize()
    names = [name for name, _ in module.named_parameters()]
    assert names == model.param_names  # so the flat theta_D lays out onto the module's parameters in order
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.from_numpy(theta).clone(), module.parameters())
    set_reference_statistics(module, torch.from_numpy(reference))
    with torch.no_grad():
        return module(torch.from_numpy(obs)).numpy()


def test_folded_conv_policy_gives_the_outputs_of_the_module_with_virtual_batch_norm():
    model = _pong_model()
    actor = Actor(model, spaces.Discrete(5))
    assert actor._folded is not None and actor.needs_reference
    steps = [s[0] for s in actor._folded.steps]
    # the symmetric padding went into conv 1, the asymmetric one stayed; each norm folded away
    assert steps == ["conv", "relu", "pad", "conv", "relu", "flatten", "linear", "relu", "linear"]
    assert sum(s[-1] is not None for s in actor._folded.steps if s[0] in ("conv", "linear")) == 3
    rng = np.random.default_rng(6)
    reference = rng.random((32, 2, 36, 36), dtype=np.float32)
    obs = rng.random((40, 2, 36, 36), dtype=np.float32)
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None, reference)
    expect = _reference_outputs(model, theta, reference, obs)
    got = np.stack([actor.outputs(o) for o in obs])
    assert np.abs(expect).max() > 1.0  # the comparison is not between near-zero outputs
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    assert [actor.act(o) for o in obs] == list(expect.argmax(axis=1))
    # a second parameter vector: statistics and folded weights are recomputed, and the kept padded
    # buffer of the ReLU does not carry anything over
    theta2 = theta + 0.05 * rng.standard_normal(theta.shape).astype(np.float32)
    actor.set_params(theta2, None, reference)
    expect2 = _reference_outputs(model, theta2, reference, obs[:5])
    np.testing.assert_allclose(np.stack([actor.outputs(o) for o in obs[:5]]), expect2,
                               rtol=1e-4, atol=1e-4 * np.abs(expect2).max())


def test_folded_policy_leaves_the_observation_alone_and_needs_a_reference_batch():
    model = _pong_model(d=8, image_size=20)
    actor = Actor(model, spaces.Discrete(5))
    with pytest.raises(ValueError, match="reference batch"):
        actor.set_params(model.theta_D().detach().numpy(), None)
    reference = np.random.default_rng(0).random((8, 2, 20, 20), dtype=np.float32)
    actor.set_params(model.theta_D().detach().numpy(), None, reference)
    obs = np.random.default_rng(1).random((2, 20, 20), dtype=np.float32) - 0.5  # negatives: an in-place ReLU would show
    before = obs.copy()
    actor.outputs(obs)
    np.testing.assert_array_equal(obs, before)


def test_unknown_layers_fall_back_to_the_plain_module():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    model = SubspaceModel(net, 5, projection="dense", seed=0)
    model.set_flat(np.arange(5, dtype=np.float64))
    assert FoldedNet.build(model) is None
    actor = Actor(model, spaces.Discrete(2))
    assert actor._folded is None and not actor.needs_reference
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None)
    obs = np.random.default_rng(2).random((1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        expect = model(torch.from_numpy(obs)[None])[0].numpy()
    np.testing.assert_allclose(actor.outputs(obs), expect, rtol=1e-5, atol=1e-6)


def test_folded_mlp_without_norms_matches_the_module():
    """A Sequential the numpy plan does not take (it has a norm) but the folded net does: a norm after a
    linear layer, and a Tanh."""
    net = nn.Sequential(nn.Linear(6, 10), VirtualBatchNorm(10), nn.Tanh(), nn.Linear(10, 3))
    model = SubspaceModel(net, 7, projection="dense", seed=1)
    model.set_flat(np.random.default_rng(3).standard_normal(7))
    actor = Actor(model, spaces.Discrete(3))
    assert actor._plan is None and actor._folded is not None
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((16, 6)).astype(np.float32)
    obs = rng.standard_normal((10, 6)).astype(np.float32)
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None, reference)
    expect = _reference_outputs(model, theta, reference, obs)
    np.testing.assert_allclose(np.stack([actor.outputs(o) for o in obs]), expect, rtol=1e-5, atol=1e-5)


def test_action_noise_in_chunks_is_the_step_by_step_noise():
    for seed, shape, steps in [(7, (17,), 100), (8, (3,), 5), (9, (2, 2), 65)]:
        noise = ActionNoise(seed, 0.01, chunk=32)
        rng = np.random.default_rng(seed)
        for _ in range(steps):
            expect = rng.standard_normal(shape).astype(np.float32)
            expect *= 0.01
            got = noise.next(shape)
            assert got.dtype == np.float32 and np.array_equal(got, expect)


def _check_recorded(out: Path, key: str) -> None:
    recorded = np.load(RECORDED)
    with np.load(out / "checkpoint.npz") as ckpt:
        # The episodes must be the recorded ones exactly (step counts and observation sums, bit for
        # bit). theta_d too, up to the last bits of its float64 update: the update's matrix-vector
        # product goes through OpenBLAS, which picks its kernel by CPU (recorded with the SkylakeX
        # kernel; AMD EPYC machines take the Haswell one and differ by 2e-16 relative). Any change of
        # an episode moves the ranks and theta_d by far more than this tolerance.
        assert int(ckpt["timesteps"]) == int(recorded[f"{key}_timesteps"])
        np.testing.assert_allclose(ckpt["x"], recorded[f"{key}_x"], rtol=1e-12, atol=0)
        assert np.abs(ckpt["x"]).sum() > 0
        for k in ("obs_sum", "obs_sumsq", "obs_count"):
            if f"{key}_{k}" in recorded.files:
                assert np.array_equal(ckpt[k], recorded[f"{key}_{k}"])


def test_humanoid_run_is_the_recorded_run(tmp_path):
    """MLP numpy path, observation normalisation and sums, action noise, the pair buffers of OpenAI-ES."""
    config = trainer.resolve("configs/es/humanoid_v4.yaml",
                             {"dim": 700, "pairs": 4, "generations": 3, "seed": 1, "eval_episodes": 1})
    trainer.train(config, tmp_path / "hum", quiet=True)
    _check_recorded(tmp_path / "hum", "humanoid")


def test_cartpole_run_is_the_recorded_run(tmp_path):
    config = trainer.resolve("configs/es/cartpole.yaml", {"dim": 4, "pairs": 5, "generations": 4, "seed": 2})
    trainer.train(config, tmp_path / "cart", quiet=True)
    _check_recorded(tmp_path / "cart", "cartpole")


PONG = ["--config", "configs/es/pong.yaml", "--dim", "6000", "--pairs", "2", "--generations", "3", "--seed", "0",
        "--quiet"]


@pytest.mark.slow  # about 30 s: D = 1,005,974 and 12,000 Pong steps
def test_pong_run_is_the_recorded_run(tmp_path):
    """The folded conv policy rounds differently from the module (folded weights are rounded
    products), but over these 12,000 steps it chooses the same actions, so theta_d is the same."""
    from rlsub.cli import main

    assert main(["es", *PONG, "--out", str(tmp_path / "pong")]) == 0
    _check_recorded(tmp_path / "pong", "pong")


@pytest.mark.mpi
@pytest.mark.parametrize("n", [2, 3])
def test_mpi_pong_theta_d_is_the_recorded_one_for_2_and_3_ranks(n, tmp_path):
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    proc = subprocess.run([str(VENV_BIN / "mpirun"), "-n", str(n), sys.executable, "-m", "rlsub.cli", "es", *PONG,
                           "--out", str(tmp_path / "pong")], capture_output=True, text=True, timeout=600, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    _check_recorded(tmp_path / "pong", "pong")


# --- rlsub._step: each C helper against the numpy operations it replaces, bit for bit ----------------

def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def test_step_obs_norm_is_numpys_normalisation_bit_for_bit():
    from rlsub import _step

    rng = np.random.default_rng(10)
    n = 1001
    mean = (rng.standard_normal(n) * 3).astype(np.float32)
    std = rng.uniform(1e-3, 4.0, n).astype(np.float32)
    for obs in (rng.standard_normal(n) * 8, (rng.standard_normal(n) * 8).astype(np.float32)):
        obs[:3] = [np.nan, np.inf, -np.inf]  # NaN stays NaN, infinities clip to +-5
        expect = np.subtract(obs, mean, dtype=np.float32)
        expect /= std
        expect = np.maximum(np.minimum(expect, 5.0), -5.0)
        got = np.full(n, 7.0, dtype=np.float32)
        _step.obs_norm(got, obs, mean, std, 5.0)
        assert np.isnan(got[0]) and got[1] == 5.0 and got[2] == -5.0
        assert np.array_equal(_bits(got[1:]), _bits(expect[1:]))
        assert np.abs(got[3:]).max() == 5.0 and (np.abs(got[3:]) < 5.0).sum() > n // 4  # both regimes occur


def test_step_accumulate_finish_and_pair_are_numpys_operations_bit_for_bit():
    from rlsub import _step

    rng = np.random.default_rng(11)
    n = 377
    s0, q0 = rng.standard_normal(n) * 1e3, rng.random(n) * 1e6
    for obs in (rng.standard_normal(n) * 7, (rng.standard_normal(n) * 7).astype(np.float32)):
        s, q = s0.copy(), q0.copy()
        _step.accumulate(s, q, obs)
        o = obs.astype(np.float64)
        assert np.array_equal(_bits(s), _bits(s0 + o)) and np.array_equal(_bits(q), _bits(q0 + o * o))

    out0 = (rng.standard_normal(n) * 2).astype(np.float32)
    bias, noise = rng.standard_normal((2, n)).astype(np.float32)
    low = -rng.uniform(0.1, 1.0, n).astype(np.float32)
    high = rng.uniform(0.1, 1.0, n).astype(np.float32)
    for z in (noise, None):
        expect = out0 + bias
        if z is not None:
            expect += z
        expect = np.maximum(np.minimum(expect, high), low)
        got = out0.copy()
        _step.finish(got, bias, z, low, high)
        assert np.array_equal(_bits(got), _bits(expect))
        assert (got == high).any() and (got == low).any() and ((got > low) & (got < high)).any()

    center, delta0 = rng.standard_normal((2, 5000)).astype(np.float32)
    sigma = 0.02
    delta, plus, minus = delta0.copy(), np.empty_like(center), np.empty_like(center)
    _step.pair(plus, minus, center, delta, sigma)
    expect = delta0 * sigma  # float32 times a Python float: float32 arithmetic
    assert np.array_equal(_bits(delta), _bits(expect))
    assert np.array_equal(_bits(plus), _bits(center + expect))
    assert np.array_equal(_bits(minus), _bits(center - expect))


def test_step_refuses_other_dtypes_lengths_and_strides():
    from rlsub import _step

    f32 = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match="expected 4"):
        _step.obs_norm(f32, np.zeros(5), f32, f32 + 1, 5.0)
    with pytest.raises(ValueError, match="format"):
        _step.obs_norm(f32, np.zeros(4, dtype=np.int64), f32, f32 + 1, 5.0)
    with pytest.raises(ValueError, match="float64"):
        _step.accumulate(np.zeros(4, dtype=np.float32), np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="contiguous"):
        _step.finish(np.zeros(8, dtype=np.float32)[::2], f32, None, f32, f32)
    with pytest.raises(ValueError, match="expected 4"):
        _step.pair(f32.copy(), f32.copy(), np.zeros(3, dtype=np.float32), f32.copy(), 0.1)


def _numpy_act(actor: Actor, theta: np.ndarray, stats, obs: np.ndarray, noise_row) -> np.ndarray:
    """The MLP actor's action as plain numpy computes it: normalise, layers, noise, clip."""
    x = np.subtract(obs, stats.mean.astype(np.float32), dtype=np.float32)
    x /= stats.std.astype(np.float32)
    x = np.maximum(np.minimum(x, 5.0), -5.0)
    h = x
    for fn, a, b, c, shape in actor._plan:
        h = theta[a:b].reshape(shape) @ h + theta[b:c] if fn == "linear" else fn(h, out=h.copy())
    h = h + noise_row
    return np.maximum(np.minimum(h, actor.high), actor.low)


def test_mlp_actor_with_the_c_helpers_acts_as_numpy_bit_for_bit():
    from rlsub.es.core import ObsStats

    net = build_model("mlp", seed=0, in_dim=9, out_dim=4, hidden=[16, 16], activation="tanh")
    model = SubspaceModel(net, 6, projection="dense", seed=1)
    model.set_flat(np.random.default_rng(12).standard_normal(6) * 2)
    box = spaces.Box(-0.4, 0.4, (4,), dtype=np.float32)
    actor = Actor(model, box)
    rng = np.random.default_rng(13)
    stats = ObsStats((9,))
    data = rng.standard_normal((50, 9)) * 3 + 1
    stats.add(data.sum(0), (data * data).sum(0), len(data))
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, stats)
    assert actor._finish_now  # the C path is the one under test
    noise, twin = ActionNoise(14, 0.3), ActionNoise(14, 0.3)
    actions = []
    for obs in rng.standard_normal((30, 9)) * 5:
        actions.append(actor.act(obs, noise).copy())
        expect = _numpy_act(actor, theta, stats, obs, twin.next((4,)))
        assert expect.dtype == np.float32 and np.array_equal(_bits(actions[-1]), _bits(expect))
    actions = np.abs(np.array(actions))
    assert (actions == np.float32(0.4)).any() and (actions < 0.4).any()  # clipped and unclipped actions


def test_matvec_skip_zeros_is_the_sum_over_nonzero_inputs_in_order_bit_for_bit():
    from rlsub import _step

    rng = np.random.default_rng(15)
    k, n = 700, 37
    wt = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    h = np.maximum(rng.standard_normal(k), 0).astype(np.float32)  # a ReLU output: about half zero
    assert 0.3 < (h == 0).mean() < 0.7
    expect = np.zeros(n, dtype=np.float32)
    for j in np.flatnonzero(h):
        expect = expect + wt[j] * h[j]  # float32 products and sums, input by input
    expect = expect + b
    got = np.full(n, np.nan, dtype=np.float32)
    _step.matvec_skip_zeros(got, wt, h, b)
    assert np.array_equal(_bits(got), _bits(expect))
    np.testing.assert_allclose(got, wt.astype(np.float64).T @ h + b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected"):
        _step.matvec_skip_zeros(got, wt[:-1], h, b)


def test_folded_policy_with_a_wide_linear_layer_skips_zero_inputs_and_matches_the_module():
    """At 64 x 64 inputs the linear layer after conv 2 takes 2,048 inputs: it runs as the
    zero-skipping product, and the outputs are still the module's."""
    from rlsub.es.policy import _SkipZeros

    model = _pong_model(d=40, image_size=64)
    actor = Actor(model, spaces.Discrete(5))
    rng = np.random.default_rng(16)
    reference = rng.random((32, 2, 64, 64), dtype=np.float32)
    obs = rng.random((20, 2, 64, 64), dtype=np.float32)
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None, reference)
    assert sum(isinstance(op, _SkipZeros) for op in actor._folded.ops) == 1
    expect = _reference_outputs(model, theta, reference, obs)
    got = np.stack([actor.outputs(o) for o in obs])
    assert np.abs(expect).max() > 1.0
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    assert [actor.act(o) for o in obs] == list(expect.argmax(axis=1))


# --- delta forms: conv(x) = conv(x_prev) + conv(x - x_prev) over the changed inputs ----------------

def _sparse_walk(rng, shape, steps: int, frac: float) -> list[np.ndarray]:
    """Inputs that change in a few entries from one to the next (as Atari frames do)."""
    x = rng.random(shape, dtype=np.float32)
    out = [x.copy()]
    for _ in range(steps):
        x = x.copy()
        m = rng.random(shape) < frac
        x[m] = rng.random(int(m.sum()), dtype=np.float32)
        out.append(x)
    return out


# (C, H, W, F, KH, KW, SH, SW, PH, PW): the Atari policy's two layers (F = 16 and 32 take the
# specialised loops), and odd ones for the generic loop: non-square kernels and strides, padding on
# one side, a stride above the kernel, a kernel larger than the input plus padding
CONV_CASES = [(4, 36, 36, 16, 8, 8, 4, 4, 2, 2), (16, 12, 12, 32, 4, 4, 2, 2, 0, 0), (3, 13, 17, 5, 3, 5, 1, 2, 1, 2),
              (2, 9, 11, 3, 4, 3, 3, 2, 0, 1), (1, 10, 10, 2, 2, 2, 3, 3, 0, 0), (2, 4, 5, 3, 5, 6, 1, 1, 2, 3)]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_delta_follows_torch_conv2d_along_a_sequence_of_sparse_changes(case):
    from rlsub import _step

    C, H, W, Fo, KH, KW, SH, SW, PH, PW = case
    rng = np.random.default_rng(sum(case))
    w = torch.from_numpy(rng.standard_normal((Fo, C, KH, KW)).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal(Fo).astype(np.float32))

    def conv(x):  # float64: the exact value up to float32 inputs
        return torch.nn.functional.conv2d(torch.from_numpy(x).double()[None], w.double(), b.double(), stride=(SH, SW),
                                          padding=(PH, PW))[0].numpy()

    xs = _sparse_walk(rng, (C, H, W), 40, 0.05)
    OH, OW = conv(xs[0]).shape[1:]
    xref, base = xs[0].copy(), conv(xs[0]).astype(np.float32)
    wt = w.permute(1, 2, 3, 0).contiguous().numpy()
    work = np.empty(Fo * OH * OW, dtype=np.float32)
    geometry = (C, H, W, Fo, KH, KW, SH, SW, PH, PW, OH, OW)
    prev, counts = xs[0], []
    for x in xs[1:]:
        out = np.full((Fo, OH, OW), np.nan, dtype=np.float32)
        n = _step.conv_delta(out, work, x, xref, base, wt, geometry, x.size)
        assert n == int((x != prev).sum())  # changed since the call before
        counts.append(n)
        expect = conv(x)
        np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
        assert np.array_equal(xref, x) and np.array_equal(base, out)  # the next call's reference
        prev = x
    assert np.count_nonzero(counts) >= 30 and max(counts) < xs[0].size // 5  # a few changes, most steps


def test_conv_delta_declines_many_or_non_finite_changes_and_writes_nothing():
    from rlsub import _step

    rng = np.random.default_rng(21)
    C, H, W, Fo = 2, 8, 8, 3
    wt = rng.standard_normal((C, 3, 3, Fo)).astype(np.float32)
    geometry = (C, H, W, Fo, 3, 3, 1, 1, 1, 1, H, W)
    x0 = rng.random((C, H, W), dtype=np.float32)
    base0 = rng.standard_normal((Fo, H, W)).astype(np.float32)
    work = np.empty(Fo * H * W, dtype=np.float32)
    x = x0.copy()
    x[0, :2, :] += 1.0  # 16 changed inputs
    for limit, change in ((15, None), (1000, np.nan), (1000, np.inf)):
        y = x.copy()
        if change is not None:
            y[1, 5, 5] = change
        xref, base, out = x0.copy(), base0.copy(), np.full((Fo, H, W), 7.0, dtype=np.float32)
        assert _step.conv_delta(out, work, y, xref, base, wt, geometry, limit) == -1
        assert (out == 7.0).all() and np.array_equal(xref, x0) and np.array_equal(base, base0)
    # a NaN in both the input and its reference is no change (base holds its effect already)
    x0n, xn = x0.copy(), x.copy()
    x0n[1, 5, 5] = xn[1, 5, 5] = np.nan
    out = np.empty((Fo, H, W), dtype=np.float32)
    assert _step.conv_delta(out, work, xn, x0n, base0.copy(), wt, geometry, 16) == 16
    with pytest.raises(ValueError, match="expected"):
        _step.conv_delta(out, work, x[:1], x0, base0.copy(), wt, geometry, 16)
    with pytest.raises(ValueError, match="geometry"):
        _step.conv_delta(out, work, x, x0, base0.copy(), wt, (C, H, W, Fo, 3, 3, 0, 1, 1, 1, H, W), 16)
    base = base0.copy()
    with pytest.raises(ValueError, match="share memory"):  # it writes base and out: they must be apart
        _step.conv_delta(base, work, x, x0.copy(), base, wt, geometry, 16)
    with pytest.raises(ValueError, match="share memory"):
        xx = x.copy()
        _step.conv_delta(out, work, xx, xx, base, wt, geometry, 16)


def test_matvec_delta_follows_the_dense_product_and_declines_when_reading_nonzeros_is_cheaper():
    from rlsub import _step

    rng = np.random.default_rng(22)
    k, n = 600, 33
    wt = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    hs = [np.maximum(x - 0.5, 0) for x in _sparse_walk(rng, (k,), 30, 0.04)]  # ReLU outputs, ~half zero
    href, yref = hs[0].copy(), (wt.astype(np.float64).T @ hs[0] + b).astype(np.float32)
    for h in hs[1:]:
        y = np.full(n, np.nan, dtype=np.float32)
        changed = int((h != href).sum())
        assert 0 < changed < (h != 0).sum()
        assert _step.matvec_delta(y, wt, h, href, yref) == changed
        np.testing.assert_allclose(y, wt.astype(np.float64).T @ h + b, rtol=1e-5, atol=1e-4)
        assert np.array_equal(href, h) and np.array_equal(yref, y)
    # more changed entries than nonzero ones, or a non-finite change: -1, nothing written
    for h in (np.maximum(rng.standard_normal(k), 0).astype(np.float32), href.copy()):
        if np.array_equal(h, href):
            h[3] = np.inf
        r0, y0 = href.copy(), yref.copy()
        y = np.full(n, 7.0, dtype=np.float32)
        assert _step.matvec_delta(y, wt, h, href, yref) == -1
        assert (y == 7.0).all() and np.array_equal(href, r0) and np.array_equal(yref, y0)
    with pytest.raises(ValueError, match="share memory"):
        _step.matvec_delta(yref, wt, hs[0], href, yref)


def _frames(rng, shape, steps: int) -> np.ndarray:
    """Atari-like observations: a fixed background with a few small moving blocks."""
    c, hh, ww = shape
    background = rng.random(shape, dtype=np.float32)
    out = []
    pos = rng.integers(0, [hh - 4, ww - 4], size=(3, 2))
    for _ in range(steps):
        pos = np.clip(pos + rng.integers(-1, 2, size=pos.shape), 0, [hh - 4, ww - 4])
        x = background.copy()
        for i, j in pos:
            x[:, i:i + 3, j:j + 2] = 1.0
        out.append(x)
    return np.stack(out)


def test_folded_policy_on_an_episode_of_similar_frames_stays_the_module_and_does_not_remember_episodes():
    """Along 150 steps of slowly changing frames (the delta forms run, with dense steps every
    REFRESH) the outputs stay the module's; an episode's outputs are the same bit for bit whether
    or not another episode ran before it on the same actor."""
    from rlsub.es.policy import _DeltaConv

    model = _pong_model(d=40, image_size=64)
    actor = Actor(model, spaces.Discrete(5))
    rng = np.random.default_rng(23)
    episode = _frames(rng, (2, 64, 64), 150)
    other = episode[75:40:-1]  # another episode of the same game: frames close to the first one's
    reference = episode[::10].copy()  # as the trainer's: observations of the game itself
    theta = model.theta_D().detach().numpy()
    actor.set_params(theta, None, reference)
    calls = {"delta": 0, "dense": 0}
    real = _DeltaConv.__call__

    def counted(self, x):
        before = self.since
        y = real(self, x)
        calls["delta" if self.since == before + 1 else "dense"] += 1
        return y

    _DeltaConv.__call__ = counted
    try:
        actor.begin_episode()
        got = np.stack([actor.outputs(o).copy() for o in episode])
    finally:
        _DeltaConv.__call__ = real
    # two convolutions: dense at the first step and every REFRESH + 1 steps, delta otherwise
    dense_steps = len(range(0, 150, _DeltaConv.REFRESH + 1))
    assert calls == {"dense": 2 * dense_steps, "delta": 2 * (150 - dense_steps)}
    expect = _reference_outputs(model, theta, reference, episode)
    assert np.abs(expect).max() > 1.0
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())
    for o in other:
        actor.outputs(o)
    actor.begin_episode()
    again = np.stack([actor.outputs(o).copy() for o in episode])
    assert np.array_equal(_bits(again), _bits(got))


def test_delta_forms_are_as_accurate_as_the_dense_float32_products():
    """Against a float64 evaluation of the same folded weights, the running sums of the delta forms
    (64 steps between dense ones) err no more than the dense float32 products do."""
    from rlsub.es.policy import _ActInto, _DeltaConv, _Linear, _SkipZeros

    model = _pong_model(d=40, image_size=64)
    rng = np.random.default_rng(24)
    frames = _frames(rng, (2, 64, 64), 130)
    theta = model.theta_D().detach().numpy()
    delta, dense = Actor(model, spaces.Discrete(5)), Actor(model, spaces.Discrete(5))
    for actor in (delta, dense):
        actor.set_params(theta, None, frames[::10].copy())
    ops = dense._folded.ops

    def exact(obs):  # the same layers in float64
        x = torch.from_numpy(obs.astype(np.float64))[None]
        for op in ops:
            if isinstance(op, _DeltaConv):
                x = torch.nn.functional.conv2d(x, op.w.double(), op.b.double(), stride=op.stride, padding=op.padding)
            elif isinstance(op, _SkipZeros):
                x = x.reshape(1, -1) @ torch.from_numpy(op.wt).double() + torch.from_numpy(op.b).double()
            elif isinstance(op, _Linear):
                x = x.reshape(1, -1) @ torch.from_numpy(op.w).double().T + torch.from_numpy(op.b).double()
            elif isinstance(op, _ActInto):
                x = torch.clamp_min(x, 0.0) if op.relu else torch.tanh(x)
                x = torch.nn.functional.pad(x, op.pad) if op.pad is not None else x
            else:
                x = x.reshape(1, -1)
        return x[0].numpy()

    err = {"delta": [], "dense": []}
    delta.begin_episode()
    for obs in frames:
        dense.begin_episode()  # every step dense
        want = exact(obs)
        for key, actor in (("delta", delta), ("dense", dense)):
            err[key].append(np.abs(actor.outputs(obs) - want).max() / np.abs(want).max())
    assert max(err["dense"]) > 0  # float32 rounding shows
    assert max(err["delta"]) <= 4 * max(err["dense"]) and np.median(err["delta"]) <= 4 * np.median(err["dense"])
