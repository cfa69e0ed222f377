"""The HTML report and every search's `search_report.html`: content, offline, in Chromium.

Runs are real: a hyperopt search, an Optuna study, a GridSearchCV and xgboost trainings
logged by autolog to a local folder (and one search to a real MLflow server).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from chromium import distinct_colours, open_page, screenshot_after

import mltrail
import mltrail.autologging as autologging
from mltrail import TrackingClient
from mltrail.cli import main
from mltrail.report import importance
from mltrail.report.data import SearchData, SearchTrial

pytest.importorskip("plotly", reason="the report extra: pip install 'mltrail[report]'")

HYPEROPT_TRIALS = 12
OPTUNA_TRIALS = 8
GRID_C = [0.01, 0.1, 1.0, 10.0]
# Plot data as sklearn/xgboost autolog record it (`plots.json`), plus a kind the report skips.
PLOTS = {"version": 1, "plots": [
    {"name": "training_confusion_matrix", "kind": "confusion_matrix", "title": "Confusion",
     "labels": ["0", "1"], "counts": [[5.0, 1.0], [2.0, 7.0]],
     "normalized": [[5 / 6, 1 / 6], [2 / 9, 7 / 9]]},
    {"name": "training_roc_curve", "kind": "roc_curve", "title": "ROC curve",
     "x": [0.0, 0.2, 1.0], "y": [0.0, 0.8, 1.0], "auc": 0.88},
    {"name": "feature_importance_weight", "kind": "feature_importance", "title": "Importance",
     "features": ["f1", "f0"], "values": [[1.0, 3.0], [2.0, 4.0]]},
    {"name": "something_else", "kind": "hologram"},
]}


def _hyperopt_search() -> None:
    from hyperopt import fmin, hp, tpe
    from hyperopt.pyll import scope

    def objective(p: dict) -> float:
        return (p["x"] - 1) ** 2 + 0.1 * p["depth"] + (0.5 if p["kind"] == "b" else 0.0)

    space = {"x": hp.uniform("x", -3, 3), "depth": scope.int(hp.quniform("depth", 2, 8, 1)),
             "kind": hp.choice("kind", ["a", "b"])}
    fmin(objective, space, algo=tpe.suggest, max_evals=HYPEROPT_TRIALS,
         rstate=np.random.default_rng(0), show_progressbar=False)


def _optuna_study() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", study_name="report-study",
                                sampler=optuna.samplers.TPESampler(seed=1))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -2, 2)
        for step in range(3):
            trial.report(x * (step + 1), step)
        return -(x - 0.5) ** 2

    study.optimize(objective, n_trials=OPTUNA_TRIALS)


def _grid_search() -> None:
    from sklearn.datasets import load_wine
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    x, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LinearSVC(max_iter=2000))
    GridSearchCV(model, {"linearsvc__C": GRID_C}, cv=3).fit(x, y)


def _xgboost_trainings() -> None:
    import xgboost as xgb
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    data = xgb.DMatrix(x, label=y)
    for depth in (2, 4):
        xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": depth},
                  data, 8, evals=[(data, "train")], verbose_eval=False)


@dataclass
class Store:
    root: Path
    experiment: str

    @property
    def client(self) -> TrackingClient:
        return TrackingClient(str(self.root))

    def runs(self) -> list:
        client = self.client
        exp = client.get_experiment_by_name(self.experiment)
        return list(client.search_runs([exp.experiment_id], max_results=1000))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One experiment with all four kinds of runs, logged once for the module."""
    root = tmp_path_factory.mktemp("report") / "runs"
    mltrail.set_tracking_uri(str(root))
    mltrail.set_experiment("everything")
    mltrail.autolog()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings of the small models
            _hyperopt_search()
            _optuna_study()
            _grid_search()
            _xgboost_trainings()
        with mltrail.start_run(run_name="with-plots"):
            mltrail.log_dict(PLOTS, "plots.json")
    finally:
        autologging.reset_options()
        mltrail.set_tracking_uri(None)
    yield Store(root, "everything")


def _embedded(page: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>',
                      page, re.S)
    assert match, f"no {element_id} in the page"
    return json.loads(match.group(1).replace("<\\/", "</"))


def _parent(runs: list, flavor: str) -> object:
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs}
    found = [r for r in runs if r.data.tags.get("mlflow.autologging") == flavor
             and r.info.run_id in parents]
    assert len(found) == 1, flavor
    return found[0]


# the report file --------------------------------------------------------------


