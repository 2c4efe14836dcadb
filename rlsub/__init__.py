"""rlsub: the intrinsic dimension of learning problems, by training in random subspaces.

A network's D parameters are ``theta_D = theta_0 + P theta_d`` with theta_0 its usual random
initialisation and P a fixed random D x d projection, both regenerable from a seed; only theta_d
is trained (Li, Farkhoor, Liu, Yosinski, "Measuring the Intrinsic Dimension of Objective
Landscapes", ICLR 2018).
"""

__version__ = "0.1.0"


def __getattr__(name):
    # rlsub.load_run without importing torch when only the CLI's --help is wanted
    if name == "load_run":
        from rlsub.loading import load_run

        return load_run
    raise AttributeError(f"module 'rlsub' has no attribute {name!r}")
