"""The cross-domain report (`rlsub compare-tasks`): d_int90 of every task, ours beside the paper's.

Reads only sweep results (``<results>/<sweep>/summary.json``, written by :mod:`rlsub.sweep`) and
the summaries of the seeds' follow-up studies (``<results>/{goldilocks,nonlinear,memorisation}/summary.json``,
marked ``"study"``, written by ``scripts/goldilocks.py``, ``scripts/nonlinear.py`` and
``scripts/memorisation.py``), a section
each; the paper's figures come from :mod:`rlsub.paper`. Writes a Markdown table and two PNG plots:
performance against d per task (with the baseline and the 90% line) and d_int90 of all tasks on
a log scale. A task without results is listed as not measured, with the command that measures it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlsub.analysis import fmt_number as _fmt
from rlsub.errors import UserError
from rlsub.paper import PAPER, REFERENCE_TASK, sweep_command
from rlsub.rundir import read_metrics
from rlsub.subspace import atomic_write, atomic_write_text


def load_sweeps(results: str | Path) -> dict[str, dict]:
    """Sweep summaries under ``results``, keyed by paper task (or sweep name when it has none)."""
    results = Path(results)
    if not results.is_dir():
        raise UserError(f"results folder {results} not found (run a sweep first, or pass --results)")
    found: dict[str, dict] = {}
    for path in sorted(results.glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"{path} is damaged ({exc}); rerun `rlsub sweep` for it or move it away") from None
        if not isinstance(summary, dict) or "sweep" not in summary:
            continue  # a run collection (results/es/...), not a sweep
        summary["_path"] = str(path)
        key = summary.get("paper_task") or summary["sweep"]
        if key in found:
            raise UserError(f"two sweeps measure {key}: {found[key]['_path']} and {path}; move one away")
        found[key] = summary
    return found


#: the follow-up studies with a report section: folder under results/ -> section writer (below)
STUDIES = ("goldilocks", "nonlinear", "memorisation")


def load_studies(results: str | Path) -> dict[str, dict]:
    """The studies' summaries under ``results`` that exist (``<results>/<study>/summary.json``)."""
    found = {}
    for name in STUDIES:
        path = Path(results) / name / "summary.json"
        if not path.exists():
            continue
        try:
            summary = json.loads(path.read_text())
        except ValueError as exc:
            raise UserError(f"{path} is damaged ({exc}); rerun its script (scripts/{name}.py) or move it away") from None
        if isinstance(summary, dict) and summary.get("study") == name:
            found[name] = summary
    return found


def _acc(c: dict | None) -> str:
    if not c:
        return "-"
    a = c["test_accuracy"]
    return f"{a['mean']:.4f} [{a['lo']:.4f}-{a['hi']:.4f}] (n={a['n']})"


def _verdict(holds) -> str:
    return "holds" if holds else "does not hold"


def goldilocks_section(s: dict) -> list[str]:
    """The Goldilocks study: accuracy against r0 / r_X per task and shape, the r(t) exponent, the claims."""
    out = ["## The Goldilocks zone (hyperplane started at r0 vs hypersphere held at r0)", "",
           f"From `results/goldilocks/summary.json` (`{s['command']}`, commit {s['git_commit']}): "
           f"{s['epochs']} epochs a run, seeds {s['seeds']}, test accuracy mean [bootstrap 16-84% range]; "
           "details and the poster's claims in `goldilocks/README.md`, plot `plots/goldilocks.png`.", ""]
    for task, t in s["tasks"].items():
        jpeg = " (CIFAR-10 JPEG re-encoding, not the official files)" if "jpeg" in str(t["data_source"]).lower() else ""
        out += [f"**{task}**, d = {t['d']:,}, r_X = {t['r_X']:.3g}{jpeg}", "",
                "| r0 / r_X | hyperplane | radius end / r_X | hypersphere |", "|---|---|---|---|"]
        for r in s["ratios"]:
            h, p = t["cells"].get(f"hyperplane/{r:g}"), t["cells"].get(f"hypersphere/{r:g}")
            end = f"{h['radius_final_over_rX']['mean']:.3g}" if h else "-"
            out.append(f"| {r:g} | {_acc(h)} | {end} | {_acc(p)} |")
        g = t.get("growth_all", {}).get("r_exponent", {})
        if g.get("n"):
            out += ["", f"Growth from below: r ~ t^{g['mean']:.3f} (sd {g['std']:.3f} over {g['n']} runs; "
                        "fit of log(r^2 - r0^2) on log t, halved)."]
        c = t.get("claims") or {}
        names = {"1_below_rX_grows_as_sqrt_t": "from below, r ~ sqrt(t), good solution near r_X",
                 "2_above_rX_stays_and_fails": "from above, radius unchanged, no good solution",
                 "3_hypersphere_good_only_near_rX": "hypersphere good only near r_X"}
        verdicts = [f"{names[k]}: {_verdict(v['holds'])}" for k, v in c.items() if k in names]
        if verdicts:
            out += ["", "Poster's claims: " + "; ".join(verdicts) + "."]
        out.append("")
    return out


