"""ES speed benchmark: env steps/s during ES vs raw stepping, parallel efficiency, bytes per generation.

Run: .venv/bin/python scripts/bench_es.py  (about 5 minutes on 2 cores; run it on an idle machine)
Writes results/benchmarks/es.md and es.json.

(a) Per-rank environment steps per second inside ES training (policy forward and projection
    included; from the trainer's own steps_per_s_per_rank metric, median over generations after the
    first) against
    stepping the same environment with random actions, for CartPole (d = 4) and Humanoid-v4 (d = 700).
    Also the share of the ES generation spent inside env.reset/step (the trainer's env_time_frac
    metric): 1 minus it is the policy + projection + update overhead itself. The two differ because
    the machine's speed drifts between the runs the ratio compares, and a MuJoCo step's cost depends on
    the states visited.
(b) Generations per second under `mpirun -n 1` and `-n 2` for the same CartPole run (no early
    stop, the same episodes on both), 60 pairs, generations after the first, median of 5
    repetitions each; efficiency = speed-up / 2. Ranks split the pairs statically, so a population
    large enough to even out episode lengths between the ranks is used. Beside them, two independent
    `-n 1` copies at once: what two busy cores give two processes, the ceiling for `-n 2`.
(c) Bytes all-gathered per generation for several populations and d (read from the trainer's
    comm_bytes metric): they must grow with the population and not with d or D.
(d) The policy path (issue 11): the share of an ES generation spent inside env.reset/step (the
    trainer's env_time_frac) for Pong (d = 6,000) and Humanoid-v4 (d = 700, 20 pairs), both from
    scratch; median over the generations after the first of each run, then over repetitions.
    `--policy-path` runs (d) alone and rewrites only its section of es.md (es_policy.json beside
    it); `--before DIR` (a checkout of an earlier commit, e.g. a `git worktree`) runs the same
    jobs with that code too, interleaved repetition by repetition, so both see the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "results" / "benchmarks"
PAIRS_B = 60  # population of the parallel-efficiency runs (b)
#: (d): (name, config, arguments, target share inside the environment); from scratch (theta_d = 0)
POLICY_PATH = [
    ("ALE/Pong-v5, d = 6,000", "configs/es/pong.yaml",
     ["--dim", "6000", "--pairs", "2", "--generations", "4", "--set", "eval_episodes=1"], 0.75),
    ("Humanoid-v4, d = 700, 20 pairs", "configs/es/humanoid_v4.yaml",
     ["--dim", "700", "--pairs", "20", "--generations", "6", "--set", "eval_episodes=1"], 0.88),
]
POLICY_REPS = 3
POLICY_BEGIN, POLICY_END = "<!-- bench_es (d) -->", "<!-- /bench_es (d) -->"


def raw_steps_per_s(env_id: str, steps: int) -> float:
    from rlsub.es.envs import make_env

    env = make_env(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    t = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t)


def _es_command(args: list[str], n: int | None) -> tuple[list[str], Path]:
    out = Path(tempfile.mkdtemp(prefix="bench_es_"))
    launcher = [str(BIN / "mpirun"), "-n", str(n)] if n else []
    return [*launcher, str(BIN / "rlsub"), "es", "--quiet", "--out", str(out / "run"), *args], out / "run"


def _venv_env() -> dict:
    """The environment for child processes, with the virtual environment's bin (mpirun) on PATH."""
    return dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")


def _es_read(run: Path) -> tuple[dict, list[dict]]:
    from rlsub.rundir import read_metrics

    summary = json.loads((run / "summary.json").read_text())
    return summary, read_metrics(run, strict=True)


def es_run(args: list[str], n: int | None = 1) -> tuple[dict, list[dict]]:
    """Run `rlsub es` under `mpirun -n n` (n None: a plain process, no mpirun)."""
    cmd, run = _es_command(args, n)
    subprocess.run(cmd, check=True, capture_output=True, env=_venv_env())
    return _es_read(run)


def es_copies(args: list[str], copies: int) -> list[list[dict]]:
    """Run `copies` independent `mpirun -n 1` jobs at the same time; their metrics rows."""
    env = _venv_env()
    started = []
    for _ in range(copies):
        cmd, run = _es_command(args, 1)
        started.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env), run))
    rows = []
    for proc, run in started:
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"rlsub es failed: {err.decode()[-2000:]}")
        rows.append(_es_read(run)[1])
    return rows


