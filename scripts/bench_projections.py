"""Speed and memory benchmark of rlsub's random projections and Walsh-Hadamard kernel (issue 2, item 4).

What it measures, all on ONE torch thread (``torch.set_num_threads(1)``):

1. For each projection kind (dense, sparse, fastfood, built with
   ``rlsub.projections.make_projection``) at (D, d) = (199,210, 750) [MNIST FC],
   (656,810, 9,000) [CIFAR-10 FC] and (1,005,974, 6,000) [Pong]: the median time of
   ``y = P(theta_d); (y * g).sum().backward()`` with a fixed random ``g``, the median time of the
   forward alone, and of a batched forward of n = 8 (no autograd, as ES uses it). Every
   configuration runs in a fresh subprocess, which also reports the construction time, the
   projection's own buffer bytes (``proj.nbytes()``) and the peak resident memory
   (the process's peak resident size at the end minus its resident size right after the imports,
   so construction temporaries, inputs and outputs are included; the peak is Linux's VmHWM, as
   ``resource.getrusage(...).ru_maxrss`` of a subprocess starts at its parent's peak, see
   ``_peak_rss_bytes``; ru_maxrss is still recorded in the json). A configuration the library
   refuses (a dense matrix above the default 2 GiB ``max_dense_bytes``) is recorded as refused,
   with the ``ProjectionError`` message, not run.
2. The Walsh-Hadamard transform of a float32 vector of n = 2^20: rlsub's in-place C kernel
   ``rlsub.hadamard.fwht_``, its out-of-place wrapper ``fwht`` (clone + ``fwht_``), the torch
   butterfly ``rlsub.hadamard.fwht_torch``, the ``hadamard_transform`` package (which returns
   the transform divided by sqrt(n); its output is rescaled for the correctness check only), and
   a plain 4 MB ``copy_`` as a memory-bandwidth reference. The implementations run round-robin
   (rotating the order every repetition) so that noise from other processes hits them equally;
   medians over ``--wht-reps`` (>= 30) repetitions and the ratios package / ours and
   torch / ours are reported. Outputs are checked against each other and against an explicit
   Hadamard matrix on a small vector before timing.

Targets from the issue, marked PASS/MISS in the report: ``fwht_`` median at most 4 ms and at
least 4x faster than the package; Fastfood forward+backward at (1,005,974, 6,000) at most 15 ms.

Run from the repository root (takes a few minutes on 2 cores)::

    .venv/bin/python scripts/bench_projections.py

It writes ``results/benchmarks/projections.md`` and ``results/benchmarks/projections.json``
(``--out`` changes the folder). ``--quick`` runs fewer repetitions (for trying the script out;
do not commit its results). Timings on a shared machine are noisy: the load average before and
after is recorded alongside them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: (name, D, d): the network sizes of the paper's headline experiments.
CONFIGS = [
    ("MNIST FC", 199_210, 750),
    ("CIFAR-10 FC", 656_810, 9_000),
    ("Pong conv", 1_005_974, 6_000),
]
KINDS = ["dense", "sparse", "fastfood"]
BATCH = 8
WHT_LOG2N = 20

TARGET_WHT_MS = 4.0
TARGET_WHT_SPEEDUP = 4.0
TARGET_FASTFOOD_MS = 15.0
TARGET_FASTFOOD_CONFIG = (1_005_974, 6_000)

SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------- helpers


def _maxrss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024


def _proc_status_bytes(field: str) -> int | None:
    """A size field of /proc/self/status (VmRSS: resident now, VmHWM: peak resident), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    """Peak resident size of this process: VmHWM where Linux provides it, else ru_maxrss.

    ru_maxrss alone is not enough in a subprocess on Linux: at exec the kernel folds the old
    address space's peak into it, and Python's subprocess starts children with vfork, whose old
    address space is the parent's. So a child's ru_maxrss starts at the parent's peak (seen as a
    constant floor of ~70 MB above the imports). VmHWM belongs to the new address space only.
    """
    hwm = _proc_status_bytes("VmHWM")
    return hwm if hwm is not None else _maxrss_bytes()


