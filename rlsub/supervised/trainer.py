"""Supervised image classification with theta_d (or, for ``dim: full``, all D parameters) trained by Adam.

The trainer behind ``rlsub train`` (contract: :mod:`rlsub.trainers`). One epoch is one pass over
the training set in minibatches whose order comes from a ``torch.Generator`` seeded by the run
seed; theta_0 (the network's init) and P also come from the seed, so a config and a seed give the
same theta_d bit for bit (on the same machine and thread count). After each epoch the test set is
evaluated; at the end the whole training set is evaluated too, in eval mode, so that memorisation
tasks (shuffled labels) can use ``train_accuracy`` as their metric. Accuracies are higher-is-better
and lie in [0, 1] (``metric_min = 0``).

The subspace's shape (hyperplane / hypersphere), augmentation (none / power / rff) and dense-P
options come from the config (``subspace_options``) and are built by :class:`SubspaceModel`; the
trainer only hands it the optimiser (``attach_optimizer``, the hypersphere's step rule).

The run directory holds ``config.json`` (with r_X, r0, P's width and the number of trained
parameters), ``metrics.jsonl`` (one row per epoch, with ``radius`` = ||theta_D||, and with ``log_every`` a
row every that many optimiser steps: ``step``, ``radius``, ``batch_loss``; step 0 is the start), ``summary.json``
(with ``radius_final``), ``theta_d.npy`` (``theta_D.npy``, the flat parameters, for full-space runs;
``projection_PT.npy`` beside it when P was trained) and ``checkpoint.pt`` (the state after the last
finished epoch, for ``resume``).
"""

from __future__ import annotations

import math
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from rlsub.augment import AUGMENTATIONS
from rlsub.config import (
    Bool,
    ConfigError,
    Dim,
    Float,
    Int,
    Mapping,
    Str,
    merge,  # noqa: F401 - rlsub.commands use trainer.merge
    resolve_config,
)
from rlsub.errors import UserError
from rlsub.loading import save_fingerprint
from rlsub.models import MODELS
from rlsub.projections import DENSE_INITS
from rlsub.rundir import RunDir, check_out_dir, default_run_dir
from rlsub.shapes import SHAPES as SUBSPACE_SHAPES
from rlsub.subspace import SubspaceModel, atomic_write
from rlsub.supervised.data import ImageData, data_root, load_dataset
from rlsub.trainers import build_network

DEFAULTS: dict = {
    "task": None,  # name used in reports and run directories; defaults to "<dataset>_<model>"
    "dataset": "mnist",  # mnist | cifar10
    "data_dir": None,  # data folder (else $RLSUB_DATA, else ~/.cache/rlsub/data)
    "model": "mlp",  # registry name (rlsub.models); input/output sizes come from the data
    "model_kwargs": {},
    "dim": 750,  # subspace dimension d, or "full" for the full-space baseline
    "projection": "fastfood",  # dense | sparse | fastfood | auto
    "seed": 0,  # drives theta_0, P, the batch order and (unless data_seed is set) the data variants
    "data_seed": None,  # seed of the data variants (pixel permutation, label shuffling, subset)
    "epochs": 5,
    "batch_size": 128,
    "lr": 1e-3,  # Adam step size for theta_d
    "lr_ref_dim": None,  # if set, theta_d's step size is lr * sqrt(lr_ref_dim / d): Adam moves every coordinate
                         # by about lr, so theta_D moves by about lr * sqrt(d); this keeps that step the same at
                         # every d of a sweep spanning decades (None: lr at every d)
    "full_lr": None,  # Adam step size for dim: full (None: lr); full space wants a smaller step
    "subset": None,  # train on this many training examples (None: all)
    "shuffle_pixels": False,  # one fixed permutation of pixel positions, train and test alike
    "shuffle_labels": 0.0,  # fraction of training labels replaced by random ones
    "metric": "test_accuracy",  # test_accuracy | train_accuracy (memorisation tasks)
    "eval_batch_size": 1000,
    "eval_every": 1,  # test accuracy every this many epochs and after the last (memorisation runs of many
                      # short epochs spend most of their time evaluating the test set otherwise)
    "threads": 1,  # torch CPU threads
    "log_every": None,  # also a metrics.jsonl row (step, radius, batch_loss) every this many steps (None: per epoch only)
    # the subspace's shape and map (rlsub.shapes, rlsub.augment, rlsub.projections); ignored for dim: full
    "subspace": "hyperplane",  # hyperplane (theta_0 + P theta_d) | hypersphere (P theta_d, ||theta_D|| = r0 fixed)
    "radius_ratio": None,  # hypersphere: r0 / r_X, r_X = ||theta_0|| of the standard init (None: 1.0)
    "init_radius_ratio": None,  # hyperplane: theta_0 rescaled to this multiple of r_X (None: unscaled)
    "augment": "none",  # none | power ([t; t^2]) | rff ([t; cos(Bt) - 1; sin(Bt)]), projected by a wider P
    "rff_features": None,  # rff: rows of B (cos / sin pairs); P then has d + 2 rff_features columns
    "rff_scale": 1.0,  # rff: standard deviation of B's entries
    "trainable_projection": False,  # dense P trained with theta_d (small D only: P, grad, Adam moments in memory)
    "projection_lr": None,  # trainable_projection: Adam step size for P's entries (None: lr)
    "normalize_columns": True,  # dense P: unit-norm columns (false: entries / sqrt(D), unit norm on average)
    "projection_init": "gaussian",  # dense P's entries: gaussian | uniform | sparse
}

