"""``rlsub compare-tasks``: the cross-domain table of d_int90 and its plots, from results files only."""

from __future__ import annotations

HELP = "write the cross-domain d_int90 report (Markdown + PNG plots) from sweep results"


def add_arguments(p) -> None:
    p.add_argument("--results", default="results", help="folder holding <sweep>/summary.json files")
    p.add_argument("--out", default=None, help="report path (default RESULTS/REPORT.md)")


def run(args) -> int:
    from rlsub.report import compare_tasks

    out, rows = compare_tasks(args.results, args.out)
    for r in rows:
        if r["measured"]:
            if r.get("reached"):
                d = f"{r['d_int90']} (interpolated {r['d_int90_interp']:.3g})"
            else:
                d = "not reached"
            print(f"{r['key']:>28}: d_int90 {d:>26}   paper {r['paper_d_int90'] or '-'}")
    print(f"report: {out}")
    return 0
