"""Run directories, the one output format of every trainer (ES, DQN, supervised).

A run directory holds ``config.json`` (the fully resolved config), ``metrics.jsonl`` (one JSON
object per generation / epoch / log step), ``summary.json`` (the final result, read by sweeps and
reports) and ``theta_d.npy``. Whole files are written atomically; metrics lines are appended and
flushed one at a time, and a resumed run truncates them back to its checkpoint.

Each metrics row also goes to ``metrics.csv`` (its columns grow when a row brings a new key) and,
as TensorBoard scalars, to ``events.out.tfevents.<time>.<host>.rlsub`` (``tensorboard --logdir
runs/``), with the row's timesteps, epoch or generation as the step. Records are appended with the
file opened and closed for each row, so no writer thread or open file outlives a call.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlsub.errors import UserError
from rlsub.subspace import atomic_save_npy, atomic_write_text


def git_commit() -> str:
    """The current git commit of the rlsub checkout (with '+dirty' when files differ), or 'unknown'."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> dict[str, Any]:
    """Where a run happened (recorded in summaries for provenance)."""
    return {"host": socket.gethostname(), "platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}


def command_line() -> str:
    """The command this process was started with (program name without its path)."""
    return shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else ""


def default_run_dir(task: str, trainer: str, dim, seed: int) -> Path:
    """Where a run goes without ``--out``, the same for every command:
    ``runs/<task>__<trainer>__d<dim>__s<seed>__<time>`` ('/' in the task becomes '-')."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{str(task).replace('/', '-')}__{trainer}__d{dim}__s{seed}__{stamp}"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value


def _csv_columns(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    with open(path, newline="") as f:
        return next(csv.reader(f), None)


def _csv_cells(row: dict) -> dict:
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}


def write_json(path: str | Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


#: the first of these a metrics row holds is its TensorBoard step
STEP_KEYS = ("timesteps", "step", "epoch", "generation")  # the x-axis of a row in TensorBoard, first found


def check_out_dir(path: str | Path, resume: bool = False) -> None:
    """UserError unless ``path`` can hold a new run (or, with ``resume``, holds one): not a file, not
    under a file, writable, and for a new run not holding a run already (which it would damage)."""
    path = Path(path)
    if resume:
        if not path.is_dir():
            raise UserError(f"cannot resume: {path} is not a run directory")
    else:
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} exists and is not a folder; choose another --out")
        if any((path / name).exists() for name in ("config.json", "summary.json", "metrics.jsonl")):
            raise UserError(f"{path} already holds a run; choose another --out (or --resume it)")
    check_writable(path)


def check_writable(path: str | Path, what: str = "") -> None:
    """UserError unless ``path`` (a folder, existing or not) can be written: its nearest existing
    ancestor is a folder, and a writable one. ``what`` names the contents in the message."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    target = f"{what} to {path}" if what else f"to {path}"
    if not existing.is_dir():
        raise UserError(f"cannot write {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {target}: {existing} is not writable")


def read_metrics(run_dir: str | Path, strict: bool = False) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` ([] without one); blank lines are skipped.

    By default (``strict=False``) reading stops at the first line that is not JSON: the last line of a
    run killed mid-write, so a run in progress or stopped can be read without constructing a writer.
    ``strict=True`` is for a finished run, whose file must be whole: a line that is not JSON raises one
    UserError naming the file and the line, instead of a result computed from part of the run.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if strict:
                raise UserError(f"{path}: line {number} is not a JSON row ({e.msg}); the run's metrics are "
                                "damaged: rerun the point, or resume it from its checkpoint") from None
            break
    return rows


class RunDir:
    """Writer for one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        # the code a run ran is the code at its start: a long run outlives commits made meanwhile
        self.git_commit = git_commit()
        self._events: Path | None = None  # created with the first row

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, config: dict) -> None:
        write_json(self.path / "config.json", config)

    def record_resume(self, config: dict, keys: tuple, at: int) -> list[dict]:
        """On resume: the keys among ``keys`` (a trainer's RESUMABLE ones, its budget) whose value
        differs from config.json are written into it, and each change is appended to its
        ``resumed_with`` list ({key, from, to, at}: ``at`` the generation or epoch it resumed from),
        so the record says what the run finished with. Returns the changes."""
        path = self.path / "config.json"
        if not path.exists():
            return []
        recorded = json.loads(path.read_text())
        now = json.loads(json.dumps({k: config[k] for k in keys if k in config}))
        changes = [{"key": k, "from": recorded.get(k), "to": v, "at": at} for k, v in now.items()
                   if recorded.get(k) != v]
        if changes:
            recorded.update({c["key"]: c["to"] for c in changes})
            recorded["resumed_with"] = recorded.get("resumed_with", []) + changes
            write_json(path, recorded)
        return changes

    @property
    def csv_path(self) -> Path:
        return self.path / "metrics.csv"

    def log(self, row: dict) -> None:
        """Append a metrics row to metrics.jsonl, metrics.csv and the TensorBoard events file."""
        row = _jsonable(row)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        self._append_csv(row)
        self._append_events(row)

    def _append_csv(self, row: dict) -> None:
        columns = _csv_columns(self.csv_path)
        if columns is not None and set(row) <= set(columns):
            with open(self.csv_path, "a", newline="") as f:
                csv.DictWriter(f, columns).writerow(_csv_cells(row))
        else:  # first row, or a new key: rewrite the file with the wider header
            self._write_csv(self.metrics())

    def _write_csv(self, rows: list[dict]) -> None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns)
        writer.writeheader()
        writer.writerows(_csv_cells(r) for r in rows)
        atomic_write_text(self.csv_path, buf.getvalue())

    def _append_events(self, row: dict) -> None:
        step_key = next((k for k in STEP_KEYS if isinstance(row.get(k), (int, float))), None)
        scalars = {k: float(v) for k, v in row.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != step_key}
        if not scalars or step_key is None:
            return
        step = int(row[step_key])
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        new = self._events is None
        if new:
            self._events = self.path / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.rlsub"
        with open(self._events, "ab") as f:
            writer = RecordWriter(f)
            now = time.time()
            if new:
                writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
            values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()]
            event = event_pb2.Event(wall_time=now, step=step, summary=summary_pb2.Summary(value=values))
            writer.write(event.SerializeToString())

    def metrics(self) -> list[dict]:
        return read_metrics(self.path)

    def truncate_metrics(self, keep: int, key: str) -> None:
        """Keep only the metric rows whose ``key`` is < keep (used when resuming from a checkpoint)."""
        rows = [r for r in self.metrics() if r.get(key, -1) < keep]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
        if self.csv_path.exists():
            self._write_csv(rows)

    def save_theta(self, theta_d: np.ndarray, name: str = "theta_d.npy") -> None:
        atomic_save_npy(self.path / name, np.asarray(theta_d, dtype=np.float32))

    def write_summary(self, summary: dict) -> None:
        full = {"git_commit": self.git_commit, "machine": machine(), "command": command_line(), **summary}
        now = git_commit()
        if now != self.git_commit:
            full["git_commit_at_end"] = now
        write_json(self.path / "summary.json", full)
