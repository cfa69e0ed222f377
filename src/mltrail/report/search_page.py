"""`search_report.html`, the page every search's parent run carries: static SVG charts.

It is built once per search, when the search ends, and uploaded with the run, so it has to
be light: its charts are SVG written by `mltrail.plots` (the one owner of SVG drawing),
inline in the HTML, with no chart library and no script. A 20-trial search gives a file
of some tens of KB, built in milliseconds; MLflow's UI shows it inline (in an iframe) like
any HTML artifact, and a browser shows it offline. The interactive, plotly-drawn view of
the same search is in `mltrail report` (`page.render_report`).

The page holds: a summary with the best trial, the optimization history (each trial's
objective and the best so far), one slice plot per hyperparameter that varied (the
objective against its values, darker points for later trials), parameter importance
(method in `importance`), and the table of trials. The trials are also embedded as JSON
(`<script type="application/json" id="mltrail-data">`, the same shape as in
`mltrail report`), for tools reading the artifact.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any

from .. import plots
from .data import SearchData, as_number, varying_params
from .importance import METHOD, param_importance
from .page import (
    local_time,
    script_json,
    search_json,
    search_summary,
    trial_table,
)

MAX_SLICES = 12  # panels; a search over more hyperparameters shows the most important ones
_SLICE_W, _SLICE_H = 320, 250


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def history_chart(search: SearchData) -> dict[str, Any]:
    """Each trial's objective against its number, and the best so far as a step line."""
    trials = sorted(search.trials, key=lambda t: t.number)
    better = (lambda a, b: a < b) if search.direction == "minimize" else (lambda a, b: a > b)
    best: float | None = None
    line_x, line_y = [], []
    for trial in trials:
        if _finite(trial.value) and (best is None or better(trial.value, best)):
            best = trial.value
        if best is not None:
            line_x.append(trial.number)
            line_y.append(best)
    return {"kind": "scatter", "title": f"Optimization history ({search.direction} "
            f"{search.objective})", "x_label": "trial", "y_label": search.objective,
            "x": [t.number for t in trials], "y": [t.value for t in trials],
            "line_x": line_x, "line_y": line_y, "line_label": "best so far",
            "width": 640, "height": 340}


def slice_chart(search: SearchData, key: str) -> dict[str, Any]:
    """The objective against one hyperparameter; later trials darker."""
    trials = [t for t in search.trials if key in t.params and _finite(t.value)]
    last = max((t.number for t in search.trials), default=0) or 1
    values = [as_number(t.params[key]) for t in trials]
    chart: dict[str, Any] = {"kind": "scatter", "title": key, "x_label": key,
                             "y_label": search.objective, "y": [t.value for t in trials],
                             "shade": [t.number / last for t in trials],
                             "width": _SLICE_W, "height": _SLICE_H}
    if all(v is not None for v in values):
        positive = [v for v in values if v is not None and v > 0]
        chart["x"] = values
        chart["log_x"] = (len(positive) == len(values) and len(values) > 1
                          and max(positive) / min(positive) >= 100)
    else:
        categories = sorted({str(t.params[key]) for t in trials})
        index = {c: i for i, c in enumerate(categories)}
        chart["x"] = [index[str(t.params[key])] for t in trials]
        chart["categories"] = categories
    return chart


def importance_chart(importance: dict[str, float]) -> dict[str, Any]:
    ascending = sorted(importance, key=lambda k: (importance[k], k))
    return {"kind": "feature_importance", "title": "Parameter importance (0..1)",
            "features": ascending, "values": [importance[k] for k in ascending],
            "height": 110 + 26 * len(ascending)}


def render_search(search: SearchData) -> str:
    """The page a search's parent run carries as `search_report.html` (see the module)."""
    best = search.best()
    summary = search_summary(search)
    importance = param_importance(search)
    varying = varying_params(t.params for t in search.trials)
    shown = sorted(varying, key=lambda k: (-importance.get(k, -1.0), k))[:MAX_SLICES]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(search.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(search.title)}</h1>",
        f'<p class="meta">made {local_time(int(time.time() * 1000))} by mltrail when the search '
        "ended; <code>mltrail report</code> draws it interactively.</p>",
        f"<p>{summary}</p>",
        plots.render_svg(history_chart(search)),
    ]
    if shown:
        parts.append("<h2>Slices: the objective against each hyperparameter</h2>"
                     '<p class="note">Darker points are later trials.</p><div class="grid">')
        parts += [plots.render_svg(slice_chart(search, k)) for k in shown]
        parts.append("</div>")
    if importance:
        parts.append(plots.render_svg(importance_chart(importance)))
        parts.append(f'<p class="note">Importance: {METHOD}. It measures each '
                     "hyperparameter alone and misses interactions.</p>")
    table = trial_table(search, sortable=False, best_number=best.number if best else None)
    parts.append(f"<h2>Trials</h2>{table}")
    parts.append(f'<script type="application/json" id="mltrail-data">'
                 f'{script_json({"searches": [search_json(search)]})}</script></body></html>')
    return "".join(parts)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{margin-top:1.4em;border-bottom:1px solid #ddd}
.meta,.note{color:#555}.grid{display:flex;flex-wrap:wrap;gap:.5em}svg{max-width:100%;height:auto}
table{border-collapse:collapse;font-size:12px}th,td{padding:2px 8px;border-bottom:1px solid #eee;
white-space:nowrap;text-align:left}th{background:#f4f4f4}td[data-v]{text-align:right}
td:first-child{text-align:left}tr.best{background:#fff3e0}
"""
