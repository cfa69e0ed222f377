"""The self-contained HTML report: runs, their tree, params against metrics, per-step
curves, and every search's history, slices and parameter importance, in one file.

Why plotly.js, embedded: it is a maintained chart library that draws everything the
report needs (parallel coordinates with a metric menu, zoomable curves, heatmaps) in the
browser, so one file holds it all and opens offline, or inline in MLflow's UI, with no
CDN. It comes with the `plotly` Python package, an optional extra (`mltrail[report]`)
rather than a core dependency: tracking never needs it, and the report reads the
JavaScript file straight from the package without importing plotly's Python side (see
`page.plotly_js`). The price is size: ~4.8 MB of JavaScript in every file, whatever the
number of runs; the runs themselves add little (about 1 MB at 1,000 runs; see
`benchmarks/bench_report.py` for size and build time). That is why a search's own
`search_report.html`, built after every search and uploaded with its run, is not drawn
with plotly but as static SVG (`search_page`): tens of KB, no script, no extra needed.

Public entry points: `build_report` (what `mltrail report` runs), `render_search` and
`SearchData`/`SearchTrial` (what `mltrail.autologging.log_search_report` uses), and
`read_plot_data` (the plot data a run may carry, drawn beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..client import TrackingClient
from ..entities import Run
from ..uri import redact_uri
from .data import (
    MAX_DETAIL_RUNS,
    PLOT_DATA_ARTIFACT,
    ReportData,
    SearchData,
    SearchTrial,
    all_runs,
    collect,
    read_plot_data,
    with_children,
)
from .importance import param_importance
from .page import INSTALL_HINT, ReportUnavailable, plotly_js, render_report
from .search_page import render_search

__all__ = [
    "INSTALL_HINT",
    "PLOT_DATA_ARTIFACT",
    "ReportData",
    "ReportUnavailable",
    "SearchData",
    "SearchTrial",
    "build_report",
    "param_importance",
    "plotly_js",
    "read_plot_data",
    "render_report",
    "render_search",
]


def build_report(
    client: TrackingClient,
    *,
    experiment_ids: Sequence[str] = (),
    runs: Sequence[Run] = (),
    title: str = "mltrail report",
    max_detail_runs: int = MAX_DETAIL_RUNS,
    output: str | Path | None = None,
) -> str:
    """The report's HTML for the given runs (with their children) or experiments.

    Args:
        client: where the runs are (a local folder or a tracking server).
        experiment_ids: report every active run of these experiments.
        runs: or these runs, each with its child runs.
        title: the page's heading.
        max_detail_runs: read per-step histories and plot data of at most this many
            (newest) runs; each costs a request per run on a server.
        output: also write the page to this file.

    Raises:
        ReportUnavailable: plotly (which ships plotly.js) is not installed.
    """
    plotly_js()  # fail before reading any run when the chart library is missing
    chosen = with_children(client, runs) if runs else all_runs(client, experiment_ids)
    data = collect(client, chosen, title=title, source=redact_uri(client.tracking_uri),
                   max_detail_runs=max_detail_runs)
    page = render_report(data)
    if output is not None:
        Path(output).write_text(page, encoding="utf-8")
    return page
