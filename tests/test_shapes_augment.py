"""Subspace shapes (hyperplane, hypersphere), augmentations (power, RFF), dense-P options and a
trainable P, each checked against an independent construction in numpy (materialised P, formulas)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rlsub.augment import AUGMENTATIONS, make_augmentation
from rlsub.config import ConfigError
from rlsub.models import build_model
from rlsub.projections import make_projection, projection_rng
from rlsub.shapes import SHAPES
from rlsub.subspace import SubspaceModel

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RLSUB_DATA") or ROOT.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST in {DATA}")

AUGMENT_OPTIONS = {"none": {}, "power": {}, "rff": {"features": 7, "scale": 0.5}}


pytestmark = pytest.mark.usefixtures("one_thread")


def small_net(seed=0):
    return build_model("mlp", seed=seed, in_dim=4, out_dim=2, hidden=[20, 20], activation="tanh")  # D = 562


def flat_params(net: nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in net.parameters()]).astype(np.float64)


def phi_numpy(name: str, t: np.ndarray, B: np.ndarray | None) -> np.ndarray:
    """The slides' feature maps, written out independently (RFF centred: cos(Bt) - 1, so phi(0) = 0)."""
    if name == "none":
        return t
    if name == "power":
        return np.concatenate([t, t**2])
    return np.concatenate([t, np.cos(B @ t) - 1, np.sin(B @ t)])


# --- augmentations --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
def test_augmented_theta_D_matches_the_formula_elementwise(name, kind):
    net = small_net()
    theta_0 = flat_params(net)
    d = 5
    model = SubspaceModel(net, d, projection=kind, seed=3, augment=name, augment_options=AUGMENT_OPTIONS[name])
    width = {"none": d, "power": 2 * d, "rff": d + 2 * 7}[name]
    assert model.d == d and model.projection.d == width and model.theta_d.shape == (d,)
    assert [n for n, _ in model.named_parameters()] == ["theta_d"]
    P = model.projection.materialize().double().numpy()
    assert P.shape == (562, width)
    B = model.augment.B.double().numpy() if name == "rff" else None
    t = np.array([0.7, -1.3, 0.2, 2.1, -0.4])
    model.set_flat(t)
    expect = theta_0 + P @ phi_numpy(name, t, B)
    np.testing.assert_allclose(model.theta_D().detach().double().numpy(), expect, rtol=1e-5, atol=1e-5)
    model.set_flat(np.zeros(d))  # phi(0) = 0: the start is the network's own initialisation
    np.testing.assert_array_equal(model.theta_D().detach().numpy(), theta_0.astype(np.float32))
    # batched theta_d gives the same rows
    rows = torch.tensor(np.stack([t, -t]), dtype=torch.float32)
    np.testing.assert_allclose(model.theta_D(rows)[1].detach().double().numpy(),
                               theta_0 + P @ phi_numpy(name, -t, B), rtol=1e-5, atol=1e-5)


def test_rff_matrix_is_regenerated_from_the_seed_with_the_asked_scale():
    def B(seed, scale=2.0, features=400, d=50):
        return make_augmentation("rff", d, seed, features=features, scale=scale).B

    first, again, other = B(1), B(1), B(2)
    assert first.shape == (400, 50) and torch.equal(first, again) and not torch.allclose(first, other)
    assert abs(float(first.std()) - 2.0) < 0.05 and abs(float(first.mean())) < 0.05
    # B is data of the seed, not of the state dict
    model = SubspaceModel(small_net(), 4, "dense", 1, augment="rff", augment_options={"features": 3})
    assert list(model.state_dict()) == ["theta_d"]