#: config keys of the subspace's shape and map, recorded in every summary (None for dim: full)
SUBSPACE_KEYS = ("subspace", "radius_ratio", "init_radius_ratio", "augment", "rff_features", "rff_scale",
                 "trainable_projection", "projection_lr", "normalize_columns", "projection_init")

METRICS = ("test_accuracy", "train_accuracy")

#: dataset -> (channels, height, width, classes): the network's shape without loading the data
DATA_SHAPES = {"mnist": (1, 28, 28, 10), "cifar10": (3, 32, 32, 10)}
#: dataset -> training examples (checks ``subset`` before any data are read)
TRAIN_SIZES = {"mnist": 60000, "cifar10": 50000}

#: the type and range of every key of DEFAULTS (checked by rlsub.config.check)
SCHEMA: dict = {
    "task": Str(null=True),
    "dataset": Str(choices=sorted(DATA_SHAPES)),
    "data_dir": Str(null=True),
    "model": Str(choices=sorted(MODELS)),
    "model_kwargs": Mapping(),
    "dim": Dim(),
    "projection": Str(choices=("dense", "sparse", "fastfood", "auto")),
    "seed": Int(min=0),
    "data_seed": Int(min=0, null=True),
    "epochs": Int(min=1),
    "batch_size": Int(min=1),
    "lr": Float(gt=0),
    "lr_ref_dim": Int(min=1, null=True),
    "full_lr": Float(gt=0, null=True),
    "subset": Int(min=1, null=True),
    "shuffle_pixels": Bool(),
    "shuffle_labels": Float(min=0, max=1),
    "metric": Str(choices=METRICS),
    "eval_batch_size": Int(min=1),
    "eval_every": Int(min=1),
    "threads": Int(min=1),
    "log_every": Int(min=1, null=True),
    "subspace": Str(choices=sorted(SUBSPACE_SHAPES)),
    "radius_ratio": Float(gt=0, null=True),
    "init_radius_ratio": Float(gt=0, null=True),
    "augment": Str(choices=sorted(AUGMENTATIONS)),
    "rff_features": Int(min=1, null=True),
    "rff_scale": Float(gt=0),
    "trainable_projection": Bool(),
    "projection_lr": Float(gt=0, null=True),
    "normalize_columns": Bool(),
    "projection_init": Str(choices=sorted(DENSE_INITS)),
}

#: keys a resumed run may change (its budget and where the data are); any other must match its record
RESUMABLE = ("epochs", "threads", "data_dir", "eval_batch_size", "eval_every", "log_every")
#: the keys that say how long a run goes: a sweep whose values of them grew continues its points
BUDGET = ("epochs",)


