"""Evolution Strategies over theta_d, masterless over MPI ranks (`mpirun -n N rlsub es ...`).

The search strategy is ``optimizer``: ``openai_es`` (below) or ``cma_es`` (pycma's CMA-ES, one
episode per candidate); both are in :mod:`rlsub.es.optimizers`. For OpenAI-ES each generation
every rank:
1. computes the centre ``theta_D = theta_0 + P x`` (x is theta_d; for ``dim: full`` the identity
   projection makes x the offset of all D parameters);
2. evaluates its share of the mirrored pairs (pair i on rank i mod N): ``eps_i`` is regenerated
   from (seed, generation, i), both ``x + sigma eps_i`` and ``x - sigma eps_i`` run one training
   episode each from the same environment seed;
3. all-gathers only scalars: pair index, two returns, two lengths, and (with observation
   normalisation) the pair's observation sums, so the bytes sent grow with the population, not
   with d or D;
4. sorts what it gathered by pair index and computes the identical update: centered ranks,
   ``g = sum_i (rank+_i - rank-_i) eps_i / (2 n)``, Adam ascent on ``g - l2 x``, and the merged
   observation statistics.
Nothing depends on which rank evaluated what, so the same config and seed give the same theta_d
for any number of ranks. Noiseless evaluation episodes run every ``eval_every`` generations.

All randomness is a function of the run seed and integers (generation, pair, episode), so a
checkpoint needs no RNG stream: x, the Adam state, the observation statistics and the generation
counter restore a run exactly.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from rlsub.config import (
    Bool,
    ConfigError,
    Dim,
    Float,
    Int,
    Mapping,
    Section,
    Str,
    merge,  # noqa: F401 - rlsub.commands use trainer.merge
    resolve_config,
)
from rlsub.errors import UserError
from rlsub.es.core import ObsStats, episode_seed, records_obs
from rlsub.es.envs import EnvClock, check_env_id, make_env, metric_min
from rlsub.es.optimizers import OPTIMIZERS, make_optimizer
from rlsub.es.policy import Actor, reference_batch, rollout
from rlsub.loading import save_fingerprint
from rlsub.models import MODELS
from rlsub.rundir import RunDir, check_out_dir, default_run_dir
from rlsub.subspace import SubspaceModel, atomic_save_npy, atomic_write
from rlsub.trainers import build_network

DEFAULTS: dict = {
    "task": None,  # name used in reports; defaults to the environment id
    "env": "CartPole-v1",
    "env_kwargs": {},
    "model": "mlp",  # registry name (rlsub.models); input/output sizes come from the env
    "model_kwargs": {},  # e.g. {hidden: [20, 20], activation: tanh} for mlp
    "dim": 4,  # subspace dimension d, or "full" for the full-space baseline
    "projection": "auto",  # dense | sparse | fastfood | auto
    "seed": 0,  # drives theta_0, P, the noise and the environment seeds
    "optimizer": "openai_es",  # openai_es (Salimans et al.) | cma_es (pycma, Hansen's CMA-ES)
    "cma": {  # cma_es only
        "popsize": None,  # candidates per generation (None: pycma's 4 + 3 ln n)
        "sigma0": None,  # initial step size (None: sigma)
        "diagonal": False,  # diagonal covariance (sep-CMA): O(n) memory, needed for large n
    },
    "generations": 50,  # at most this many generations ...
    "max_timesteps": None,  # ... or until this many environment steps (training + evaluation) have run
    "pairs": 20,  # mirrored pairs per generation (population = 2 * pairs)
    "sigma": 0.1,  # noise standard deviation in theta_d
    "lr": 0.05,  # Adam step size
    "l2": 0.005,  # L2 decay coefficient on theta_d
    "update_block_pairs": 64,  # OpenAI-ES update: pairs per block; above one block, the blocks' noise
                               # sums are shared out over the ranks (rlsub.es.optimizers.OpenAIES.tell)
    "action_noise": 0.0,  # Gaussian noise on continuous actions, training episodes only
    "obs_norm": True,  # running observation normalisation
    "obs_stat_prob": 1.0,  # share of pairs whose observations update the statistics (OpenAI's calc_obstat_prob,
                           # 0.01 in their Humanoid runs): a seeded draw per pair, the same for any rank count;
                           # below 1 it shrinks the per-generation all-gather (observation sums) and the per-step work
    "max_episode_steps": None,  # cap on episode length (None: the environment's own limit)
    "eval_every": 5,  # generations between noiseless evaluations (and after the last)
    "eval_episodes": 5,
    "target_return": None,  # stop once the evaluation return reaches this (None: never)
    "checkpoint_every": 10,
    "reference_batch": 128,  # observations for virtual batch norm (networks that have it)
    "metric_min": None,  # the lowest possible return (None: derived from the environment, see envs.metric_min)
}

#: the type and range of every key of DEFAULTS (checked by rlsub.config.check)
SCHEMA: dict = {
    "task": Str(null=True),
    "env": Str(),
    "env_kwargs": Mapping(),
    "model": Str(choices=sorted(MODELS)),
    "model_kwargs": Mapping(),
    "dim": Dim(),
    "projection": Str(choices=("dense", "sparse", "fastfood", "auto")),
    "seed": Int(min=0),
    "optimizer": Str(choices=sorted(OPTIMIZERS)),
    "cma": Section({"popsize": Int(min=2, null=True), "sigma0": Float(gt=0, null=True), "diagonal": Bool()}),
    "generations": Int(min=1),
    "max_timesteps": Int(min=1, null=True),
    "pairs": Int(min=1),
    "sigma": Float(gt=0),
    "lr": Float(gt=0),
    "l2": Float(min=0),
    "update_block_pairs": Int(min=1),
    "action_noise": Float(min=0),
    "obs_norm": Bool(),
    "obs_stat_prob": Float(gt=0, max=1),
    "max_episode_steps": Int(min=1, null=True),
    "eval_every": Int(min=1),
    "eval_episodes": Int(min=1),
    "target_return": Float(null=True),
    "checkpoint_every": Int(min=1),
    "reference_batch": Int(min=1),
    "metric_min": Float(null=True),
}

#: keys a resumed run may change (its budget); any other must match the run's record
RESUMABLE = ("generations", "max_timesteps", "target_return", "eval_every", "checkpoint_every")
#: the keys that say how long a run goes: a sweep whose values of them grew continues its points
BUDGET = ("generations", "max_timesteps")


#: the file a run continues from (``resume``); sweeps continue half-run points from it
CHECKPOINT = "checkpoint.npz"


def _comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def resolve(config_path: str | None, overrides: dict) -> dict:
    """The fully resolved config: YAML onto DEFAULTS, then the non-None overrides, checked against
    SCHEMA (ConfigError on bad input)."""
    config = resolve_config(DEFAULTS, SCHEMA, config_path, overrides)
    if config["task"] is None:
        config["task"] = config["env"]
    check_env_id(config["env"])
    # the shift of the d_int90 threshold must be known before anything runs (never guessed)
    metric_min(config["env"], config["metric_min"], config["max_episode_steps"])
    return config


def dimension(config: dict) -> int:
    """D of the policy a resolved config asks for, without training (for checking d <= D early)."""
    env = make_env(config["env"], **config["env_kwargs"])
    try:
        return build_policy({**config, "dim": "full"}, env)[1]
    finally:
        env.close()


def build_policy(config: dict, env) -> tuple[SubspaceModel, int]:
    """The subspace-parameterised policy for ``env`` and its D."""
    kwargs = dict(config["model_kwargs"])
    obs_shape, act = env.observation_space.shape, env.action_space
    n_out = int(act.n) if hasattr(act, "n") else int(np.prod(act.shape))
    if config["model"] == "mlp":
        kwargs.setdefault("in_dim", int(np.prod(obs_shape)))
        kwargs.setdefault("out_dim", n_out)
    elif config["model"] == "pong_conv":
        kwargs.setdefault("in_channels", obs_shape[0])
        kwargs.setdefault("image_size", obs_shape[-1])
        kwargs.setdefault("num_actions", n_out)
    net, D, d = build_network(config["model"], kwargs, config["seed"], config["dim"], config["projection"],
                              config["seed"], what="policy")
    if d is None:  # full space: the identity projection keeps one code path for both
        return SubspaceModel(net, D, projection="identity", seed=config["seed"]), D
    return net, D


def _load_checkpoint(path: Path, n_opt: int, seed: int, obs_shape: tuple | None) -> dict:
    """The arrays of an ES checkpoint, checked against the run (UserError if missing or damaged)."""
    if not path.exists():
        raise ConfigError(f"cannot resume: no checkpoint in {path.parent}")
    try:
        with np.load(path) as f:
            state = {k: f[k] for k in f.files}
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, OSError: cut short or damaged
        raise UserError(f"cannot resume: {path} is damaged ({type(exc).__name__}: {exc}); "
                        f"restore it or start a new run") from None
    need = ["x", "generation", "timesteps", "episodes", "elapsed"] + (["obs_count"] if obs_shape else [])
    missing = [k for k in need if k not in state]
    if missing or state["x"].shape != (n_opt,):
        raise UserError(f"cannot resume: {path} does not belong to this run "
                        f"({'missing ' + ', '.join(missing) if missing else 'theta_d of shape ' + str(state['x'].shape)})")
    if obs_shape and "obs_sum" in state and tuple(state["obs_sum"].shape) != tuple(obs_shape):
        raise UserError(f"cannot resume: {path} holds statistics of {tuple(state['obs_sum'].shape)} observations, but "
                        f"the environment gives {tuple(obs_shape)} (another environment or version?)")
    if "seed" in state and int(state["seed"]) != seed:
        raise UserError(f"cannot resume: {path} was written by seed {int(state['seed'])}, not {seed}")
    return state


def _default_out(config: dict) -> Path:
    return default_run_dir(config["task"], "es", config["dim"], config["seed"])


def train(config: dict, out_dir: str | Path | None = None, resume: bool = False, quiet: bool = False,
          comm=None) -> dict:
    """Run ES with ``config`` (from :func:`resolve`) on the ranks of ``comm`` (default: all of
    them); returns the summary written to ``out_dir``."""
    # One process per core: numpy's BLAS (OpenBLAS) would otherwise start a thread per core in every
    # rank for its larger products (the OpenAI-ES update's block products at large d or D), ranks x
    # cores threads on the cores; the limit is lifted again when training returns.
    with threadpool_limits(limits=1, user_api="blas"):
        return _train(config, out_dir, resume, quiet, comm)


def _train(config: dict, out_dir: str | Path | None, resume: bool, quiet: bool, comm) -> dict:
    comm = comm or _comm()
    rank, size = comm.Get_rank(), comm.Get_size()
    torch.set_num_threads(1)  # one process per core; also keeps float reductions rank-count independent
    out = Path(comm.bcast(str(out_dir or _default_out(config)) if rank == 0 else None, root=0))
    problem = None
    if rank == 0:  # before anything is built or written: a finished run must not be overwritten
        try:
            check_out_dir(out, resume)
        except UserError as exc:
            problem = str(exc)
    problem = comm.bcast(problem, root=0)
    if problem:
        raise UserError(problem)
    summary_min = metric_min(config["env"], config["metric_min"], config["max_episode_steps"])

    env = EnvClock(make_env(config["env"], **config["env_kwargs"]))
    model, D = build_policy(config, env)
    proj, theta_0 = model.projection, model.theta_0.numpy()
    n_opt = model.d
    actor = Actor(model, env.action_space)
    reference = None
    if actor.needs_reference:
        reference = reference_batch(env, config["reference_batch"], config["seed"])
    seed = config["seed"]
    obs_shape = env.observation_space.shape
    obs_stats = ObsStats(obs_shape) if config["obs_norm"] else None
    opt = make_optimizer(n_opt, config, comm)  # a refused setting (cma_es too large) fails before any file is written
    start_gen, timesteps, episodes, elapsed_before = 0, 0, 0, 0.0
    run = RunDir(out) if rank == 0 else None
    ckpt_path = out / "checkpoint.npz"
    if resume:
        state = _load_checkpoint(ckpt_path, n_opt, seed, obs_shape if obs_stats is not None else None)
        opt.load(state)
        if obs_stats is not None:
            obs_stats.load(state)
        start_gen, timesteps, episodes = int(state["generation"]), int(state["timesteps"]), int(state["episodes"])
        elapsed_before = float(state["elapsed"])
        if rank == 0:
            run.truncate_metrics(start_gen, "generation")
            run.record_resume(config, RESUMABLE, start_gen)
    elif rank == 0:
        run.write_config({**config, "D": D, "d": None if config["dim"] == "full" else n_opt,
                          "projection_kind": proj.kind, "n_ranks": size})
    if rank == 0 and not quiet:
        print(f"es: {config['task']} D={D} d={config['dim']} projection={proj.kind} optimizer={opt.name} "
              f"seed={seed} ranks={size} -> {out} (if stopped: rlsub es --resume {out})", file=sys.stderr)

    def save_checkpoint(generation: int, elapsed: float) -> None:
        state = {**opt.state(), "x": opt.x, "generation": np.array(generation), "timesteps": np.array(timesteps),
                 "episodes": np.array(episodes), "elapsed": np.array(elapsed), "seed": np.array(seed)}
        if obs_stats is not None:
            state.update(obs_stats.state())
        atomic_write(ckpt_path, partial(np.savez, **state))

    if rank == 0 and not resume:  # a run stopped before its first checkpoint resumes from here
        save_checkpoint(0, 0.0)

    def project(v: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return proj(torch.from_numpy(np.asarray(v, dtype=np.float32))).numpy()

    def evaluate(center: np.ndarray, generation: int) -> tuple[float, list[float], int]:
        actor.set_params(center, obs_stats, reference)
        local = []
        for k in range(rank, config["eval_episodes"], size):
            ret, length, _, _ = rollout(env, actor, episode_seed(seed, 1, generation, k), config["max_episode_steps"])
            local.append((k, ret, length))
        rows = sorted(r for part in comm.allgather(local) for r in part)
        returns = [r[1] for r in rows]
        return float(np.mean(returns)), returns, int(sum(r[2] for r in rows))

    t_start = time.time()
    eval_return, eval_returns = None, []
    generation, stop = start_gen, False
    for generation in range(start_gen, config["generations"]):
        t_gen = time.time()
        env_seconds = env.seconds
        t_opt = time.perf_counter()
        opt.begin(generation, theta_0, project)
        opt_seconds = time.perf_counter() - t_opt
        per = opt.per_item
        local_rows, local_obs, local_steps = [], [], 0
        for k in range(rank, opt.n_items, size):
            row, s_sum, ssq_sum, n_steps = [k], 0.0, 0.0, 0
            record = obs_stats is not None and records_obs(seed, generation, k, config["obs_stat_prob"])
            for theta, env_index, noise_index in opt.candidates(generation, k, project):
                actor.set_params(theta, obs_stats, reference)
                ret, length, s, ssq = rollout(env, actor, episode_seed(seed, 0, generation, env_index),
                                              config["max_episode_steps"], record_obs=record,
                                              action_noise=config["action_noise"],
                                              noise_seed=episode_seed(seed, 2, generation, noise_index))
                row += [ret, length]
                if record:
                    s_sum, ssq_sum, n_steps = s_sum + s, ssq_sum + ssq, n_steps + length
                local_steps += length
            local_rows.append(row)
            if record:  # the item index first: the rows are added in item order on every rank
                local_obs.append(np.concatenate([[k], s_sum.ravel(), ssq_sum.ravel(), [n_steps]]))
        payload = (np.array(local_rows, dtype=np.float64).reshape(-1, 1 + 2 * per),
                   np.array(local_obs, dtype=np.float64) if local_obs else None)
        gathered = comm.allgather(payload)
        comm_bytes = sum(p[0].nbytes + (p[1].nbytes if p[1] is not None else 0) for p in gathered)
        rows = np.concatenate([p[0] for p in gathered])
        order = np.argsort(rows[:, 0], kind="stable")
        rows = rows[order]
        returns = rows[:, 1::2]
        t_opt = time.perf_counter()
        opt.tell(generation, returns)
        x = opt.x
        opt_seconds += time.perf_counter() - t_opt
        recorded = [p[1] for p in gathered if p[1] is not None]
        if obs_stats is not None and recorded:
            obs_rows = np.concatenate(recorded)
            obs_rows = obs_rows[np.argsort(obs_rows[:, 0], kind="stable")]
            n_obs = int(np.prod(obs_shape))
            for r in obs_rows:  # in item order: the same float sums on every rank
                obs_stats.add(r[1:1 + n_obs].reshape(obs_shape), r[1 + n_obs:1 + 2 * n_obs].reshape(obs_shape), r[-1])
        gen_steps = int(rows[:, 2::2].sum())
        timesteps += gen_steps
        episodes += per * len(rows)
        gen_time = time.time() - t_gen
        row = {"generation": generation, "timesteps": timesteps, "episodes": episodes,
               "return_mean": float(returns.mean()), "return_max": float(returns.max()),
               "return_min": float(returns.min()), "theta_d_norm": float(np.linalg.norm(x)),
               "steps_per_s": gen_steps / max(gen_time, 1e-9),
               "steps_per_s_per_rank": local_steps / max(gen_time, 1e-9),
               # share of this rank's generation spent inside env.reset/step: 1 minus it is the
               # overhead of policy, projection, update and communication
               "env_time_frac": (env.seconds - env_seconds) / max(gen_time, 1e-9), "comm_bytes": comm_bytes,
               # share in the optimizer's own work: begin (CMA-ES: ask; OpenAI-ES: theta_0 + P x) and
               # tell (the update)
               "opt_time_frac": opt_seconds / max(gen_time, 1e-9),
               **opt.metrics()}
        budget = config["max_timesteps"]
        last = generation + 1 == config["generations"] or (budget is not None and timesteps >= budget)
        stop = False
        if (generation + 1) % config["eval_every"] == 0 or last:
            eval_return, eval_returns, eval_steps = evaluate(theta_0 + project(x), generation)
            timesteps += eval_steps
            row["eval_return"] = eval_return
            target = config["target_return"]
            stop = target is not None and eval_return >= target
        row["wall_time_s"] = elapsed_before + time.time() - t_start
        if rank == 0:
            run.log(row)
            if not quiet:
                ev = f" eval {eval_return:8.2f}" if "eval_return" in row else ""
                print(f"gen {generation:4d} steps {timesteps:9d} return mean {row['return_mean']:8.2f} "
                      f"max {row['return_max']:8.2f}{ev}", file=sys.stderr)
            if (generation + 1) % config["checkpoint_every"] == 0 or last or stop:
                save_checkpoint(generation + 1, row["wall_time_s"])
        if stop or last:
            break
    x = opt.x
    if eval_return is None:  # resumed a run that had already finished its generations
        eval_return, eval_returns, _ = evaluate(theta_0 + project(x), generation)
    wall = elapsed_before + time.time() - t_start
    summary = {"task": config["task"], "trainer": "es", "env": config["env"], "D": D,
               "d": None if config["dim"] == "full" else n_opt, "dim": config["dim"],
               "projection": None if config["dim"] == "full" else proj.kind, "seed": seed,
               "optimizer": opt.name, "generations_budget": config["generations"],
               "max_timesteps": config["max_timesteps"], "stopped_early": bool(stop),
               "metric": "eval_return", "value": eval_return, "eval_returns": eval_returns,
               "metric_min": summary_min, "timesteps": timesteps, "episodes": episodes,
               "generations": generation + 1, "wall_time_s": wall, "n_ranks": size}
    if rank == 0:
        atomic_save_npy(out / "theta_d.npy", x.astype(np.float32))
        save_fingerprint(out, model)  # lets rlsub eval refuse a differently rebuilt theta_0 / P
        if obs_stats is not None:  # part of the model: the policy sees normalised observations
            atomic_write(out / "obs_norm.npz", partial(np.savez, **obs_stats.state()))
        run.write_summary(summary)
    comm.Barrier()
    env.close()
    return summary