def test_augmented_gradient_is_the_chain_rule_through_phi():
    model = SubspaceModel(small_net(), 3, "dense", 0, augment="power")
    t = np.array([0.5, -2.0, 1.5])
    model.set_flat(t)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    theta_D = model.theta_D().detach().requires_grad_(True)
    model.call_with(theta_D, x).square().sum().backward()
    model(x).square().sum().backward()
    P = model.projection.materialize().double().numpy()
    g_D = theta_D.grad.double().numpy()
    jac = np.vstack([np.eye(3), np.diag(2 * t)])  # d phi / d t for phi = [t; t^2]
    np.testing.assert_allclose(model.theta_d.grad.double().numpy(), jac.T @ (P.T @ g_D), rtol=1e-4, atol=1e-6)


# --- hyperplane and hypersphere -------------------------------------------------------------------


def test_hyperplane_init_radius_ratio_rescales_theta_0():
    theta_0 = flat_params(small_net())
    r_X = np.linalg.norm(theta_0)
    model = SubspaceModel(small_net(), 4, "fastfood", 0, radius_ratio=0.1)
    np.testing.assert_allclose(model.theta_D().detach().double().numpy(), 0.1 * theta_0, rtol=1e-6, atol=1e-7)
    assert model.r_X == pytest.approx(r_X, rel=1e-6) and model.r0 == pytest.approx(0.1 * r_X, rel=1e-6)
    plain = SubspaceModel(small_net(), 4, "fastfood", 0)
    assert plain.r0 == plain.r_X == pytest.approx(r_X, rel=1e-6)