def resolve(config_path: str | None, overrides: dict) -> dict:
    """The fully resolved config: YAML onto DEFAULTS, then the non-None overrides, checked against
    SCHEMA; ConfigError on bad input."""
    config = resolve_config(DEFAULTS, SCHEMA, config_path, overrides)
    if config["task"] is None:
        config["task"] = f"{config['dataset']}_{config['model']}"
    total = TRAIN_SIZES[config["dataset"]]
    if config["subset"] is not None and config["subset"] > total:
        raise ConfigError(f"subset must be between 1 and {total} for {config['dataset']}, got {config['subset']}")
    wrong = {"hyperplane": "radius_ratio", "hypersphere": "init_radius_ratio"}[config["subspace"]]
    if config[wrong] is not None:
        raise ConfigError(f"{wrong} does not apply to subspace: {config['subspace']} (radius_ratio is the "
                          "hypersphere's fixed radius, init_radius_ratio the hyperplane's starting one)")
    if config["subspace"] == "hypersphere" and config["radius_ratio"] is None:
        config["radius_ratio"] = 1.0
    if config["augment"] == "rff" and (isinstance(config["rff_features"], bool)
                                       or not isinstance(config["rff_features"], int) or config["rff_features"] < 1):
        raise ConfigError(f"augment: rff needs rff_features, a positive integer, got {config['rff_features']!r}")
    if config["trainable_projection"] and config["projection"] != "dense":
        raise ConfigError(f"trainable_projection needs projection: dense, got {config['projection']!r}")
    if config["projection_lr"] is not None and not config["trainable_projection"]:
        raise ConfigError("projection_lr applies to trainable_projection: true (P is fixed otherwise)")
    if config["projection"] != "dense" and (not config["normalize_columns"] or config["projection_init"] != "gaussian"):
        raise ConfigError(f"normalize_columns and projection_init apply to projection: dense, not {config['projection']!r}")
    return config


def dimension(config: dict) -> int:
    """D of the network a resolved config asks for, without loading data or training."""
    c, h, _, classes = DATA_SHAPES[config["dataset"]]
    kwargs = dict(config["model_kwargs"])
    if config["model"] == "mlp":
        kwargs.setdefault("in_dim", c * h * h)
        kwargs.setdefault("out_dim", classes)
    elif config["model"] == "lenet":
        kwargs.setdefault("in_channels", c)
        kwargs.setdefault("image_size", h)
        kwargs.setdefault("num_classes", classes)
    return build_network(config["model"], kwargs, config["seed"], "full")[1]


def _read_checkpoint(path: Path) -> dict:
    """The state saved after the last finished epoch (UserError if missing or damaged)."""
    if not path.exists():
        raise ConfigError(f"cannot resume: no checkpoint in {path.parent}")
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:  # cut short by a kill or a full disk, or not a checkpoint
        raise UserError(f"cannot resume: {path} is damaged ({type(exc).__name__}: "
                        f"{' '.join(str(exc).split())[:200]}); restore it or start a new run") from None


def subspace_options(config: dict) -> dict:
    """:class:`SubspaceModel` keyword arguments for the config's shape, augmentation and dense-P options."""
    sphere = config["subspace"] == "hypersphere"
    options = {"subspace": config["subspace"],
               "radius_ratio": config["radius_ratio"] if sphere else config["init_radius_ratio"],
               "augment": config["augment"], "trainable_projection": config["trainable_projection"]}
    if config["augment"] == "rff":
        options["augment_options"] = {"features": config["rff_features"], "scale": config["rff_scale"]}
    if config["projection"] == "dense":
        options.update(normalize_columns=config["normalize_columns"], init=config["projection_init"])
    return options