@pytest.fixture(scope="module")
def report_file(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out") / "report.html"
    code = main(["--tracking-uri", str(store.root), "report", "-e", store.experiment,
                 "-o", str(out)])
    assert code == 0
    return out


def test_report_embeds_exactly_what_was_logged(store: Store, report_file: Path) -> None:
    page = report_file.read_text(encoding="utf-8")
    data = _embedded(page, "mltrail-data")
    runs = {r.info.run_id: r for r in store.runs()}
    embedded = {r["run_id"]: r for r in data["runs"]}
    assert embedded.keys() == runs.keys()
    for run_id, run in runs.items():
        assert embedded[run_id]["params"] == run.data.params
        assert embedded[run_id]["parent_run_id"] == run.data.tags.get("mlflow.parentRunId")
        for key, value in run.data.metrics.items():
            assert embedded[run_id]["metrics"][key] == pytest.approx(value)
        assert run_id[:8] in page  # every run has its row in the table

    # per-step curves: xgboost's per-round metric and Optuna's reported values, as logged
    client = store.client
    xgb_runs = [r for r in runs.values() if r.data.tags.get("mlflow.autologging") == "xgboost"]
    assert len(xgb_runs) == 2
    for run in xgb_runs:
        history = client.get_metric_history(run.info.run_id, "train-mlogloss")
        assert len(history) == 8
        assert data["curves"]["train-mlogloss"][run.info.run_id] == [
            [m.step, pytest.approx(m.value)] for m in sorted(history, key=lambda m: m.step)]
    assert len(data["curves"]["intermediate_value"]) == OPTUNA_TRIALS

    # one search per search parent, with its objective and all its child runs
    searches = {s["flavor"]: s for s in data["searches"]}
    assert set(searches) == {"hyperopt", "optuna", "sklearn"}
    assert (searches["hyperopt"]["objective"], searches["hyperopt"]["direction"]) == (
        "loss", "minimize")
    assert (searches["optuna"]["objective"], searches["optuna"]["direction"]) == (
        "value", "maximize")
    assert searches["sklearn"]["direction"] == "maximize"
    assert len(searches["hyperopt"]["trials"]) == HYPEROPT_TRIALS
    assert len(searches["optuna"]["trials"]) == OPTUNA_TRIALS
    hyperopt_parent = _parent(list(runs.values()), "hyperopt")
    for trial in searches["hyperopt"]["trials"]:
        child = runs[trial["run_id"]]
        assert child.data.tags["mlflow.parentRunId"] == hyperopt_parent.info.run_id
        assert trial["value"] == pytest.approx(child.data.metrics["loss"])
        assert trial["number"] == int(child.data.tags["hyperopt.trial_id"])
    assert set(searches["hyperopt"]["importance"]) <= {"x", "depth", "kind"}
    assert "Parameter importance" in page and "Optimization history" in page

    (with_plots,) = [r for r in runs.values() if r.info.run_name == "with-plots"]
    assert data["plots"][with_plots.info.run_id] == PLOTS["plots"][:3]  # the unknown kind out
    # Autolog's own plot data (its classifiers and xgboost trains) comes as each run logged it.
    autologged = {run_id for run_id in data["plots"] if run_id != with_plots.info.run_id}
    assert autologged, "autolog's plots.json reached no run of the report"
    client = mltrail.MlflowClient(tracking_uri=str(store.root))
    for run_id in autologged:
        logged = json.loads(Path(client.download_artifacts(run_id, "plots.json")).read_text())
        assert data["plots"][run_id] == logged["plots"]


def test_report_loads_nothing_from_elsewhere(report_file: Path) -> None:
    page = report_file.read_text(encoding="utf-8")
    assert len(page) > 3_000_000  # plotly.js is in the file
    assert "Plotly.newPlot" in page
    tags = re.findall(r"<(?:script|link|img|iframe)\b[^>]*>", page)
    assert not [t for t in tags if re.search(r"\b(?:src|href)=", t)], tags


def test_report_renders_in_chromium_offline(report_file: Path, tmp_path: Path) -> None:
    visit = open_page(report_file.as_uri(), tmp_path / "dom")
    assert visit.requests == [], "the report made network requests"
    assert not visit.errors, visit.errors
    charts = _embedded(report_file.read_text(encoding="utf-8"), "mltrail-charts")
    drawn = re.findall(r'id="(chart-\d+)"[^>]*data-drawn="1"', visit.dom)
    assert sorted(drawn) == sorted(charts), "some charts were not drawn"
    assert visit.dom.count('class="main-svg"') >= len(charts)  # plotly's SVG per chart
    assert 'class="parcoords"' in visit.dom
    assert 'class="hm"' in visit.dom  # the confusion matrix's heatmap
    assert visit.dom.count('class="point"') > HYPEROPT_TRIALS  # scatter markers drawn

    png = tmp_path / "report.png"
    open_page(report_file.as_uri(), tmp_path / "shot", screenshot=png, size="1280,1800")
    assert png.is_file() and distinct_colours(png) > 50  # charts, not a blank page


def test_chromium_check_catches_errors_and_requests(tmp_path: Path) -> None:
    """The checks above can fail: a page with a script error and a CDN script is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script src="http://cdn.example.invalid/x.js"></script>'
                    "<script>undefinedFunction();</script></body></html>")
    visit = open_page(page.as_uri(), tmp_path / "bad", budget_ms=3000)
    assert visit.errors and "cdn.example.invalid" in visit.requests


# the search report --------------------------------------------------------------


def _artifacts(client: TrackingClient, run_id: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id)}


def test_every_search_parent_carries_its_report(store: Store) -> None:
    client = store.client
    runs = store.runs()
    for flavor in ("hyperopt", "optuna", "sklearn"):
        parent = _parent(runs, flavor)
        assert "search_report.html" in _artifacts(client, parent.info.run_id), flavor
        children = [r for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert all("search_report.html" not in _artifacts(client, c.info.run_id)
                   for c in children)
        page = Path(client.download_artifacts(parent.info.run_id, "search_report.html"))
        search = _embedded(page.read_text(encoding="utf-8"), "mltrail-data")["searches"][0]
        if flavor == "sklearn":  # every candidate, though only 5 become child runs
            assert [t["params"]["linearsvc__C"] for t in search["trials"]] == [
                str(c) for c in GRID_C]
            continue
        values = sorted(t["value"] for t in search["trials"] if t["value"] is not None)
        metric = "loss" if flavor == "hyperopt" else "value"
        assert values == pytest.approx(sorted(c.data.metrics[metric] for c in children))


@pytest.mark.parametrize("flavor", ["hyperopt", "optuna", "sklearn"])
def test_log_search_report_false_turns_it_off(tracking_dir: Path, flavor: str) -> None:
    module = getattr(mltrail, flavor)
    module.autolog(log_search_report=False)
    {"hyperopt": _hyperopt_search, "optuna": _optuna_study, "sklearn": _grid_search}[flavor]()
    client = TrackingClient(str(tracking_dir))
    runs = list(client.search_runs(["0"], max_results=1000))
    parent = _parent(runs, flavor)
    assert "search_report.html" not in _artifacts(client, parent.info.run_id)


def test_search_report_needs_no_plotly(
    tracking_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # plotly is installed here; its absence is simulated where the full report looks for it.
    from mltrail import report

    def missing() -> str:
        raise report.ReportUnavailable("no plotly")

    monkeypatch.setattr(report, "plotly_js", missing)
    monkeypatch.setattr(report.page, "plotly_js", missing)
    mltrail.hyperopt.autolog()
    with warnings.catch_warnings():
        warnings.simplefilter("error", autologging.MltrailWarning)
        _hyperopt_search()
    client = TrackingClient(str(tracking_dir))
    runs = list(client.search_runs(["0"], max_results=1000))
    parent = _parent(runs, "hyperopt")
    assert "search_report.html" in _artifacts(client, parent.info.run_id)


def test_search_report_is_light_static_svg_and_draws_offline(store: Store, tmp_path: Path) -> None:
    """The per-search page: inline SVG charts, no script to run, tens of KB, in Chromium."""
    client = store.client
    parent = _parent(store.runs(), "hyperopt")
    path = Path(client.download_artifacts(parent.info.run_id, "search_report.html"))
    page = path.read_text(encoding="utf-8")
    assert len(page.encode()) < 60_000, len(page)
    assert "Plotly" not in page and "plotly" not in page
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == ['<script type="application/json" id="mltrail-data">'], scripts
    assert not re.search(r"<(?:link|img|iframe)\b", page)
    # history + a slice per hyperparameter (x, depth, kind) + importance
    assert page.count("<svg ") == 1 + 3 + 1
    visit = open_page(path.as_uri(), tmp_path / "dom")
    assert visit.requests == [] and not visit.errors, (visit.requests, visit.errors)
    # every scored trial is a point in the history and in each of the three slices
    assert visit.dom.count("<circle ") == 4 * HYPEROPT_TRIALS
    assert visit.dom.count('stroke="#ff7f0e"') >= 1  # the best-so-far line
    png = tmp_path / "search_report.png"
    open_page(path.as_uri(), tmp_path / "shot", screenshot=png, size="1000,1400")
    assert distinct_colours(png) > 20


def test_report_of_a_servers_runs(mlflow_server, tmp_path: Path) -> None:
    mltrail.set_tracking_uri(mlflow_server.url)
    mltrail.set_experiment("report-on-server")
    mltrail.hyperopt.autolog()
    _hyperopt_search()
    mltrail.flush()
    out = tmp_path / "server.html"
    assert main(["--tracking-uri", mlflow_server.url, "report", "-e", "report-on-server",
                 "-o", str(out)]) == 0
    data = _embedded(out.read_text(encoding="utf-8"), "mltrail-data")
    assert len(data["runs"]) == HYPEROPT_TRIALS + 1
    (search,) = data["searches"]
    assert search["flavor"] == "hyperopt" and len(search["trials"]) == HYPEROPT_TRIALS
    # the parent's own search_report.html reached the server, and reads back whole
    client = TrackingClient(mlflow_server.url)
    parent = client.get_run(search["parent_run_id"])
    assert "search_report.html" in _artifacts(client, parent.info.run_id)


def _orange_pixels(png: Path, box: tuple[int, int, int, int]) -> int:
    """Pixels of the best-so-far line's orange (#ff7f0e) inside `box`."""
    from PIL import Image

    with Image.open(png) as image:
        crop = image.convert("RGB").crop(box)
        return sum(n for n, (r, g, b) in crop.getcolors(1 << 20)
                   if abs(r - 255) < 12 and abs(g - 127) < 20 and b < 50)


def test_mlflow_ui_shows_the_search_report_inline(mlflow_server, tmp_path: Path) -> None:
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment("search-report-in-ui")
    mltrail.hyperopt.autolog()
    _hyperopt_search()
    mltrail.flush()
    client = TrackingClient(mlflow_server.url)
    (parent,) = client.search_runs([experiment.experiment_id],
                                   "tags.`hyperopt.best_run_id` != ''")
    url = (f"{mlflow_server.url}/#/experiments/{experiment.experiment_id}/runs/"
           f"{parent.info.run_id}/artifacts/search_report.html")
    png = tmp_path / "search_report_in_ui.png"
    # MLflow's UI fetches the artifact and draws it in an iframe. The artifact pane (right
    # of the file list, left of the assistant panel) then shows the report's optimization
    # history, whose best-so-far line is orange.
    shown = screenshot_after(url, png, tmp_path / "ui", seconds=120, size=(1400, 1000),
                             until=lambda p: _orange_pixels(p, (420, 180, 1020, 1000)) > 100)
    assert shown, f"no report drawn in MLflow's UI within 120 s: see {png}"
    assert _orange_pixels(png, (0, 0, 400, 1000)) == 0  # not some orange of the UI itself
    if os.environ.get("MLTRAIL_DOCS_DIR"):  # how docs/mlflow-search-report.png is made
        Path(os.environ["MLTRAIL_DOCS_DIR"], "mlflow-search-report.png").write_bytes(
            png.read_bytes())


# parameter importance ------------------------------------------------------------


def test_importance_matches_scipy_and_ranks_the_parameter_that_matters() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    xs, noise, kinds = rng.uniform(0, 5, 40), rng.uniform(0, 5, 40), rng.choice(["a", "b"], 40)
    losses = np.exp(xs) + rng.normal(0, 0.01, 40)
    trials = [SearchTrial(i, {"x": float(x), "noise": float(n), "kind": str(k)}, float(v))
              for i, (x, n, k, v) in enumerate(zip(xs, noise, kinds, losses, strict=True))]
    found = importance.param_importance(SearchData("s", "t", "loss", "minimize", trials))
    assert next(iter(found)) == "x"
    assert found["x"] == pytest.approx(abs(spearmanr(xs, losses).statistic))
    assert found["noise"] == pytest.approx(abs(spearmanr(noise, losses).statistic))
    # for two categories eta is |rho| of the 0/1 indicator, as the module says
    assert found["kind"] == pytest.approx(abs(spearmanr(kinds == "b", losses).statistic))
    assert importance.ranks([3.0, 1.0, 3.0]) == [2.5, 1.0, 2.5]
    assert math.isclose(importance.correlation_ratio(["a", "b", "a", "b"], [1, 2, 3, 4]),
                        math.sqrt(0.2))