def regression_batch(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("kind", ["dense", "sparse", "fastfood"])
def test_hypersphere_keeps_the_radius_and_steps_have_no_radial_component(kind):
    ratio, lr = 3.0, 0.05
    model = SubspaceModel(small_net(), 10, projection=kind, seed=1, subspace="hypersphere", radius_ratio=ratio)
    r_X = np.linalg.norm(flat_params(small_net()))
    r0 = ratio * r_X
    P = model.projection.materialize().double().numpy()
    assert model.r0 == pytest.approx(r0, rel=1e-9)
    t = model.theta_d.detach().double().numpy()
    np.testing.assert_allclose(model.theta_D().detach().double().numpy(), P @ t, rtol=1e-5, atol=1e-6)  # no theta_0
    assert np.linalg.norm(P @ t) == pytest.approx(r0, rel=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.attach_optimizer(opt)
    x, y = regression_batch()
    losses, drifts = [], []
    for _ in range(300):
        t = model.theta_d.detach().double().numpy().copy()
        theta_D = model.theta_D().detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(model.call_with(theta_D, x), y)
        loss.backward()
        g = P.T @ theta_D.grad.double().numpy()  # the raw gradient in theta_d, from the materialised P
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        n = P.T @ (P @ t)  # the sphere's normal pulled back to theta_d
        g_tan = model.theta_d.grad.double().numpy()  # the step rule left the tangent gradient here
        np.testing.assert_allclose(g_tan, g - (g @ n) / (n @ n) * n, rtol=1e-3, atol=1e-6)
        assert abs((P @ t) @ (P @ g_tan)) <= 1e-5 * r0 * np.linalg.norm(P @ g_tan) + 1e-9  # no radial part
        stepped = t - lr * g_tan
        np.testing.assert_allclose(model.theta_d.detach().double().numpy(),
                                   stepped * r0 / np.linalg.norm(P @ stepped), rtol=1e-4, atol=1e-6)
        drifts.append(abs(np.linalg.norm(P @ model.theta_d.detach().double().numpy()) - r0) / r0)
        losses.append(loss.item())
    assert max(drifts) < 1e-5  # float32 precision, not an accumulating drift
    assert losses[-1] < losses[0]  # it does train on the sphere


def test_hypersphere_with_adam_stays_on_the_sphere_and_starts_towards_theta_0():
    net = small_net()
    theta_0 = flat_params(net)
    model = SubspaceModel(net, 20, projection="dense", seed=0, subspace="hypersphere", radius_ratio=0.5)
    r0 = 0.5 * np.linalg.norm(theta_0)
    P = model.projection.materialize().double().numpy()
    # the start is the direction in span(P) closest to theta_0, scaled to r0
    start = model.theta_D().detach().double().numpy()
    best = P @ np.linalg.lstsq(P, theta_0, rcond=None)[0]
    np.testing.assert_allclose(start, best * r0 / np.linalg.norm(best), rtol=1e-4, atol=1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model.attach_optimizer(opt)
    x, y = regression_batch()
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        assert abs(np.linalg.norm(P @ model.theta_d.detach().double().numpy()) - r0) < 1e-5 * r0
    assert model.radius() == pytest.approx(r0, rel=1e-5)
    assert np.linalg.norm(model.theta_d.detach().numpy() - P.T @ start) > 0.1  # it moved


# --- dense P options and a trainable P --------------------------------------------------------------


def test_dense_default_is_the_normalised_gaussian_of_before():
    D, d, seed = 300, 6, 4
    pt = projection_rng("dense", D, d, seed).standard_normal((d, D), dtype=np.float32)
    expect = (pt / np.linalg.norm(pt, axis=1, keepdims=True)).T
    assert np.array_equal(make_projection("dense", D, d, seed).materialize().numpy(), expect)


@pytest.mark.parametrize("init", ["gaussian", "uniform", "sparse"])
def test_dense_init_distributions_and_normalize_columns(init):
    D, d = 10_000, 20
    raw = make_projection("dense", D, d, 0, init=init, normalize_columns=False).materialize().double().numpy()
    entries = raw * np.sqrt(D)  # unnormalised columns are entries / sqrt(D), entries of unit variance
    assert abs(entries.std() - 1) < 0.02 and abs(entries.mean()) < 0.02
    col_norms = np.linalg.norm(raw, axis=0)
    assert abs(col_norms.mean() - 1) < 0.03 and col_norms.std() > 1e-3  # unit norm on average only
    if init == "uniform":
        assert np.abs(entries).max() <= np.sqrt(3) + 1e-5 and np.abs(entries).max() > 1.6
    if init == "sparse":
        s = np.sqrt(D)
        assert abs((entries != 0).mean() - 1 / s) < 0.2 / s
        np.testing.assert_allclose(np.abs(entries[entries != 0]), np.sqrt(s), rtol=1e-5)
    normed = make_projection("dense", D, d, 0, init=init).materialize().double().numpy()
    np.testing.assert_allclose(np.linalg.norm(normed, axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(normed, raw / col_norms, rtol=1e-4, atol=1e-7)  # the same draw, normalised


def test_trainable_projection_trains_P_with_the_outer_product_gradient():
    model = SubspaceModel(small_net(), 3, projection="dense", seed=0, augment="power", trainable_projection=True)
    assert sorted(n for n, _ in model.named_parameters()) == ["projection.PT", "theta_d"]
    assert model.num_trained() == 3 + 562 * 6
    t = np.array([0.3, -0.2, 0.9])
    model.set_flat(t)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    theta_D = model.theta_D().detach().requires_grad_(True)
    model.call_with(theta_D, x).square().sum().backward()
    model(x).square().sum().backward()
    phi = np.concatenate([t, t**2])
    np.testing.assert_allclose(model.projection.PT.grad.double().numpy(),
                               np.outer(phi, theta_D.grad.double().numpy()), rtol=1e-4, atol=1e-6)
    before = model.projection.PT.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.projection.PT)
    state = model.state_dict()  # a trained P is not regenerable: it stays in the state dict
    assert sorted(state) == ["projection.PT", "theta_d"]
    rebuilt = SubspaceModel(small_net(), 3, projection="dense", seed=0, augment="power", trainable_projection=True)
    rebuilt.load_state_dict(copy.deepcopy(state))
    assert torch.equal(rebuilt.theta_D(), model.theta_D())


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ({"subspace": "hypersphere", "radius_ratio": 0}, "radius_ratio must be a positive number"),
    ({"subspace": "hypersphere", "radius_ratio": -1.0}, "radius_ratio must be a positive number"),
    ({"init_radius_ratio": 0.0}, "init_radius_ratio must be a positive number"),
    ({"radius_ratio": 2.0}, "radius_ratio does not apply to subspace: hyperplane"),
    ({"augment": "rff"}, "augment: rff needs rff_features, a positive integer"),
    ({"augment": "rff", "rff_features": 0}, "rff_features must be a positive integer"),
    ({"trainable_projection": True, "projection": "fastfood"}, "trainable_projection needs projection: dense"),
    ({"trainable_projection": True, "projection": "sparse"}, "trainable_projection needs projection: dense"),
    ({"subspace": "ball"}, "subspace must be one of 'hyperplane', 'hypersphere', got 'ball'"),
    ({"augment": "cubic"}, "augment must be one of 'none', 'power', 'rff', got 'cubic'"),
    ({"projection": "dense", "projection_init": "laplace"}, "projection_init must be one of .*got 'laplace'"),
    ({"projection_init": "uniform"}, "apply to projection: dense"),
])
def test_bad_subspace_settings_are_one_config_error_each(overrides, message):
    from rlsub.supervised import trainer

    with pytest.raises(ConfigError, match=message):
        trainer.resolve(None, overrides)


def test_trainable_projection_above_the_memory_cap_is_refused_before_allocating():
    mnist_fc = build_model("mlp", seed=0, in_dim=784, out_dim=10)  # D = 199,210
    with pytest.raises(ConfigError, match="trainable_projection: a dense 199210 x 750 P .* above max_dense_bytes"):
        SubspaceModel(mnist_fc, 750, projection="dense", trainable_projection=True)
    with pytest.raises(ConfigError, match="above max_dense_bytes"):
        SubspaceModel(small_net(), 4, projection="dense", trainable_projection=True, max_dense_bytes=4 * 4 * 562 * 4 - 1)


def test_hypersphere_refuses_a_nonlinear_map():
    with pytest.raises(ConfigError, match="hypersphere needs a linear map"):
        SubspaceModel(small_net(), 4, "dense", 0, subspace="hypersphere", augment="power")


# --- supervised runs: recorded, logged, reloadable --------------------------------------------------


@needs_mnist
@pytest.mark.parametrize("extra", [
    {"subspace": "hypersphere", "radius_ratio": 2.0},
    {"augment": "rff", "rff_features": 5, "projection": "dense", "trainable_projection": True,
     "init_radius_ratio": 0.5},
    {"dim": "full"},
], ids=["hypersphere", "rff-trainable", "full"])
def test_supervised_run_records_radius_and_subspace_and_reloads(tmp_path, extra):
    import rlsub
    from rlsub.supervised import trainer

    config = trainer.resolve(None, {"dataset": "mnist", "data_dir": str(DATA), "model_kwargs": {"hidden": [16]},
                                    "dim": 12, "subset": 300, "epochs": 2, "batch_size": 50, "lr": 0.05, **extra})
    summary = trainer.train(config, tmp_path / "run", quiet=True)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["radius"] > 0 for r in rows)
    assert summary["radius_final"] == rows[-1]["radius"]
    for key in ("r_X", "r0", "projection_width", "trained_parameters"):
        assert written[key] == summary[key]
    run = rlsub.load_run(tmp_path / "run")
    assert run.evaluate()["value"] == summary["test_accuracy"]  # rebuilt with the same shape, map and P
    D = summary["D"]
    if extra.get("subspace") == "hypersphere":
        assert summary["subspace"] == "hypersphere" and summary["radius_ratio"] == 2.0
        assert summary["r0"] == pytest.approx(2 * summary["r_X"], rel=1e-12)
        assert [r["radius"] for r in rows] == pytest.approx([summary["r0"]] * 2, rel=1e-6)
        assert summary["trained_parameters"] == 12 and summary["projection_width"] == 12
        from rlsub.export import export_run

        export_run(tmp_path / "run", tmp_path / "model.npz")  # config + seed + theta_d rebuild the sphere
        assert rlsub.load_run(tmp_path / "model.npz").evaluate()["value"] == summary["test_accuracy"]
    elif extra.get("augment") == "rff":
        assert summary["augment"] == "rff" and summary["projection_width"] == 12 + 10
        assert summary["trained_parameters"] == 12 + D * 22  # no longer a 12-dimensional search
        assert summary["r0"] == pytest.approx(0.5 * summary["r_X"], rel=1e-6)
        assert (tmp_path / "run" / trainer.TRAINED_P).is_file()
        from rlsub.export import export_run
        from rlsub.loading import LoadError

        with pytest.raises(LoadError, match="trained its projection"):
            export_run(tmp_path / "run", tmp_path / "model.npz")
    else:
        assert summary["subspace"] is None and summary["trained_parameters"] == D
        final = np.load(tmp_path / "run" / "theta_D.npy").astype(np.float64)
        assert summary["radius_final"] == pytest.approx(np.linalg.norm(final), rel=1e-6)


@needs_mnist
def test_trainable_projection_too_large_for_the_network_fails_before_the_run_starts(tmp_path):
    from rlsub.supervised import trainer

    config = trainer.resolve(None, {"data_dir": str(DATA), "subset": 100, "epochs": 1, "dim": 750,
                                    "projection": "dense", "trainable_projection": True})
    with pytest.raises(ConfigError, match="above max_dense_bytes"):
        trainer.train(config, tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()


@needs_mnist
@pytest.mark.parametrize("extra", [{"subspace": "hypersphere", "radius_ratio": 0.5},
                                   {"projection": "dense", "trainable_projection": True}], ids=["sphere", "trainable"])
def test_resume_continues_exactly_on_the_sphere_and_with_a_trained_P(tmp_path, extra):
    from rlsub.supervised import trainer

    def config(epochs):
        return trainer.resolve(None, {"data_dir": str(DATA), "model_kwargs": {"hidden": [16]}, "dim": 8,
                                      "subset": 200, "epochs": epochs, "batch_size": 50, "lr": 0.05, **extra})

    straight = trainer.train(config(2), tmp_path / "a", quiet=True)
    trainer.train(config(1), tmp_path / "b", quiet=True)
    resumed = trainer.train(config(2), tmp_path / "b", resume=True, quiet=True)
    assert resumed["radius_final"] == straight["radius_final"]
    for name in ["theta_d.npy"] + ([trainer.TRAINED_P] if "trainable_projection" in extra else []):
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))


