import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from rlsub.hadamard import fwht, fwht_
from rlsub.projections import (
    PROJECTIONS,
    FastfoodProjection,
    Projection,
    ProjectionError,
    make_projection,
    projection_rng,
)

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
    P = make_projection(kind, D, d, seed=0)(torch.eye(d)).T.double()  # the forward pass, column by column
    norms = P.norm(dim=0)
    tol = 0.05 if kind == "fastfood" else 1e-5
    assert (norms - 1).abs().max().item() < tol
    cos = (P.T @ P) / torch.outer(norms, norms)
    off = cos - torch.diag(torch.diag(cos))
    # random unit vectors in R^D have |cosine| of order 1/sqrt(D); allow 6 standard deviations
    assert off.abs().max().item() < 6 / np.sqrt(D) + (0.02 if kind == "sparse" else 0)


# --- independent references -------------------------------------------------------------------
#
# Each projection is rebuilt here as an explicit float64 D x d matrix straight from its formula,
# reading only the library's random draws (the same Generator, the same order of draws); the
# products, the Hadamard matrices, padding, permutation, truncation and scaling are all built
# here. The library's forward, transpose and gradient are compared with these matrices.


def hadamard(n: int) -> np.ndarray:
    """The unnormalised Walsh-Hadamard matrix of order n (Sylvester): H_2n = [[H, H], [H, -H]]."""
    H = np.ones((1, 1))
    while H.shape[0] < n:
        H = np.kron(np.array([[1.0, 1.0], [1.0, -1.0]]), H)
    assert H.shape == (n, n)
    return H


def unit_columns(P: np.ndarray) -> np.ndarray:
    return P / np.linalg.norm(P, axis=0, keepdims=True)


def reference_matrix(kind: str, D: int, d: int, seed: int, exact_norm_limit: int = 2**26) -> np.ndarray:
    """P (D x d, float64) for ``make_projection(kind, D, d, seed)``, built independently."""
    if kind == "identity":
        return np.eye(D)
    rng = projection_rng(kind, D, d, seed)
    if kind == "dense":  # N(0, 1) entries, drawn as the rows of P^T, columns scaled to unit norm
        return unit_columns(rng.standard_normal((d, D), dtype=np.float32).astype(np.float64).T)
    if kind == "sparse":  # ceil(sqrt(D)) random-sign entries per column at random rows, summed
        k = min(D, int(np.ceil(np.sqrt(D))))
        rows = rng.integers(0, D, size=(d, k), dtype=np.int64)
        signs = rng.integers(0, 2, size=(d, k), dtype=np.int8).astype(np.float64) * 2 - 1
        P = np.zeros((D, d))
        np.add.at(P, (rows, np.repeat(np.arange(d)[:, None], k, axis=1)), signs)
        return unit_columns(P)
    assert kind == "fastfood"  # V = H G Pi H B on LL = 2^ceil(log2 D), theta_d zero-padded to LL
    LL = 1 << (D - 1).bit_length()
    b = rng.integers(0, 2, size=d, dtype=np.int8).astype(np.float64) * 2 - 1
    perm = rng.permutation(LL)
    g = rng.standard_normal(LL, dtype=np.float32).astype(np.float64)
    H = hadamard(LL)
    B = np.zeros((LL, d))  # B, applied to theta_d padded with LL - d zeros
    B[np.arange(d), np.arange(d)] = b
    Pi = np.zeros((LL, LL))
    Pi[np.arange(LL), perm] = 1.0  # (Pi u)_k = u[perm_k]
    V = H @ (np.diag(g) @ (Pi @ (H @ B)))  # H G Pi H B, multiplied from the right (thin products)
    P = V[:D] / (np.linalg.norm(g) * np.sqrt(D))  # the first D outputs; columns of norm ~1
    return unit_columns(P) if d * LL <= exact_norm_limit else P


def check_projection(proj, P: np.ndarray, seed: int = 0) -> None:
    """AssertionError unless ``proj`` is the linear map ``P`` (D x d) in forward, transpose and
    gradient, and spreads its columns over all D coordinates as a random projection must."""
    D, d = P.shape
    g = torch.Generator().manual_seed(seed + D + d)
    x = torch.randn(4, d, generator=g, dtype=torch.float64)
    y = torch.randn(4, D, generator=g, dtype=torch.float64)
    xn, yn = x.numpy(), y.numpy()
    tol = dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(proj(x.float()).double().numpy(), xn @ P.T, **tol, err_msg="forward P x")
    np.testing.assert_allclose(proj.transpose(y.float()).double().numpy(), yn @ P, **tol, err_msg="P^T y")
    xv = x[0].float().clone().requires_grad_(True)
    (proj(xv).double() * y[0]).sum().backward()
    np.testing.assert_allclose(xv.grad.double().numpy(), P.T @ yn[0], **tol, err_msg="gradient P^T g")
    if proj.kind != "identity" and d <= D // 4:
        # a random projection puts about d / D of each column's energy in any d coordinates
        head = float((P[:d] ** 2).sum() / (P**2).sum())
        assert head < 0.5, f"{head:.0%} of P's energy sits in its first d = {d} coordinates"


