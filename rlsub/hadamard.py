"""The fast Walsh-Hadamard transform (unnormalised, Sylvester order) used by Fastfood.

``fwht`` transforms the last dimension of a float32 CPU tensor with rlsub's C kernel
(``rlsub/_fwht.c``, cache-blocked so that a 2^20-float vector is read from memory about twice
instead of 20 times, with an AVX2 path chosen at import where the CPU has it) and falls back to
:func:`fwht_torch`, a plain torch butterfly, for other devices and dtypes. Every path runs the
stages in the same order, so all give the same floats bit for bit. None records an autograd graph:
Fastfood differentiates through its own explicit adjoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

try:  # the compiled kernel is built by `pip install -e .`
    from rlsub import _fwht as _kernel
except ImportError:  # pragma: no cover - exercised only on a broken install
    _kernel = None

if _kernel is not None and not all(hasattr(_kernel, f) for f in ("fwht_", "gather_fwht_", "pad_fwht_", "simd_")):
    # an editable install whose compiled kernel predates rlsub/_fwht.c (the source was updated, the
    # extension not rebuilt): say so instead of failing later inside a projection
    raise ImportError(f"{_kernel.__file__} was built from an older rlsub/_fwht.c; rebuild it with "
                      f"`pip install -e .` (or scripts/setup.sh)")


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def next_power_of_two(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << (int(n) - 1).bit_length()


def has_kernel() -> bool:
    """True when the compiled C kernel is importable."""
    return _kernel is not None


def simd_enabled() -> bool:
    """True when the kernel runs its AVX2 path (chosen at import on CPUs with AVX2)."""
    return _kernel is not None and bool(_kernel.simd_(-1))


@contextmanager
def simd_path(enabled: bool) -> Iterator[bool]:
    """Run the kernel's AVX2 path (``enabled``, where the CPU has it) or its generic path inside the
    block; yields whether the AVX2 path is on. For tests and benchmarks: both give the same floats."""
    if _kernel is None:
        yield False
        return
    before = bool(_kernel.simd_(-1))
    try:
        yield bool(_kernel.simd_(int(enabled)))
    finally:
        _kernel.simd_(int(before))


def fwht_torch(x: torch.Tensor) -> torch.Tensor:
    """Out-of-place Walsh-Hadamard transform along the last dim with torch ops: [..., n] -> [..., n]."""
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"Walsh-Hadamard length must be a power of two, got {n}")
    lead = x.shape[:-1]
    y = x.reshape(-1, n)
    h = 1
    while h < n:
        y = y.view(-1, n // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return y.reshape(*lead, n)


@torch.no_grad()
def fwht_(x: torch.Tensor) -> torch.Tensor:
    """In-place Walsh-Hadamard transform along the last dim of a contiguous tensor; returns x."""
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"Walsh-Hadamard length must be a power of two, got {n}")
    if not x.is_contiguous():
        raise ValueError("fwht_ needs a contiguous tensor")
    if _kernel is not None and x.device.type == "cpu" and x.dtype == torch.float32:
        _kernel.fwht_(x.data_ptr(), n, x.numel() // n if x.numel() else 0)
    else:
        x.copy_(fwht_torch(x))
    return x


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Out-of-place Walsh-Hadamard transform along the last dim: [..., n] -> [..., n]."""
    with torch.no_grad():
        return fwht_(x.detach().clone(memory_format=torch.contiguous_format))


def _use_kernel(*tensors: torch.Tensor) -> bool:
    return _kernel is not None and all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype in (torch.float32, torch.int32)
        for t in tensors
    )


@torch.no_grad()
def gather_mul(src: torch.Tensor, idx: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """out[b, k] = src[b, idx[k]] * g[k]: [n, s] x [K] x [K] -> [n, K] (idx int32)."""
    n = src.shape[0]
    if _use_kernel(src, idx, g):
        out = torch.empty(n, idx.numel(), dtype=torch.float32)
        _kernel.gather_mul_(out.data_ptr(), src.data_ptr(), idx.data_ptr(), g.data_ptr(),
                            idx.numel(), src.shape[1], 1, n)
        return out
    return src[:, idx.long()] * g


@torch.no_grad()
def gather_fwht(src: torch.Tensor, idx: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``fwht_(gather_mul(src, idx, g))`` (idx.numel() a power of two), bit for bit; the kernel gathers
    and transforms each cache-sized block in one go instead of writing the gathered rows out first."""
    n = idx.numel()
    if not is_power_of_two(n):
        raise ValueError(f"gather_fwht needs a power-of-two number of indices, got {n}")
    if _use_kernel(src, idx, g):
        out = torch.empty(src.shape[0], n, dtype=torch.float32)
        _kernel.gather_fwht_(out.data_ptr(), src.data_ptr(), idx.data_ptr(), g.data_ptr(), n, src.shape[1], 1,
                             src.shape[0])
        return out
    return fwht_(gather_mul(src, idx, g).contiguous())


@torch.no_grad()
def scatter_add(src: torch.Tensor, idx: torch.Tensor, g: torch.Tensor, m: int) -> torch.Tensor:
    """The adjoint of gather_mul: out[b, c] = sum_{k: idx[k] = c} src[b, k] * g[k]: [n, K] -> [n, m]."""
    n = src.shape[0]
    if _use_kernel(src, idx, g):
        out = torch.empty(n, m, dtype=torch.float32)
        _kernel.scatter_add_(out.data_ptr(), src.data_ptr(), idx.data_ptr(), g.data_ptr(), idx.numel(),
                             idx.numel(), m, n)
        return out
    out = torch.zeros(n, m, dtype=src.dtype, device=src.device)
    return out.index_add_(1, idx.long(), src * g)


@torch.no_grad()
def pad_fwht(y: torch.Tensor, n: int) -> torch.Tensor:
    """The transform of y [b, L] zero-padded to [b, n] (n a power of two >= L), without writing the
    padding first; bit-identical to zero-padding and calling fwht_."""
    b, length = y.shape
    if not is_power_of_two(n) or length > n:
        raise ValueError(f"pad_fwht needs a power of two n >= {length}, got {n}")
    if _use_kernel(y):
        out = torch.empty(b, n, dtype=torch.float32)
        _kernel.pad_fwht_(out.data_ptr(), y.data_ptr(), length, n, b)
        return out
    out = torch.zeros(b, n, dtype=y.dtype, device=y.device)
    out[:, :length] = y
    return fwht_(out)
