"""Random projections P: R^d -> R^D, the fixed maps behind ``theta_D = theta_0 + P theta_d``.

Three kinds, as in the released code of Li et al. (ICLR 2018), each a pure function of
``(kind, D, d, seed)``: the same arguments give the same P in any process, and no global RNG
state is read or written (every draw comes from a ``numpy.random.Generator`` seeded from those
four values).

- ``dense``: N(0, 1) entries, each column scaled to unit norm. Memory O(D d); refused above
  ``max_dense_bytes`` (2 GiB by default). Options: the entries' distribution (``init``: gaussian,
  uniform, sparse), ``normalize_columns`` and ``trainable`` (P an ``nn.Parameter``).
- ``sparse``: ceil(sqrt(D)) entries of random sign per column at random rows (the "very sparse"
  projection of Li, Hastie, Church 2006), columns scaled to exactly unit norm. Memory
  O(d sqrt(D)), held as CSR matrices for P and P^T.
- ``identity``: P = I with d = D, for full-space baselines through the same code path.
- ``fastfood``: ``V = H G Pi H B`` (Le, Sarlos, Smola 2013) on LL = next power of two >= D,
  truncated to the first D outputs. Memory O(D), time O(D log D). See :class:`FastfoodProjection`.

Every projection maps ``theta_d`` of shape [d] or [n, d] to [D] or [n, D] and is differentiable in
theta_d through an explicit adjoint (``P^T g``), so backward costs what forward costs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from rlsub.errors import UserError
from rlsub.hadamard import fwht_, gather_fwht, next_power_of_two, pad_fwht, scatter_add

GiB = 1024**3
#: the largest dense P built unless the caller raises it (``max_dense_bytes``)
MAX_DENSE_BYTES = 2 * GiB

_KIND_CODES = {"dense": 1, "sparse": 2, "fastfood": 3, "identity": 4}


class ProjectionError(UserError):
    """Bad arguments for a projection (unknown kind, d > D, a dense matrix too large, ...)."""


def projection_rng(kind: str, D: int, d: int, seed: int) -> np.random.Generator:
    """The Generator all of a projection's randomness comes from: a function of its four arguments."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _KIND_CODES[kind], D, d])))