def s_per_generation(rows: list[dict]) -> float:
    """Seconds per generation after the first (generation 0 also pays one-off costs)."""
    return (rows[-1]["wall_time_s"] - rows[0]["wall_time_s"]) / (len(rows) - 1)


def share_run(code: Path, config: str, args: list[str]) -> list[dict]:
    """`rlsub es` as one plain process with the package at ``code`` (this checkout or an earlier
    one); its metrics rows."""
    out = Path(tempfile.mkdtemp(prefix="bench_es_")) / "run"
    env = dict(_venv_env(), PYTHONPATH=str(code))
    cmd = [sys.executable, "-m", "rlsub.cli", "es", "--quiet", "--config", str(ROOT / config), "--out", str(out), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=code)
    if proc.returncode:
        raise RuntimeError(f"rlsub es failed ({code}): {proc.stderr[-2000:]}")
    return _es_read(out)[1]


def _commit(code: Path) -> str:
    """The git commit of the checkout at ``code`` ('+dirty' when files differ), or 'unknown'."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=code, capture_output=True, text=True, timeout=10)
    try:
        rev = git("rev-parse", "HEAD")
        if rev.returncode:
            return "unknown"
        # '+dirty' when the code differs from the commit (results written meanwhile, e.g. by a sweep, do not count)
        sources = ["--", "rlsub", "scripts", "configs", "setup.py", "pyproject.toml"]
        changed = git("status", "--porcelain", "--untracked-files=no", *sources).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def policy_path(before: Path | None, before_label: str | None = None) -> dict:
    """(d): per target, per repetition, the median env share over generations after the first."""
    codes = {"now": ROOT} | ({"before": before} if before else {})
    commits = {k: _commit(c) for k, c in codes.items()}
    if before and before_label:
        commits["before"] = before_label
    result = {"repetitions": POLICY_REPS, "load_before": os.getloadavg(), "commits": commits, "targets": []}
    for name, config, args, target in POLICY_PATH:
        entry = {"name": name, "config": config, "args": args, "target": target}
        for key in codes:
            entry[key] = []
        for _ in range(POLICY_REPS):  # interleaved: each repetition compares runs made under similar load
            for key, code in codes.items():
                rows = share_run(code, config, args)[1:]  # generation 0 also pays one-off costs
                share = [r["env_time_frac"] for r in rows]
                us_step = [1e6 / r["steps_per_s_per_rank"] for r in rows]
                entry[key].append({"share": float(np.median(share)), "shares": share,
                                   "us_per_step": float(np.median(us_step)),
                                   "env_us_per_step": float(np.median([f * u for f, u in zip(share, us_step)])),
                                   "returns": [r["return_mean"] for r in rows]})
        for key in codes:
            entry[f"{key}_share"] = float(np.median([r["share"] for r in entry[key]]))
        result["targets"].append(entry)
    result["load_after"] = os.getloadavg()
    return result


def policy_markdown(p: dict, command: str, date: str, machine: dict) -> str:
    before = "before" in p["commits"]
    lines = [POLICY_BEGIN, "## (d) the policy path: share of a generation inside the environment", "",
             f"Command: `{command}`; date {date}; git {p['commits']['now']}"
             + (f" (before: {p['commits']['before']})" if before else "")
             + f"; machine {machine}; load average before {p['load_before'][0]:.2f}, after {p['load_after'][0]:.2f} "
             "(the 2 cores are shared with other jobs).", "",
             f"Each run: `rlsub es` as one plain process from scratch (theta_d = 0); the share is the trainer's "
             f"`env_time_frac` (time inside `env.reset`/`env.step` over the generation's wall time), median over "
             f"the generations after the first, then over {p['repetitions']} repetitions"
             + (", each running the code before and after the change back to back" if before else "") + ".", "",
             "| job | target | share inside env (per repetition) | result | us per step, all / in env |"
             + (" before: share (per repetition) | before: us per step |" if before else ""),
             "|---|---|---|---|---|" + ("---|---|" if before else "")]
    for t in p["targets"]:
        now = t["now"]
        per = ", ".join(f"{r['share']:.2f}" for r in now)
        ok = "PASS" if t["now_share"] >= t["target"] else "MISS"
        us = float(np.median([r["us_per_step"] for r in now]))
        env_us = float(np.median([r["env_us_per_step"] for r in now]))
        row = (f"| {t['name']} (`{' '.join(t['args'])}`) | >= {t['target']:.2f} | {t['now_share']:.3f} ({per}) | {ok} | "
               f"{us:,.0f} / {env_us:,.0f} |")
        if before:
            b = t["before"]
            per_b = ", ".join(f"{r['share']:.2f}" for r in b)
            row += f" {t['before_share']:.3f} ({per_b}) | {float(np.median([r['us_per_step'] for r in b])):,.0f} |"
        lines.append(row)
    lines += ["", "What the policy path does now: the Atari conv policy runs as a short list of numpy and C operations "
              "(rlsub.es.policy.FoldedNet) with each virtual batch norm folded into the convolution or linear layer "
              "before it once per parameter vector (its statistics are fixed per parameter vector, so the norm is an "
              "affine map per channel), the symmetric zero padding folded into the convolution and the asymmetric one "
              "written by the ReLU into a kept zero buffer; no module calls, no per-step normalisation and no torch "
              "dispatch on one observation's small tensors (before: a deep copy of the module with views into "
              "theta_D, run through its modules with batch norm each step). Within an episode its three big layers "
              "work on what changed since the step before (rlsub.es.policy._DeltaConv and _SkipZeros, C kernels "
              "in rlsub/_step.c): conv(x) = conv(x_prev) + conv(x - x_prev) over the changed inputs (in Pong about "
              "100 of conv 1's 28,224 inputs and 300 of conv 2's 9,216 change from step to step), and the 3,872 x "
              "256 layer adds W (h - h_prev) over its changed inputs or, when fewer are nonzero, reads the weight "
              "columns of its nonzero inputs; a dense product at the episode's first step, every 64 steps and "
              "whenever many inputs change. These sum in another order than torch's: against a float64 evaluation "
              "of the same folded weights their error is that of the dense float32 products (over an 800-step Pong "
              "episode, an ad-hoc check: a median 1e-5 and at most 1e-4 of the largest output, for both; "
              "tests/test_es_fast_path.py checks it on synthetic frames), and the recorded runs' "
              "actions and theta_d are unchanged. "
              "OpenAI-ES writes a pair's two theta_D into two buffers reused from pair to pair, action noise is drawn "
              "32 steps at a time, and the MLP actor's elementwise work (observation normalisation into a kept buffer; "
              "last bias, action noise and clipping; the observation sums) and a pair's delta * sigma, center +- delta "
              "run as one C call each (rlsub/_step.c) instead of a dozen numpy calls a step; the batch-norm statistics "
              "of the reference batch take two float64 passes instead of torch.var_mean (4x faster). "
              "tests/test_es_fast_path.py compares whole runs against theta_d recorded before these changes. "
              "What remains outside the environment is the policy's arithmetic itself, the Fastfood projection of "
              "each pair's noise, and for Pong the reference-batch pass that fixes the batch-norm statistics of each "
              "parameter vector (dense convolutions of 128 frames). Inside "
              "the environment, Pong's seeded `env.reset` reloads the ROM (ale-py's `load_game`, about 80 ms an "
              "episode), which the share counts as environment time.", POLICY_END]
    return "\n".join(lines) + "\n"


def write_policy_section(p: dict, command: str, date: str, machine: dict) -> str:
    """Replace (or add) section (d) of es.md, keeping the others; returns the section."""
    section = policy_markdown(p, command, date, machine)
    path = OUT / "es.md"
    text = path.read_text() if path.exists() else "# ES speed benchmark\n"
    if POLICY_BEGIN in text and POLICY_END in text:
        a, b = text.index(POLICY_BEGIN), text.index(POLICY_END) + len(POLICY_END) + 1
        text = text[:a] + section + text[b:]
    elif "\n## Scale simulation" in text:
        a = text.index("\n## Scale simulation") + 1
        text = text[:a] + section + "\n" + text[a:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
    return section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy-path", action="store_true", help="run only (d), rewriting only its section of es.md")
    ap.add_argument("--before", type=Path, help="(d): also run this checkout of an earlier commit, interleaved")
    ap.add_argument("--before-label", help="what --before holds when it is not a git checkout (e.g. its commit)")
    opts = ap.parse_args()
    command = "python scripts/bench_es.py" + (" --policy-path" if opts.policy_path else "") + (
        f" --before {opts.before}" if opts.before else "")
    date = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "platform": platform.platform()}
    if opts.policy_path:
        p = policy_path(opts.before, opts.before_label)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "es_policy.json").write_text(json.dumps({"command": command, "date": date, "machine": machine, **p},
                                                       indent=2) + "\n")
        print(write_policy_section(p, command, date, machine))
        return
    report: dict = {"command": command, "date": date, "machine": machine, "load_before": os.getloadavg()}
    from rlsub.rundir import git_commit

    report["git_commit"] = git_commit()
    # (a)
    steps = {}
    for name, cfg, extra in [
        ("CartPole-v1", "configs/es/cartpole.yaml", ["--dim", "4", "--generations", "6", "--pairs", "10"]),
        ("Humanoid-v4", "configs/es/humanoid_v4.yaml", ["--dim", "700", "--generations", "7", "--pairs", "6"]),
    ]:
        reps = []
        for _ in range(3):  # interleaved: each repetition compares runs made under similar load
            raw = raw_steps_per_s(name, 20000 if "Cart" in name else 3000)
            # generation 0 also pays one-off costs (lazy imports inside the environment, first allocations)
            _, rows = es_run(["--config", cfg, *extra], None)
            es = float(np.median([r["steps_per_s_per_rank"] for r in rows[1:]]))
            env_frac = float(np.median([r["env_time_frac"] for r in rows[1:]]))
            # seconds per step inside env.step/reset during ES, from the same generations
            env_us = float(np.median([r["env_time_frac"] / r["steps_per_s_per_rank"] for r in rows[1:]])) * 1e6
            _, rows = es_run(["--config", cfg, *extra], 1)
            es_mpi = float(np.median([r["steps_per_s_per_rank"] for r in rows[1:]]))
            reps.append({"raw_steps_per_s": raw, "es_steps_per_s_per_rank": es, "ratio": es / raw,
                         "es_env_time_frac": env_frac, "es_env_us_per_step": env_us, "raw_us_per_step": 1e6 / raw,
                         "es_mpirun1_steps_per_s": es_mpi, "ratio_mpirun1": es_mpi / raw})
        steps[name] = {key: float(np.median([r[key] for r in reps])) for key in reps[0]}
        steps[name]["repetitions"] = reps
    report["steps"] = steps
    # (b)
    base = ["--config", "configs/es/cartpole.yaml", "--dim", "4", "--generations", "8", "--pairs", str(PAIRS_B),
            "--seed", "0"]
    times = {1: [], 2: [], "copies": []}
    for _ in range(5):  # interleaved, so each repetition compares runs made under similar load
        for n in (1, 2):
            times[n].append(s_per_generation(es_run(base, n)[1]))
        times["copies"].append(float(np.mean([s_per_generation(r) for r in es_copies(base, 2)])))
    t1, t2, tc = (float(np.median(times[k])) for k in (1, 2, "copies"))
    per_rep = [a / b / 2 for a, b in zip(times[1], times[2])]
    report["parallel"] = {"s_per_generation": {"n1": t1, "n2": t2, "two_copies": tc},
                          "generations_per_s": {"n1": 1 / t1, "n2": 1 / t2},
                          "speedup": t1 / t2, "efficiency": t1 / t2 / 2, "efficiency_per_repetition": per_rep,
                          "ceiling": t1 / tc, "efficiency_vs_ceiling": tc / t2 / 2, "repetitions": times}
    # (c)
    comm = []
    for pairs in (10, 20, 40):
        for dim in ("4", "100", "full"):
            _, rows = es_run(["--config", "configs/es/cartpole.yaml", "--dim", dim, "--generations", "1",
                              "--pairs", str(pairs)])
            comm.append({"pairs": pairs, "dim": dim, "comm_bytes": rows[0]["comm_bytes"]})
    report["comm"] = comm
    # (d)
    report["policy"] = policy_path(opts.before, opts.before_label)
    report["load_after"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "es.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "es.md").write_text(markdown(report))
    print(markdown(report))


def markdown(r: dict) -> str:
    lines = [
        "# ES speed benchmark", "",
        f"Command: `{r['command']}`; date {r['date']}; git {r['git_commit']}; machine {r['machine']}; "
        f"load average before {r['load_before'][0]:.2f}, after {r['load_after'][0]:.2f}.", "",
        "## (a) environment steps per second, one rank", "",
        "ES runs as one plain process (`rlsub es`), and again under `mpirun -n 1`. Three interleaved "
        "repetitions of (random play, ES, ES under mpirun); each figure is the median over them, ratios "
        "are medians of the per-repetition ratios. The speed of this shared 2-core machine drifts by 30-70% "
        "within minutes, which moves the ratio to random play far more than the share inside the "
        "environment below.", "",
        "| env | raw random actions (steps/s) | during ES (steps/s per rank) | ratio (per repetition) | target | "
        "under mpirun -n 1 (steps/s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    shares = []  # rows of the second table, built in the same pass
    for name, s in r["steps"].items():
        humanoid = "Humanoid" in name
        ratios = ", ".join(f"{x['ratio']:.2f}" for x in s["repetitions"])
        target = ">= 0.80: " + ("PASS" if s["ratio"] >= 0.8 else "MISS") if humanoid else "-"
        lines.append(f"| {name} | {s['raw_steps_per_s']:,.0f} | {s['es_steps_per_s_per_rank']:,.0f} | "
                     f"{s['ratio']:.2f} ({ratios}) | {target} | {s['es_mpirun1_steps_per_s']:,.0f} | "
                     f"{s['ratio_mpirun1']:.2f} |")
        frac = s["es_env_time_frac"]
        target = "<= 20%: " + ("PASS" if frac >= 0.8 else "MISS") if humanoid else "-"
        fracs = ", ".join(f"{x['es_env_time_frac']:.2f}" for x in s["repetitions"])
        shares.append(f"| {name} | {frac:.2f} ({fracs}) | {1 - frac:.0%} | {target} | {s['es_env_us_per_step']:,.0f} | "
                      f"{s['raw_us_per_step']:,.0f} |")
    lines += ["", "Where the time of an ES generation goes (plain process, median over generations after the "
              "first): inside `env.reset`/`env.step` (the trainer's `env_time_frac` metric) and everything else "
              "(policy forward, projection, update, communication). The Humanoid target is an overhead under 20% "
              "(>= 0.80 of the time in the environment).", "",
              "| env | share inside env (per repetition) | overhead | target | us per env step during ES | us per step, random play |",
              "|---|---|---|---|---|---|", *shares]
    lines += ["", "The ratio to random play divides two speeds measured a minute apart on a machine whose speed "
              "drifts (see the per-repetition ratios), and the cost of a MuJoCo step also depends on the states "
              "visited. The share inside the environment is measured within the same generations, so it is "
              "stable from repetition to repetition: it is the figure for the overhead of policy and projection."]
    p = r["parallel"]
    lines += ["", f"## (b) generations per second, CartPole d = 4, {PAIRS_B} pairs", "",
              "Five interleaved repetitions of: the job under `mpirun -n 1`, under `mpirun -n 2`, and two "
              "independent `mpirun -n 1` copies at the same time (what the two cores give two processes that "
              "never communicate: the ceiling for `-n 2`).", "",
              "| run | s / generation (median of 5) | generations / s |", "|---|---|---|",
              f"| -n 1 | {p['s_per_generation']['n1']:.3f} | {p['generations_per_s']['n1']:.2f} |",
              f"| -n 2 | {p['s_per_generation']['n2']:.3f} | {p['generations_per_s']['n2']:.2f} |",
              f"| two -n 1 copies at once (each) | {p['s_per_generation']['two_copies']:.3f} | "
              f"{1 / p['s_per_generation']['two_copies']:.2f} |", "",
              f"Speed-up {p['speedup']:.2f}, parallel efficiency {p['efficiency']:.0%} (target >= 85%: "
              f"{'PASS' if p['efficiency'] >= 0.85 else 'MISS'}); per repetition "
              f"{', '.join(f'{e:.0%}' for e in p['efficiency_per_repetition'])}. "
              f"Two independent copies each run at {p['ceiling']:.0%} of one alone, so -n 2 can reach at most "
              f"about that; against this ceiling -n 2 reaches {p['efficiency_vs_ceiling']:.0%}.", "",
              "## (c) bytes all-gathered per generation (CartPole, one rank)", "",
              "| pairs | d | bytes |", "|---|---|---|"]
    for c in r["comm"]:
        lines.append(f"| {c['pairs']} | {c['dim']} | {c['comm_bytes']:,} |")
    lines += ["", "Per pair: index, two returns, two lengths as float64 (40 bytes), plus observation sums "
              "when observation normalisation is on; nothing scales with d or D."]
    if "policy" in r:
        lines += ["", policy_markdown(r["policy"], r["command"], r["date"], r["machine"]).rstrip("\n")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
