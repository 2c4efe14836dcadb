import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from rlsub.projections import PROJECTIONS, FastfoodProjection, ProjectionError, make_projection

KINDS = sorted(k for k in PROJECTIONS if k != "identity")


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_same_args_same_projection_other_seed_other(kind):
    a = make_projection(kind, 1000, 20, seed=3).materialize()
    b = make_projection(kind, 1000, 20, seed=3).materialize()
    c = make_projection(kind, 1000, 20, seed=4).materialize()
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_identical_in_a_fresh_process():
    code = (
        "import hashlib, torch, warnings; warnings.simplefilter('ignore');"
        "from rlsub.projections import make_projection;"
        "x = torch.linspace(-1, 1, 30);"
        "print(' '.join(hashlib.sha256(make_projection(k, 5000, 30, 7)(x).numpy().tobytes()).hexdigest()"
        " for k in ('dense', 'sparse', 'fastfood')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    x = torch.linspace(-1, 1, 30)
    here = [digest(make_projection(k, 5000, 30, 7)(x)) for k in ("dense", "sparse", "fastfood")]
    assert out == here


@pytest.mark.parametrize("kind", KINDS)
def test_no_global_rng_state_touched(kind):
    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    make_projection(kind, 3000, 40, seed=1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


@pytest.mark.parametrize("kind,D,d", [(k, D, d) for k in KINDS for D, d in [(562, 4), (5000, 100), (40000, 300)]])
def test_columns_unit_norm_and_nearly_orthogonal(kind, D, d):
    P = make_projection(kind, D, d, seed=0).materialize().double()
    norms = P.norm(dim=0)
    tol = 0.05 if kind == "fastfood" else 1e-5
    assert (norms - 1).abs().max().item() < tol
    cos = (P.T @ P) / torch.outer(norms, norms)
    off = cos - torch.diag(torch.diag(cos))
    # random unit vectors in R^D have |cosine| of order 1/sqrt(D); allow 6 standard deviations
    assert off.abs().max().item() < 6 / np.sqrt(D) + (0.02 if kind == "sparse" else 0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D,d", [(1, 1), (7, 3), (1000, 1000), (3000, 33), (5000, 1)])
def test_exact_adjoint_and_gradient_any_D(kind, D, d):
    g = torch.Generator().manual_seed(D + d)
    proj = make_projection(kind, D, d, seed=2)
    P = proj.materialize().double()
    x = torch.randn(4, d, generator=g)
    y = torch.randn(4, D, generator=g)
    lhs = (proj(x).double() * y.double()).sum()
    rhs = (x.double() * proj.transpose(y).double()).sum()
    assert abs(lhs - rhs).item() <= 1e-4 * max(1.0, abs(lhs).item())
    torch.testing.assert_close(proj(x).double(), x.double() @ P.T, rtol=1e-4, atol=1e-5)
    xv = torch.randn(d, generator=g, requires_grad=True)
    gout = torch.randn(D, generator=g)
    (proj(xv) * gout).sum().backward()
    torch.testing.assert_close(xv.grad.double(), P.T @ gout.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_equals_rows(kind):
    proj = make_projection(kind, 2000, 16, seed=5)
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    batched = proj(x)
    for i in range(3):
        torch.testing.assert_close(batched[i], proj(x[i]), rtol=1e-6, atol=1e-6)


def test_fastfood_large_D_norms_from_expected_scale():
    proj = make_projection("fastfood", 300_000, 200, seed=0)
    assert not proj.exact_norms
    eye = torch.eye(200)
    norms = proj(eye).norm(dim=1)
    assert (norms - 1).abs().max().item() < 0.03


def test_fastfood_memory_is_O_D():
    proj = make_projection("fastfood", 1_005_974, 6000, seed=0)
    assert proj.LL == 2**20
    assert proj.nbytes() <= 3 * 4 * proj.LL  # the int32 index vector, G and the column scales


def test_sparse_memory_is_O_d_sqrt_D():
    proj = make_projection("sparse", 100_000, 50, seed=0)
    assert proj.nnz() <= 50 * int(np.ceil(np.sqrt(100_000)))
    # CSR of P and of P^T: values (4 B) and column indices (8 B) per entry, plus row pointers
    assert proj.nbytes() <= 2 * proj.nnz() * 12 + 8 * (100_000 + 50 + 2)


def test_dense_refuses_above_limit_with_clear_error():
    with pytest.raises(ProjectionError, match="GiB"):
        make_projection("dense", 1_005_974, 6000, seed=0)
    with pytest.raises(ProjectionError, match="limit"):
        make_projection("dense", 10_000, 100, seed=0, max_dense_bytes=1000)


def test_auto_choice():
    assert make_projection("auto", 562, 4, 0).kind == "dense"
    assert isinstance(make_projection("auto", 1_005_974, 6000, 0), FastfoodProjection)


@pytest.mark.parametrize("args,match", [
    (("dense", 100, 101, 0), "1 <= d <= D"),
    (("dense", 100, 0, 0), "1 <= d <= D"),
    (("fastfood", 0, 1, 0), "D must be"),
    (("magic", 100, 10, 0), "unknown projection"),
    (("dense", 100, 10, -1), "seed"),
    (("dense", 100, 2.5, 0), "integer"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ProjectionError, match=match):
        make_projection(*args)


@pytest.mark.slow
def test_fastfood_pong_scale_peak_memory_under_1GB():
    code = (
        "import resource, torch; from rlsub.projections import make_projection;"
        "p = make_projection('fastfood', 1_005_974, 6000, 0);"
        "x = torch.zeros(6000, requires_grad=True);"
        "[p(x).square().sum().backward() for _ in range(3)];"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    peak_mb = int(out.split()[-1]) / 1024
    assert peak_mb < 1024, f"peak resident memory {peak_mb:.0f} MB"


def test_identity_projection_is_exact_and_needs_d_equal_D():
    proj = make_projection("identity", 50, 50, 0)
    x = torch.randn(3, 50)
    assert torch.equal(proj(x), x)
    assert torch.equal(proj.materialize(), torch.eye(50))
    with pytest.raises(ProjectionError, match="d == D"):
        make_projection("identity", 50, 10, 0)
