"""Plots, plots.json and estimator.html from sklearn and xgboost autolog, checked against
scikit-learn's own numbers, and one plot shown by the MLflow UI in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from mltrail_sklearn import html_view
from sklearn import metrics as skm
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from system_parts import executable

import mltrail
from mltrail import plots

CLASSIFIER_PLOTS = {"training_confusion_matrix.svg", "training_roc_curve.svg",
                    "training_precision_recall_curve.svg"}


@pytest.fixture
def autolog(tracking_dir: Path):
    mltrail.autolog(log_models=False)
    yield
    mltrail.autolog(disable=True)


def only_run() -> mltrail.Run:
    runs = mltrail.search_runs(output_format="list")
    assert len(runs) == 1, [r.data.tags.get("estimator_name") for r in runs]
    return runs[0]


def artifacts(run_id: str) -> set[str]:
    assert html_view.wait(120)  # estimator.html comes from the helper process (slow to
    mltrail.flush()  # start on a loaded machine: longer than flush's default 5 s)
    return {a.path for a in mltrail.MlflowClient().list_artifacts(run_id)}


def plot_data(run_id: str) -> dict[str, dict]:
    path = mltrail.MlflowClient().download_artifacts(run_id, plots.PLOTS_FILE)
    payload = json.loads(Path(path).read_text())
    assert payload["version"] == plots.SCHEMA_VERSION
    return {p["name"]: p for p in payload["plots"]}


def svg_of(run_id: str, name: str) -> ET.Element:
    path = mltrail.MlflowClient().download_artifacts(run_id, name)
    root = ET.fromstring(Path(path).read_text())  # well-formed XML, or this raises
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def binary_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))
    return (X - X.mean(axis=0)) / X.std(axis=0), y, weights  # scaled without a fit (a run)


def assert_curve(curve: dict, x_full: np.ndarray, y_full: np.ndarray) -> None:
    """Every point of scikit-learn's curve; or, thinned, its ends and only its points."""
    if len(x_full) <= plots.MAX_POINTS:
        np.testing.assert_allclose(curve["x"], x_full)
        np.testing.assert_allclose(curve["y"], y_full)
        return
    assert len(curve["x"]) <= plots.MAX_POINTS
    assert (curve["x"][0], curve["y"][0]) == pytest.approx((x_full[0], y_full[0]))
    assert (curve["x"][-1], curve["y"][-1]) == pytest.approx((x_full[-1], y_full[-1]))
    full = {(round(a, 9), round(b, 9)) for a, b in zip(x_full, y_full, strict=True)}
    assert {(round(a, 9), round(b, 9)) for a, b in zip(curve["x"], curve["y"],
                                                       strict=True)} <= full


def check_binary_curves(data: dict[str, dict], y: np.ndarray, score: np.ndarray,
                        weights: np.ndarray | None) -> None:
    fpr, tpr, _ = skm.roc_curve(y, score, sample_weight=weights)
    roc = data["training_roc_curve"]
    assert_curve(roc, fpr, tpr)
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(y, score, sample_weight=weights))
    precision, recall, _ = skm.precision_recall_curve(y, score, sample_weight=weights)
    pr = data["training_precision_recall_curve"]
    assert_curve(pr, recall, precision)
    assert pr["average_precision"] == pytest.approx(
        skm.average_precision_score(y, score, sample_weight=weights))


def test_binary_classifier_with_sample_weights(autolog: None) -> None:
    X, y, w = binary_data()
    model = LogisticRegression(C=0.05, max_iter=500).fit(X, y, sample_weight=w)
    run = only_run()
    assert CLASSIFIER_PLOTS | {"plots.json", "estimator.html"} <= artifacts(run.info.run_id)
    data = plot_data(run.info.run_id)
    cm = data["training_confusion_matrix"]
    expected = skm.confusion_matrix(y, model.predict(X), sample_weight=w)
    np.testing.assert_allclose(cm["counts"], expected)
    np.testing.assert_allclose(cm["normalized"],
                               skm.confusion_matrix(y, model.predict(X), sample_weight=w,
                                                    normalize="true"))
    assert cm["labels"] == ["0", "1"]
    check_binary_curves(data, y, model.predict_proba(X)[:, 1], w)
    assert data["training_roc_curve"]["estimator"] == "LogisticRegression"
    root = svg_of(run.info.run_id, "training_roc_curve.svg")
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert f"LogisticRegression (AUC = {data['training_roc_curve']['auc']:.2f})" in texts
    assert "ROC curve" in texts


