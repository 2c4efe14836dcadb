"""Plot a metric against timesteps for every run directory under a folder (from metrics.jsonl).

Usage: python scripts/plot_curves.py RESULTS_DIR [--key return_mean] [--out curves.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlsub.rundir import read_metrics  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("folder")
    p.add_argument("--key", default="return_mean")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    runs = sorted(Path(args.folder).glob("*/metrics.jsonl"))
    if not runs:
        raise SystemExit(f"no */metrics.jsonl under {args.folder}")
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.5), squeeze=False)
    for ax, path in zip(axes[0], runs):
        rows = read_metrics(path.parent)  # a run in progress too: up to a line cut short
        ax.plot([r["timesteps"] for r in rows], [r[args.key] for r in rows], marker=".", label=args.key)
        ev = [r for r in rows if r.get("eval_return") is not None]
        if ev:
            ax.plot([r["timesteps"] for r in ev], [r["eval_return"] for r in ev], "s--", label="eval_return")
        ax.set_title(path.parent.name, fontsize=9)
        ax.set_xlabel("timesteps")
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(args.out or Path(args.folder) / f"{args.key}.png")
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    main()
