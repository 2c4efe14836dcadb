"""``rlsub compare-tasks``: the cross-domain table of d_int90 and its plots, from results files only."""

from __future__ import annotations

HELP = "write the cross-domain d_int90 report (Markdown + PNG plots) from sweep results"


def add_arguments(p) -> None:
    p.add_argument("--results", default="results", help="folder holding <sweep>/summary.json files")
    p.add_argument("--out", default=None, help="report path (default RESULTS/REPORT.md)")


def run(args) -> int:
    from rlsub.report import compare_tasks

    out, rows = compare_tasks(args.results, args.out)
    print(f"{'task':<28}  {'d_int90':>8}  {'interpolated':>12}  {'paper':>8}")
    for r in rows:
        if r["measured"]:
            grid, interp = (f"{r['d_int90']:,}", f"{r['d_int90_interp']:,.1f}") if r.get("reached") \
                else (f"> {r['top_dim']:,}", "-")
            paper = f"{r['paper_d_int90']:,}" if r["paper_d_int90"] else "-"
            print(f"{r['key']:<28}  {grid:>8}  {interp:>12}  {paper:>8}")
    print(f"report: {out}")
    return 0
