"""Post-training metrics: sklearn.metrics and score calls on a logged model's predictions,
named and valued as MLflow's sklearn autolog does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mltrail_sklearn import post_training
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import mltrail


@pytest.fixture
def autolog(tracking_dir: Path):
    mltrail.autolog(log_models=False, log_plots=False)
    # Imported here, after autolog: `from sklearn.metrics import f1_score` binds whatever
    # the module holds at that moment, as with MLflow.
    import sklearn.metrics

    yield sklearn.metrics
    mltrail.autolog(disable=True)


@pytest.fixture
def data() -> tuple[np.ndarray, ...]:
    X, y = load_breast_cancer(return_X_y=True)
    return tuple(train_test_split(X, y, test_size=0.3, random_state=0))


def runs() -> list[mltrail.Run]:
    return mltrail.search_runs(output_format="list")


def only_run() -> mltrail.Run:
    found = runs()
    assert len(found) == 1, [r.data.tags.get("estimator_name") for r in found]
    return found[0]


def post_metrics(run: mltrail.Run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items()
            if not k.startswith("training_") and k != "best_cv_score"}


def metric_info(run_id: str) -> dict[str, str]:
    mltrail.flush()  # metric_info.json is rewritten at most once a second, and at flush
    path = mltrail.MlflowClient().download_artifacts(run_id, post_training.INFO_FILE)
    return json.loads(Path(path).read_text())


def test_metric_calls_on_predictions_are_logged_by_dataset_name(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X_train, y_train)
    y_pred = model.predict(X_test)
    first = metrics.accuracy_score(y_test, y_pred)
    second = metrics.accuracy_score(y_true=y_test, y_pred=y_pred, normalize=False)
    f1 = metrics.f1_score(y_test, y_pred, pos_label=1)
    run = only_run()
    assert post_metrics(run) == {"accuracy_score_X_test": first,
                                 "accuracy_score-2_X_test": second,
                                 "f1_score_X_test": f1}
    assert second == pytest.approx(first * len(y_test))
    assert metric_info(run.info.run_id) == {
        "accuracy_score-2_X_test":
            "accuracy_score(y_true=y_test, y_pred=y_pred, normalize=False)",
        "accuracy_score_X_test": "accuracy_score(y_true=y_test, y_pred=y_pred)",
        "f1_score_X_test": "f1_score(y_true=y_test, y_pred=y_pred, pos_label=1)",
    }


def test_pipeline_predict_proba_and_score(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1)).fit(X_train, y_train)
    proba = pipe.predict_proba(X_test)
    loss = metrics.log_loss(y_test, proba)
    score = pipe.score(X_test, y_test)  # accuracy_score inside it is not logged again
    run = only_run()  # log_loss fits a LabelBinarizer: not a run of its own
    assert post_metrics(run) == {"log_loss_X_test": loss, "Pipeline_score_X_test": score}
    assert metric_info(run.info.run_id) == {
        "Pipeline_score_X_test": "Pipeline.score(X=X_test, y=y_test)",
        "log_loss_X_test": "log_loss(y_true=y_test, y_proba=proba)",
    }


def test_expressions_fall_back_to_indexed_unknown_dataset(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    model = LogisticRegression(max_iter=3000).fit(X_train, y_train)
    mask = y_test == 1
    parts = [X_test[mask], X_test[~mask]]  # both alive: their ids cannot be reused
    a = metrics.accuracy_score(y_test[mask], model.predict(parts[0]))
    b = metrics.accuracy_score(y_test[~mask], model.predict(parts[1]))
    again = metrics.recall_score(y_test[mask], model.predict(parts[0]))
    run = only_run()
    assert post_metrics(run) == {"accuracy_score_unknown_dataset": a,
                                 "accuracy_score-2_unknown_dataset-2": b,
                                 "recall_score_unknown_dataset": again}
    info = metric_info(run.info.run_id)
    assert info["accuracy_score_unknown_dataset"] == (
        "accuracy_score(y_true=<ndarray>, y_pred=<ndarray>)")


def test_dataset_passed_through_a_function_is_named_by_its_caller(autolog, data) -> None:
    metrics = autolog
    X_train, X_valid, y_train, y_valid = data

    def evaluate(model, features, labels):
        return metrics.precision_score(labels, model.predict(features))

    model = LogisticRegression(max_iter=3000).fit(X_train, y_train)
    value = evaluate(model, X_valid, y_valid)
    assert post_metrics(only_run()) == {"precision_score_X_valid": value}


def test_arrays_no_logged_model_produced_log_nothing(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    mltrail.autolog(disable=True)
    unlogged = LogisticRegression(max_iter=3000).fit(X_train, y_train)
    mltrail.autolog(log_models=False, log_plots=False)
    logged = LogisticRegression(C=0.5, max_iter=3000).fit(X_train, y_train)
    metrics.accuracy_score(y_test, unlogged.predict(X_test))
    metrics.accuracy_score(y_test, logged.predict(X_test).copy())  # a copy is another array
    metrics.accuracy_score(y_test, y_test)
    run = only_run()
    assert post_metrics(run) == {}
    mltrail.flush()
    names = {a.path for a in mltrail.MlflowClient().list_artifacts(run.info.run_id)}
    assert post_training.INFO_FILE not in names


def test_search_and_its_best_estimator_log_to_the_search_run(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    search = GridSearchCV(LogisticRegression(max_iter=3000), {"C": [0.1, 1.0]}, cv=2,
                          ).fit(X_train, y_train)
    by_search = metrics.accuracy_score(y_test, search.predict(X_test))
    best = search.best_estimator_
    by_best = metrics.balanced_accuracy_score(y_test, best.predict(X_test))
    parent = next(r for r in runs() if "mlflow.parentRunId" not in r.data.tags)
    assert post_metrics(parent) == {"accuracy_score_X_test": by_search,
                                    "balanced_accuracy_score_X_test": by_best}


def test_regression_with_sample_weights(autolog) -> None:
    metrics = autolog
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    w_train = np.linspace(0.5, 2.0, len(y_train))
    w_test = np.linspace(2.0, 0.5, len(y_test))
    model = Ridge(alpha=0.5).fit(X_train, y_train, sample_weight=w_train)
    predictions = model.predict(X_test)
    mse = metrics.mean_squared_error(y_test, predictions, sample_weight=w_test)
    r2 = model.score(X_test, y_test, sample_weight=w_test)
    run = only_run()
    assert post_metrics(run) == {"mean_squared_error_X_test": mse, "Ridge_score_X_test": r2}
    assert mse == pytest.approx(np.average((y_test - predictions) ** 2, weights=w_test))
    assert metric_info(run.info.run_id) == {
        "Ridge_score_X_test": "Ridge.score(X=X_test, y=y_test, sample_weight=w_test)",
        "mean_squared_error_X_test": ("mean_squared_error(y_true=y_test, y_pred=predictions, "
                                      "sample_weight=w_test)"),
    }


def test_option_off_logs_nothing(tracking_dir: Path, data) -> None:
    mltrail.sklearn.autolog(log_models=False, log_post_training_metrics=False)
    try:
        import sklearn.metrics as metrics

        X_train, X_test, y_train, y_test = data
        model = LogisticRegression(max_iter=3000).fit(X_train, y_train)
        metrics.accuracy_score(y_test, model.predict(X_test))
        model.score(X_test, y_test)
    finally:
        mltrail.sklearn.autolog(disable=True)
    assert post_metrics(only_run()) == {}


def test_patched_metrics_return_what_sklearn_returns(autolog, data) -> None:
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    model = LogisticRegression(max_iter=3000).fit(X_train, y_train)
    y_pred = model.predict(X_test)
    report = metrics.classification_report(y_test, y_pred, output_dict=True)
    matrix = metrics.confusion_matrix(y_test, y_pred)
    mltrail.autolog(disable=True)
    assert report == metrics.classification_report(y_test, y_pred, output_dict=True)
    np.testing.assert_array_equal(matrix, metrics.confusion_matrix(y_test, y_pred))
    assert post_metrics(only_run()) == {}  # not numbers: nothing to log


def test_xgboost_sklearn_wrappers_log_to_their_own_runs(autolog, data) -> None:
    """xgboost's integration records the wrappers' fits; their predictions scored by
    sklearn.metrics, and their `score`, still land in that run, as MLflow's do."""
    xgboost = pytest.importorskip("xgboost")
    metrics = autolog
    X_train, X_test, y_train, y_test = data
    classifier = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X_train, y_train)
    proba = classifier.predict_proba(X_test)
    loss = metrics.log_loss(y_test, proba)
    accuracy = classifier.score(X_test, y_test)
    regressor = xgboost.XGBRegressor(n_estimators=5, max_depth=2).fit(X_train, y_train)
    y_hat = regressor.predict(X_test)
    error = metrics.mean_squared_error(y_test, y_hat)
    found = runs()
    assert len(found) == 2
    (classifier_run,) = [r for r in found if "log_loss_X_test" in r.data.metrics]
    assert {k: v for k, v in post_metrics(classifier_run).items() if k.endswith("_X_test")} == {
        "log_loss_X_test": loss, "XGBClassifier_score_X_test": accuracy}
    (regressor_run,) = [r for r in found if r is not classifier_run]
    assert {k: v for k, v in post_metrics(regressor_run).items()
            if k.endswith("_X_test")} == {"mean_squared_error_X_test": error}
    assert metric_info(regressor_run.info.run_id) == {
        "mean_squared_error_X_test": "mean_squared_error(y_true=y_test, y_pred=y_hat)"}
    # A Booster from xgboost.train is no scikit-learn model: its predictions log nothing.
    booster = xgboost.train({"max_depth": 2}, xgboost.DMatrix(X_train, label=y_train), 3)
    metrics.mean_squared_error(y_test, booster.predict(xgboost.DMatrix(X_test)))
    assert len(runs()) == 3
    assert all(k.startswith(("training_", "train-", "validation")) or k.endswith("_X_test")
               for r in runs() for k in r.data.metrics)
