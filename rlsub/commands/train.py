"""``rlsub train``: supervised image classification (MNIST, CIFAR-10) in a random subspace."""

from __future__ import annotations

from rlsub.commands import PROJECTION_CHOICES, train_or_resume

HELP = "train an image classifier (MNIST, CIFAR-10) in a random subspace, or in full space"


def add_arguments(p) -> None:
    p.add_argument("--config", help="YAML config: a file, or a shipped name such as mnist_fc (rlsub configs "
                   "supervised); keys as in "
                   "rlsub.supervised.trainer.DEFAULTS")
    p.add_argument("--dim", help="subspace dimension d, or 'full' for the full-space baseline")
    p.add_argument("--projection", choices=PROJECTION_CHOICES)
    p.add_argument("--seed", type=int, help="seed of theta_0, P, the batch order and the data variants")
    p.add_argument("--epochs", type=int)
    p.add_argument("--subset", type=int, help="train on N examples drawn from the training set")
    p.add_argument("--lr", type=float, help="Adam step size (for theta_d, and for --dim full as well)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads (default 1)")
    p.add_argument("--data-dir", help="data folder holding mnist/ and cifar10/ (default $RLSUB_DATA, "
                   "else ~/.cache/rlsub/data)")
    p.add_argument("--out", help="run directory (default runs/<task>__supervised__d<dim>__s<seed>__<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last epoch")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, dotted for nested ones (YAML value), e.g. shuffle_labels=0.5")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def run(args) -> int:
    from rlsub.config import parse_sets
    from rlsub.supervised import trainer

    overrides = parse_sets(args.set)
    flags = {"dim": args.dim, "projection": args.projection, "seed": args.seed, "epochs": args.epochs,
             "subset": args.subset, "lr": args.lr, "full_lr": args.lr, "batch_size": args.batch_size,
             "threads": args.threads, "data_dir": args.data_dir}
    overrides.update({k: v for k, v in flags.items() if v is not None})
    summary = train_or_resume(trainer, args, overrides)
    print(f"{summary['task']}: d={summary['dim']} seed={summary['seed']} test acc "
          f"{summary['test_accuracy']:.4f} train acc {summary['train_accuracy']:.4f} after "
          f"{summary['epochs']} epochs, {summary['wall_time_s']:.1f} s [{summary['data_description']}]")
    return 0
