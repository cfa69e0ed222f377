"""scikit-learn autologging on real estimators and small built-in data."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn import metrics as skm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.datasets import load_diabetes, load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, SGDRegressor
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    RandomizedSearchCV,
    cross_val_predict,
    cross_val_score,
    cross_validate,
    learning_curve,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

import mltrail
from mltrail.autologging import MltrailWarning
from mltrail.client import TrackingClient
from mltrail.entities import RunStatus


@pytest.fixture
def autolog(tracking_dir: Path):
    mltrail.sklearn.autolog(log_models=False)
    yield
    mltrail.autolog(disable=True)
    mltrail.sklearn.autolog(disable=True)


def all_runs() -> list[mltrail.Run]:
    return mltrail.search_runs(output_format="list")


def only_run() -> mltrail.Run:
    runs = all_runs()
    assert len(runs) == 1, [r.data.tags.get("estimator_name") for r in runs]
    return runs[0]


def test_params_tags_and_classifier_metrics(autolog: None) -> None:
    X, y = load_wine(return_X_y=True)
    model = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=42).fit(X, y)
    run = only_run()
    assert run.info.status == RunStatus.FINISHED
    assert run.data.tags["mlflow.autologging"] == "sklearn"
    assert run.data.tags["estimator_name"] == "RandomForestClassifier"
    assert run.data.tags["estimator_class"] == "sklearn.ensemble._forest.RandomForestClassifier"
    assert run.data.params["n_estimators"] == "10"
    assert run.data.params["max_depth"] == "5"
    pred = model.predict(X)
    metrics = run.data.metrics
    assert metrics["training_accuracy_score"] == pytest.approx(skm.accuracy_score(y, pred))
    assert metrics["training_f1_score"] == pytest.approx(
        skm.f1_score(y, pred, average="weighted"))
    assert metrics["training_log_loss"] == pytest.approx(skm.log_loss(y, model.predict_proba(X)))
    assert "training_roc_auc" in metrics
    assert metrics["training_score"] == pytest.approx(model.score(X, y))
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type"} <= set(run.data.tags)


def test_forest_labels_from_probabilities_match_predict(autolog: None) -> None:
    # A forest's labels are taken from its probabilities (one prediction pass, not two);
    # string labels and a shallow forest that misclassifies make a wrong mapping show.
    X, y = load_wine(return_X_y=True)
    names = np.array(["barolo", "grignolino", "barbera"])[y]
    model = RandomForestClassifier(n_estimators=3, max_depth=1, random_state=0).fit(X, names)
    pred = model.predict(X)
    assert skm.accuracy_score(names, pred) < 0.95
    metrics = only_run().data.metrics
    assert metrics["training_accuracy_score"] == pytest.approx(skm.accuracy_score(names, pred))
    assert metrics["training_f1_score"] == pytest.approx(
        skm.f1_score(names, pred, average="weighted"))


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


PREDICT_THREADS: list[list[int]] = []


class ThreadCountingRegression(LinearRegression):
    """Notes the BLAS thread counts each predict call runs with."""

    def predict(self, X):  # type: ignore[no-untyped-def]
        PREDICT_THREADS.append(_blas_threads())
        return super().predict(X)


def test_training_predictions_use_one_blas_thread_and_restore_the_count(autolog: None) -> None:
    # Autolog's own predictions run with one BLAS thread (OpenBLAS workers left spinning
    # by a threaded call slowed the user's next fit); the user's setting comes back after.
    before = _blas_threads()
    X, y = load_diabetes(return_X_y=True)
    PREDICT_THREADS.clear()
    model = ThreadCountingRegression().fit(X, y)
    assert PREDICT_THREADS and all(counts == [1] * len(before) for counts in PREDICT_THREADS)
    assert _blas_threads() == before
    model.predict(X)  # the user's own call: their thread count
    assert PREDICT_THREADS[-1] == before
    assert "training_r2_score" in only_run().data.metrics


def test_regressor_metrics_respect_sample_weight(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    weights = np.linspace(0.1, 2.0, len(y))
    model = Lasso(alpha=0.1).fit(X, y, sample_weight=weights)
    metrics = only_run().data.metrics
    pred = model.predict(X)
    mse = skm.mean_squared_error(y, pred, sample_weight=weights)
    assert metrics["training_mean_squared_error"] == pytest.approx(mse)
    assert metrics["training_root_mean_squared_error"] == pytest.approx(np.sqrt(mse))
    assert metrics["training_r2_score"] == pytest.approx(
        skm.r2_score(y, pred, sample_weight=weights))
    assert metrics["training_mean_squared_error"] != pytest.approx(
        skm.mean_squared_error(y, pred))


def test_binary_pos_label(tracking_dir: Path) -> None:
    mltrail.sklearn.autolog(log_models=False, pos_label=1)
    try:
        X, y = load_iris(return_X_y=True)
        mask = y < 2
        model = LogisticRegression(max_iter=200).fit(X[mask], y[mask])
        pred = model.predict(X[mask])
        metrics = only_run().data.metrics
        assert metrics["training_precision_score"] == pytest.approx(
            skm.precision_score(y[mask], pred, pos_label=1))
    finally:
        mltrail.sklearn.autolog(disable=True)


def test_pipeline_logs_deep_params_once(autolog: None) -> None:
    X, y = load_wine(return_X_y=True)
    Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(C=0.5))]).fit(X, y)
    run = only_run()
    assert run.data.params["clf__C"] == "0.5"
    assert run.data.tags["estimator_name"] == "Pipeline"


def test_user_subclass_calling_super_fit_is_one_run(autolog: None) -> None:
    class Scaled(Lasso):
        def fit(self, X, y, **kwargs):  # type: ignore[no-untyped-def]
            return super().fit(X * 2.0, y, **kwargs)

    X, y = load_diabetes(return_X_y=True)
    Scaled(alpha=0.5).fit(X, y)
    assert only_run().data.tags["estimator_name"] == "Scaled"


def test_third_party_estimator_following_the_api(autolog: None) -> None:
    class MeanRegressor(RegressorMixin, BaseEstimator):
        def __init__(self, shift: float = 0.0) -> None:
            self.shift = shift

        def fit(self, X, y):  # type: ignore[no-untyped-def]
            self.mean_ = float(np.mean(y)) + self.shift
            return self

        def predict(self, X):  # type: ignore[no-untyped-def]
            return np.full(len(X), self.mean_)

    X, y = load_diabetes(return_X_y=True)
    MeanRegressor(shift=1.5).fit(X, y)
    run = only_run()
    assert run.data.params["shift"] == "1.5"
    assert "training_r2_score" in run.data.metrics


def test_grid_search_parent_and_children(autolog: None) -> None:
    X, y = load_wine(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])
    grid = {"clf__C": [0.01, 0.1, 1.0, 10.0], "clf__fit_intercept": [True, False]}
    mltrail.sklearn.autolog(log_models=False, max_tuning_runs=3)
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    runs = all_runs()
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.data.params["best_clf__C"] == str(search.best_params_["clf__C"])
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    best_child = min(children, key=lambda c: c.data.metrics["rank_test_score"])
    assert best_child.data.metrics["mean_test_score"] == pytest.approx(search.best_score_)
    assert best_child.data.params["clf__C"] == str(search.best_params_["clf__C"])
    best = search.best_index_
    for key in ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"):
        assert best_child.data.metrics[key] == pytest.approx(search.cv_results_[key][best])
    artifacts = [f.path for f in TrackingClient().list_artifacts(parent.info.run_id)]
    assert "cv_results.csv" in artifacts
    local = TrackingClient().download_artifacts(parent.info.run_id, "cv_results.csv")
    assert len(pd.read_csv(local)) == 8


def test_all_candidates_with_parallel_jobs(autolog: None) -> None:
    mltrail.sklearn.autolog(log_models=False, max_tuning_runs=None)
    X, y = load_diabetes(return_X_y=True)
    RandomizedSearchCV(Lasso(), {"alpha": [0.01, 0.1, 1.0, 2.0, 5.0]}, n_iter=5, cv=3,
                       n_jobs=2, random_state=0).fit(X, y)
    runs = all_runs()
    assert len(runs) == 6
    assert sum("mlflow.parentRunId" in r.data.tags for r in runs) == 5


def test_halving_search(autolog: None) -> None:
    X, y = load_wine(return_X_y=True)
    HalvingGridSearchCV(RandomForestClassifier(n_estimators=5, random_state=0),
                        {"max_depth": [2, 4, 6]}, cv=3, random_state=0).fit(X, y)
    runs = all_runs()
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    assert "best_max_depth" in parents[0].data.params


def test_cv_helpers_create_no_run_per_fold(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    cross_val_score(Lasso(), X, y, cv=3)
    cross_validate(Lasso(), X, y, cv=3)
    cross_val_predict(Lasso(), X, y, cv=3)
    learning_curve(Lasso(), X, y, cv=3, train_sizes=[0.5, 1.0])
    assert all_runs() == []


def test_failing_fit_ends_run_failed_and_reraises(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="alpha"):
        Lasso(alpha=-1.0).fit(X, y)
    assert only_run().info.status == RunStatus.FAILED


def test_array_valued_param_is_truncated_not_fatal(autolog: None) -> None:
    class WithArray(LinearRegression):
        def __init__(self, weights=None):  # type: ignore[no-untyped-def]
            super().__init__()
            self.weights = weights

    X, y = load_diabetes(return_X_y=True)
    big = [float(i) for i in range(5000)]
    with pytest.warns(UserWarning, match="weights"):
        WithArray(weights=big).fit(X, y)
    value = only_run().data.params["weights"]
    assert len(value) <= 6000 and "truncated" in value


def test_get_params_raising_is_noted(autolog: None) -> None:
    class Broken(LinearRegression):
        def get_params(self, deep=True):  # type: ignore[no-untyped-def]
            if deep:
                raise RuntimeError("no params here")
            return super().get_params(deep=False)

    X, y = load_diabetes(return_X_y=True)
    Broken().fit(X, y)
    run = only_run()
    assert "no params here" in run.data.tags["mltrail.note.params"]
    assert run.data.params["fit_intercept"] == "True"
    assert "training_r2_score" in run.data.metrics


def test_partial_fit_makes_no_runs(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    model = SGDRegressor()
    for _ in range(3):
        model.partial_fit(X, y)
    assert all_runs() == []


def test_sparse_and_pandas_inputs(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    Lasso().fit(X, y)
    Lasso().fit(scipy.sparse.csr_matrix(X.to_numpy()), y.to_numpy())
    runs = all_runs()
    assert len(runs) == 2
    schemas = [r.inputs.dataset_inputs[0].dataset.schema for r in runs]
    assert any('"name": "bmi"' in s for s in schemas)
    assert all(r.inputs.dataset_inputs[0].tags[0].value == "train" for r in runs)


def test_no_y_skips_metrics_with_a_note(autolog: None) -> None:
    X, _ = load_wine(return_X_y=True)
    StandardScaler().fit(X)
    run = only_run()
    assert "skipped" in run.data.tags["mltrail.note.training_metrics"]


def test_autolog_twice_then_disable_mid_script(autolog: None) -> None:
    mltrail.sklearn.autolog(log_models=False)
    X, y = load_diabetes(return_X_y=True)
    Lasso().fit(X, y)
    assert len(all_runs()) == 1
    mltrail.sklearn.autolog(disable=True)
    Lasso().fit(X, y)
    assert len(all_runs()) == 1
    mltrail.sklearn.autolog(log_models=False)
    Lasso().fit(X, y)
    assert len(all_runs()) == 2


def test_logs_into_user_run_unless_exclusive(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    with mltrail.start_run() as run:
        Lasso(alpha=0.3).fit(X, y)
    got = mltrail.get_run(run.info.run_id)
    assert got.data.params["alpha"] == "0.3"
    assert "mlflow.autologging" not in got.data.tags
    mltrail.sklearn.autolog(log_models=False, exclusive=True)
    with mltrail.start_run() as run2:
        Lasso(alpha=0.3).fit(X, y)
    assert mltrail.get_run(run2.info.run_id).data.params == {}
    assert len(all_runs()) == 2


def test_extra_tags(autolog: None) -> None:
    mltrail.sklearn.autolog(log_models=False, extra_tags={"team": "forecast"})
    X, y = load_diabetes(return_X_y=True)
    Lasso().fit(X, y)
    assert only_run().data.tags["team"] == "forecast"


def test_unknown_option_is_an_error(autolog: None) -> None:
    with pytest.raises(mltrail.exceptions.InvalidParameterError, match="max_tuning_run"):
        mltrail.autolog(max_tuning_run=3)


def test_threads_fit_into_their_own_runs(autolog: None) -> None:
    X, y = load_diabetes(return_X_y=True)
    errors: list[BaseException] = []

    def fit(alpha: float) -> None:
        try:
            for _ in range(3):
                Lasso(alpha=alpha).fit(X, y)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(a,)) for a in (0.1, 0.2, 0.3, 0.4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    runs = all_runs()
    assert len(runs) == 12
    assert sorted(r.data.params["alpha"] for r in runs) == sorted(
        ["0.1", "0.2", "0.3", "0.4"] * 3)
    assert all(len(r.data.params) == len(Lasso().get_params()) for r in runs)


def test_error_in_our_logging_does_not_break_fit(
    autolog: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection into mltrail's own client: no real failure of ours is at hand.
    monkeypatch.setenv("MLTRAIL_STRICT", "0")
    monkeypatch.setattr("mltrail.autologging.session._warned", set())

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(TrackingClient, "log_batch", broken)
    X, y = load_diabetes(return_X_y=True)
    with pytest.warns(MltrailWarning, match="disk on fire"):
        model = Lasso().fit(X, y)
    assert model.coef_.shape == (10,)
    assert only_run().info.status == RunStatus.FINISHED


def test_autolog_before_sklearn_import(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        import mltrail
        mltrail.autolog(log_models=False)
        assert "sklearn" not in sys.modules
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import Lasso
        X, y = load_diabetes(return_X_y=True)
        Lasso().fit(X, y)
        runs = mltrail.search_runs(output_format="list")
        print(len(runs), runs[0].data.tags["estimator_name"])
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env={**__import__("os").environ,
                                                       "MLTRAIL_TRACKING_URI": str(tmp_path / "r")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "Lasso"]