@pytest.mark.parametrize("kwargs", [
    {"subspace": "hypersphere", "radius_ratio": 2.0},
    {"augment": "rff", "augment_options": {"features": 3, "scale": 0.3}, "trainable_projection": True,
     "init": "uniform", "normalize_columns": False},
], ids=["sphere", "rff-trainable"])
def test_checkpoint_round_trip_keeps_shape_augmentation_and_trained_P(tmp_path, kwargs):
    from rlsub.subspace import load_checkpoint, save_checkpoint

    model = SubspaceModel(small_net(), 4, projection="dense", seed=2, **kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.attach_optimizer(opt)
    x, y = regression_batch()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt", model, {"seed": 0})
    restored = load_checkpoint(tmp_path / "ckpt", lambda cfg: small_net(cfg["seed"]))
    assert restored.options() == model.options()
    assert torch.equal(restored.theta_D(), model.theta_D())


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_shape_trains_with_theta_d_its_only_parameter(name):
    model = SubspaceModel(small_net(), 6, "fastfood", 0, subspace=name, radius_ratio=1.5)
    assert [n for n, _ in model.named_parameters()] == ["theta_d"] and list(model.state_dict()) == ["theta_d"]
    assert model.r0 == pytest.approx(1.5 * model.r_X) and model.radius() == pytest.approx(model.r0, rel=1e-5)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    model.attach_optimizer(opt)
    x, y = regression_batch()
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
