import numpy as np
import pytest
import torch

from rlsub.hadamard import (
    fwht,
    fwht_,
    fwht_torch,
    gather_fwht,
    gather_mul,
    has_kernel,
    pad_fwht,
    scatter_add,
    simd_enabled,
    simd_path,
)


def hadamard_matrix(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


def test_kernel_is_built():
    assert has_kernel(), "rlsub._fwht did not build; run scripts/setup.sh"


@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 64, 1024])
def test_fwht_matches_explicit_matrix(n):
    x = torch.randn(3, n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    expect = x.numpy() @ hadamard_matrix(n).T
    np.testing.assert_allclose(fwht(x.float()).double().numpy(), expect, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fwht_torch(x).numpy(), expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [4096, 8192, 2**16, 2**20])
def test_fwht_kernel_matches_torch_butterfly_at_large_n(n):
    # sizes past the kernel's 4096-float block exercise its cross-block pass
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(1))
    ref = fwht_torch(x.double())
    got = fwht(x).double()
    assert (got - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


def test_fwht_is_an_involution_up_to_n():
    x = torch.randn(2**12, generator=torch.Generator().manual_seed(2))
    y = fwht(fwht(x)) / 2**12
    torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-5)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        fwht_(torch.zeros(12))


def test_gathers_match_indexing():
    g = torch.Generator().manual_seed(3)
    src = torch.randn(2, 64, generator=g)
    idx = torch.randint(0, 64, (256,), generator=g, dtype=torch.int32)
    w = torch.randn(256, generator=g)
    torch.testing.assert_close(gather_mul(src, idx, w), src[:, idx.long()] * w)
    q = torch.randn(2, 256, generator=g)
    expect = torch.zeros(2, 64, dtype=torch.float64).index_add_(1, idx.long(), (q * w).double())
    torch.testing.assert_close(scatter_add(q, idx, w, 64).double(), expect, rtol=1e-5, atol=1e-5)
    # the scatter is the adjoint of the gather: <gather(src), q> == <src, scatter(q)>
    lhs = (gather_mul(src, idx, w).double() * q.double()).sum()
    rhs = (src.double() * scatter_add(q, idx, w, 64).double()).sum()
    assert abs(lhs - rhs).item() < 1e-4


@pytest.mark.parametrize("n, length", [(1, 1), (16, 0), (16, 5), (16, 16), (1024, 700), (2**14, 4096), (2**14, 4097),
                                       (2**16, 12345)])
def test_pad_fwht_is_the_transform_of_the_zero_padded_vector(n, length):
    # integer entries make every sum exact in float32, so the kernel must equal the explicit product
    # with the Hadamard matrix (or the torch butterfly at sizes too large for the matrix) bit for bit;
    # lengths on and off the kernel's 4096-float blocks, and whole blocks of padding
    g = torch.Generator().manual_seed(n + length)
    y = torch.randint(-8, 9, (3, length), generator=g).float()
    padded = torch.zeros(3, n, dtype=torch.float64)
    padded[:, :length] = y.double()
    expect = torch.from_numpy(padded.numpy() @ hadamard_matrix(n).T) if n <= 1024 else fwht_torch(padded)
    assert torch.equal(pad_fwht(y, n).double(), expect)


def test_pad_fwht_matches_padding_then_transforming_bit_for_bit():
    # Gaussian entries: the same floating-point operations in the same order as zero-padding and fwht_
    y = torch.randn(2, 656810, generator=torch.Generator().manual_seed(4))
    q = torch.zeros(2, 2**20)
    q[:, :656810] = y
    assert torch.equal(pad_fwht(y, 2**20), fwht_(q))


def test_pad_fwht_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        pad_fwht(torch.zeros(1, 5), 12)
    with pytest.raises(ValueError, match="power of two"):
        pad_fwht(torch.zeros(1, 20), 16)


# The kernel's paths (the AVX2 one where the CPU has it, the generic one) run the butterflies in the
# same ascending order of stages as the plain torch butterfly, so on Gaussian data, where rounding
# differs with any other order, each must give its floats bit for bit.
PATHS = [pytest.param(True, id="simd"), pytest.param(False, id="generic")]


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128, 1024, 4096, 8192, 2**15, 2**18, 2**20, 2**21])
def test_every_kernel_path_gives_the_torch_butterfly_bit_for_bit(simd, n):
    x = torch.randn(2, n, generator=torch.Generator().manual_seed(n))
    with simd_path(simd):
        got = fwht(x)
    assert torch.equal(got, fwht_torch(x))


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("n, m", [(16, 4), (4096, 64), (2**16, 2**10), (2**20, 2**14)])
def test_gather_fwht_is_the_transform_of_the_gathered_rows_bit_for_bit(simd, n, m):
    g = torch.Generator().manual_seed(n)
    src = torch.randn(2, m, generator=g)
    idx = torch.randint(0, m, (n,), generator=g, dtype=torch.int32)
    w = torch.randn(n, generator=g)
    with simd_path(simd):
        got = gather_fwht(src, idx, w)
    assert torch.equal(got, fwht_torch(src[:, idx.long()] * w))


@pytest.mark.parametrize("simd", PATHS)
def test_pad_fwht_on_every_kernel_path_is_the_butterfly_of_the_padded_vector(simd):
    y = torch.randn(2, 656810, generator=torch.Generator().manual_seed(5))
    padded = torch.zeros(2, 2**20)
    padded[:, :656810] = y
    with simd_path(simd):
        got = pad_fwht(y, 2**20)
    assert torch.equal(got, fwht_torch(padded))


def test_simd_path_switches_and_restores():
    before = simd_enabled()
    with simd_path(False) as on:
        assert on is False and simd_enabled() is False
    assert simd_enabled() == before


def test_gather_fwht_rejects_a_size_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        gather_fwht(torch.zeros(1, 4), torch.zeros(12, dtype=torch.int32), torch.zeros(12))
