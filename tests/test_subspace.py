import copy

import numpy as np
import pytest
import torch
from torch import nn

from rlsub.models import build_model, num_params
from rlsub.projections import ProjectionError
from rlsub.subspace import SubspaceModel, load_checkpoint, save_checkpoint

KINDS = ["dense", "sparse", "fastfood"]


def cartpole_net(seed=0):
    return build_model("mlp", seed=seed, in_dim=4, out_dim=2, hidden=[20, 20], activation="tanh")


@pytest.mark.parametrize("kind", KINDS)
def test_theta_d_is_the_only_parameter_and_zero_start_matches_module(kind):
    net = cartpole_net()
    reference = copy.deepcopy(net)
    model = SubspaceModel(net, 4, projection=kind, seed=0)
    assert [n for n, _ in model.named_parameters()] == ["theta_d"]
    assert model.D == 562 and model.d == 4
    assert torch.equal(model.theta_d, torch.zeros(4))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), reference(x))


@pytest.mark.parametrize("kind", KINDS)
def test_forward_uses_theta_0_plus_P_theta_d(kind):
    net = cartpole_net()
    model = SubspaceModel(net, 6, projection=kind, seed=1)
    theta_d = torch.randn(6, generator=torch.Generator().manual_seed(2))
    model.set_flat(theta_d.numpy())
    P = model.projection.materialize()
    expect_flat = model.theta_0 + P @ theta_d
    torch.testing.assert_close(model.theta_D().detach(), expect_flat, rtol=1e-5, atol=1e-6)
    plain = model.materialize()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(model(x), plain(x), rtol=0, atol=0)


def test_gradient_reaches_only_theta_d_and_equals_P_T_dL_dtheta_D():
    model = SubspaceModel(cartpole_net(), 5, projection="fastfood", seed=0)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    theta_D = model.theta_D().detach().requires_grad_(True)
    model.call_with(theta_D, x).square().sum().backward()
    model(x).square().sum().backward()
    P = model.projection.materialize()
    torch.testing.assert_close(model.theta_d.grad, P.T @ theta_D.grad, rtol=1e-4, atol=1e-6)


def test_sgd_step_changes_output_and_batchnorm_buffers_keep_working():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model = SubspaceModel(net, 30, projection="dense", seed=0)
    x = torch.randn(32, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1
    y = (x @ torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0], [0.0, 1.0, 1.0], [-1.0, 0.0, 0.5]])).argmax(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    bn = model.module[1]
    assert bn.num_batches_tracked.item() == 30
    assert bn.running_mean.abs().sum().item() > 0  # statistics were updated through functional_call


def test_batched_theta_D_matches_rows():
    model = SubspaceModel(cartpole_net(), 4, projection="fastfood", seed=0)
    thetas = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    batch = model.theta_D(thetas)
    for i in range(3):
        torch.testing.assert_close(batch[i], model.theta_D(thetas[i]))


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    config = {"model": "mlp", "model_kwargs": {"in_dim": 4, "out_dim": 2, "hidden": [20, 20], "activation": "tanh"},
              "init_seed": 11}

    def build(cfg):
        return build_model(cfg["model"], seed=cfg["init_seed"], **cfg["model_kwargs"])

    model = SubspaceModel(build(config), 4, projection="fastfood", seed=5)
    model.set_flat(np.array([0.3, -1.2, 2.0, 0.01], dtype=np.float32))
    save_checkpoint(tmp_path / "ckpt", model, config)
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "theta_d.npy"]
    restored = load_checkpoint(tmp_path / "ckpt", build)
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(restored(x), model(x))
    assert torch.equal(restored.theta_D(), model.theta_D())


def test_set_flat_rejects_wrong_shape_and_d_above_D():
    model = SubspaceModel(cartpole_net(), 4, projection="dense", seed=0)
    with pytest.raises(ProjectionError, match=r"shape \(4,\)"):
        model.set_flat(np.zeros(5))
    with pytest.raises(ProjectionError, match="1 <= d <= D = 562"):
        SubspaceModel(cartpole_net(), 563, projection="dense")


