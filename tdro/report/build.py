"""`report.md` of one experiment: arms, results per metric (benchmarks + mean), learned weights, plots.

Queries the catalog read-only (tables `stage_arms`, `trajectory_rows` for one panel per distinct stage 1
run; views `results`, `weights` for the rest) and writes the files under temporary names first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tdro.catalog.query import Rows, cell, run_sql
from tdro.catalog.schema import MODEL_ORDER
from tdro.errors import UserError
from tdro.report import plots

DEFAULT_REPORTS = Path("runs") / "reports"


def _md_table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def results_by_metric(rows: Rows) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """Per metric: rows arm x transfer, columns each benchmark and their mean."""
    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    # an answer_recall benchmark counts by its mean over languages (its per-language rows stay in `results`)
    records = [r for r in rows.records() if not (r.get("kind") == "answer_recall" and r.get("language"))]
    for metric in sorted({r["metric"] for r in records}):
        mine = [r for r in records if r["metric"] == metric]
        benchmarks = sorted({r["benchmark"] for r in mine})
        table: dict[tuple[Any, ...], dict[str, float]] = {}
        for r in mine:
            table.setdefault((r["arm"], r["transfer"], r["measure"]), {})[r["benchmark"]] = r["value"]
        body = []
        for key, values in table.items():
            present = [values[b] for b in benchmarks if b in values]
            body.append([*key, *(values.get(b) for b in benchmarks), sum(present) / len(present)])
        out[metric] = (["arm", "transfer", "measure", *benchmarks, "mean"], body)
    return out


def write_report(catalog: str | Path, experiment: str, out: str | Path | None = None) -> Path:
    known = [r[0] for r in run_sql(catalog, "SELECT name FROM experiments ORDER BY name").rows]
    if experiment not in known:
        raise UserError(f"report: no experiment {experiment!r} in {catalog} "
                        f"(known: {', '.join(known) or 'none'})")
    folder = Path(out) if out else DEFAULT_REPORTS / experiment
    folder.mkdir(parents=True, exist_ok=True)
    sections = [f"# {experiment}", ""]

    arms = run_sql(catalog, "SELECT arm, assignments, base_model FROM arms WHERE experiment = ? ORDER BY arm",
                   [experiment])
    arm_rows = [
        [a, ", ".join(f"{k}={v}" for k, v in json.loads(s or "{}").items()) or "-", m]
        for a, s, m in arms.rows
    ]
    sections += ["## Arms", "", _md_table(["arm", "assignments", "base model"], arm_rows), ""]

    results = run_sql(catalog, "SELECT * FROM results WHERE experiment = ? "
                      f"ORDER BY arm, {MODEL_ORDER}", [experiment])
    sections += ["## Results", ""]
    if not results.rows:
        sections += ["No evaluation has finished yet.", ""]
    for metric, (columns, body) in results_by_metric(results).items():
        sections += [f"### {metric}", "", _md_table(columns, body), ""]
        bars = {f"{r[0]} / {r[1]}": dict(zip(columns[3:], r[3:], strict=True)) for r in body}
        png = plots.grouped_bars(columns[3:], bars, folder / f"metric_{metric.replace('@', '_at_')}.png",
                                 ylabel=metric, title=f"{metric} per benchmark")
        sections += [f"![{metric}]({png.name})", ""]

    stage1 = run_sql(catalog, """
        SELECT stage_id, any_value(measure) AS measure, string_agg(DISTINCT arm, ', ' ORDER BY arm) AS arms
        FROM stage_arms WHERE experiment = ? AND transfer IS NULL GROUP BY stage_id ORDER BY measure, arms
    """, [experiment])
    weights = run_sql(catalog, "SELECT stage_id, dataset, weight FROM mixture_weights "
                      "WHERE source = 'curr' AND stage_id IN (SELECT stage_id FROM stage_arms "
                      "WHERE experiment = ? AND transfer IS NULL) ORDER BY dataset", [experiment])
    if weights.rows:
        labels = {sid: f"{measure} [{arm_names}]" for sid, measure, arm_names in stage1.rows}
        datasets = sorted({d for _, d, _ in weights.rows})
        by_stage: dict[str, dict[str, float]] = {}
        for sid, dataset, weight in weights.rows:
            by_stage.setdefault(labels.get(sid, sid[:12]), {})[dataset] = weight
        sections += ["## Learned weights (final, `curr`)", "", _md_table(
            ["dataset", *by_stage], [[d, *(w.get(d) for w in by_stage.values())] for d in datasets]
        ), ""]
        png = plots.grouped_bars(datasets, by_stage, folder / "final_weights.png", ylabel="weight",
                                 title="final mixture weights per dataset")
        sections += [f"![final weights]({png.name})", ""]
        panels = []
        for sid, measure, arm_names in stage1.rows:
            rows = run_sql(catalog, "SELECT dataset, step, alpha FROM trajectory_rows WHERE stage_id = ?",
                           [sid]).rows
            series: dict[str, list[tuple[int, float]]] = {}
            for dataset, step, alpha in rows:
                series.setdefault(dataset, []).append((int(step), float(alpha)))
            if series:
                panels.append((f"{measure} [{arm_names}]", series))
        if panels:
            png = plots.alpha_trajectories(panels, folder / "alpha_trajectories.png")
            sections += ["## Alpha trajectories", "", f"![alpha trajectories]({png.name})", ""]

    path = folder / "report.md"
    tmp = path.with_name("report.md.tmp")
    tmp.write_text("\n".join(sections))
    tmp.replace(path)
    return path