def test_binary_classifier_without_probabilities_uses_decision_function(autolog: None) -> None:
    X, y, _ = binary_data()
    model = LinearSVC(C=0.01).fit(X, y)
    run = only_run()
    assert artifacts(run.info.run_id) >= CLASSIFIER_PLOTS
    check_binary_curves(plot_data(run.info.run_id), y, model.decision_function(X), None)


def test_multiclass_gets_the_confusion_matrix_only(autolog: None) -> None:
    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01)).fit(X, y)
    run = only_run()
    found = artifacts(run.info.run_id)
    assert "training_confusion_matrix.svg" in found
    assert not {"training_roc_curve.svg", "training_precision_recall_curve.svg"} & found
    cm = plot_data(run.info.run_id)["training_confusion_matrix"]
    np.testing.assert_allclose(cm["counts"], skm.confusion_matrix(y, model.predict(X)))
    assert cm["labels"] == ["0", "1", "2"]
    root = svg_of(run.info.run_id, "training_confusion_matrix.svg")
    cells = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("width") ==
             r.get("height") and r.get("fill") != "white"]
    assert len(cells) == 9


def test_regressor_with_sample_weights_has_no_plots(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    Ridge(alpha=1.0).fit(X, y, sample_weight=w)
    run = only_run()
    found = artifacts(run.info.run_id)
    assert "estimator.html" in found  # MLflow logs the HTML view for every estimator
    assert not any(name.endswith(".svg") for name in found)
    assert plots.PLOTS_FILE not in found


def test_pipeline_binary_plots_name_the_pipeline(autolog: None) -> None:
    X, y, _ = binary_data()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05)).fit(X, y)
    run = only_run()
    assert artifacts(run.info.run_id) >= CLASSIFIER_PLOTS
    data = plot_data(run.info.run_id)
    assert data["training_roc_curve"]["estimator"] == "Pipeline"
    check_binary_curves(data, y, model.predict_proba(X)[:, 1], None)


def test_search_plots_its_best_estimator(autolog: None) -> None:
    X, y, _ = binary_data()
    search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.01, 1.0]}, cv=3).fit(X, y)
    parent = next(r for r in mltrail.search_runs(output_format="list")
                  if "mlflow.parentRunId" not in r.data.tags)
    assert CLASSIFIER_PLOTS | {"estimator.html"} <= artifacts(parent.info.run_id)
    data = plot_data(parent.info.run_id)
    np.testing.assert_allclose(data["training_confusion_matrix"]["counts"],
                               skm.confusion_matrix(y, search.best_estimator_.predict(X)))
    check_binary_curves(data, y, search.predict_proba(X)[:, 1], None)
    page = Path(mltrail.MlflowClient().download_artifacts(parent.info.run_id,
                                                           "estimator.html")).read_text()
    assert page.startswith("<!DOCTYPE html>") and "GridSearchCV" in page


def test_log_plots_false_writes_no_images(tracking_dir: Path) -> None:
    mltrail.sklearn.autolog(log_models=False, log_plots=False)
    try:
        X, y, _ = binary_data()
        LogisticRegression().fit(X, y)
    finally:
        mltrail.sklearn.autolog(disable=True)
    found = artifacts(only_run().info.run_id)
    assert "estimator.html" in found
    assert not any(name.endswith(".svg") for name in found) and plots.PLOTS_FILE not in found


def test_estimator_html_is_sklearns_own_view(autolog: None) -> None:
    from sklearn.utils import estimator_html_repr

    X, y = load_wine(return_X_y=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1)).fit(X, y)
    assert html_view.wait(120)
    path = mltrail.MlflowClient().download_artifacts(only_run().info.run_id, "estimator.html")
    page = Path(path).read_text(encoding="utf-8")
    assert '<meta charset="UTF-8"/>' in page
    # The helper's page is scikit-learn's view of the same fitted object, up to the
    # random element ids scikit-learn draws for each rendering.
    expected = estimator_html_repr(model)
    for marker in ("StandardScaler", "LogisticRegression", "sk-estimator", "Pipeline"):
        assert (marker in page) == (marker in expected)
    assert abs(len(page) - len(html_view.page(expected))) < 200