@pytest.mark.parametrize("name,kwargs,D", [
    ("mlp", dict(in_dim=4, out_dim=2, hidden=[20, 20]), 562),
    ("mlp", dict(in_dim=784, out_dim=10), 199_210),
    ("mlp", dict(in_dim=3072, out_dim=10), 656_810),
    ("mlp", dict(in_dim=784, out_dim=10, hidden=[400] * 5), 959_610),
    ("lenet", dict(), 44_426),
    ("lenet", dict(in_channels=3, image_size=32), 62_006),
])
def test_registry_parameter_counts(name, kwargs, D):
    assert num_params(build_model(name, seed=0, **kwargs)) == D


def test_build_model_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = cartpole_net(3), cartpole_net(3)
    c = cartpole_net(4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_to_and_repr_work_on_a_wrapped_module():
    model = SubspaceModel(cartpole_net(), 4, projection="fastfood", seed=0)
    moved = model.to(torch.float32).to("cpu")  # nn.Module._apply must reach the projection's buffers
    assert moved is model and model.projection.G.dtype == torch.float32
    text = repr(model)
    assert "Linear(in_features=4, out_features=20" in text and "D=562, d=4" in text
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert model(x).shape == (3, 2)


def test_config_yaml_reads_exponent_floats(tmp_path):
    from rlsub.config import load_yaml

    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nsigma: 2E-2\nsteps: 1_000\nname: run1e3\n")
    assert load_yaml(path) == {"lr": 0.001, "sigma": 0.02, "steps": 1000, "name": "run1e3"}


def test_atomic_write_replaces_whole_files_and_keeps_the_old_one_on_failure(tmp_path):
    from rlsub.subspace import atomic_save_npy, atomic_write, atomic_write_text

    target = tmp_path / "summary.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"

    def fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temporary left behind
    # writers that go by the suffix (np.save would add .npy to a name without it) land on the name asked
    atomic_save_npy(tmp_path / "theta_d.npy", np.arange(3.0))
    atomic_write(tmp_path / "state.npz", lambda tmp: np.savez(tmp, a=np.ones(2)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz", "summary.json", "theta_d.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "theta_d.npy"), np.arange(3.0))


@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
def test_state_dict_holds_theta_d_only_and_reloads_into_a_rebuilt_model(kind):
    model = SubspaceModel(cartpole_net(), 4, projection=kind, seed=3)
    model.set_flat(np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32))
    state = model.state_dict()
    assert list(state) == ["theta_d"]  # P and theta_0 are regenerated from their seeds
    rebuilt = SubspaceModel(cartpole_net(), 4, projection=kind, seed=3)
    rebuilt.load_state_dict(state)
    assert torch.equal(rebuilt.theta_D(), model.theta_D())
    # a state dict from before P left state_dict() (it carried P's buffers) still loads
    old = {**state, **{f"projection.{k}": v for k, v in model.projection._buffers.items()}}
    rebuilt.load_state_dict(old)
    assert torch.equal(rebuilt.theta_D(), model.theta_D())


def test_state_dict_of_mnist_fc_at_d750_is_d_floats_not_the_projection():
    nbytes = sum(v.numel() * v.element_size() for v in SubspaceModel(
        build_model("mlp", seed=0, in_dim=784, out_dim=10), 750, projection="fastfood", seed=0).state_dict().values())
    assert nbytes == 750 * 4


def _bn_net(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                   torch.nn.Linear(8, 2))


def test_checkpoint_keeps_batch_norm_running_statistics(tmp_path):
    model = SubspaceModel(_bn_net(), 5, projection="dense", seed=1)
    model.set_flat(np.linspace(-1, 1, 5, dtype=np.float32))
    model.train()
    model(torch.randn(64, 4, generator=torch.Generator().manual_seed(0)) * 3 + 1)  # updates running stats
    assert sorted(model.state_dict()) == ["module.1.num_batches_tracked", "module.1.running_mean",
                                          "module.1.running_var", "theta_d"]
    save_checkpoint(tmp_path / "ckpt", model, {"seed": 0})
    restored = load_checkpoint(tmp_path / "ckpt", lambda cfg: _bn_net(cfg["seed"]))
    bn, bn2 = model.module[1], restored.module[1]
    assert torch.equal(bn.running_mean, bn2.running_mean) and torch.equal(bn.running_var, bn2.running_var)
    assert int(bn2.num_batches_tracked) == 1 and not torch.equal(bn2.running_mean, torch.zeros(8))
    model.eval()
    restored.eval()
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(restored(x), model(x))
