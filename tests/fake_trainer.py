"""A trainer with a known performance curve, for testing sweeps without training anything.

value(d) = top * min(1, d / knee) + noise * N(0, 1)[seed], metric_min = low; D = 1000. ``sleep``
seconds pass between writing a point's config and its summary.
"""

import math
import time
from pathlib import Path

import numpy as np

from rlsub.config import load_yaml, merge
from rlsub.rundir import RunDir

DEFAULTS = {"dim": 1, "seed": 0, "knee": 100, "top": 1.0, "low": 0.0, "noise": 0.0, "sleep": 0.0}
CALLS = []
#: the call (1-based) that is "killed half-way" (a KeyboardInterrupt after writing the config), or None
FAIL_AT_CALL = None


def resolve(config_path, overrides):
    config = merge(DEFAULTS, load_yaml(config_path) if config_path else {})
    return merge(config, {k: v for k, v in overrides.items() if v is not None})


def dimension(config):
    return 1000


def value(config):
    d = 1000 if config["dim"] == "full" else config["dim"]
    frac = min(1.0, d / config["knee"])
    rng = np.random.default_rng(config["seed"])
    return config["low"] + (config["top"] - config["low"]) * frac + config["noise"] * rng.standard_normal()


def train(config, out_dir, resume=False):
    CALLS.append((config["dim"], config["seed"]))
    run = RunDir(Path(out_dir))
    run.write_config(config)
    if FAIL_AT_CALL is not None and len(CALLS) == FAIL_AT_CALL:
        raise KeyboardInterrupt  # killed half-way: config written, no summary
    time.sleep(config["sleep"])  # "training" (for tests that kill the process at random moments)
    summary = {"task": "fake", "trainer": "fake", "D": 1000, "d": None if config["dim"] == "full" else config["dim"],
               "dim": config["dim"], "projection": "dense", "seed": config["seed"], "metric": "score",
               "value": value(config), "metric_min": config["low"], "timesteps": 10, "wall_time_s": 0.01}
    assert not math.isnan(summary["value"])
    run.write_summary(summary)
    return summary
