"""What a report shows, read through `TrackingClient` only, so a local folder and a tracking
server give the same report: runs with their parent/child tree, per-step metric curves,
searches (a parent run whose children are trials), and plot data a run logged.

Reading is bounded: per-step histories and plot data are read for at most
`max_detail_runs` runs (the newest), because each is one request per run and metric on a
server; the report says when it left some out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import TrackingClient
from ..entities import Run, ViewType
from ..exceptions import MltrailError

PARENT_TAG = "mlflow.parentRunId"
AUTOLOGGING_TAG = "mlflow.autologging"
MAX_DETAIL_RUNS = 200
# Plot data a run may carry (confusion matrices, curves, importances), drawn by the report
# without a second computation. See `read_plot_data` for the format.
PLOT_DATA_ARTIFACT = "plots.json"
PLOT_KINDS = ("confusion_matrix", "roc_curve", "precision_recall_curve", "feature_importance",
              "curve", "bar")
# Metrics whose larger values are better, when nothing else says which way a search went.
_HIGHER_IS_BETTER = re.compile(r"(score|acc|auc|r2|f1|precision|recall|ap$|map$)", re.I)


@dataclass
class RunRow:
    """One run as the report shows it."""

    run_id: str
    name: str
    parent_id: str | None
    status: str
    start_time: int | None
    end_time: int | None
    flavor: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]

    @classmethod
    def from_run(cls, run: Run) -> RunRow:
        tags = dict(run.data.tags)
        return cls(
            run_id=run.info.run_id,
            name=run.info.run_name or tags.get("mlflow.runName", ""),
            parent_id=tags.get(PARENT_TAG),
            status=run.info.status,
            start_time=run.info.start_time,
            end_time=run.info.end_time,
            flavor=tags.get(AUTOLOGGING_TAG, ""),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            tags=tags,
        )


@dataclass
class SearchTrial:
    """One trial of a search, as an integration or a child run describes it.

    Attributes:
        number: the trial's number in its search (hyperopt's tid, Optuna's number,
            the candidate's index in `cv_results_`).
        params: the hyperparameters the trial tried.
        value: its objective value; None for a failed or pruned trial.
        status: what the search said of it (`ok`, `COMPLETE`, `fail`, ...).
        run_id: its run, when it has one.
    """

    number: int
    params: dict[str, Any]
    value: float | None
    status: str = "ok"
    run_id: str | None = None


@dataclass
class SearchData:
    """A search: its trials and the objective they were judged on."""

    title: str
    flavor: str
    objective: str
    direction: str  # "minimize" or "maximize"
    trials: list[SearchTrial]
    parent_run_id: str | None = None

    def best(self) -> SearchTrial | None:
        scored = [t for t in self.trials if _finite(t.value)]
        if not scored:
            return None
        pick = min if self.direction == "minimize" else max
        return pick(scored, key=lambda t: t.value)  # type: ignore[arg-type,return-value]


@dataclass
class ReportData:
    """Everything one report file shows."""

    title: str
    source: str
    runs: list[RunRow] = field(default_factory=list)
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    searches: list[SearchData] = field(default_factory=list)
    plots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


# reading runs ---------------------------------------------------------------


def all_runs(client: TrackingClient, experiment_ids: Sequence[str]) -> list[Run]:
    """Every active run of the experiments, every page."""
    found: list[Run] = []
    token: str | None = None
    while True:
        page = client.search_runs(list(experiment_ids), "", ViewType.ACTIVE_ONLY, 1000,
                                  ["attributes.start_time DESC"], token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def with_children(client: TrackingClient, runs: Sequence[Run]) -> list[Run]:
    """The runs, each followed by the children it has (a search's trials), once each."""
    seen = {r.info.run_id for r in runs}
    out = list(runs)
    for run in runs:
        token: str | None = None
        while True:
            page = client.search_runs(
                [run.info.experiment_id], f"tags.`{PARENT_TAG}` = '{run.info.run_id}'",
                ViewType.ACTIVE_ONLY, 1000, None, token)
            for child in page:
                if child.info.run_id not in seen:
                    seen.add(child.info.run_id)
                    out.append(child)
            token = page.token
            if not token:
                break
    return out


def collect(
    client: TrackingClient,
    runs: Sequence[Run],
    *,
    title: str,
    source: str,
    max_detail_runs: int = MAX_DETAIL_RUNS,
) -> ReportData:
    """Read what the report shows of `runs`: rows, searches, curves and plot data."""
    rows = [RunRow.from_run(r) for r in runs]
    data = ReportData(title=title, source=source, runs=rows)
    data.searches = searches_from_runs(rows)
    newest = sorted(rows, key=lambda r: r.start_time or 0, reverse=True)[:max_detail_runs]
    if len(rows) > len(newest):
        data.notes.append(
            f"Per-step curves and plots are read for the {len(newest)} newest of "
            f"{len(rows)} runs (raise --max-detail-runs for more).")
    for row in newest:
        for key in sorted(row.metrics):
            history = client.get_metric_history(row.run_id, key)
            if len(history) > 1:
                points = sorted((m.step, m.value) for m in history)
                data.curves.setdefault(key, {})[row.run_id] = points
        plots = read_plot_data(client, row.run_id)
        if plots:
            data.plots[row.run_id] = plots
    return data


def read_plot_data(client: TrackingClient, run_id: str) -> list[dict[str, Any]]:
    """The plots a run recorded as numbers in its `plots.json` artifact, if it has one.

    The artifact is `{"version": 1, "plots": [plot, ...]}` (what sklearn and xgboost
    autolog write beside their SVG images), each plot one of
        {"kind": "confusion_matrix", "title", "labels": [str], "counts": [[number]],
         "normalized": [[number]]}                 (rows true, columns predicted)
        {"kind": "roc_curve" | "precision_recall_curve", "title", "x": [number],
         "y": [number], "auc" | "average_precision": number}
        {"kind": "feature_importance", "title", "features": [str],
         "values": [number] or [[number], ...] (one list per class)}
        {"kind": "curve", "title", "x", "y", "x_label", "y_label"}   (any other curve)
        {"kind": "bar", "title", "labels": [str], "values": [number]}
    so whatever records plot data (an integration, user code) gets it drawn beside the
    run. A plot of another kind is skipped; unreadable data is skipped, never an error.
    """
    try:
        names = {f.path for f in client.list_artifacts(run_id)}
        if PLOT_DATA_ARTIFACT not in names:
            return []
        path = client.download_artifacts(run_id, PLOT_DATA_ARTIFACT)
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (MltrailError, OSError, ValueError):
        return []
    plots = content.get("plots") if isinstance(content, dict) else None
    if not isinstance(plots, list):
        return []
    return [p for p in plots if isinstance(p, dict) and p.get("kind") in PLOT_KINDS]


# searches -------------------------------------------------------------------


def searches_from_runs(rows: Sequence[RunRow]) -> list[SearchData]:
    """Every parent run with at least two listed children, read as a search.

    The objective is what the integration that logged the search judged trials by:
    hyperopt's `loss` (minimized), Optuna's `value` in the study's direction (the
    parent's `direction` param), scikit-learn's `mean_test_score` (maximized, over
    the candidates logged as child runs). For other parents: a `loss` metric if the
    children have one, else the metric most of them have, maximized when its name says
    it is a score (accuracy, auc, f1, r2, ...), minimized otherwise.
    """
    by_id = {r.run_id: r for r in rows}
    children: dict[str, list[RunRow]] = {}
    for row in rows:
        if row.parent_id and row.parent_id in by_id and row.parent_id != row.run_id:
            children.setdefault(row.parent_id, []).append(row)
    found = []
    for parent_id, kids in children.items():
        if len(kids) < 2:
            continue
        search = _search_of(by_id[parent_id], kids)
        if search is not None:
            found.append(search)
    return found


def _search_of(parent: RunRow, kids: list[RunRow]) -> SearchData | None:
    flavor = parent.flavor or next((k.flavor for k in kids if k.flavor), "")
    direction = "minimize"
    if flavor == "hyperopt":
        objective = "loss"
    elif flavor == "optuna":
        objective = "value"
        direction = parent.params.get("direction", "minimize")
    elif flavor == "sklearn" and any("mean_test_score" in k.metrics for k in kids):
        objective, direction = "mean_test_score", "maximize"
    else:
        counts: dict[str, int] = {}
        for kid in kids:
            for key in kid.metrics:
                counts[key] = counts.get(key, 0) + 1
        if not counts:
            return None
        objective = "loss" if "loss" in counts else max(sorted(counts), key=counts.__getitem__)
        if _HIGHER_IS_BETTER.search(objective):
            direction = "maximize"
    ordered = sorted(kids, key=lambda k: (_trial_number(k) is None, _trial_number(k) or 0,
                                          k.start_time or 0))
    trials = []
    for index, kid in enumerate(ordered):
        number = _trial_number(kid)
        status = kid.tags.get("hyperopt.status") or kid.tags.get("optuna.state") or kid.status
        trials.append(SearchTrial(
            number=index if number is None else number,
            params=dict(kid.params),
            value=kid.metrics.get(objective),
            status=status,
            run_id=kid.run_id,
        ))
    title = f"{flavor or 'search'} search {parent.name or parent.run_id[:8]}"
    return SearchData(title, flavor, objective, direction, trials, parent.run_id)


def _trial_number(row: RunRow) -> int | None:
    for key in ("hyperopt.trial_id", "optuna.trial_number"):
        if key in row.tags:
            try:
                return int(row.tags[key])
            except ValueError:
                pass
    match = re.search(r"-(\d+)$", row.name)
    return int(match.group(1)) if match else None


def varying_params(items: Iterable[dict[str, Any]]) -> list[str]:
    """Param keys taking more than one value across the items, sorted."""
    values: dict[str, set[str]] = {}
    for params in items:
        for key, value in params.items():
            values.setdefault(key, set()).add(str(value))
    return sorted(k for k, v in values.items() if len(v) > 1)


def as_number(value: Any) -> float | None:
    """A param value as a number when it reads as one (params are strings on a store)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None