def nonlinear_section(s: dict) -> list[str]:
    """The nonlinear-projection study: accuracy per map and d, and whether RFF > linear ~ power."""
    out = ["## Nonlinear and trainable projections (MNIST FC, dense P, accuracy at fixed d)", "",
           f"From `results/nonlinear/summary.json` (`{s['command']}`, commit {s['git_commit']}): "
           f"{s['epochs']} epochs a run, seeds {s['seeds']}, test accuracy mean [bootstrap 16-84% range]; "
           "details in `nonlinear/README.md`, plot `plots/nonlinear.png`.", "",
           "| map | " + " | ".join(f"d = {d:,}" for d in s["dims"]) + " |", "|---|" + "---|" * len(s["dims"])]
    for name in s["maps"]:
        cells = []
        for d in s["dims"]:
            key = f"{name}/{d}"
            cells.append(_acc(s["cells"].get(key)) if key in s["cells"]
                         else ("not run" if key in s.get("refused", {}) else "-"))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    trained = [f"d = {c['d']:,}: {c['trained_parameters']:,}" for c in s["cells"].values() if c["map"] == "trainable"]
    if trained:
        out += ["", "Trainable P, parameters actually trained: " + ", ".join(trained) + "."]
    v = s.get("verdict") or {}
    if v:
        out += ["", "\"RFF > linear ~ power\": " + "; ".join(
            f"d = {d}: {_verdict(x['holds'])} ({x.get('rff', 'rff')} - linear {x['rff_minus_linear']:+.4f}, power - linear "
            f"{x['power_minus_linear']:+.4f})" for d, x in v.items()) + "."]
    out.append("")
    return out