class _LinearMap(torch.autograd.Function):
    """y = P x with gradient P^T g, for any projection exposing ``_map`` and ``_map_t``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, proj: Projection) -> torch.Tensor:
        ctx.proj = proj
        return proj._map(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        return ctx.proj._map_t(g.contiguous()), None


class Projection(nn.Module):
    """Base class: a fixed linear map R^d -> R^D held in buffers (no nn.Parameter).

    Subclasses implement ``_map`` ([n, d] -> [n, D]) and ``_map_t`` ([n, D] -> [n, d]) on
    float32 tensors without autograd; this class adds shape handling and the autograd wiring.
    """

    kind: str = ""

    def __init__(self, D: int, d: int, seed: int):
        super().__init__()
        self.D, self.d, self.seed = int(D), int(d), int(seed)

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        """P theta_d: [d] -> [D] or [n, d] -> [n, D], differentiable in theta_d."""
        x = self._check(theta_d, self.d, "theta_d")
        y = _LinearMap.apply(x.reshape(-1, self.d).to(torch.float32).contiguous(), self)
        return y.reshape(*theta_d.shape[:-1], self.D)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """P^T y: [D] -> [d] or [n, D] -> [n, d] (not differentiable)."""
        y = self._check(y, self.D, "y")
        with torch.no_grad():
            out = self._map_t(y.reshape(-1, self.D).to(torch.float32).contiguous())
        return out.reshape(*y.shape[:-1], self.d)

    def materialize(self, chunk: int = 256) -> torch.Tensor:
        """The explicit D x d matrix (for tests and small problems)."""
        cols = []
        with torch.no_grad():
            for start in range(0, self.d, chunk):
                stop = min(self.d, start + chunk)
                eye = torch.zeros(stop - start, self.d, device=self._device())
                eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
                cols.append(self._map(eye).T)
        return torch.cat(cols, dim=1)

    def nbytes(self) -> int:
        """Bytes held in this projection's buffers."""
        total = 0
        for b in self.buffers():
            if b.layout == torch.sparse_csr:
                parts = (b.values(), b.crow_indices(), b.col_indices())
                total += sum(p.numel() * p.element_size() for p in parts)
            else:
                total += b.numel() * b.element_size()
        return total

    def extra_repr(self) -> str:
        return f"kind={self.kind}, D={self.D}, d={self.d}, seed={self.seed}"

    def _check(self, x: torch.Tensor, n: int, name: str) -> torch.Tensor:
        if x.dim() not in (1, 2) or x.shape[-1] != n:
            raise ProjectionError(f"{name} must have shape [{n}] or [batch, {n}], got {tuple(x.shape)}")
        return x

    def _device(self) -> torch.device:
        buf = next(self.buffers(), None)
        return buf.device if buf is not None else torch.device("cpu")

    def _map(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _map_t(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


#: distributions of a dense P's entries (``projection_init``), each of unit variance
DENSE_INITS = ("gaussian", "uniform", "sparse")


def dense_entries(rng: np.random.Generator, d: int, D: int, init: str = "gaussian") -> np.ndarray:
    """A [d, D] float32 array of i.i.d. unit-variance entries (rows are columns of P).

    ``gaussian``: N(0, 1); ``uniform``: U(-sqrt 3, sqrt 3); ``sparse``: +-sqrt(s) with probability
    1 / (2 s) each and 0 otherwise, s = sqrt(D) (the "very sparse" distribution of Li, Hastie,
    Church 2006, about sqrt(D) nonzeros per column, as in the Goldilocks-zone poster).
    """
    if init == "gaussian":
        return rng.standard_normal((d, D), dtype=np.float32)
    if init == "uniform":
        return rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), size=(d, D)).astype(np.float32)
    if init == "sparse":
        s = math.sqrt(D)
        u = rng.random((d, D), dtype=np.float32)
        return (np.where(u < 0.5 / s, 1.0, 0.0) - np.where(u > 1 - 0.5 / s, 1.0, 0.0)).astype(np.float32) * np.float32(
            math.sqrt(s))
    raise ProjectionError(f"unknown projection_init {init!r}; choose one of {list(DENSE_INITS)}")


class DenseProjection(Projection):
    """Dense P, stored as [d, D] so that rows are columns of P.

    Entries are i.i.d. of unit variance (``init``, see :func:`dense_entries`; Gaussian by default).
    With ``normalize_columns`` (the default, as in Li et al.) each column is scaled to exactly unit
    norm; without it the entries are divided by sqrt(D), so columns have unit norm in expectation
    only. ``trainable`` turns P into an ``nn.Parameter`` (the slides' trainable projection), trained
    by autograd through ``x @ PT``; it is then no longer a function of the seed alone.
    """

    kind = "dense"

    def __init__(self, D: int, d: int, seed: int, max_dense_bytes: int = MAX_DENSE_BYTES, normalize_columns: bool = True,
                 init: str = "gaussian", trainable: bool = False):
        super().__init__(D, d, seed)
        need = self.D * self.d * 4
        if need > max_dense_bytes:
            raise ProjectionError(
                f"a dense {self.D} x {self.d} projection needs {need / GiB:.2f} GiB, above the "
                f"limit of {max_dense_bytes / GiB:.2f} GiB; use projection 'sparse' or 'fastfood' "
                "(or raise max_dense_bytes)"
            )
        self.normalize_columns, self.init, self.trainable = bool(normalize_columns), init, bool(trainable)
        rng = projection_rng(self.kind, self.D, self.d, self.seed)
        pt = dense_entries(rng, self.d, self.D, init)
        if self.normalize_columns:
            norms = np.linalg.norm(pt, axis=1, keepdims=True)
            if not norms.all():  # only 'sparse' entries can leave a column empty
                raise ProjectionError(f"dense projection seed {seed} drew an empty column; use another seed")
            pt /= norms
        else:
            pt /= np.float32(math.sqrt(self.D))
        if self.trainable:
            self.PT = nn.Parameter(torch.from_numpy(pt))
        else:
            self.register_buffer("PT", torch.from_numpy(pt))

    def forward(self, theta_d: torch.Tensor) -> torch.Tensor:
        if not self.trainable:
            return super().forward(theta_d)
        x = self._check(theta_d, self.d, "theta_d")  # autograd reaches both theta_d and P
        return (x.reshape(-1, self.d).to(torch.float32) @ self.PT).reshape(*theta_d.shape[:-1], self.D)

    def nbytes(self) -> int:
        return super().nbytes() + sum(p.numel() * p.element_size() for p in self.parameters())

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", init={self.init}, normalize_columns={self.normalize_columns}"
                + (", trainable" if self.trainable else ""))

    def _map(self, x):
        return x @ self.PT

    def _map_t(self, y):
        return y @ self.PT.T


