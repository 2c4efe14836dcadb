"""The search strategies ES runs over x (theta_d, or the offset of all D parameters in full space).

Higher return is better everywhere. A strategy hands the trainer *work items* each generation
(``n_items``); item k is one or more candidate parameter vectors theta_D, each with the indices that
seed its episode, and it gets back, after all ranks have evaluated their share, the returns of every
item in item order (``tell``). Every rank holds an identical strategy and calls the same methods
with the same numbers, so every rank stays in the same state (masterless, as in Salimans et al.
2017): nothing depends on how many ranks there are or which rank evaluated what.

- :class:`OpenAIES`: OpenAI-ES (Salimans et al. 2017): item i is the mirrored pair
  ``x +- sigma eps_i``, with eps_i regenerated from (seed, generation, i); centered ranks, Adam
  ascent, L2 decay. Its update sums the regenerated noise in fixed blocks of pairs; at scale the
  blocks are shared out over the ranks (see :meth:`OpenAIES.tell`).
- :class:`CMAES`: CMA-ES (Hansen) from the reference implementation, pycma; item k is candidate k
  of ``ask()``. Its normal samples come from a seeded ``numpy.random.Generator`` (pycma's ``randn``
  option), never from numpy's global RNG, so every rank's instance asks the same candidates.

L2 decay (OpenAI-ES) pulls x towards 0, i.e. theta_D towards theta_0, in subspaces and in the
full-space baseline alike (the baseline is the same trainer with P = I). The reference code decays
the parameters themselves towards 0; here the decay regularises the trained offset, so that a
subspace run and its baseline are regularised the same way.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np

from rlsub.config import ConfigError
from rlsub.es.core import Adam, centered_ranks, mirrored_gradient, pair_into, perturbation

#: (theta_D, environment seed index, action-noise seed index) of one episode
Candidate = tuple[np.ndarray, int, int]
Project = Callable[[np.ndarray], np.ndarray]  # x [n] -> P x [D], float32, a new array the caller may modify

#: a full covariance matrix above this many bytes is refused (pycma keeps C, B and more: ~3 n^2 floats)
CMA_MAX_COVARIANCE_BYTES = 2 * 1024**3


class OpenAIES:
    """Mirrored sampling, centered ranks, Adam and L2 decay (see :mod:`rlsub.es.trainer`)."""

    name = "openai_es"
    per_item = 2  # a mirrored pair: two episodes from the same environment seed

    def __init__(self, n: int, config: dict, comm=None):
        self.n, self.seed = n, config["seed"]
        self.sigma, self.l2, self.pairs = config["sigma"], config["l2"], config["pairs"]
        self.block = config.get("update_block_pairs", 64)
        self.comm = comm
        self.adam = Adam(n, config["lr"])
        self.x = np.zeros(n)
        self._center = None
        self._pair = None
        self._eps = None  # (float32, float64) [B, n] buffers of _block_sum
        self._owner_comms = {}  # S -> communicator of ranks 0 .. S - 1 (see _shared_sum)

    @property
    def n_items(self) -> int:
        return self.pairs

    def begin(self, generation: int, theta_0: np.ndarray, project: Project) -> None:
        self._center = theta_0 + project(self.x)  # one projection of x per generation
        if self._pair is None or self._pair[0].shape != self._center.shape:
            self._pair = (np.empty_like(self._center), np.empty_like(self._center))

    def candidates(self, generation: int, k: int, project: Project) -> list[Candidate]:
        """The pair's two theta_D, written into two buffers reused from pair to pair (valid until
        the next call), so no D-sized arrays are allocated per pair."""
        delta = project(perturbation(self.seed, generation, k, self.n))  # one projection per pair
        plus, minus = self._pair
        pair_into(plus, minus, self._center, delta, self.sigma)
        return [(plus, k, 2 * k), (minus, k, 2 * k + 1)]

    def tell(self, generation: int, returns: np.ndarray) -> None:
        """returns: [pairs, 2] (x + sigma eps_i, x - sigma eps_i) in pair order.

        The gradient sum_i (w+_i - w-_i) eps_i / (2 pairs) is summed block by block: block b holds
        pairs [b B, (b + 1) B) (B = ``update_block_pairs``), g_b = w_b @ eps_b, and g = g_0 + g_1 + ...
        in block order. One block (every population up to B pairs) is computed by every rank. With
        several blocks and several ranks, rank r computes the blocks b = r, r + R, ...; the S =
        min(blocks, R) ranks that computed any (the owners, ranks 0 .. S - 1) then swap slices
        among themselves (all-to-all: owner q receives every block's slice q of the coordinates),
        each adds its slice over the blocks in block order, and an all-gather over all ranks of
        the slices gives every rank g. Every float operation is the same whatever the number of
        ranks (the blocks do not depend on R, each coordinate is added in block order), so theta_d
        stays identical for any R; each rank regenerates about 1 / R of the noise instead of all
        of it, and the all-to-all costs S - 1 messages a rank, not R - 1 (with more ranks than
        blocks, the ranks that own none take no part in it).
        """
        shaped = centered_ranks(returns)
        weights = shaped[:, 0] - shaped[:, 1]
        n_pairs = len(returns)
        blocks = -(-n_pairs // self.block)
        if blocks == 1:
            eps = np.stack([perturbation(self.seed, generation, i, self.n) for i in range(n_pairs)])
            # the reference code's scale: sum (w+ - w-) eps / (2 n), i.e. without the 1 / sigma
            grad = mirrored_gradient(eps, shaped[:, 0], shaped[:, 1], self.sigma) * self.sigma
        else:
            if self.comm is None or self.comm.Get_size() == 1:
                grad = self._block_sum(generation, weights, 0)
                for b in range(1, blocks):
                    grad = grad + self._block_sum(generation, weights, b)
            else:
                grad = self._shared_sum(generation, weights, blocks)
            grad = grad / (2 * n_pairs)
        self.x = self.x + self.adam.step(grad - self.l2 * self.x)

    def _block_sum(self, generation: int, weights: np.ndarray, b: int) -> np.ndarray:
        """w_b @ eps_b over block b's pairs, [b B, min((b + 1) B, pairs))."""
        pairs = range(b * self.block, min((b + 1) * self.block, len(weights)))
        # into buffers kept from block to block: at D = 166,673 a fresh [B, n] array (and its float64
        # copy) costs more in page faults than the matrix-vector product itself
        if self._eps is None:
            rows = min(self.block, self.pairs)
            self._eps = (np.empty((rows, self.n), dtype=np.float32), np.empty((rows, self.n)))
        eps, eps64 = (a[:len(pairs)] for a in self._eps)  # the first rows: C-contiguous as a new array
        for row, i in zip(eps, pairs):
            perturbation(self.seed, generation, i, self.n, out=row)
        np.copyto(eps64, eps)  # exact: every float32 is a float64
        return weights[pairs.start:pairs.stop] @ eps64

    def _shared_sum(self, generation: int, weights: np.ndarray, K: int) -> np.ndarray:
        from mpi4py import MPI

        comm, rank, R = self.comm, self.comm.Get_rank(), self.comm.Get_size()
        S = min(K, R)  # owners: ranks 0 .. S - 1 compute blocks; owner q adds coordinate slice q
        cut = [q * self.n // S for q in range(S)] + [self.n] * (R - S + 1)  # slice q: [cut[q], cut[q + 1])
        counts = [cut[q + 1] - cut[q] for q in range(R)]
        owners = self._owners(S)  # every rank takes part in making it (once per S)
        part = np.zeros(0)
        if rank < S:
            mine = list(range(rank, K, R))
            sums = [self._block_sum(generation, weights, b) for b in mine]
            # send: to owner q, my blocks' slice q (in my block order)
            send = np.concatenate([s[cut[q]:cut[q + 1]] for q in range(S) for s in sums])
            send_counts = [len(mine) * counts[q] for q in range(S)]
            width = counts[rank]
            owned = [len(range(p, K, R)) for p in range(S)]  # how many blocks owner p computed
            recv_counts = [owned[p] * width for p in range(S)]
            recv = np.empty(sum(recv_counts))
            owners.Alltoallv([send, (send_counts, _displs(send_counts)), MPI.DOUBLE],
                             [recv, (recv_counts, _displs(recv_counts)), MPI.DOUBLE])
            by_block = {}
            offset = 0
            for p in range(S):
                for j, b in enumerate(range(p, K, R)):
                    by_block[b] = recv[offset + j * width: offset + (j + 1) * width]
                offset += recv_counts[p]
            for b in range(K):  # block order, as the single-rank sum
                part = by_block[b].copy() if b == 0 else part + by_block[b]
        grad = np.empty(self.n)
        comm.Allgatherv([part, MPI.DOUBLE], [grad, (counts, _displs(counts)), MPI.DOUBLE])
        return grad

    def _owners(self, S: int):
        """The communicator of ranks 0 .. S - 1, made once per S by a split that every rank joins
        (ranks from S on get MPI.COMM_NULL)."""
        from mpi4py import MPI

        if S not in self._owner_comms:
            color = 0 if self.comm.Get_rank() < S else MPI.UNDEFINED
            self._owner_comms[S] = self.comm.Split(color, self.comm.Get_rank())
        return self._owner_comms[S]

    def metrics(self) -> dict:
        return {}

    def state(self) -> dict:
        return {"x": self.x, **self.adam.state()}

    def load(self, state: dict) -> None:
        self.x = np.array(state["x"])
        self.adam.load(state)


def _displs(counts: list[int]) -> list[int]:
    return [0, *np.cumsum(counts)[:-1].tolist()]


class _Randn:
    """pycma's ``randn(lam, n)`` from a seeded Generator (picklable, unlike a lambda)."""

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7])))

    def __call__(self, *shape) -> np.ndarray:
        return self.rng.standard_normal(shape)