FASTFOOD_SIZES = [(1, 1), (2, 1), (7, 3), (7, 7), (100, 99), (100, 100), (600, 33), (1000, 1), (1025, 1000),
                  (1025, 1025), (1025, 5)]


@pytest.mark.parametrize("kind,D,d", [("fastfood", D, d) for D, d in FASTFOOD_SIZES]
                         + [(k, D, d) for k in ("dense", "sparse")
                            for D, d in [(1, 1), (7, 3), (1000, 1000), (3000, 33), (5000, 1), (1025, 1000)]]
                         + [("identity", 50, 50)])
def test_matches_an_independent_construction(kind, D, d):
    check_projection(make_projection(kind, D, d, seed=2), reference_matrix(kind, D, d, seed=2))


@pytest.mark.parametrize("D,d", [(1025, 3), (1000, 64), (100, 99)])
def test_fastfood_scale_without_exact_norms_matches_the_formula(D, d):
    # ||G|| sqrt(D) is the whole normalisation when the columns are not rescaled one by one
    proj = make_projection("fastfood", D, d, seed=5, exact_norm_limit=0)
    assert not proj.exact_norms
    check_projection(proj, reference_matrix("fastfood", D, d, seed=5, exact_norm_limit=0))


def test_the_reference_hadamard_is_orthogonal_and_symmetric():
    H = hadamard(16)
    np.testing.assert_array_equal(H @ H.T, 16 * np.eye(16))
    np.testing.assert_array_equal(H, H.T)
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(fwht(x).numpy(), x.numpy() @ H.T, rtol=1e-5, atol=1e-5)


class _FirstCoordinates(Projection):
    """Broken on purpose: trains only the first d coordinates (unit, orthogonal columns all the same)."""

    kind = "dense"

    def _map(self, x):
        out = torch.zeros(x.shape[0], self.D)
        out[:, : self.d] = x
        return out

    def _map_t(self, y):
        return y[:, : self.d].clone()


class _AdjointOffByLL(FastfoodProjection):
    """Broken on purpose: the gradient is the adjoint divided by LL (a known pitfall of ports)."""

    def _map_t(self, y):
        return super()._map_t(y) / self.LL


class _WrongPermutation(FastfoodProjection):
    """Broken on purpose: the adjoint undoes the permutation the wrong way round (Pi, not Pi^T)."""

    def _map_t(self, y):
        n = y.shape[0]
        q = torch.zeros(n, self.LL)
        q[:, : self.D] = y
        fwht_(q)
        z = (q * self.G)[:, torch.argsort(self.gather_idx.long(), stable=True)][:, : self.m]
        z = z.contiguous()
        fwht_(z)
        return z[:, : self.d] * self.col_scale


@pytest.mark.parametrize("broken,kind,D,d", [
    (lambda: _FirstCoordinates(1000, 20, 0), "dense", 1000, 20),
    (lambda: _FirstCoordinates(1000, 20, 0), "fastfood", 1000, 20),
    (lambda: _AdjointOffByLL(1000, 20, 0), "fastfood", 1000, 20),
    (lambda: _AdjointOffByLL(7, 3, 0), "fastfood", 7, 3),
    (lambda: _WrongPermutation(600, 33, 0), "fastfood", 600, 33),
    (lambda: make_projection("fastfood", 1000, 20, seed=1), "fastfood", 1000, 20),  # another seed's P
    (lambda: make_projection("fastfood", 1000, 20, seed=0, exact_norm_limit=0), "fastfood", 1000, 20),
])
def test_a_wrong_projection_fails_the_checks(broken, kind, D, d):
    with pytest.raises(AssertionError):
        check_projection(broken(), reference_matrix(kind, D, d, seed=0))


def test_projection_trained_on_the_first_coordinates_fails_the_spread_check_alone():
    # even against its own matrix (so forward, transpose and gradient agree), it is rejected
    broken = _FirstCoordinates(1000, 20, 0)
    with pytest.raises(AssertionError, match="first d = 20 coordinates"):
        check_projection(broken, np.eye(1000, 20))


@pytest.mark.parametrize("kind", KINDS)
def test_exact_adjoint_any_D(kind):
    for D, d in [(1, 1), (7, 3), (3000, 33), (5000, 1)]:
        g = torch.Generator().manual_seed(D + d)
        proj = make_projection(kind, D, d, seed=2)
        x = torch.randn(4, d, generator=g)
        y = torch.randn(4, D, generator=g)
        lhs = (proj(x).double() * y.double()).sum()
        rhs = (x.double() * proj.transpose(y).double()).sum()
        assert abs(lhs - rhs).item() <= 1e-4 * max(1.0, abs(lhs).item())


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
        # VmHWM is this process's own peak; ru_maxrss would carry over the forking pytest's size
        "print(next((l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')), None)"
        " or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
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
