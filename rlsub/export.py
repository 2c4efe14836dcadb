"""Exports: a trained model as one small file, ``config + seeds + theta_d`` (Li et al. 2018's
compression argument made concrete: MNIST-FC at d = 750 is 750 numbers plus a config).

An export is an uncompressed ``.npz`` holding

- ``meta``: zlib-compressed JSON (format, version, trainer, the run's config and summary);
- ``theta_d`` (or ``theta_D`` for a full-space run): float32;
- ``fingerprint``: float64 numbers identifying theta_0 and P (:func:`rlsub.loading.fingerprint`),
  checked when the export is loaded (absent for full-space networks, which hold all D numbers);
- ``obs_sum``, ``obs_sumsq``, ``obs_count``: ES observation statistics, when the policy uses them.

The arrays are stored, not deflated, so an export's size follows from d and the config alone:
:func:`export_bytes` gives it without rebuilding the model.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from pathlib import Path

import numpy as np

from rlsub.loading import FINGERPRINT_PROBES, LoadError, RunRecord, read_record

FORMAT = "rlsub-export"
VERSION = 1


def _payload(record: RunRecord, fp: np.ndarray | None) -> bytes:
    meta = {"format": FORMAT, "version": VERSION, "trainer": record.trainer, "config": record.config,
            "summary": record.summary}
    name = "theta_D" if _is_full_theta(record) else "theta_d"
    arrays = {"meta": np.frombuffer(zlib.compress(json.dumps(meta, sort_keys=True).encode(), 9), dtype=np.uint8),
              name: np.asarray(record.theta, dtype=np.float32)}
    if fp is not None:
        arrays["fingerprint"] = np.asarray(fp, dtype=np.float64)
    if record.obs is not None:
        arrays.update({k: np.asarray(v, dtype=np.float64) for k, v in record.obs.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _is_full_theta(record: RunRecord) -> bool:
    """theta_D (all D numbers of a plain network) rather than theta_d: DQN / supervised full space."""
    return record.trainer != "es" and str(record.config.get("dim")) == "full"


def export_run(run: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the export of ``run`` (a run directory or an export) to ``out``; returns its sizes.

    The model is rebuilt once (:func:`rlsub.load_run`) to record its fingerprint, so an export can
    only be made by an rlsub that rebuilds the run's theta_0 and P.
    """
    from rlsub.loading import LOADERS

    out = Path(out)
    if out.suffix != ".npz":
        raise LoadError(f"{out}: an export file must end in .npz")
    record = read_record(run)
    if record.config.get("trainable_projection") and str(record.config.get("dim")) != "full":
        raise LoadError(f"{run}: the run trained its projection P, so the model is not config + seeds + theta_d "
                        "and has no export; load the run directory itself")
    loaded = LOADERS[record.trainer](record)
    data = _payload(record, loaded.fingerprint())
    out.parent.mkdir(parents=True, exist_ok=True)
    from rlsub.subspace import atomic_write

    atomic_write(out, lambda tmp: tmp.write_bytes(data))
    model = loaded.subspace_model
    D = model.D if model is not None else int(record.theta.size)
    return {"path": out, "bytes": len(data), "full_bytes": 4 * D, "D": D, "numbers": int(record.theta.size)}


def read_export(path: str | os.PathLike) -> RunRecord:
    """The record held by an export file (LoadError if it is not one)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise LoadError(f"{path} is neither a run directory nor an rlsub export file ({exc})") from None
    try:
        meta = json.loads(zlib.decompress(arrays["meta"].tobytes()))
    except (KeyError, zlib.error, ValueError):
        meta = {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LoadError(f"{path} is an .npz file but not an rlsub export (no readable 'meta')")
    if meta["version"] > VERSION:
        raise LoadError(f"{path}: export format version {meta['version']} is newer than this rlsub reads ({VERSION})")
    theta = arrays.get("theta_d", arrays.get("theta_D"))
    if theta is None:
        raise LoadError(f"{path}: the export holds no theta_d")
    obs = {k: arrays[k] for k in ("obs_sum", "obs_sumsq", "obs_count")} if "obs_sum" in arrays else None
    return RunRecord(meta["trainer"], meta["config"], meta["summary"], theta.astype(np.float32), path, obs=obs,
                     fingerprint=arrays.get("fingerprint"))


def export_bytes(run) -> dict:
    """Bytes of ``run``'s export and of its full model in float32 (4 D), without rebuilding the model.

    ``run``: a run directory or export file (path), or a summary dict that names its run directory
    under ``run_dir`` (e.g. ``results/<sweep>/runs/<point>``). Returns ``{"bytes", "full_bytes",
    "numbers", "D"}``; the export written by :func:`export_run` has exactly ``bytes`` bytes.
    """
    if isinstance(run, dict):
        if "run_dir" not in run:
            raise ValueError("export_bytes needs the run directory: pass its path, or a summary with 'run_dir'")
        run = run["run_dir"]
    record = read_record(run)
    full = _is_full_theta(record)
    placeholder = None if full else np.zeros(2 + 2 * FINGERPRINT_PROBES)  # the same size as the real one
    D = int(record.summary.get("D") or record.config.get("D") or record.theta.size)
    return {"bytes": len(_payload(record, placeholder)), "full_bytes": 4 * D, "numbers": int(record.theta.size),
            "D": D}