FRESH_SCRIPT = """
import json, sys
import mltrail
from mltrail_sklearn import html_view
from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.utils import estimator_html_repr

mltrail.set_tracking_uri(sys.argv[1])
mltrail.autolog(log_models=False, log_plots=False)
X, y = load_wine(return_X_y=True)
models = [RandomForestClassifier(n_estimators=10, max_depth=5, random_state=seed).fit(X, y)
          for seed in range(6)]
ready = html_view._helper._ready
# Not ready, flush draws the pages here: done well within a timeout shorter than the
# helper's start (a flush that waited for the helper would return False).
written = mltrail.flush(0.5)
expected = {seed: len(html_view.page(estimator_html_repr(m))) for seed, m in enumerate(models)}
print(json.dumps({"ready_at_flush": ready, "written": written, "expected": expected}))
"""


def test_a_script_that_ends_before_the_helper_is_ready_still_gets_every_page(
    tmp_path: Path,
) -> None:
    """A fresh process: six small fits and a flush take less than the helper needs to
    load scikit-learn. Their requests queue without holding up training, and flush
    draws the pages itself; each run has scikit-learn's view of its own model."""
    store = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, str(store)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ready_at_flush"] is False, "the helper was ready: this path was not taken"
    assert report["written"] is True
    client = mltrail.MlflowClient(tracking_uri=str(store))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 6
    for run in runs:
        page = Path(client.download_artifacts(run.info.run_id, "estimator.html")).read_text()
        seed = int(run.data.params["random_state"])
        assert "RandomForestClassifier" in page and '<meta charset="UTF-8"/>' in page
        # the same page up to the random element ids scikit-learn draws per rendering
        assert abs(len(page) - report["expected"][str(seed)]) < 200
        assert html_view.NOTE_TAG not in run.data.tags


def test_an_estimator_that_does_not_pickle_gets_a_note_instead_of_the_page(
    autolog: None,
) -> None:
    """A search whose `cv` is a generator of splits (as scikit-learn allows) fits as
    without autolog, in strict mode too; its run says why it has no estimator.html."""
    from sklearn.model_selection import GridSearchCV, KFold

    X, y = load_wine(return_X_y=True)
    splits = KFold(n_splits=3).split(X, y)  # a generator: it does not pickle
    search = GridSearchCV(LogisticRegression(max_iter=50), {"C": [0.1, 1.0]}, cv=splits)
    search.fit(X, y)
    assert html_view.wait(120)
    parents = [r for r in mltrail.search_runs(output_format="list")
               if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    note = parents[0].data.tags[html_view.NOTE_TAG]
    assert "does not pickle" in note and "generator" in note
    names = {f.path for f in mltrail.MlflowClient().list_artifacts(parents[0].info.run_id)}
    assert "estimator.html" not in names


def test_curves_are_thinned_with_their_ends_kept() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=20_000)
    score = rng.normal(size=len(y)) + y
    roc = plots.roc_curve("r", y, score, 1)
    pr = plots.precision_recall_curve("p", y, score, 1)
    fpr, tpr, _ = skm.roc_curve(y, score)
    precision, recall, _ = skm.precision_recall_curve(y, score)
    for curve, (x_full, y_full) in ((roc, (fpr, tpr)), (pr, (recall, precision))):
        assert len(x_full) > plots.MAX_POINTS
        assert_curve(curve, x_full, y_full)
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(y, score))  # from every point
    assert pr["average_precision"] == pytest.approx(skm.average_precision_score(y, score))


def test_xgboost_train_importance_plot(autolog: None) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = X[:, 0] * 2 + X[:, 3]
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(X, label=y), 8)
    run = only_run()
    found = artifacts(run.info.run_id)
    assert {"feature_importance_weight.json", "feature_importance_weight.svg",
            plots.PLOTS_FILE} <= found
    assert "estimator.html" not in found and "training_confusion_matrix.svg" not in found
    plot = plot_data(run.info.run_id)["feature_importance_weight"]
    scores = booster.get_score(importance_type="weight")
    assert dict(zip(plot["features"], plot["values"], strict=True)) == pytest.approx(scores)
    assert plot["values"] == sorted(plot["values"])  # ascending, the largest drawn on top
    texts = {t.text for t in svg_of(run.info.run_id, "feature_importance_weight.svg").iter(
        "{http://www.w3.org/2000/svg}text")}
    assert set(scores) <= texts and "Feature Importance (weight)" in texts