class CMAES:
    """CMA-ES (pycma) over x, started at x = 0 (theta_D = theta_0) with step size ``cma.sigma0``."""

    name = "cma_es"
    per_item = 1

    def __init__(self, n: int, config: dict):
        import cma

        opts = config["cma"]
        if not opts["diagonal"] and 24 * n * n > CMA_MAX_COVARIANCE_BYTES:
            raise ConfigError(
                f"cma_es with a full covariance in n = {n:,} dimensions needs about {24 * n * n / 1e9:,.0f} GB "
                f"(and O(n^3) per eigendecomposition); set cma: {{diagonal: true}} for the diagonal variant "
                f"(sep-CMA, O(n) memory) or use optimizer: openai_es")
        sigma0 = opts["sigma0"] if opts["sigma0"] is not None else config["sigma"]
        options = {"randn": _Randn(config["seed"]), "verbose": -9, "verb_disp": 0, "verb_log": 0,
                   "tolfun": 0, "tolflatfitness": 10**9, "tolfunhist": 0, "tolstagnation": 10**9,
                   "tolx": 0, "CMA_diagonal": bool(opts["diagonal"])}
        if opts["popsize"] is not None:
            options["popsize"] = opts["popsize"]
        self.es = cma.CMAEvolutionStrategy(np.zeros(n), sigma0, options)
        self._X = None

    @property
    def n_items(self) -> int:
        return self.es.popsize

    @property
    def x(self) -> np.ndarray:
        return np.asarray(self.es.mean, dtype=np.float64)

    def begin(self, generation: int, theta_0: np.ndarray, project: Project) -> None:
        self._theta_0 = theta_0
        self._X = self.es.ask()

    def candidates(self, generation: int, k: int, project: Project) -> list[Candidate]:
        return [(self._theta_0 + project(self._X[k]), k, k)]

    def tell(self, generation: int, returns: np.ndarray) -> None:
        """returns: [popsize, 1] in candidate order."""
        self.es.tell(self._X, [-float(r) for r in returns[:, 0]])  # pycma minimises

    def metrics(self) -> dict:
        return {"cma_sigma": float(self.es.sigma)}

    def state(self) -> dict:
        return {"cma_pickle": np.frombuffer(pickle.dumps(self.es), dtype=np.uint8)}

    def load(self, state: dict) -> None:
        self.es = pickle.loads(np.asarray(state["cma_pickle"]).tobytes())


OPTIMIZERS = {"openai_es": OpenAIES, "cma_es": CMAES}


def make_optimizer(n: int, config: dict, comm=None):
    """The strategy ``config['optimizer']`` names, over n numbers (``comm``: the ranks that share
    OpenAI-ES's update at scale)."""
    if config["optimizer"] not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {config['optimizer']!r}; choose one of {sorted(OPTIMIZERS)}")
    if config["optimizer"] == "openai_es":
        return OpenAIES(n, config, comm)
    return OPTIMIZERS[config["optimizer"]](n, config)