def geometry(net: nn.Module) -> dict:
    """What the built model derived from its config: r_X, r0, P's width, how many numbers are trained."""
    if isinstance(net, SubspaceModel):
        return {"r_X": net.r_X, "r0": net.r0, "projection_width": net.projection.d,
                "trained_parameters": net.num_trained()}
    r = radius(net)
    return {"r_X": r, "r0": r, "projection_width": None, "trained_parameters": sum(p.numel() for p in net.parameters())}


@torch.no_grad()
def radius(net: nn.Module) -> float:
    """||theta_D||_2: the norm of all the network's parameters as it runs now."""
    if isinstance(net, SubspaceModel):
        return net.radius()
    return float(nn.utils.parameters_to_vector(net.parameters()).double().norm())


def default_out(config: dict) -> Path:
    return default_run_dir(config["task"], "supervised", config["dim"], config["seed"])


def load_data(config: dict) -> ImageData:
    """The data set a config asks for, variants applied."""
    seed = config["seed"] if config["data_seed"] is None else config["data_seed"]
    return load_dataset(config["dataset"], config["data_dir"], seed=seed, subset=config["subset"],
                        pixels_shuffled=bool(config["shuffle_pixels"]),
                        labels_shuffled=float(config["shuffle_labels"]))


def model_kwargs(config: dict, data: ImageData) -> dict:
    """The registry model's keyword arguments, input and output sizes filled in from the data."""
    kwargs = dict(config["model_kwargs"])
    _, c, h, w = data.x_train.shape
    if config["model"] == "mlp":
        kwargs.setdefault("in_dim", c * h * w)
        kwargs.setdefault("out_dim", data.num_classes)
    elif config["model"] == "lenet":
        kwargs.setdefault("in_channels", c)
        kwargs.setdefault("image_size", h)
        kwargs.setdefault("num_classes", data.num_classes)
    return kwargs


class Batches:
    """Images as uint8 tensors, standardised per channel (training-set statistics) batch by batch."""

    def __init__(self, data: ImageData):
        c = data.x_train.shape[1]
        # exact per-channel statistics from pixel-value histograms, without a float copy of the data
        values = np.arange(256, dtype=np.float64) / 255.0
        counts = [sum(np.bincount(data.x_train[i:i + 4096, k].ravel(), minlength=256)
                      for i in range(0, len(data.x_train), 4096)).astype(np.float64) for k in range(c)]
        mean = np.array([h @ values / h.sum() for h in counts])
        std = np.array([np.sqrt(h @ (values - mu) ** 2 / h.sum()) for h, mu in zip(counts, mean)])
        self.scale = torch.tensor(1.0 / (255.0 * std), dtype=torch.float32).view(1, c, 1, 1)
        self.shift = torch.tensor(mean / std, dtype=torch.float32).view(1, c, 1, 1)
        self.x_train, self.y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        self.x_test, self.y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)

    def images(self, x_u8: torch.Tensor) -> torch.Tensor:
        return x_u8.float().mul_(self.scale).sub_(self.shift)

    def train_batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised training images and labels at ``idx``. ``index_select`` on the images seen as
        rows of bytes gathers the same bytes as ``x_train[idx]`` about 8x faster (CIFAR-10, batch
        128: 66 us against 527 us, a tenth of a full-space step)."""
        rows = self.x_train.view(len(self.x_train), -1).index_select(0, idx)
        return self.images(rows.view((len(idx),) + tuple(self.x_train.shape[1:]))), self.y_train[idx]


def _forward_fn(net: nn.Module):
    """A function x -> logits with the parameters fixed for a whole evaluation pass."""
    if isinstance(net, SubspaceModel):
        theta_D = net.theta_D().detach()  # project once, not once per batch
        return lambda x: net.call_with(theta_D, x)
    return net


@torch.no_grad()
def accuracy(net: nn.Module, batches: Batches, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Fraction of ``x`` classified as ``y`` (eval mode)."""
    net.eval()
    forward = _forward_fn(net)
    correct = 0
    for start in range(0, len(y), batch_size):
        logits = forward(batches.images(x[start:start + batch_size]))
        correct += int((logits.argmax(dim=1) == y[start:start + batch_size]).sum())
    net.train()
    return correct / len(y)