def test_xgboost_sklearn_wrapper_plots_importance_per_type(tracking_dir: Path) -> None:
    mltrail.xgboost.autolog(log_models=False, importance_types=["weight", "gain"])
    try:
        X, y, _ = binary_data()
        xgb.XGBClassifier(n_estimators=5, max_depth=2, nthread=1).fit(X, y)
    finally:
        mltrail.xgboost.autolog(disable=True)
    found = artifacts(only_run().info.run_id)
    assert {"feature_importance_weight.svg", "feature_importance_gain.svg"} <= found
    # MLflow's xgboost autolog draws no classifier plots and no estimator.html for wrappers
    assert not CLASSIFIER_PLOTS & found and "estimator.html" not in found


def test_mlflow_ui_displays_a_plot(mlflow_server, tmp_path: Path) -> None:
    """A run on a real MLflow server; its UI's artifact page for the confusion matrix,
    opened in headless Chromium, shows the image."""
    chromium = executable("chromium", "chromium", also=("/usr/bin",))
    mltrail.set_tracking_uri(mlflow_server.url)
    mltrail.set_experiment("plots-in-the-ui")
    mltrail.autolog(log_models=False)
    try:
        X, y = load_wine(return_X_y=True)
        LogisticRegression(C=0.05, max_iter=300).fit((X - X.mean(axis=0)) / X.std(axis=0), y)
    finally:
        mltrail.autolog(disable=True)
    assert mltrail.flush(60)
    run = mltrail.search_runs(output_format="list")[0]
    url = (f"{mlflow_server.url}/#/experiments/{run.info.experiment_id}/runs/"
           f"{run.info.run_id}/artifacts/training_confusion_matrix.svg")
    command = [str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
               "--window-size=1400,900", "--virtual-time-budget=15000"]
    dom = subprocess.run([*command, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    assert "training_confusion_matrix.svg" in dom
    images = [part for part in dom.split("<img")[1:] if "training_confusion_matrix" in part
              or "blob:" in part.split(">")[0] or "get-artifact" in part.split(">")[0]]
    assert images, "the artifact page has no <img> for the plot"
    shot = tmp_path / "ui.png"
    subprocess.run([*command, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    keep = os.environ.get("MLTRAIL_KEEP_SCREENSHOT")
    if keep:  # a path to copy the screenshot to, for a person to look at
        Path(keep).write_bytes(shot.read_bytes())


# charts other pages compose (a search's search_report.html) -------------------------


def test_nice_ticks_are_round_and_cover_the_range() -> None:
    assert plots.nice_ticks(0.0, 1.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert plots.nice_ticks(-3.2, 17.0, 5) == [0.0, 5.0, 10.0, 15.0]
    assert plots.nice_ticks(2.0, 2.0) == [2.0]  # a flat range still gets a tick


def test_scatter_draws_finite_points_a_step_line_and_named_categories() -> None:
    svg = plots.render_svg({
        "kind": "scatter", "title": "history", "x_label": "trial", "y_label": "loss",
        "x": [0, 1, 2, 3], "y": [3.0, None, float("nan"), 1.0],
        "line_x": [0, 3], "line_y": [3.0, 1.0], "line_label": "best so far",
        "width": 400, "height": 300})
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.get("width") == "400" and root.get("height") == "300"
    assert len(root.findall(f"{ns}circle")) == 2  # None and NaN are not drawn
    (line,) = root.findall(f"{ns}polyline")
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 3 and points[1][1] == points[0][1]  # flat, then down: a step
    assert points[2][1] > points[0][1]  # a lower loss sits lower in the picture
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert "best so far" in texts
    shown = plots.render_svg({
        "kind": "scatter", "title": "kind", "x": [0, 1, 1], "y": [1.0, 2.0, 3.0],
        "categories": ["a", "b"]})
    assert [t.text for t in ET.fromstring(shown).iter(f"{ns}text")].count("b") == 1
    logged = plots.render_svg({"kind": "scatter", "title": "lr", "x": [1e-4, 1e-2, 1.0],
                               "y": [1.0, 2.0, 3.0], "log_x": True})
    xs = sorted(float(c.get("cx")) for c in ET.fromstring(logged).iter(f"{ns}circle"))
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # evenly spaced decades