def _num(x, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def memorisation_section(s: dict) -> list[str]:
    """The memorisation-scaling study: d_int90 of random labels against N, the fitted line and power law."""
    out = ["## Memorisation scaling (MNIST, FC 784-400x5-10, every label random, training accuracy)", "",
           f"From `results/memorisation/summary.json` (`{s['command']}`, commit {s['git_commit']}): one adaptive "
           "sweep per number of training images N; details in `memorisation/README.md`, plot "
           "`plots/memorisation.png`.", "",
           "| N | epochs | seeds | baseline | d_int90 | interpolated | bootstrap 16-84% | dims per label | budget settled |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        b = r.get("bootstrap") or {}
        hi = _num(b.get("p84")) if b.get("p84") is not None else f">{_num(b.get('censored_above'))}"
        out.append(f"| {r['n']:,} | {_num(r.get('epochs'))} | {r['baseline']['n']} | {r['baseline']['mean']:.4f} | "
                   f"{_num(r['d_int90'])} | {_num(r['d_int90_interp'])} | {_num(b.get('p16'))}-{hi} | "
                   f"{_num(r['dims_per_label'], 2)} | {r.get('budget_settled')} |")
    f, fb = s.get("fit"), s.get("fit_bootstrap") or {}
    if f:
        def span(key, digits=0):
            return f" [{_num(fb[key]['p16'], digits)}, {_num(fb[key]['p84'], digits)}]" if key in fb else ""
        out += ["", f"Fit: d_int90 = {f['a']:,.0f}{span('a')} + {f['b']:.3f}{span('b', 3)} N "
                    f"(dimensions per memorised label); power law exponent {f['k']:.3f}{span('k', 3)}. "
                    f"Predicted at N = {s['paper']['n']:,}: {_num(f.get('line_at_paper'))}{span('line_at_paper')} "
                    f"(line), {_num(f.get('power_at_paper'))}{span('power_at_paper')} (power law); the paper: "
                    f"{s['paper']['d_int90']:,} there. At N = {s['predict_at']:,}: {_num(f['line_at'])}"
                    f"{span('line_at')} (line)."]
    m = s.get("measured_full")
    if m:
        got = (f"d_int90 {_num(m['d_int90'])}" if m["d_int90"] is not None
               else f"not reached up to d = {_num(max(c['dim'] for c in m['curve']))}")
        out += ["", f"Measured at N = {m['n']:,} ({m['budget_label']}): baseline {m['baseline']:.4f}, {got}."]
    out.append("")
    return out


SECTIONS = {"goldilocks": goldilocks_section, "nonlinear": nonlinear_section, "memorisation": memorisation_section}


def study_sections(studies: dict[str, dict]) -> list[str]:
    """Markdown lines: one section per study present."""
    lines = []
    for name in STUDIES:
        if name in studies:
            lines += ["", *SECTIONS[name](studies[name])]
    return lines


#: axis labels in words
METRIC_WORDS = {"eval_return": "evaluation return", "test_accuracy": "test accuracy",
                "train_accuracy": "training accuracy"}


def _budget(s: dict) -> str:
    b = s.get("budget", {})
    n = s.get("n_points")
    seeds = len(s.get("seeds") or [])
    parts = [f"{n} runs", f"{seeds} seed" + ("" if seeds == 1 else "s")]
    per_point = {(budget, unit) for _, budget, unit in b.get("per_point") or [] if budget}
    if b.get("timesteps_total"):
        parts.append(f"{b['timesteps_total']:,} env steps")
    sub, full = _side_budget(s, "subspace"), _side_budget(s, "full")
    if len(per_point) == 1:
        budget, unit = per_point.pop()
        parts.append(f"{budget:,} {unit} per run")
    elif sub and full:
        parts.append(f"{sub[0]:,} {sub[1]} per subspace run, {full[0]:,} {full[1]} for the full-space baseline")
    elif b.get("epochs_per_point"):
        parts.append(f"{b['epochs_per_point']} epochs/run")
    parts.append(f"{b.get('wall_time_s_total', 0) / 60:.1f} min")
    label = f"**{s['budget_label']}**: " if s.get("budget_label") else ""
    return label + ", ".join(parts)


def _ratio_words(r: float | None) -> str:
    if r is None:
        return "-"
    if abs(r - 1) < 0.005:
        return "same"
    if r >= 1:
        return f"{r:.3g}x harder"
    return f"{1 / r:.3g}x easier"


def build_rows(sweeps: dict[str, dict], results: str | Path | None = None) -> list[dict]:
    """One row per task of the paper and per other sweep. A task without a sweep summary whose folder
    under ``results`` holds a README.md (runs that give no d_int90, e.g. two budget-limited Pong runs)
    points to it (``partial``)."""
    ref = sweeps.get(REFERENCE_TASK)
    ref_d = ref.get("d_int90_interp") if ref else None
    ref_paper = PAPER[REFERENCE_TASK]["d_int90"]
    rows = []
    for key in list(PAPER) + [k for k in sweeps if k not in PAPER]:
        paper = PAPER.get(key, {})
        s = sweeps.get(key)
        row = {"key": key, "task": paper.get("task", key), "domain": paper.get("domain", "-"),
               "paper_d_int90": paper.get("d_int90"), "paper_D": paper.get("D"), "measured": s is not None}
        if s is None:
            row["command"] = sweep_command(key)
            if results is not None and (Path(results) / key / "README.md").is_file():
                row["partial"] = f"{key}/README.md"
        else:
            d = s.get("d_int90_interp")
            boot = s.get("bootstrap") or {}
            row.update(D=s.get("D"), d_int90=s.get("d_int90"), d_int90_interp=d, reached=s.get("reached"),
                       p16=boot.get("p16"), p84=boot.get("p84"), unreached_frac=boot.get("unreached_frac"),
                       baseline=(s.get("baseline") or {}).get("mean"), metric=s.get("metric"),
                       budget=_budget(s), sources=s.get("data_sources") or [],
                       ratio_mnist=(d / ref_d) if (d and ref_d) else None,
                       compression=(s["D"] / d) if (d and s.get("D")) else None,
                       top_dim=max((c["dim"] for c in s.get("curve", [])), default=None),
                       settled=(s.get("budget_curve") or {}).get("settled"),
                       baseline_below=s.get("baseline_below_dims") or [],
                       by_optimizer=s.get("by_optimizer"), fixed=s.get("fixed_criterion"),
                       seeds=s.get("seeds"), value_rule=s.get("value_rule"), threshold=s.get("threshold"),
                       budget_curve=s.get("budget_curve"), export=_export_at(s))
        row["paper_ratio_mnist"] = (paper["d_int90"] / ref_paper) if paper else None
        rows.append(row)
    return rows


def _export_at(s: dict) -> dict | None:
    """Bytes of the export (rlsub export) of the point at the grid d_int90, first seed that has a run,
    beside the full model's float32 bytes: the compressed description of a solution (the paper's
    MDL view). None when d_int90 was not reached or no run directory is there."""
    from rlsub.export import export_bytes

    d = s.get("d_int90")
    if d is None or not s.get("reached") or "_path" not in s:
        return None
    runs = Path(s["_path"]).parent / "runs"
    for seed in s.get("seeds") or []:
        run = runs / f"d{d}_s{seed}"
        if (run / "summary.json").exists():
            try:
                return {**export_bytes(run), "run": run.name}
            except (UserError, OSError, ValueError, KeyError):
                return None
    return None


def _bytes(n: int) -> str:
    for unit, size in (("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def markdown(rows: list[dict], results: str, studies: dict[str, dict] | None = None,
             sweeps: dict[str, dict] | None = None, plotted: frozenset[str] = frozenset()) -> str:
    """The report; ``plotted``: the names of the plot files :func:`plot` made (those drawn only for some
    sweeps are mentioned when they were made)."""
    lines = [
        "# rlsub: intrinsic dimension across tasks",
        "",
        f"Generated by `rlsub compare-tasks --results {results}` from the sweep summaries under "
        f"`{results}/` (each produced by `rlsub sweep`; see its `summary.json` for the command, seeds, "
        "budget, git commit and machine). Paper figures: Li et al., ICLR 2018.",
        "",
        "d_int90: smallest d whose mean over seeds reaches 90% of the full-space baseline (metric shifted so "
        "its minimum is 0); in brackets the estimate interpolated on log d, and the 16-84% bootstrap range "
        "over seeds of that interpolated estimate (\"to > d\": the percentile lies above the grid). The "
        "columns \"vs MNIST FC\" and \"D / d_int90\" use the interpolated estimate.",
        "",
        "Settled: whether d_int90 had stopped moving by the end of the budget (grid value unchanged and the "
        "interpolated one within 10% over the last quarter of it; computed from the runs' logged evaluations, "
        "`plots/d_int90_budget.png`).",
        "",
        "Export at d_int90: the size of `rlsub export` of the run at the grid d_int90 (first seed: config, "
        "seeds, theta_d and observation statistics, compressed) beside the full model's D float32 numbers; "
        "the compressed description of a solution (the paper's MDL view).",
        "",
        "| task | domain | D | d_int90 (grid; interp.) | bootstrap 16-84% | paper d_int90 | vs MNIST FC (ours) |"
        " vs MNIST FC (paper) | D / d_int90 | export at d_int90 vs full model | baseline | settled | budget |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        paper_ratio = _ratio_words(r["paper_ratio_mnist"])
        if not r["measured"]:
            lines.append(f"| {r['task']} | {r['domain']} | {_fmt(r['paper_D'])} | not measured | - | "
                         f"{_fmt(r['paper_d_int90'])} | - | {paper_ratio} | - | - | - | - | "
                         + (f"runs without a d_int90 in `{r['partial']}`; a sweep: " if r.get("partial") else "")
                         + f"`{r['command']}` |")
            continue
        if r["reached"]:
            d = f"{_fmt(r['d_int90'])} ({_fmt(r['d_int90_interp'])})"
        else:
            d = f"not reached (> {_fmt(r['top_dim'])})"
        one_seed = len(r.get("seeds") or []) == 1
        if one_seed:
            boot = "- (1 seed)"  # resampling one seed gives that seed back: no range to show
        elif r.get("p16") is None:
            boot = "-" if r.get("unreached_frac") is None else f"> {_fmt(r['top_dim'])}"
        elif r.get("p84") is None:
            boot = f"{_fmt(r['p16'])} to > {_fmt(r['top_dim'])}"
        else:
            boot = f"{_fmt(r['p16'])}-{_fmt(r['p84'])}"
        if r.get("unreached_frac") and not one_seed:
            boot += f" ({r['unreached_frac']:.0%} unreached)"
        comp = f"{r['compression']:.3g}x" if r.get("compression") else "-"
        e = r.get("export")
        export = "-" if not e else f"{_bytes(e['bytes'])} vs {_bytes(e['full_bytes'])} ({e['full_bytes'] / e['bytes']:.3g}x)"
        base = f"{_fmt(r['baseline'])} {r['metric']}"
        if r["baseline_below"]:
            base += f" (BELOW the subspace points at d = {', '.join(_fmt(x) for x in r['baseline_below'])})"
        settled = {True: "yes", False: "no", None: "-"}[r.get("settled")]
        lines.append(f"| {r['task']} | {r['domain']} | {_fmt(r['D'])} | {d} | {boot} | {_fmt(r['paper_d_int90'])} | "
                     f"{_ratio_words(r['ratio_mnist'])} | {paper_ratio} | {comp} | {export} | {base} | {settled} | "
                     f"{r['budget']} |")
        for src in r["sources"]:
            if "jpeg" in str(src).lower():
                notes.append(f"- {r['task']}: computed from the JPEG re-encoding of CIFAR-10 ({src}), not the "
                             "official files; d_int90 is relative to a baseline trained on the same data.")
    details = _details(rows)
    if details:
        lines += ["", "## Details of the measured tasks", "", *details]
    lines += ["", "Plots: `plots/curves.png` (performance vs d per task, with baseline and 90% line), "
              "`plots/d_int90.png` (d_int90 of every task, ours beside the paper's, log scale; a task whose threshold "
              "no d reached is marked at its largest d), "
              "`plots/d_int90_budget.png` (d_int90 against the fraction of the budget, per task; a fraction where no d "
              "reaches the threshold breaks the line and is marked at the largest d), "
              "`plots/baselines.png` (each full-space baseline against its budget)"
              + (", `plots/learning_curves.png` (RL sweeps: evaluation return during training for every d, "
                 "each seed and their mean)" if "learning_curves.png" in plotted else "") + "."]
    if notes:
        lines += ["", "Notes:", *notes]
    lines += ["", *baseline_section(sweeps or {})]
    lines += study_sections(studies or {})
    return "\n".join(lines).rstrip("\n") + "\n"


def _d_words(a: dict) -> str:
    if not a.get("reached"):
        # a report row carries its top d as top_dim; a per-optimizer analysis carries its curve
        top = a.get("top_dim") or max((c["dim"] for c in a.get("curve", [])), default=None)
        return f"not reached (> {_fmt(top)})"
    return f"{_fmt(a['d_int90'])} (interp. {_fmt(a['d_int90_interp'])})"


def _details(rows: list[dict]) -> list[str]:
    """Per measured task: value rule, seeds, thresholds, per-optimizer and fixed-criterion results."""
    out = []
    for r in rows:
        if not r["measured"] or not (r.get("by_optimizer") or r.get("fixed") or r["domain"] == "RL"):
            continue
        out.append(f"**{r['task']}** (paper: {_fmt(r['paper_d_int90'])}); seeds {r.get('seeds')}; "
                   f"threshold {_fmt(r.get('threshold'))} = 90% of the baseline {_fmt(r['baseline'])}; "
                   f"budget: {r['budget']}.")
        if r.get("value_rule"):
            out.append(f"- value per point: {r['value_rule']}; d_int90 {_d_words(r)}")
        for name, a in (r.get("by_optimizer") or {}).items():
            out.append(f"- {name} alone: d_int90 {_d_words(a)}; curve "
                       + ", ".join(f"d={c['dim']}: {_fmt(c['mean'])}" for c in a.get("curve", [])))
        f = r.get("fixed")
        if f:
            label = f.get("label") or f"{f['key']} >= {_fmt(f['threshold'])}"
            d = "not reached" if f.get("d") is None else f"{_fmt(f['d'])} (interp. {_fmt(f['d_interp'])})"
            out.append(f"- fixed criterion ({label}): d = {d}; baseline {_fmt(f.get('baseline_mean'))}; curve "
                       + ", ".join(f"d={c['dim']}: {_fmt(c['mean'])}" for c in f.get("curve", [])))
        bc = r.get("budget_curve") or {}
        if bc.get("fractions"):
            pick = [c for c in bc["fractions"] if c["fraction"] in (0.25, 0.5, 0.75, 1.0)]
            out.append("- d_int90 at 25/50/75/100% of the budget: "
                       + ", ".join(_fmt(c["d_int90"]) if c["d_int90"] is not None else "not reached" for c in pick)
                       + f" (settled: {'yes' if bc.get('settled') else 'no'})")
        out.append("")
    return out


def plot_budget(sweeps: dict[str, dict], out_dir: Path):
    """d_int90 (interpolated) against the fraction of each sweep's budget, one line per task."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    drawn, any_above = 0, False
    for key, s in sweeps.items():
        xs, ys, above, top = budget_marks(s)
        if not any(y == y for y in ys) and not above:
            continue
        budgets = (s.get("budget_curve") or {}).get("budgets") or []
        unit = ", ".join(f"{_fmt(b['budget'])} {b['unit']}" for b in budgets[:2])
        sub, full = _side_budget(s, "subspace"), _side_budget(s, "full")
        if sub and full and sub != full:
            unit = f"{_fmt(sub[0])} {sub[1]}; baseline {_fmt(full[0])}"
        # dashed after the first ten lines: matplotlib's colour cycle repeats from the eleventh
        (line,) = ax.plot(xs, ys, marker=".", ls="-" if drawn < 10 else "--",
                          label=f"{PAPER.get(key, {}).get('task', key)} (100% = {unit})")
        if above:  # fractions where no d reached the threshold: marked at the largest d, d_int90 lies above
            ax.scatter(above, [top] * len(above), marker="^", s=30, facecolors="none", edgecolors=line.get_color())
            any_above = True
        drawn += 1
    if any_above:
        ax.scatter([], [], marker="^", facecolors="none", edgecolors="grey",
                   label="not reached at that fraction (marked at the largest d)")
    ax.set_yscale("log")
    ax.set_xlabel("fraction of each point's budget")
    ax.set_ylabel("d_int90 (interpolated)")
    ax.set_xlim(0, 1.02)
    ax.grid(which="both", alpha=0.3)
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("d_int90 as the budget grows (from the runs' logged evaluations)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, out_dir / "d_int90_budget.png")
    plt.close(fig)
    return path


def budget_marks(s: dict) -> tuple[list[float], list[float], list[float], int | None]:
    """What d_int90_budget.png draws for the sweep ``s``: the fractions of its budget and the interpolated
    d_int90 at each (NaN, a break in the line, where it is not reached), the fractions where a baseline
    exists but no d reaches the threshold, and the largest d measured, where those are marked."""
    fr = (s.get("budget_curve") or {}).get("fractions") or []
    top = max((c["dim"] for c in s.get("curve", [])), default=None)
    xs = [c["fraction"] for c in fr]
    ys = [c["d_int90_interp"] if c["d_int90_interp"] else float("nan") for c in fr]
    above = [c["fraction"] for c in fr if c["d_int90"] is None and c.get("threshold") is not None] if top else []
    return xs, ys, above, top


def plot(sweeps: dict[str, dict], rows: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    order = [r["key"] for r in rows]
    measured = sorted(sweeps, key=lambda k: order.index(k) if k in order else len(order))  # table order
    if measured:
        n = len(measured)
        fig, axes = _panels(n, 3.6)
        for ax, key in zip(axes.ravel(), measured):
            s = sweeps[key]
            curve = s.get("curve", [])
            dims = [c["dim"] for c in curve]
            ax.errorbar(dims, [c["mean"] for c in curve], yerr=[c["std"] for c in curve], marker="o",
                        capsize=3, label="subspace (mean +- std over seeds)")
            for c in curve:
                ax.scatter([c["dim"]] * len(c["values"]), c["values"], s=8, color="grey", alpha=0.5)
            if s.get("baseline"):
                ax.axhline(s["baseline"]["mean"], color="k", ls="-", lw=1, label="full-space baseline")
                ax.axhline(s["threshold"], color="r", ls="--", lw=1, label="90% threshold")
            if s.get("d_int90_interp"):
                ax.axvline(s["d_int90_interp"], color="g", ls=":")
                ax.text(s["d_int90_interp"], ax.get_ylim()[0], f" d_int90 ~ {_fmt(s['d_int90_interp'])}", color="g",
                        fontsize=7, va="bottom")
            ax.set_xscale("log")
            ax.set_xticks(dims)
            ax.set_xticklabels([f"{d:,}" for d in dims], rotation=45, fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel("subspace dimension d")
            ax.set_ylabel(METRIC_WORDS.get(s.get("metric"), s.get("metric") or "performance"))
            ax.set_title(PAPER.get(key, {}).get("task", key), fontsize=10)
        handles, labels = axes.ravel()[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        paths.append(_save(fig, out_dir / "curves.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.scatter([r["paper_d_int90"] or float("nan") for r in rows], ys, marker="s", color="tab:orange",
               label="paper")
    marks = d_int90_marks(rows)
    ax.scatter(marks["grid"], ys, marker="|", s=150, color="tab:blue", label="rlsub, grid d_int90")
    ax.scatter(marks["interp"], ys, marker="o", color="tab:blue", label="rlsub, interpolated (bar: bootstrap 16-84%)")
    if any(x == x for x in marks["above"]):  # a measured task whose threshold no d reached: a lower bound
        ax.scatter(marks["above"], ys, marker=">", s=60, facecolors="none", edgecolors="tab:red",
                   label="rlsub, not reached: above the largest d measured")
    for y, r in zip(ys, rows):
        if r["measured"] and r.get("p16") is not None:
            hi = r["p84"] if r.get("p84") is not None else r.get("top_dim")
            ax.plot([r["p16"], hi], [y, y], color="tab:blue", lw=2, alpha=0.6)
            if r.get("p84") is None:  # the upper percentile lies above the grid
                ax.annotate("", xy=(hi * 1.6, y), xytext=(hi, y), arrowprops=dict(arrowstyle="->", color="tab:blue"))
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r["task"] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("d_int90 (log scale)")
    ax.invert_yaxis()
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=2, frameon=False)  # off the rows
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "d_int90.png"))
    plt.close(fig)
    paths.append(plot_budget(sweeps, out_dir))
    baselines = plot_baselines(sweeps, out_dir)
    if baselines is not None:
        paths.append(baselines)
    learning = plot_learning_curves(sweeps, out_dir)
    if learning is not None:
        paths.append(learning)
    return paths


def d_int90_marks(rows: list[dict]) -> dict[str, list[float]]:
    """What d_int90.png draws on each report row's line (NaN: nothing): ``grid`` and ``interp``, the grid
    and interpolated d_int90 of a measured task that reached its threshold; ``above``, the largest d
    measured of a measured task that did not (its d_int90 lies above it)."""
    nan = float("nan")

    def pick(r, key, reached):
        return r.get(key) if r["measured"] and bool(r.get("reached")) == reached and r.get(key) else nan

    return {"grid": [pick(r, "d_int90", True) for r in rows], "interp": [pick(r, "d_int90_interp", True) for r in rows],
            "above": [pick(r, "top_dim", False) for r in rows]}


def learning_curves(s: dict, points: int = 200) -> tuple[str, dict]:
    """The RL sweep ``s``'s evaluation return against its budget's unit (generations when the budget is
    counted in generations, else environment steps), per d ("full" for the baseline), from each run's
    logged evaluations (its own optimizer's runs, not a cross-check's): (the unit, {dim: {"seeds":
    [(x, returns) per seed], "x": grid, "mean": mean over seeds}}); the mean is taken on a grid of
    ``points`` values up to the shortest of the seeds' runs, each seed linearly interpolated between its
    evaluations. A run that stopped early (it reached its target) keeps its last evaluation from there on,
    as the sweep values it, so it does not cut the mean short. The dict is empty for a sweep without per-run
    logs of ``eval_return``."""
    import numpy as np

    unit = _baseline_budget(s).get("unit") or "environment steps"
    key = "generation" if unit == "generations" else "timesteps"
    folder = Path(s["_path"]).parent
    cross = ((s.get("budget") or {}).get("cross_check") or {}).get("optimizer")
    path = folder / "points.jsonl"
    if not path.exists():
        return unit, {}
    found: dict = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        point = json.loads(line)
        if cross and point.get("optimizer") == cross:
            continue
        rows = read_metrics(folder / "runs" / point["point"])
        evals = [(r[key], r["eval_return"]) for r in rows if r.get("eval_return") is not None and r.get(key) is not None]
        if len(evals) >= 2:
            steps, values = (np.array(v, dtype=float) for v in zip(*evals))
            found.setdefault(point["dim"], []).append((steps, values, bool(point.get("stopped_early"))))
    out = {}
    for dim, runs in found.items():
        start = max(float(t[0]) for t, _, _ in runs)
        running = [float(t[-1]) for t, _, stopped in runs if not stopped]
        end = max(start, min(running) if running else max(float(t[-1]) for t, _, _ in runs))
        grid = np.linspace(start, end, points) if end > start else np.array([end])
        mean = np.mean([np.interp(grid, t, v) for t, v, _ in runs], axis=0)  # constant past a run's end
        out[dim] = {"seeds": [(t, v) for t, v, _ in runs], "x": grid, "mean": mean}
    return unit, out


def plot_learning_curves(sweeps: dict[str, dict], out_dir: Path) -> Path | None:
    """Evaluation return against the budget's unit for every d of each RL sweep (thin: each seed; thick:
    their mean), the full-space baseline in black: whether and when each point levelled off."""
    import matplotlib.pyplot as plt
    import numpy as np

    drawn = [(k, *lc) for k, s in sweeps.items() if "_path" in s and (lc := learning_curves(s))[1]]
    if not drawn:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = _panels(len(drawn), 4.0)
    for ax, (key, unit, curves) in zip(axes.ravel(), drawn):
        dims = sorted(d for d in curves if d != "full")
        colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(dims), 1)))
        for dim, colour in [*zip(dims, colours), *([("full", "k")] if "full" in curves else [])]:
            c = curves[dim]
            for t, v in c["seeds"]:
                ax.plot(t, v, color=colour, lw=0.5, alpha=0.35)
            label = "full space" if dim == "full" else f"d = {dim:,}"
            n = len(c["seeds"])
            ax.plot(c["x"], c["mean"], color=colour, lw=1.6, label=f"{label} ({n} seed{'' if n == 1 else 's'})")
        ax.set_xlabel(unit)
        ax.set_ylabel("evaluation return")
        ax.set_title(PAPER.get(key, {}).get("task", key), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.suptitle("RL sweeps: evaluation return during training (thin: each seed; thick: mean over seeds up to "
                 "the shortest run, a run stopped at its target counted at its last value)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, out_dir / "learning_curves.png")
    plt.close(fig)
    return path


def _baseline_curve(s: dict) -> list[tuple[float, float]]:
    """(fraction of the budget, mean baseline there) from the sweep's budget curve."""
    fr = (s.get("budget_curve") or {}).get("fractions") or []
    return [(c["fraction"], c["baseline"]) for c in fr if c.get("baseline") is not None]


def _side_budget(s: dict, side: str) -> tuple | None:
    """(budget, unit) shared by all of a sweep's ``side`` ("subspace" or "full") points, or None when
    they have none or several (summary budget.per_side)."""
    found = ((s.get("budget") or {}).get("per_side") or {}).get(side) or []
    return tuple(found[0]) if len(found) == 1 else None


def _baseline_budget(s: dict) -> dict:
    """The budget of the sweep's baseline runs: that of its own optimizer, not the cross-check's, and the
    full-space runs' own where it differs from the subspace points' (a baseline given a longer budget)."""
    full = _side_budget(s, "full")
    if full:
        return {"budget": full[0], "unit": full[1]}
    budgets = (s.get("budget_curve") or {}).get("budgets") or []
    cross = ((s.get("budget") or {}).get("cross_check") or {}).get("optimizer")
    own = [b for b in budgets if b.get("optimizer") != cross]
    return (own or budgets or [{}])[0]


def _budget_words(s: dict) -> str:
    b = _baseline_budget(s)
    return f"{_fmt(b['budget'])} {b['unit']}" if b.get("budget") else "-"


def baseline_section(sweeps: dict[str, dict]) -> list[str]:
    """Markdown: each sweep's full-space baseline (mean over its seeds) at quarters of its budget, from
    the runs' logged evaluations, and how much it moved over the last quarter."""
    lines = ["## Full-space baselines over their budget", "",
             "The baseline (mean over seeds) at quarters of each point's budget, from the logged evaluations "
             "(supervised training accuracy: the running accuracy over each epoch); curves in "
             "`plots/baselines.png`. \"last quarter\": its change from 75% to 100% of the budget, as a share of "
             "its final distance above the metric's minimum (small: it had levelled off).", "",
             "| task | metric | budget (100%) | 25% | 50% | 75% | 100% | last quarter |", "|---|---|---|---|---|---|---|---|"]
    header = len(lines)
    for key, s in sweeps.items():
        curve = dict(_baseline_curve(s))
        if not curve:
            continue
        at = {q: curve.get(q) for q in (0.25, 0.5, 0.75, 1.0)}
        lo = float(s.get("metric_min") or 0.0)
        end, q3 = at[1.0], at[0.75]
        moved = "-" if end is None or q3 is None or end == lo else f"{(end - q3) / abs(end - lo):+.1%}"
        lines.append(f"| {PAPER.get(key, {}).get('task', key)} | {s.get('metric')} | {_budget_words(s)} | "
                     + " | ".join(_fmt(at[q]) for q in (0.25, 0.5, 0.75, 1.0)) + f" | {moved} |")
    return lines + [""] if len(lines) > header else []


def plot_baselines(sweeps: dict[str, dict], out_dir: Path) -> Path | None:
    """The full-space baseline (mean over seeds) against the budget, one panel per sweep."""
    import matplotlib.pyplot as plt

    drawn = [(k, s) for k, s in sweeps.items() if _baseline_curve(s)]
    if not drawn:
        return None
    fig, axes = _panels(len(drawn), 3.2)
    for ax, (key, s) in zip(axes.ravel(), drawn):
        curve = _baseline_curve(s)
        budget = _baseline_budget(s)
        total = budget.get("budget") or 1
        ax.plot([f * total for f, _ in curve], [v for _, v in curve], marker=".", color="k")
        ax.set_xlabel(budget.get("unit") or "fraction of the budget")
        ax.set_ylabel(METRIC_WORDS.get(s.get("metric"), s.get("metric") or "performance"), fontsize=8)
        ax.set_title(PAPER.get(key, {}).get("task", key), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("full-space baselines (mean over seeds) as their budget is spent", fontsize=10)
    fig.tight_layout()
    path = _save(fig, out_dir / "baselines.png")
    plt.close(fig)
    return path


def _panels(n: int, height: float):
    """A figure of n panels, three to a row (the unused ones hidden): (fig, axes [rows, cols])."""
    import matplotlib.pyplot as plt

    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, height * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes


def _save(fig, path: Path) -> Path:
    # bbox_inches="tight": legends placed outside the axes stay in the image
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight"))
    return path


def compare_tasks(results: str | Path = "results", out: str | Path | None = None) -> tuple[Path, list[dict]]:
    """Write the report (Markdown + plots); returns its path and the table rows."""
    results = Path(results)
    out = Path(out) if out else results / "REPORT.md"
    sweeps = load_sweeps(results)
    rows = build_rows(sweeps, results)
    plotted = frozenset(p.name for p in plot(sweeps, rows, out.parent / "plots"))
    atomic_write_text(out, markdown(rows, str(results), load_studies(results), sweeps, plotted))
    return out, rows