def step_size(config: dict, d: int | None) -> float:
    """Adam's step size: ``full_lr`` (else ``lr``) in full space; ``lr``, scaled by
    sqrt(lr_ref_dim / d) when ``lr_ref_dim`` is set, in a subspace of dimension d."""
    if d is None:
        return config["full_lr"] if config["full_lr"] is not None else config["lr"]
    if config["lr_ref_dim"] is None:
        return config["lr"]
    return config["lr"] * math.sqrt(config["lr_ref_dim"] / d)


def param_groups(net: nn.Module, config: dict) -> list[dict]:
    """Adam's parameter groups: one, or theta_d and a trained P apart when ``projection_lr`` is set.

    A trained P's entries are of the size of full-space weights (about 1 / sqrt(D)), so the step
    size that suits theta_d moves them far too much; ``projection_lr`` gives them their own."""
    if not (isinstance(net, SubspaceModel) and net.trainable_projection and config["projection_lr"] is not None):
        return [{"params": list(net.parameters())}]
    p_ids = {id(p) for p in net.projection.parameters()}
    return [{"params": [p for p in net.parameters() if id(p) not in p_ids]},
            {"params": list(net.projection.parameters()), "lr": config["projection_lr"]}]


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
    """One Adam step on the minibatch (x, y): returns its mean loss and how many it classified right."""
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(dim=1) == y).sum())


#: the file a run continues from (``resume``); sweeps continue half-run points from it
CHECKPOINT = "checkpoint.pt"
#: a trained dense P (trainable_projection), stored as P^T [width, D]
TRAINED_P = "projection_PT.npy"


