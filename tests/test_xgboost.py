"""XGBoost autologging on real xgboost training with small synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
from mltrail_xgboost.callback import metric_key
from xgboost.callback import TrainingCallback

import mltrail
from mltrail.autologging import MltrailWarning
from mltrail.client import TrackingClient
from mltrail.entities import RunStatus

FEATURES = ["alpha", "beta", "gamma", "delta"]
# Tests train with one thread: on tiny data, OpenMP threads waiting for a busy core
# (the suite runs on 2 shared cores) cost far more than the training itself.


@pytest.fixture
def autolog(tracking_dir: Path):
    mltrail.xgboost.autolog()
    yield
    mltrail.autolog(disable=True)
    mltrail.xgboost.autolog(disable=True)


@pytest.fixture
def no_models(tracking_dir: Path):
    mltrail.xgboost.autolog(log_models=False)
    yield
    mltrail.xgboost.autolog(disable=True)


def regression_data(rows: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    y = 2.0 * x[:, 0] - x[:, 1] + rng.normal(scale=0.3, size=rows)
    return x, y


def dmatrices(rows: int = 120) -> tuple[xgb.DMatrix, xgb.DMatrix]:
    x, y = regression_data(rows)
    cut = rows * 3 // 4
    return (
        xgb.DMatrix(x[:cut], label=y[:cut], feature_names=FEATURES),
        xgb.DMatrix(x[cut:], label=y[cut:], feature_names=FEATURES),
    )


def all_runs() -> list[mltrail.Run]:
    return mltrail.search_runs(output_format="list")


def only_run() -> mltrail.Run:
    runs = all_runs()
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return mltrail.get_run(runs[0].info.run_id)


def history(run: mltrail.Run, key: str) -> list[tuple[int, float]]:
    points = TrackingClient().get_metric_history(run.info.run_id, key)
    return sorted((m.step, m.value) for m in points)


def artifact_json(run: mltrail.Run, path: str) -> Any:
    local = TrackingClient().download_artifacts(run.info.run_id, path)
    return json.loads(Path(local).read_text())


class Recorder(TrainingCallback):
    """A user callback that notes each round it sees in a shared list."""

    def __init__(
        self,
        name: str,
        calls: list[tuple[str, int]],
        stop_at: int | None = None,
        raise_at: int | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__()
        self.name, self.calls, self.stop_at = name, calls, stop_at
        self.raise_at, self.error = raise_at, error

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.calls.append((self.name, epoch))
        if self.raise_at is not None and epoch == self.raise_at:
            assert self.error is not None
            raise self.error
        return self.stop_at is not None and epoch >= self.stop_at


def test_metric_key_rule() -> None:
    assert metric_key("validation-ndcg@5") == "validation-ndcg_at_5"
    assert metric_key("validation-error@0.7") == "validation-error_at_0.7"
    assert metric_key("validation-ndcg@5-") == "validation-ndcg_at_5-"
    assert metric_key("eval-my metric (x)") == "eval-my metric _x_"
    assert metric_key("/eval-rmse") == "_eval-rmse"


def test_train_params_history_importance_dataset_and_model(autolog: None) -> None:
    dtrain, dvalid = dmatrices()
    evals_result: dict[str, Any] = {}
    params = {"nthread": 1, "max_depth": 2, "eta": 0.3, "eval_metric": ["rmse", "mae"], "seed": 1}
    booster = xgb.train(
        params,
        dtrain,
        12,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        evals_result=evals_result,
        verbose_eval=False,
    )

    run = only_run()
    assert run.info.status == RunStatus.FINISHED
    assert run.data.tags["mlflow.autologging"] == "xgboost"
    assert run.data.params == {
        "nthread": "1",
        "max_depth": "2",
        "eta": "0.3",
        "eval_metric": "['rmse', 'mae']",
        "seed": "1",
        "num_boost_round": "12",
        "early_stopping_rounds": "None",
        "maximize": "None",
    }
    for data in ("train", "validation"):
        for metric in ("rmse", "mae"):
            points = history(run, f"{data}-{metric}")
            assert [s for s, _ in points] == list(range(12))
            assert [v for _, v in points] == pytest.approx(evals_result[data][metric])
    assert not any(k.startswith("best_") for k in run.data.metrics)  # no early stopping

    assert artifact_json(run, "feature_importance_weight.json") == pytest.approx(
        booster.get_score(importance_type="weight")
    )
    assert set(artifact_json(run, "feature_importance_weight.json")) <= set(FEATURES)

    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "dtrain"
    assert json.loads(dataset.profile)["num_rows"] == 90
    assert [c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]] == FEATURES
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "train"}

    loaded = mltrail.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    assert isinstance(loaded, xgb.Booster)
    np.testing.assert_array_equal(loaded.predict(dvalid), booster.predict(dvalid))


def test_dmatrix_digest_follows_the_labels(no_models: None) -> None:
    x, y = regression_data()
    xgb.train({"nthread": 1, "max_depth": 1}, xgb.DMatrix(x, label=y), 2)
    xgb.train({"nthread": 1, "max_depth": 1}, xgb.DMatrix(x, label=y), 2)
    xgb.train({"nthread": 1, "max_depth": 1}, xgb.DMatrix(x, label=y + 1), 2)
    digests = [
        r.inputs.dataset_inputs[0].dataset.digest
        for r in sorted(
            (mltrail.get_run(r.info.run_id) for r in all_runs()), key=lambda r: r.info.start_time
        )
    ]
    assert digests[0] == digests[1] != digests[2]


def test_early_stopping_values_match_the_booster(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        {"nthread": 1, "max_depth": 3, "eta": 0.5},
        dtrain,
        200,
        evals=[(dtrain, "train"), (dvalid, "validation")],
        early_stopping_rounds=3,
        evals_result=evals_result,
        verbose_eval=False,
    )
    rounds = len(evals_result["validation"]["rmse"])
    assert rounds < 200  # it did stop early

    run = only_run()
    metrics = run.data.metrics
    assert metrics["best_iteration"] == booster.best_iteration
    assert metrics["best_score"] == pytest.approx(booster.best_score)
    assert metrics["stopped_iteration"] == rounds - 1
    best = booster.best_iteration
    assert metrics["best_validation-rmse"] == pytest.approx(
        evals_result["validation"]["rmse"][best]
    )
    assert metrics["best_train-rmse"] == pytest.approx(evals_result["train"]["rmse"][best])
    assert run.data.params["early_stopping_rounds"] == "3"
    points = history(run, "validation-rmse")
    assert [s for s, _ in points] == list(range(rounds))  # one point per round, no extra


def test_user_callbacks_keep_their_order_and_can_stop(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    calls: list[tuple[str, int]] = []
    user = [Recorder("first", calls), Recorder("second", calls, stop_at=4)]
    xgb.train(
        {"nthread": 1, "max_depth": 2},
        dtrain,
        20,
        evals=[(dvalid, "validation")],
        callbacks=user,
        verbose_eval=False,
    )
    assert calls == [(name, epoch) for epoch in range(5) for name in ("first", "second")]
    assert len(user) == 2  # the user's list is left as it was
    # The round the second callback stopped at was run, so it is logged.
    assert [s for s, _ in history(only_run(), "validation-rmse")] == list(range(5))


def test_raising_user_callback_fails_the_run_and_reaches_the_user(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    error = RuntimeError("user callback broke")
    callback = Recorder("user", [], raise_at=3, error=error)
    with pytest.raises(RuntimeError) as caught:
        xgb.train(
            {"nthread": 1, "max_depth": 2},
            dtrain,
            20,
            evals=[(dvalid, "validation")],
            callbacks=[callback],
            verbose_eval=False,
        )
    assert caught.value is error
    run = only_run()
    assert run.info.status == RunStatus.FAILED
    assert [s for s, _ in history(run, "validation-rmse")] == list(range(4))
    assert mltrail.active_run() is None


def test_keyboard_interrupt_kills_the_run_and_keeps_metrics(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    callback = Recorder("user", [], raise_at=6, error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        xgb.train(
            {"nthread": 1, "max_depth": 2},
            dtrain,
            50,
            evals=[(dvalid, "validation")],
            callbacks=[callback],
            verbose_eval=False,
        )
    run = only_run()
    assert run.info.status == RunStatus.KILLED
    assert [s for s, _ in history(run, "validation-rmse")] == list(range(7))


def test_wrapper_fit_is_one_run_with_params_metrics_and_model(autolog: None) -> None:
    x, y = regression_data()
    model = xgb.XGBRegressor(
        n_jobs=1, n_estimators=15, max_depth=2, learning_rate=0.3, early_stopping_rounds=4
    )
    model.fit(x[:90], y[:90], eval_set=[(x[:90], y[:90]), (x[90:], y[90:])], verbose=False)

    run = only_run()
    assert run.data.tags["estimator_class"] == "xgboost.sklearn.XGBRegressor"
    assert run.data.params["n_estimators"] == "15"
    assert run.data.params["max_depth"] == "2"
    assert "num_boost_round" not in run.data.params  # the inner train logs no params
    results = model.evals_result()
    rounds = len(results["validation_1"]["rmse"])
    points = history(run, "validation_1-rmse")
    assert [s for s, _ in points] == list(range(rounds))
    assert [v for _, v in points] == pytest.approx(results["validation_1"]["rmse"])
    assert run.data.metrics["best_iteration"] == model.best_iteration
    assert run.data.metrics["best_score"] == pytest.approx(model.best_score)
    assert json.loads(run.inputs.dataset_inputs[0].dataset.profile)["features_shape"] == [90, 4]

    loaded = mltrail.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    assert isinstance(loaded, xgb.XGBRegressor)
    np.testing.assert_array_equal(loaded.predict(x[90:]), model.predict(x[90:]))


def test_wrappers_stay_one_run_with_the_sklearn_integration_on(tracking_dir: Path) -> None:
    from sklearn.linear_model import LinearRegression

    # Explicit calls: an earlier test's specific disable would make a global call defer.
    mltrail.sklearn.autolog(log_models=False)
    mltrail.xgboost.autolog(log_models=False)
    try:
        x, y = regression_data()
        labels = (y > 0).astype(int)
        xgb.XGBClassifier(n_jobs=1, n_estimators=5, max_depth=2).fit(
            x, labels, eval_set=[(x, labels)], verbose=False
        )
        xgb.XGBRFRegressor(n_jobs=1, n_estimators=3, max_depth=2).fit(x, y)
        LinearRegression().fit(x, y)  # the sklearn integration is on
        runs = all_runs()
        assert sorted(r.data.tags["mlflow.autologging"] for r in runs) == [
            "sklearn",
            "xgboost",
            "xgboost",
        ]
        classifier = next(r for r in runs if r.data.tags["estimator_name"] == "XGBClassifier")
        assert len(history(classifier, "validation_0-logloss")) == 5
    finally:
        mltrail.sklearn.autolog(disable=True)
        mltrail.xgboost.autolog(disable=True)


def test_cv_is_one_run_with_mean_and_std(no_models: None) -> None:
    dtrain, _ = dmatrices()
    result = xgb.cv(
        {"nthread": 1, "max_depth": 2, "eta": 0.3},
        dtrain,
        8,
        nfold=3,
        metrics=["rmse", "mae"],
        seed=3,
        as_pandas=False,
    )
    run = only_run()
    assert run.data.tags["mlflow.autologging"] == "xgboost"
    assert run.data.params["nfold"] == "3"
    assert run.data.params["metrics"] == "['rmse', 'mae']"
    for key in ("test-rmse-mean", "test-rmse-std", "train-mae-mean", "train-mae-std"):
        points = history(run, key)
        assert [s for s, _ in points] == list(range(8))
        assert [v for _, v in points] == pytest.approx(result[key])


def test_cv_with_early_stopping_logs_every_round_run(no_models: None) -> None:
    dtrain, _ = dmatrices()
    result = xgb.cv(
        {"nthread": 1, "max_depth": 4, "eta": 0.8},
        dtrain,
        100,
        nfold=3,
        early_stopping_rounds=2,
        as_pandas=False,
    )
    best = len(result["test-rmse-mean"]) - 1  # xgboost cuts its result at the best round
    run = only_run()
    assert run.data.metrics["best_iteration"] == best
    assert run.data.metrics["best_test-rmse-mean"] == pytest.approx(result["test-rmse-mean"][best])
    rounds = int(run.data.metrics["stopped_iteration"]) + 1
    assert rounds > best + 1
    assert [s for s, _ in history(run, "test-rmse-mean")] == list(range(rounds))


def test_multiclass_mlogloss_and_model(autolog: None) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(150, 4))
    y = np.argmax(x[:, :3], axis=1)
    dtrain = xgb.DMatrix(x[:100], label=y[:100])
    dvalid = xgb.DMatrix(x[100:], label=y[100:])
    evals_result: dict[str, Any] = {}
    booster = xgb.train(
        {
            "nthread": 1,
            "objective": "multi:softprob",
            "num_class": 3,
            "max_depth": 2,
            "eval_metric": "mlogloss",
        },
        dtrain,
        6,
        evals=[(dvalid, "validation")],
        evals_result=evals_result,
        verbose_eval=False,
    )
    run = only_run()
    assert [v for _, v in history(run, "validation-mlogloss")] == pytest.approx(
        evals_result["validation"]["mlogloss"]
    )
    # Without feature names xgboost calls the features f0, f1, ...
    assert set(artifact_json(run, "feature_importance_weight.json")) <= {"f0", "f1", "f2", "f3"}
    loaded = mltrail.xgboost.load_model(f"runs:/{run.info.run_id}/model")
    np.testing.assert_array_equal(loaded.predict(dvalid), booster.predict(dvalid))


def test_custom_metric_and_ranking_metric_keys(no_models: None) -> None:
    dtrain, dvalid = dmatrices()

    def max_abs_error(predt: np.ndarray, data: xgb.DMatrix) -> tuple[str, float]:
        return "max_abs@err", float(np.max(np.abs(predt - data.get_label())))

    evals_result: dict[str, Any] = {}
    xgb.train(
        {"nthread": 1, "max_depth": 2, "disable_default_eval_metric": 1},
        dtrain,
        5,
        evals=[(dvalid, "validation")],
        custom_metric=max_abs_error,
        evals_result=evals_result,
        verbose_eval=False,
    )
    run = only_run()
    assert [v for _, v in history(run, "validation-max_abs_at_err")] == pytest.approx(
        evals_result["validation"]["max_abs@err"]
    )
    assert run.data.params["custom_metric"].endswith("max_abs_error")


def test_ranker_metric_names_are_key_safe(no_models: None) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(60, 3))
    y = rng.integers(0, 3, size=60)
    qid = np.repeat(np.arange(6), 10)
    ranker = xgb.XGBRanker(n_jobs=1, n_estimators=4, max_depth=2, eval_metric=["ndcg@3", "ndcg@5-"])
    ranker.fit(x, y, qid=qid, eval_set=[(x, y)], eval_qid=[qid], verbose=False)
    run = only_run()
    results = ranker.evals_result()["validation_0"]
    assert run.data.tags["estimator_name"] == "XGBRanker"
    assert [v for _, v in history(run, "validation_0-ndcg_at_3")] == pytest.approx(
        results["ndcg@3"]
    )
    assert [v for _, v in history(run, "validation_0-ndcg_at_5-")] == pytest.approx(
        results["ndcg@5-"]
    )


def test_resume_from_xgb_model_continues_the_steps(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    first = xgb.train(
        {"nthread": 1, "max_depth": 2},
        dtrain,
        5,
        evals=[(dvalid, "validation")],
        verbose_eval=False,
    )
    evals_result: dict[str, Any] = {}
    resumed = xgb.train(
        {"nthread": 1, "max_depth": 2},
        dtrain,
        4,
        evals=[(dvalid, "validation")],
        xgb_model=first,
        evals_result=evals_result,
        verbose_eval=False,
    )
    assert resumed.num_boosted_rounds() == 9
    runs = sorted(
        (mltrail.get_run(r.info.run_id) for r in all_runs()), key=lambda r: r.info.start_time
    )
    assert len(runs) == 2
    points = history(runs[1], "validation-rmse")
    assert [s for s, _ in points] == [5, 6, 7, 8]
    assert [v for _, v in points] == pytest.approx(evals_result["validation"]["rmse"])


def test_log_models_false_logs_no_model(no_models: None) -> None:
    dtrain, _ = dmatrices()
    xgb.train({"nthread": 1, "max_depth": 2}, dtrain, 3)
    paths = [a.path for a in TrackingClient().list_artifacts(only_run().info.run_id)]
    # MLflow's default importance type, and its plot (data in plots.json)
    assert paths == ["feature_importance_weight.json", "feature_importance_weight.svg",
                     "plots.json"]


def test_importance_types_option_and_gblinear(tracking_dir: Path) -> None:
    mltrail.xgboost.autolog(log_models=False, importance_types=["weight", "gain", "cover"])
    try:
        dtrain, _ = dmatrices()
        xgb.train({"nthread": 1, "booster": "gblinear"}, dtrain, 3)
        run = only_run()
        paths = [a.path for a in TrackingClient().list_artifacts(run.info.run_id)]
        # gblinear has no "gain", "cover"
        assert paths == ["feature_importance_weight.json", "feature_importance_weight.svg",
                         "plots.json"]
        assert "cover" in run.data.tags["mltrail.note.feature_importance"]
        assert "gain" in run.data.tags["mltrail.note.feature_importance"]
    finally:
        mltrail.xgboost.autolog(disable=True)


def test_logs_into_the_user_run_and_leaves_it_open(no_models: None) -> None:
    dtrain, dvalid = dmatrices()
    with mltrail.start_run() as user_run:
        xgb.train(
            {"nthread": 1, "max_depth": 2},
            dtrain,
            3,
            evals=[(dvalid, "validation")],
            verbose_eval=False,
        )
        assert mltrail.active_run() is not None
        mltrail.log_metric("after", 1.0)
    run = only_run()
    assert run.info.run_id == user_run.info.run_id
    assert set(run.data.metrics) == {"validation-rmse", "after"}


def test_a_logging_error_never_breaks_training(
    no_models: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLTRAIL_STRICT", "0")
    dtrain, dvalid = dmatrices()
    with mltrail.start_run():
        mltrail.log_param("max_depth", "5")  # the train's max_depth=2 conflicts with it
        with pytest.warns(MltrailWarning, match="could not log params"):
            booster = xgb.train(
                {"nthread": 1, "max_depth": 2},
                dtrain,
                4,
                evals=[(dvalid, "validation")],
                verbose_eval=False,
            )
    assert booster.num_boosted_rounds() == 4
    run = only_run()
    assert run.info.status == RunStatus.FINISHED
    assert len(history(run, "validation-rmse")) == 4


def test_disable_records_nothing(tracking_dir: Path) -> None:
    mltrail.xgboost.autolog(disable=True)
    dtrain, _ = dmatrices()
    xgb.train({"nthread": 1, "max_depth": 2}, dtrain, 3)
    assert all_runs() == []


@pytest.mark.slow
def test_45000_points_are_logged_completely(no_models: None) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(float)
    sets = [(xgb.DMatrix(x[i::3], label=y[i::3]), name) for i, name in enumerate(("a", "b", "c"))]
    evals_result: dict[str, Any] = {}
    # One thread: on tiny data OpenMP's per-round synchronisation is most of the time.
    xgb.train(
        {
            "nthread": 1,
            "max_depth": 1,
            "objective": "binary:logistic",
            "eval_metric": ["logloss", "error", "rmse"],
        },
        xgb.DMatrix(x, label=y),
        5000,
        evals=sets,
        evals_result=evals_result,
        verbose_eval=False,
    )
    run = only_run()
    total = 0
    for _, name in sets:
        for metric in ("logloss", "error", "rmse"):
            points = history(run, f"{name}-{metric}")
            assert [s for s, _ in points] == list(range(5000))
            assert [v for _, v in points] == pytest.approx(evals_result[name][metric])
            total += len(points)
    assert total == 45_000


def test_global_autolog_before_importing_xgboost(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import mltrail
        mltrail.set_tracking_uri({str(tmp_path / "runs")!r})
        mltrail.autolog(log_models=False)
        assert "xgboost" not in sys.modules
        import numpy as np
        import xgboost as xgb
        from sklearn.linear_model import LinearRegression
        x = np.arange(40, dtype=float).reshape(20, 2)
        xgb.train({{"nthread": 1, "max_depth": 1}}, xgb.DMatrix(x, label=x[:, 0]), 3,
                  evals=[(xgb.DMatrix(x, label=x[:, 0]), "train")], verbose_eval=False)
        xgb.XGBRegressor(n_jobs=1, n_estimators=2).fit(x, x[:, 0], eval_set=[(x, x[:, 0])],
                                             verbose=False)
        LinearRegression().fit(x, x[:, 0])
        runs = mltrail.search_runs(output_format="list", order_by=["attributes.start_time ASC"])
        client = mltrail.MlflowClient()
        for run in runs:
            flavor = run.data.tags["mlflow.autologging"]
            key = {{"xgboost": "train-rmse" if "estimator_name" not in run.data.tags
                   else "validation_0-rmse", "sklearn": "training_score"}}[flavor]
            print(flavor, len(client.get_metric_history(run.info.run_id, key)))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["xgboost", "3", "xgboost", "2", "sklearn", "1"]