class SparseProjection(Projection):
    """Sparse P: ceil(sqrt(D)) random-sign entries per column, columns scaled to unit norm."""

    kind = "sparse"

    def __init__(self, D: int, d: int, seed: int):
        super().__init__(D, d, seed)
        k = min(self.D, math.ceil(math.sqrt(self.D)))
        rng = projection_rng(self.kind, self.D, self.d, self.seed)
        rows = rng.integers(0, self.D, size=(self.d, k), dtype=np.int64)
        signs = rng.integers(0, 2, size=(self.d, k), dtype=np.int8).astype(np.float32) * 2 - 1
        cols = np.repeat(np.arange(self.d, dtype=np.int64), k)
        # Rows drawn twice in a column are summed; each column is then scaled to unit norm.
        coo = torch.sparse_coo_tensor(
            torch.from_numpy(np.stack([rows.ravel(), cols])),
            torch.from_numpy(signs.ravel()),
            (self.D, self.d),
        ).coalesce()
        idx, val = coo.indices(), coo.values()
        norms = torch.zeros(self.d).index_add_(0, idx[1], val * val).sqrt_()
        if bool((norms == 0).any()):  # every entry of a column cancelled: astronomically rare
            raise ProjectionError(f"sparse projection seed {seed} produced an empty column; use another seed")
        val = val / norms[idx[1]]
        p = torch.sparse_coo_tensor(idx, val, (self.D, self.d)).coalesce()
        self.register_buffer("P", p.to_sparse_csr())
        self.register_buffer("PT", p.t().coalesce().to_sparse_csr())

    def nnz(self) -> int:
        return int(self.P.values().numel())

    def _map(self, x):
        return torch.sparse.mm(self.P, x.T).T

    def _map_t(self, y):
        return torch.sparse.mm(self.PT, y.T).T