def _storage_bytes(module) -> int:
    """Bytes actually stored in a module's buffers, counting a sparse buffer by its values and
    indices (``numel()`` of a sparse tensor is its dense size)."""
    import torch

    total = 0
    for b in module.buffers():
        if b.layout == torch.sparse_csr:
            parts = [b.values(), b.col_indices(), b.crow_indices()]
        elif b.layout == torch.sparse_coo:
            parts = [b._values(), b._indices()]
        else:
            parts = [b]
        total += sum(t.numel() * t.element_size() for t in parts)
    return total


def _timed_reps(fn, min_reps: int, max_reps: int, budget_s: float, warmup: int = 2):
    """(wall seconds, thread CPU seconds) per call of fn: warmup calls, then at least min_reps and
    at most max_reps calls, stopping after min_reps once budget_s seconds have been spent."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps:
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        if len(times) >= min_reps and time.perf_counter() - start > budget_s:
            break
    return times, cpu


def _summary_ms(times: list[float], cpu: list[float] | None = None) -> dict:
    """Wall-clock statistics in ms, plus the median thread CPU time: on a shared, oversubscribed
    machine wall time includes time spent descheduled, CPU time does not."""
    ms = sorted(t * 1e3 for t in times)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    out = {
        "median_ms": statistics.median(ms),
        "min_ms": ms[0],
        "q1_ms": q[0],
        "q3_ms": q[2],
        "reps": len(ms),
        "samples_ms": [round(t, 4) for t in ms],
    }
    if cpu:
        out["cpu_median_ms"] = statistics.median(cpu) * 1e3
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux/macOS
        return None


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.rstrip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict:
    import numpy as np
    import torch

    flags = _cpu_flags()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        affinity = os.cpu_count()
    dirty = [ln[3:] for ln in _git("status", "--porcelain", "--", "rlsub", "setup.py").splitlines() if ln]
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cores_usable": affinity,
        "machine": platform.machine(),
        "cpu_simd": sorted(flags & {"sse2", "avx", "avx2", "fma", "avx512f", "neon", "asimd", "sve"}),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": 1,
        "git_commit": _git("rev-parse", "HEAD").strip(),
        "git_uncommitted_in_rlsub": dirty,
    }


# ------------------------------------------------------------------ one projection, in a subprocess


def worker(kind: str, D: int, d: int, min_reps: int, max_reps: int, budget_s: float) -> dict:
    """Build one projection and time it; runs in its own process so its memory peak is its own."""
    import torch

    from rlsub.hadamard import has_kernel
    from rlsub.projections import ProjectionError, make_projection

    torch.set_num_threads(1)
    base_now = _proc_status_bytes("VmRSS")
    base = base_now if base_now is not None else _maxrss_bytes()
    out: dict = {"kind": kind, "D": D, "d": d, "baseline_rss_bytes": base_now,
                 "baseline_peak_bytes": _peak_rss_bytes(), "baseline_ru_maxrss_bytes": _maxrss_bytes(),
                 "c_kernel": has_kernel()}

    t0 = time.perf_counter()
    try:
        proj = make_projection(kind, D, d, seed=0)
    except ProjectionError as err:
        out.update(status="refused", message=str(err), needs_bytes=D * d * 4 if kind == "dense" else None)
        return out
    out["construct_s"] = time.perf_counter() - t0
    out["nbytes"] = proj.nbytes()
    out["storage_bytes"] = _storage_bytes(proj)
    if kind == "sparse":
        out["nnz"] = proj.nnz()
    out["peak_after_construct_bytes"] = _peak_rss_bytes()

    gen = torch.Generator().manual_seed(1)
    theta = (0.01 * torch.randn(d, generator=gen)).requires_grad_(True)
    g = torch.randn(D, generator=gen)

    def fwd_bwd():
        theta.grad = None
        y = proj(theta)
        (y * g).sum().backward()

    out["fwd_bwd"] = _summary_ms(*_timed_reps(fwd_bwd, min_reps, max_reps, budget_s))
    assert theta.grad is not None and theta.grad.shape == (d,)

    def fwd():
        with torch.no_grad():
            proj(theta)

    out["fwd"] = _summary_ms(*_timed_reps(fwd, min_reps, max_reps, budget_s))

    theta_b = 0.01 * torch.randn(BATCH, d, generator=gen)

    def fwd_batch():
        with torch.no_grad():
            proj(theta_b)

    out["fwd_batch"] = _summary_ms(*_timed_reps(fwd_batch, max(3, min_reps // 2), max_reps, budget_s))
    out["batch"] = BATCH
    out["status"] = "ok"
    out["peak_end_bytes"] = _peak_rss_bytes()
    out["ru_maxrss_end_bytes"] = _maxrss_bytes()
    out["peak_rss_delta_bytes"] = out["peak_end_bytes"] - base
    out["construct_peak_rss_delta_bytes"] = out["peak_after_construct_bytes"] - base
    return out


def run_worker(kind: str, D: int, d: int, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(D), str(d),
           "--min-reps", str(args.min_reps), "--max-reps", str(args.max_reps), "--budget", str(args.budget)]
    env = {**os.environ, **SINGLE_THREAD_ENV}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"kind": kind, "D": D, "d": d, "status": "error",
                "message": (proc.stderr or proc.stdout).strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------- Walsh-Hadamard at 2^20


def check_wht(log2n: int = 10) -> dict:
    """Compare every implementation with an explicit Sylvester Hadamard matrix on a small vector."""
    import torch
    from hadamard_transform import hadamard_transform

    from rlsub.hadamard import fwht, fwht_, fwht_torch

    n = 2**log2n
    h = torch.ones(1, 1, dtype=torch.float64)
    for _ in range(log2n):
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    x = torch.randn(n, generator=torch.Generator().manual_seed(2))
    ref = h @ x.double()
    scale = ref.abs().max().item()
    outs = {
        "fwht_": fwht_(x.clone()).double(),
        "fwht": fwht(x).double(),
        "fwht_torch": fwht_torch(x).double(),
        "hadamard_transform * sqrt(n)": hadamard_transform(x).double() * math.sqrt(n),
    }
    pkg_ratio = (hadamard_transform(x).double() / ref).median().item()
    return {
        "n": n,
        "max_abs_err_rel_to_max": {k: (v - ref).abs().max().item() / scale for k, v in outs.items()},
        "package_output_over_unnormalised": pkg_ratio,
        "package_normalisation": f"1/sqrt(n) (= {1 / math.sqrt(n):.6g} at n = {n})",
    }


def bench_wht(reps: int) -> dict:
    import torch
    from hadamard_transform import hadamard_transform

    from rlsub.hadamard import fwht, fwht_, fwht_torch, has_kernel

    n = 2**WHT_LOG2N
    x = torch.randn(n, generator=torch.Generator().manual_seed(3))
    buf = x.clone()
    dst = torch.empty_like(x)

    # Same answer at full size (the package divides by sqrt(n)).
    ours = fwht_(x.clone()).double()
    full_check = {
        "fwht_torch": ((fwht_torch(x).double() - ours).abs().max() / ours.abs().max()).item(),
        "hadamard_transform * sqrt(n)": (
            (hadamard_transform(x).double() * math.sqrt(n) - ours).abs().max() / ours.abs().max()
        ).item(),
    }

    # fwht_ works in place: the buffer is restored from x before each call, outside the timing.
    impls = {
        "rlsub fwht_ (in-place C)": (lambda: fwht_(buf), lambda: buf.copy_(x)),
        "rlsub fwht (clone + fwht_)": (lambda: fwht(x), None),
        "rlsub fwht_torch": (lambda: fwht_torch(x), None),
        "hadamard_transform 0.2.0": (lambda: hadamard_transform(x), None),
        "copy_ of 4 MB (bandwidth ref)": (lambda: dst.copy_(x), None),
    }
    names = list(impls)
    for _ in range(3):  # warm-up
        for name in names:
            fn, reset = impls[name]
            if reset:
                reset()
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            fn, reset = impls[name]
            if reset:
                reset()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    res = {name: _summary_ms(times[name], cpu[name]) for name in names}
    ours_ms = res["rlsub fwht_ (in-place C)"]["median_ms"]
    return {
        "n": n,
        "reps": reps,
        "c_kernel": has_kernel(),
        "results": res,
        "ratio_package_over_ours": res["hadamard_transform 0.2.0"]["median_ms"] / ours_ms,
        "ratio_torch_over_ours": res["rlsub fwht_torch"]["median_ms"] / ours_ms,
        "ours_over_copy": ours_ms / res["copy_ of 4 MB (bandwidth ref)"]["median_ms"],
        "full_size_max_rel_err_vs_fwht_": full_check,
    }


# ------------------------------------------------------------------------------------- reporting


def _pf(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _mb(b) -> str:
    return "-" if b is None else f"{b / 1e6:,.1f}"


def targets(report: dict) -> list[dict]:
    w = report["wht"]
    ours = w["results"]["rlsub fwht_ (in-place C)"]["median_ms"]
    ff = next((r for r in report["projections"] if r["kind"] == "fastfood"
               and (r["D"], r["d"]) == TARGET_FASTFOOD_CONFIG), None)
    ok = ff is not None and ff.get("status") == "ok"
    ff_ms = ff["fwd_bwd"]["median_ms"] if ok else math.inf
    ours_cpu = w["results"]["rlsub fwht_ (in-place C)"]["cpu_median_ms"]
    pkg_cpu = w["results"]["hadamard_transform 0.2.0"]["cpu_median_ms"]
    return [
        {"target": f"fwht_ median at n = 2^20 <= {TARGET_WHT_MS:g} ms", "value": f"{ours:.3f} ms",
         "cpu": f"{ours_cpu:.3f} ms", "pass": ours <= TARGET_WHT_MS},
        {"target": f"hadamard_transform / fwht_ >= {TARGET_WHT_SPEEDUP:g}x",
         "value": f"{w['ratio_package_over_ours']:.1f}x", "cpu": f"{pkg_cpu / ours_cpu:.1f}x",
         "pass": w["ratio_package_over_ours"] >= TARGET_WHT_SPEEDUP},
        {"target": f"Fastfood forward+backward at D = 1,005,974, d = 6,000 <= {TARGET_FASTFOOD_MS:g} ms",
         "value": f"{ff_ms:.2f} ms", "cpu": f"{ff['fwd_bwd']['cpu_median_ms']:.2f} ms" if ok else "-",
         "pass": ff_ms <= TARGET_FASTFOOD_MS},
    ]


def _status_cell(r: dict) -> str:
    if r["status"] == "refused":
        need = r.get("needs_bytes")
        what = f"needs {need / 1e9:.1f} GB = {need / 2**30:.1f} GiB" if need else "see message"
        return f"refused ({what})"
    if r["status"] == "error":
        return "ERROR (see json)"
    return "ok"


def _ms(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['median_ms']:.2f} [{s['q1_ms']:.2f}-{s['q3_ms']:.2f}] ({s['reps']})"


def write_markdown(report: dict, path: Path) -> None:
    m = report["machine"]
    lines = [
        "# Projection and Walsh-Hadamard benchmark",
        "",
        "Generated by `scripts/bench_projections.py` (do not edit by hand).",
        "",
        f"- Command: `{report['command']}`",
        f"- Date: {report['date']} (wall time {report['wall_s']:.0f} s)",
        f"- Machine: {m['cpu_model']}, {m['cpu_cores']} cores ({m['cores_usable']} usable), "
        f"{m['machine']}, SIMD flags {', '.join(m['cpu_simd']) or 'unknown'}; {m['os']}",
        f"- Software: Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}; "
        f"torch threads = {m['torch_threads']}",
        f"- Git commit: `{m['git_commit']}`"
        + (f" (uncommitted changes in: {', '.join(m['git_uncommitted_in_rlsub'])})"
           if m["git_uncommitted_in_rlsub"] else " (rlsub/ clean)"),
        f"- Load average (1, 5, 15 min) before: {report['loadavg_before']}, after: {report['loadavg_after']} "
        "(2 cores shared with other users: a load above the core count means the benchmark thread "
        "is descheduled part of the time, which inflates wall-clock medians; interquartile ranges and thread CPU "
        "time are shown)",
        "",
        "## Targets",
        "",
        "Judged on the median wall-clock time. The median thread CPU time (time the benchmark thread was "
        "actually running; excludes time descheduled by other processes) is shown for context only.",
        "",
        "| target | measured (wall median) | result | thread CPU time median |",
        "|---|---|---|---|",
    ]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {t['value']} | **{_pf(t['pass'])}** | {t['cpu']} |")

    w = report["wht"]
    lines += [
        "",
        f"## Walsh-Hadamard transform, n = 2^{WHT_LOG2N} float32, one thread",
        "",
        f"Round-robin over the implementations, {w['reps']} repetitions each; "
        "time in ms as median [first quartile - third quartile] (repetitions).",
        "",
        "| implementation | median ms | min ms | IQR ms | CPU-time median ms |",
        "|---|---|---|---|---|",
    ]
    for name, s in w["results"].items():
        lines.append(f"| {name} | {s['median_ms']:.3f} | {s['min_ms']:.3f} | {s['q1_ms']:.3f}-{s['q3_ms']:.3f} "
                     f"| {s['cpu_median_ms']:.3f} |")
    c = report["wht_check"]
    lines += [
        "",
        f"- Ratio hadamard_transform / fwht_: **{w['ratio_package_over_ours']:.1f}x**; "
        f"fwht_torch / fwht_: **{w['ratio_torch_over_ours']:.1f}x**; "
        f"fwht_ / 4 MB copy: {w['ours_over_copy']:.1f}x.",
        f"- Normalisation: `hadamard_transform` returns the transform times {c['package_normalisation']} "
        f"(measured output / unnormalised = {c['package_output_over_unnormalised']:.6g}); rlsub's is unnormalised. "
        "Timings are of each function as it is (the package includes its division).",
        f"- Correctness at n = {c['n']} against an explicit Hadamard matrix (float64), max abs error / max |value|: "
        + ", ".join(f"{k} {v:.1e}" for k, v in c["max_abs_err_rel_to_max"].items())
        + "; at n = 2^20 against fwht_: "
        + ", ".join(f"{k} {v:.1e}" for k, v in w["full_size_max_rel_err_vs_fwht_"].items())
        + ".",
        "- fwht_ transforms a buffer in place; the buffer is refilled (outside the timing) before each call. "
        "fwht (out-of-place) = clone + fwht_.",
        "",
        "## Projections, one thread",
        "",
        "`y = P(theta_d); (y * g).sum().backward()` with fixed random g; forward alone and a batched forward "
        f"of n = {BATCH} without autograd. Times in ms as median [first quartile - third quartile] (repetitions). "
        "Each row is a fresh subprocess: construction time includes drawing the randomness; "
        "'nbytes()' is `proj.nbytes()` as the library reports it; 'stored' counts what the buffers really hold "
        "(for sparse CSR buffers: values and indices; `nbytes()` uses `numel()`, which for a sparse tensor is its "
        "dense size); 'peak RSS' is the peak resident size (VmHWM; ru_maxrss of a subprocess inherits the parent's peak) "
        "at the end (and after construction) minus the resident size right after the imports, so it includes "
        "construction temporaries, g, the batch and outputs.",
        "",
        f"| kind | D | d | status | construct s | fwd+bwd ms | fwd+bwd CPU ms | fwd ms | batch-{BATCH} fwd ms | "
        "per sample ms | nbytes() MB | stored MB | peak RSS MB (after construct) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["projections"]:
        ok = r["status"] == "ok"
        per = f"{r['fwd_batch']['median_ms'] / BATCH:.2f}" if ok else "-"
        construct = f"{r['construct_s']:.2f}" if ok else "-"
        cpu = f"{r['fwd_bwd']['cpu_median_ms']:.2f}" if ok else "-"
        lines.append(
            f"| {r['kind']} | {r['D']:,} | {r['d']:,} | {_status_cell(r)} | {construct} | "
            f"{_ms(r.get('fwd_bwd'))} | {cpu} | {_ms(r.get('fwd'))} | {_ms(r.get('fwd_batch'))} | {per} | "
            f"{_mb(r.get('nbytes'))} | {_mb(r.get('storage_bytes'))} | {_mb(r.get('peak_rss_delta_bytes'))} "
            f"({_mb(r.get('construct_peak_rss_delta_bytes'))}) |"
        )
    refused = [r for r in report["projections"] if r["status"] != "ok"]
    if refused:
        lines += ["", "Not run:", ""]
        for r in refused:
            lines.append(f"- {r['kind']} at D = {r['D']:,}, d = {r['d']:,}: {r['status']}: {r['message']}")
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks")
    ap.add_argument("--wht-reps", type=int, default=60, help="repetitions per WHT implementation (>= 30)")
    ap.add_argument("--min-reps", type=int, default=10, help="min repetitions per projection measurement")
    ap.add_argument("--max-reps", type=int, default=100, help="max repetitions per projection measurement")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds after which a projection measurement "
                    "stops once it has --min-reps")
    ap.add_argument("--quick", action="store_true", help="few repetitions, for trying the script out")
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "D", "d"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        kind, D, d = args.worker[0], int(args.worker[1]), int(args.worker[2])
        print(json.dumps(worker(kind, D, d, args.min_reps, args.max_reps, args.budget)))
        return 0

    if args.quick:
        args.wht_reps, args.min_reps, args.max_reps, args.budget = 30, 3, 10, 0.5
    if args.wht_reps < 30:
        ap.error("--wht-reps must be >= 30")

    import torch

    torch.set_num_threads(1)
    t_start = time.perf_counter()
    report: dict = {
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "cwd": os.getcwd(),
        "date": dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loadavg_before": _loadavg(),
        "settings": {"wht_reps": args.wht_reps, "min_reps": args.min_reps, "max_reps": args.max_reps,
                     "budget_s": args.budget, "quick": args.quick, "batch": BATCH},
    }

    print("Walsh-Hadamard correctness check ...", flush=True)
    report["wht_check"] = check_wht()
    print(f"Walsh-Hadamard timing at n = 2^{WHT_LOG2N}, {args.wht_reps} reps ...", flush=True)
    report["wht"] = bench_wht(args.wht_reps)
    for name, s in report["wht"]["results"].items():
        print(f"  {name:32s} {s['median_ms']:8.3f} ms (CPU {s['cpu_median_ms']:.3f} ms)")

    report["projections"] = []
    for _, D, d in CONFIGS:
        for kind in KINDS:
            print(f"{kind:8s} D = {D:>9,} d = {d:>5,} ...", end=" ", flush=True)
            r = run_worker(kind, D, d, args)
            report["projections"].append(r)
            if r["status"] == "ok":
                print(f"fwd+bwd {r['fwd_bwd']['median_ms']:.2f} ms (CPU {r['fwd_bwd']['cpu_median_ms']:.2f}), peak RSS +{_mb(r['peak_rss_delta_bytes'])} MB",
                      flush=True)
            else:
                print(_status_cell(r), flush=True)

    report["targets"] = targets(report)
    report["loadavg_after"] = _loadavg()
    report["wall_s"] = time.perf_counter() - t_start

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "projections.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, args.out / "projections.md")
    for t in report["targets"]:
        print(f"{_pf(t['pass'])}  {t['target']}: {t['value']}")
    print(f"wrote {args.out / 'projections.md'} and {args.out / 'projections.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
