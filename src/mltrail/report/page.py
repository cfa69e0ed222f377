"""One self-contained HTML page: the data as JSON, the charts drawn by plotly.js embedded
in the page, and a few lines of our own script (sorting the table, drawing the charts).

The page loads nothing: no CDN, no font, no image from elsewhere, so it opens offline and
as an artifact in MLflow's UI.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

from ..exceptions import MltrailError
from . import figures
from .data import ReportData, RunRow, SearchData, as_number, varying_params
from .importance import METHOD, param_importance

INSTALL_HINT = "pip install 'mltrail[report]'"
LAZY_AFTER = 40  # more charts than this are drawn as they scroll into view
MAX_TABLE_PARAMS = 30
MAX_TABLE_METRICS = 20


class ReportUnavailable(MltrailError):
    """The report's chart library (plotly.js, shipped by the `plotly` package) is missing."""


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js as the `plotly` package ships it, read without importing the package
    (read once per process: a search report per search must not pay for it again)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise ReportUnavailable(
            f"The HTML report draws its charts with plotly.js, from the plotly package: "
            f"{INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    from plotly.offline import get_plotlyjs  # the public way, should the layout change

    return str(get_plotlyjs())


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` can end it early)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=str).replace(
        "</", "<\\/")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and inf are kept, as text, since JSON has no such numbers
    return value


def local_time(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def fmt(value: Any) -> str:
    """Numbers to 6 significant digits, numeric params too (stored as text); the rest as is."""
    if isinstance(value, str) and len(value) > 8:
        number = as_number(value)
        if number is not None and math.isfinite(number):
            return f"{number:.6g}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def cell(value: Any, sort_key: Any = None) -> str:
    key = sort_key if sort_key is not None else value
    attr = ""
    if isinstance(key, (int, float)) and not isinstance(key, bool) and math.isfinite(key):
        attr = f' data-v="{key!r}"'
    return f"<td{attr}>{html.escape(fmt(value))}</td>"


class Page:
    """Collects sections and charts, then writes the page."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.charts: dict[str, figures.Figure] = {}

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def chart(self, figure: figures.Figure | None, css: str = "chart") -> None:
        if figure is None:
            return
        chart_id = f"chart-{len(self.charts)}"
        self.charts[chart_id] = figure
        self.parts.append(f'<div class="{css}" id="{chart_id}"></div>')

    def render(self, data: dict[str, Any]) -> str:
        lazy = "true" if len(self.charts) > LAZY_AFTER else "false"
        return "".join([
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            *self.parts,
            # after the content: the text and tables show while the browser parses 4.8 MB
            f"<script>{plotly_js()}</script>",
            f'<script type="application/json" id="mltrail-data">{script_json(data)}</script>',
            '<script type="application/json" id="mltrail-charts">'
            f"{script_json(self.charts)}</script>",
            f"<script>const MLTRAIL_LAZY={lazy};{_JS}</script></body></html>",
        ])


# the run table ----------------------------------------------------------------


def _tree(runs: list[RunRow]) -> list[tuple[int, RunRow]]:
    """Runs in listed order, each child right under its parent, with its depth."""
    listed = {r.run_id for r in runs}
    kids: dict[str, list[RunRow]] = {}
    roots = []
    for run in runs:
        if run.parent_id and run.parent_id in listed and run.parent_id != run.run_id:
            kids.setdefault(run.parent_id, []).append(run)
        else:
            roots.append(run)
    out: list[tuple[int, RunRow]] = []
    seen: set[str] = set()

    def visit(run: RunRow, depth: int) -> None:
        if run.run_id in seen:
            return
        seen.add(run.run_id)
        out.append((depth, run))
        for kid in kids.get(run.run_id, []):
            visit(kid, depth + 1)

    for run in [*roots, *runs]:  # runs in a parent cycle are reached by the second list
        visit(run, 0)
    return out


def _common_keys(dicts: list[dict[str, Any]], limit: int) -> list[str]:
    counts: dict[str, int] = {}
    for item in dicts:
        for key in item:
            counts[key] = counts.get(key, 0) + 1
    return sorted(sorted(counts), key=lambda k: -counts[k])[:limit]


def run_table(runs: list[RunRow]) -> str:
    params = _common_keys([r.params for r in runs], MAX_TABLE_PARAMS)
    metrics = _common_keys([r.metrics for r in runs], MAX_TABLE_METRICS)
    head = ["run", "id", "status", "started", "duration"]
    head += [f"params.{p}" for p in params] + [f"metrics.{m}" for m in metrics]
    out = ['<table class="sortable runs"><thead><tr>']
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for order, (depth, run) in enumerate(_tree(runs)):
        seconds = ((run.end_time - run.start_time) / 1000
                   if run.end_time and run.start_time else None)
        name = html.escape(run.name or run.run_id[:8])
        indent = f'<span class="tree" style="padding-left:{depth * 1.2}em">{"└ " if depth else ""}'
        out.append(f'<tr data-order="{order}" data-run-id="{run.run_id}">'
                   f'<td data-v="{order}">{indent}</span>{name}</td>'
                   f"<td><code>{run.run_id[:8]}</code></td>{cell(run.status)}"
                   f"{cell(local_time(run.start_time), run.start_time)}"
                   f"{cell(None if seconds is None else round(seconds, 3))}")
        out += [cell(run.params.get(p), number_or_none(run.params.get(p))) for p in params]
        out += [cell(run.metrics.get(m)) for m in metrics]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def number_or_none(value: Any) -> float | None:
    return None if value is None else as_number(value)


def trial_table(
    search: SearchData, sortable: bool = True, best_number: int | None = None
) -> str:
    """A search's trials, one row each: number, status, value and the params that varied
    (all of them when none did); the row of `best_number` is marked. Sortable where the
    page has the full report's script."""
    params = varying_params(t.params for t in search.trials) or sorted(
        {k for t in search.trials for k in t.params})
    head = ["trial", "status", search.objective, *params]
    out = ['<table class="sortable">' if sortable else "<table>", "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for trial in sorted(search.trials, key=lambda t: t.number):
        mark = ' class="best"' if trial.number == best_number else ""
        out.append(f"<tr{mark}>{cell(trial.number)}{cell(trial.status)}{cell(trial.value)}")
        out += [cell(trial.params.get(p), number_or_none(trial.params.get(p))) for p in params]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# sections ---------------------------------------------------------------------


def search_summary(search: SearchData) -> str:
    """One sentence on a search: trials, how many gave a finite value, the best one.
    Both reports open a search with it."""
    best = search.best()
    done = sum(1 for t in search.trials
               if isinstance(t.value, (int, float)) and math.isfinite(t.value))
    summary = (f"{len(search.trials)} trials, {done} with a value of "
               f"<b>{html.escape(search.objective)}</b> ({search.direction}).")
    if best is not None:
        params = ", ".join(f"{html.escape(k)}={html.escape(fmt(v))}"
                           for k, v in sorted(best.params.items()))
        summary += (f" Best: trial {best.number}, {html.escape(search.objective)} = "
                    f"{fmt(best.value)} ({params}).")
    return summary


def add_search(page: Page, search: SearchData, heading: str = "h2", meta: str = "") -> None:
    page.add(f'<section class="search"><{heading}>{html.escape(search.title)}</{heading}>')
    if meta:
        page.add(f'<p class="meta">{meta}</p>')
    page.add(f"<p>{search_summary(search)}</p>")
    page.chart(figures.optimization_history(search))
    page.chart(figures.slice_plots(search))
    importance = param_importance(search)
    page.chart(figures.importance_bars(importance, "importance (0..1)"))
    if importance:
        page.add(f'<p class="note">Importance: {METHOD}. It measures each hyperparameter '
                 "alone and misses interactions.</p>")
    page.chart(figures.search_parallel_coordinates(search))
    page.add(f"<details><summary>Trials</summary>{trial_table(search)}</details></section>")


def search_json(search: SearchData) -> dict[str, Any]:
    return {"title": search.title, "flavor": search.flavor, "objective": search.objective,
            "direction": search.direction, "parent_run_id": search.parent_run_id,
            "importance": param_importance(search),
            "trials": [{"number": t.number, "params": {k: _clean(v) for k, v in t.params.items()},
                        "value": _clean(t.value), "status": t.status, "run_id": t.run_id}
                       for t in search.trials]}


def render_report(data: ReportData) -> str:
    """The page for `mltrail report`: table, parallel coordinates, curves, searches, plots."""
    page = Page(data.title)
    names = {r.run_id: r.name or r.run_id[:8] for r in data.runs}
    page.add(f"<h1>{html.escape(data.title)}</h1><p class=\"meta\">{len(data.runs)} runs from "
             f"<code>{html.escape(data.source)}</code>, {len(data.searches)} search(es); made "
             f"{local_time(int(time.time() * 1000))} by mltrail. Click a column to sort; click "
             "<i>run</i> for the tree again.</p>")
    page.add("".join(f'<p class="note">{html.escape(n)}</p>' for n in data.notes))
    page.add(f"<h2>Runs</h2><div class=\"scroll\">{run_table(data.runs)}</div>")
    page.add("<h2>Params and metrics</h2>")
    page.chart(figures.runs_parallel_coordinates(data.runs))
    if data.curves:
        page.add("<h2>Metrics per step</h2><div class=\"grid\">")
        for key in sorted(data.curves):
            page.chart(figures.metric_curves(key, data.curves[key], names))
        page.add("</div>")
    for search in data.searches:
        add_search(page, search)
    if data.plots:
        page.add("<h2>Plots</h2>")
        for run_id, plots in data.plots.items():
            page.add(f"<h3>{html.escape(names.get(run_id, run_id))}</h3><div class=\"grid\">")
            for plot in plots:
                page.chart(figures.plot_figure(plot), "chart small")
            page.add("</div>")
    payload = {
        "runs": [{"run_id": r.run_id, "name": r.name, "parent_run_id": r.parent_id,
                  "status": r.status, "start_time": r.start_time, "end_time": r.end_time,
                  "params": r.params, "metrics": {k: _clean(v) for k, v in r.metrics.items()}}
                 for r in data.runs],
        "curves": {k: {run: [[s, _clean(v)] for s, v in pts] for run, pts in series.items()}
                   for k, series in data.curves.items()},
        "searches": [search_json(s) for s in data.searches],
        "plots": data.plots,
    }
    return page.render(payload)


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em;color:#222}
h1{font-size:1.5em;margin:.2em 0}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
.meta,.note{color:#555}.scroll{max-height:32em;overflow:auto;border:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}th,td{padding:2px 8px;border-bottom:1px solid #eee;
white-space:nowrap;text-align:left}th{position:sticky;top:0;background:#f4f4f4;cursor:pointer}
th.asc:after{content:' \\25B2'}th.desc:after{content:' \\25BC'}td[data-v]{text-align:right}
td:first-child{text-align:left}.tree{color:#888}.chart{min-height:300px}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid .chart{flex:1 1 460px}.small{flex:0 0 430px}
details{margin:1em 0}summary{cursor:pointer}
"""

# Draw every chart (or, on a long page, each as it scrolls into view) and sort tables.
_JS = """
(function(){
var charts=JSON.parse(document.getElementById('mltrail-charts').textContent);
var config={displaylogo:false,responsive:true};
function draw(el){var f=charts[el.id];if(f&&!el.dataset.drawn){el.dataset.drawn='1';
Plotly.newPlot(el,f.data,f.layout,config);}}
var els=Object.keys(charts).map(function(id){return document.getElementById(id);});
if(MLTRAIL_LAZY&&'IntersectionObserver' in window){
var seen=new IntersectionObserver(function(es){es.forEach(function(e){
if(e.isIntersecting){draw(e.target);seen.unobserve(e.target);}});},{rootMargin:'400px'});
els.forEach(function(el){seen.observe(el);});}else{els.forEach(draw);}
function key(td){if(!td)return '';var v=td.getAttribute('data-v');
return v===null?td.textContent:parseFloat(v);}
document.querySelectorAll('table.sortable').forEach(function(table){
var ths=table.tHead.rows[0].cells;
Array.prototype.forEach.call(ths,function(th,col){th.addEventListener('click',function(){
var desc=th.classList.contains('asc');
Array.prototype.forEach.call(ths,function(h){h.classList.remove('asc','desc');});
th.classList.add(desc?'desc':'asc');
var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);
var ex=(x===''),ey=(y==='');if(ex||ey)return ex-ey;
var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
return desc?-c:c;});
rows.forEach(function(r){body.appendChild(r);});});});});
})();
"""