def train(config: dict, out_dir: str | Path | None = None, resume: bool = False, quiet: bool = False) -> dict:
    """Train with ``config`` (from :func:`resolve`); returns the summary written to ``out_dir``.

    Everything that can fail on bad input (data, network, d vs D) happens before the run
    directory is created, so a failed start leaves nothing behind.
    """
    torch.set_num_threads(config["threads"])
    out = Path(out_dir) if out_dir else default_out(config)
    ckpt_path = out / CHECKPOINT
    check_out_dir(out, resume)
    state = _read_checkpoint(ckpt_path) if resume else None
    data = load_data(config)
    seed, dim = config["seed"], config["dim"]
    try:
        net, D, d = build_network(config["model"], model_kwargs(config, data), seed, dim,
                                  config["projection"], seed, subspace_options=subspace_options(config))
    except UserError:
        raise
    except ValueError as exc:  # e.g. an unknown activation in model_kwargs
        raise ConfigError(f"cannot build model {config['model']!r}: {exc}") from None
    batches = Batches(data)
    lr = step_size(config, d)
    optimizer = torch.optim.Adam(param_groups(net, config), lr=lr)
    if d is not None:
        net.attach_optimizer(optimizer)  # the shape's step rule (hypersphere: stay on the sphere)
    shape = geometry(net)
    order_gen = torch.Generator().manual_seed(seed)
    start_epoch, elapsed_before = 0, 0.0
    if resume:
        try:
            net.load_state_dict(state["net"])
            optimizer.load_state_dict(state["optimizer"])
            order_gen.set_state(state["order_gen"])
            start_epoch, elapsed_before = int(state["epoch"]), float(state["elapsed"])
        except Exception as exc:  # cut short, damaged, or from another network
            raise UserError(f"cannot resume: {ckpt_path} is damaged or belongs to another run "
                            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    run = RunDir(out)
    if resume:
        run.truncate_metrics(start_epoch, "epoch")
        run.record_resume(config, RESUMABLE, start_epoch)
    else:
        run.write_config({**config, "D": D, "d": d, "data_source": data.source, **shape})
    if not quiet:
        print(f"train: {config['task']} D={D} d={dim} projection={config['projection'] if d else None} "
              f"seed={seed} data={data.describe} -> {out}", file=sys.stderr)

    n, bs = len(batches.y_train), config["batch_size"]
    steps_per_epoch = -(-n // bs)
    every = config["log_every"]
    t_start = time.time()
    test_acc = None
    net.train()
    if every and start_epoch == 0:
        run.log({"epoch": 0, "step": 0, "radius": radius(net)})
    for epoch in range(start_epoch, config["epochs"]):
        t_epoch = time.time()
        perm = torch.randperm(n, generator=order_gen)
        loss_sum, correct = 0.0, 0
        steps = range(0, n, bs)
        bar = tqdm(steps, desc=f"epoch {epoch + 1}/{config['epochs']}", file=sys.stderr, leave=False,
                   disable=True if quiet else None)
        for i, start in enumerate(bar):
            idx = perm[start:start + bs]
            loss, hits = train_step(net, optimizer, *batches.train_batch(idx))
            loss_sum += loss * len(idx)
            correct += hits
            step = epoch * steps_per_epoch + i + 1
            if every and step % every == 0:  # finer than epochs: the radius's growth r(t) is fitted from these
                run.log({"epoch": epoch, "step": step, "radius": radius(net), "batch_loss": loss})
        if not math.isfinite(loss_sum):
            print(f"train: warning: the training loss is {loss_sum} in epoch {epoch + 1}; lower lr",
                  file=sys.stderr)
        train_time = time.time() - t_epoch
        evaluate = (epoch + 1) % config["eval_every"] == 0 or epoch + 1 == config["epochs"]
        test_acc = (accuracy(net, batches, batches.x_test, batches.y_test, config["eval_batch_size"])
                    if evaluate else None)
        row = {"epoch": epoch, "step": (epoch + 1) * steps_per_epoch, "train_loss": loss_sum / n,
               "train_acc_running": correct / n, **({"test_acc": test_acc} if evaluate else {}),
               "radius": radius(net), "epoch_train_time_s": train_time,
               "wall_time_s": elapsed_before + time.time() - t_start}
        run.log(row)
        if not quiet:
            tested = f" test acc {test_acc:.4f}" if evaluate else ""
            print(f"epoch {epoch + 1:3d}/{config['epochs']} loss {row['train_loss']:.4f} "
                  f"train acc {row['train_acc_running']:.4f}{tested} ({train_time:.1f} s)", file=sys.stderr)
        state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                 "order_gen": order_gen.get_state(), "elapsed": row["wall_time_s"]}
        atomic_write(ckpt_path, partial(torch.save, state))
    if test_acc is None:  # resumed a run that had already finished its epochs
        test_acc = accuracy(net, batches, batches.x_test, batches.y_test, config["eval_batch_size"])
    train_acc = accuracy(net, batches, batches.x_train, batches.y_train, config["eval_batch_size"])
    wall = elapsed_before + time.time() - t_start
    values = {"test_accuracy": test_acc, "train_accuracy": train_acc}
    summary = {"task": config["task"], "trainer": "supervised", "dataset": config["dataset"],
               "model": config["model"], "D": D, "d": d, "dim": dim,
               "projection": config["projection"] if d else None, "seed": seed,
               "metric": config["metric"], "value": values[config["metric"]], "metric_min": 0.0,
               "test_accuracy": test_acc, "train_accuracy": train_acc, "epochs": config["epochs"],
               "batch_size": bs, "lr": lr, "train_examples": n,
               "wall_time_s": wall, "threads": config["threads"],
               "data_source": data.source, "data_description": data.describe,
               "data_dir": str(data_root(config["data_dir"])),
               **{k: config[k] if d else None for k in SUBSPACE_KEYS}, **shape, "radius_final": radius(net)}
    if d is None:
        run.save_theta(nn.utils.parameters_to_vector(net.parameters()).detach().numpy(), "theta_D.npy")
    else:
        run.save_theta(net.get_flat())
        if net.trainable_projection:  # no longer a function of the seed: kept beside theta_d
            run.save_theta(net.projection.PT.detach().numpy(), TRAINED_P)
        save_fingerprint(run.path, net)  # lets rlsub eval refuse a differently rebuilt theta_0 / P
    run.write_summary(summary)
    return summary