class FastfoodProjection(Projection):
    """Fastfood P = S [H G Pi H B]_{:D, :d} with S a scale, LL = next power of two >= D.

    theta_d is zero-padded to LL; H is the unnormalised Walsh-Hadamard matrix, B a random +-1
    diagonal, Pi a random permutation, G a N(0, 1) diagonal. Columns of ``H G Pi H B`` have norm
    ||G|| sqrt(LL) and spread their energy evenly over the LL outputs, so after truncation to D
    outputs they have norm ~ ||G|| sqrt(D); S = 1 / (||G|| sqrt(D)) gives columns of norm ~1.
    When ``d * LL`` is small (below ``exact_norm_limit``), each column is instead scaled to exactly
    unit norm (computed once, column by column), which matters for small D such as CartPole's.

    Structure used: theta_d padded to LL is nonzero only in its first m = next power of two >= d
    entries, and since H_LL = H_(LL/m) (x) H_m, ``H_LL`` of it is the size-m transform tiled LL/m
    times; the adjoint needs only the first m outputs of an H_LL, which are the size-m transform of
    the sum of the LL/m blocks. Forward and backward each cost one size-LL and one size-m transform,
    memory stays O(LL) (one int32 index vector and G), and the adjoint ``B H Pi^T G H`` is explicit.
    """

    kind = "fastfood"

    def __init__(self, D: int, d: int, seed: int, exact_norm_limit: int = 2**26):
        super().__init__(D, d, seed)
        self.LL = next_power_of_two(self.D)
        self.m = next_power_of_two(self.d)
        rng = projection_rng(self.kind, self.D, self.d, self.seed)
        b = rng.integers(0, 2, size=self.d, dtype=np.int8).astype(np.float32) * 2 - 1
        perm = rng.permutation(self.LL)
        g = rng.standard_normal(self.LL, dtype=np.float32)
        # w_k = G_k * z[perm_k mod m]; the adjoint scatters back: z_c = sum_{k: perm_k mod m = c} G_k q_k.
        self.register_buffer("gather_idx", torch.from_numpy((perm % self.m).astype(np.int32)))
        self.register_buffer("G", torch.from_numpy(g))
        scale = 1.0 / (float(np.linalg.norm(g.astype(np.float64))) * math.sqrt(self.D))
        self.register_buffer("col_scale", torch.from_numpy(b * np.float32(scale)))
        self.exact_norms = self.d * self.LL <= exact_norm_limit
        if self.exact_norms:
            norms = self.materialize().norm(dim=0)
            self.col_scale /= norms

    def _map(self, x):
        n = x.shape[0]
        z = torch.zeros(n, self.m, dtype=x.dtype, device=x.device)
        z[:, : self.d] = x * self.col_scale
        fwht_(z)
        w = gather_fwht(z, self.gather_idx, self.G)  # H (G * z[idx]), bit-identical to gather_mul then fwht_
        return w[:, : self.D]

    def _map_t(self, y):
        q = pad_fwht(y, self.LL)  # H of y zero-padded to LL, without writing the padding first
        z = scatter_add(q, self.gather_idx, self.G, self.m)
        fwht_(z)
        return z[:, : self.d] * self.col_scale


class IdentityProjection(Projection):
    """P = I (d = D): full-space training through the same code path as subspace training."""

    kind = "identity"

    def __init__(self, D: int, d: int, seed: int):
        if d != D:
            raise ProjectionError(f"the identity projection needs d == D, got d = {d}, D = {D}")
        super().__init__(D, d, seed)

    def _map(self, x):
        return x.clone()

    def _map_t(self, y):
        return y.clone()


PROJECTIONS: dict[str, type[Projection]] = {
    "dense": DenseProjection,
    "sparse": SparseProjection,
    "fastfood": FastfoodProjection,
    "identity": IdentityProjection,
}

#: ``auto`` chooses dense while its matrix stays below this many bytes, Fastfood above.
AUTO_DENSE_BYTES = 256 * 1024**2


def make_projection(kind: str, D: int, d: int, seed: int = 0, **options) -> Projection:
    """Build the projection ``kind`` in {dense, sparse, fastfood, auto} mapping R^d -> R^D.

    ``auto`` picks dense when the D x d float32 matrix is at most ``AUTO_DENSE_BYTES`` and
    Fastfood otherwise. Extra keyword options go to the class (e.g. ``max_dense_bytes``).
    """
    for name, value in (("D", D), ("d", d), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ProjectionError(f"{name} must be an integer, got {value!r}")
    if D < 1:
        raise ProjectionError(f"D must be >= 1, got {D}")
    if not 1 <= d <= D:
        raise ProjectionError(f"d must satisfy 1 <= d <= D = {D}, got d = {d}")
    if seed < 0:
        raise ProjectionError(f"seed must be >= 0, got {seed}")
    if kind == "auto":
        kind = "dense" if D * d * 4 <= AUTO_DENSE_BYTES else "fastfood"
    if kind not in PROJECTIONS:
        raise ProjectionError(f"unknown projection {kind!r}; choose one of {sorted(PROJECTIONS) + ['auto']}")
    return PROJECTIONS[kind](int(D), int(d), int(seed), **options)
