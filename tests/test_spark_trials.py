"""hyperopt SparkTrials on a real Spark (local[2], Java from Debian): every trial a complete run.

One search, seeded so that its six trials are, in order: an xgboost fit that
succeeds, one that returns STATUS_FAIL, one that raises, another success, and
two that sleep until the search's timeout cancels them. The objective opens its
run the course-notes way (`with mltrail.start_run(nested=True):`). It runs on a
local store and on a real `mlflow server`; each trial's run is checked against
hyperopt's own record of the trial, and against the same search run with
`Trials()` in the driver.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hyperopt import STATUS_FAIL, STATUS_OK, SparkTrials, Trials, fmin, hp, rand
from hyperopt.base import JOB_STATE_CANCEL, JOB_STATE_DONE, JOB_STATE_ERROR
from hyperopt.pyll import scope
from system_parts import executable

import mltrail
from mltrail.entities import RunStatus

pytestmark = pytest.mark.spark

PARENT = "mlflow.parentRunId"
SEED = 3114  # rand.suggest then draws the modes ok, fail, raise, ok, slow, slow
MODES = ["ok", "fail", "raise", "ok", "slow", "slow"]
SPACE = {
    "max_depth": scope.int(hp.quniform("max_depth", 2, 6, 1)),
    "learning_rate": hp.loguniform("learning_rate", -3, 0),
    "mode": hp.choice("mode", ["ok", "fail", "raise", "slow"]),
}
ROUNDS = 4
TIMEOUT = 50  # seconds; the four quick trials end long before it, the slow ones never do
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    executable("java", "default-jre-headless")
    from pyspark.sql import SparkSession

    # Python workers import this checkout's mltrail, as an installed one would be.
    paths = [str(ROOT / "src"), str(ROOT / "integrations"), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("mltrail-spark-trials")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.python.task.killTimeout", "1s")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("hyperopt").setLevel(logging.CRITICAL)
    yield session
    session.stop()


@pytest.fixture
def autolog() -> Iterator[None]:
    mltrail.autolog()
    mltrail.xgboost.autolog(log_datasets=False)
    yield
    mltrail.autolog(disable=True)


def make_objective() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The objective, made in a function so that Spark ships it by value (not by this
    module's name, which the Python workers cannot import)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = x[:, 0] * 2.0 - x[:, 1] + rng.normal(scale=0.3, size=200)

    def objective(point: dict[str, Any]) -> dict[str, Any]:
        import time

        import xgboost as xgb

        import mltrail

        if point["mode"] == "slow":
            time.sleep(90)  # until the search's timeout cancels the job
        if point["mode"] == "raise":
            raise ValueError("this trial raises on purpose")
        dtrain = xgb.DMatrix(x[:150], label=y[:150])
        dvalid = xgb.DMatrix(x[150:], label=y[150:])
        params = {"max_depth": point["max_depth"], "learning_rate": point["learning_rate"],
                  "objective": "reg:squarederror", "seed": 0}
        with mltrail.start_run(nested=True):  # the course notes' pattern
            mltrail.set_tag("written_by", "objective")
            booster = xgb.train(params, dtrain, ROUNDS, evals=[(dtrain, "train"),
                                (dvalid, "validation")], verbose_eval=False)
            rmse = float(np.sqrt(np.mean((booster.predict(dvalid) - y[150:]) ** 2)))
        if point["mode"] == "fail":
            return {"status": STATUS_FAIL, "rmse": rmse}
        return {"loss": rmse, "status": STATUS_OK, "rounds": ROUNDS}

    return objective


def run_search(trials: Any, max_evals: int, **kwargs: Any) -> None:
    fmin(make_objective(), SPACE, rand.suggest, max_evals, trials=trials,
         rstate=np.random.default_rng(SEED), show_progressbar=False, **kwargs)


def docs(trials: Trials) -> list[dict[str, Any]]:
    """Every trial of a search: `Trials.trials` leaves out those that raised or were
    cancelled."""
    return sorted(trials._dynamic_trials, key=lambda doc: doc["tid"])


def tree(client: mltrail.TrackingClient, experiment_id: str
         ) -> tuple[mltrail.Run, dict[int, mltrail.Run], list[mltrail.Run]]:
    runs = client.search_runs([experiment_id], max_results=1000)
    parents = [r for r in runs if PARENT not in r.data.tags]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    trials = {int(r.data.tags["hyperopt.trial_id"]): r for r in runs if r is not parent}
    assert len(trials) == len(runs) - 1  # no stray run beside the trials
    return parent, trials, list(runs)


def check_trial(client: mltrail.TrackingClient, doc: dict[str, Any], run: mltrail.Run,
                mode: str, parent: mltrail.Run) -> None:
    """A trial's run holds what hyperopt knows of the trial, and what it trained."""
    data = run.data
    assert data.tags[PARENT] == parent.info.run_id
    assert run.info.run_name == f"trial-{doc['tid']}"
    assert data.params["max_depth"] == str(int(doc["misc"]["vals"]["max_depth"][0]))
    assert run.info.end_time is not None
    if mode in ("ok", "fail"):
        assert data.tags["written_by"] == "objective"  # the nested start_run got the trial's run
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "validation-rmse")]
        assert steps == list(range(ROUNDS))
        assert len(client.get_metric_history(run.info.run_id, "train-rmse")) == ROUNDS
        assert "model" in {f.path for f in client.list_artifacts(run.info.run_id)}
    if mode == "ok":
        assert doc["state"] == JOB_STATE_DONE
        assert run.info.status == RunStatus.FINISHED
        assert data.tags["hyperopt.status"] == STATUS_OK
        assert data.metrics["loss"] == doc["result"]["loss"]
        assert data.metrics["rounds"] == ROUNDS
    elif mode == "fail":
        assert doc["state"] == JOB_STATE_DONE and doc["result"]["status"] == STATUS_FAIL
        assert run.info.status == RunStatus.FAILED
        assert data.tags["hyperopt.status"] == STATUS_FAIL
        assert "loss" not in data.metrics and data.metrics["rmse"] == doc["result"]["rmse"]
    elif mode == "raise":
        assert run.info.status == RunStatus.FAILED
        assert data.tags["hyperopt.status"] == "error"
        assert "this trial raises on purpose" in data.tags["hyperopt.error"]
    else:
        assert doc["state"] == JOB_STATE_CANCEL
        assert run.info.status == RunStatus.KILLED
        assert data.tags["hyperopt.status"] == "cancelled"


def check_spark_search(client: mltrail.TrackingClient, experiment_id: str,
                       trials: SparkTrials) -> mltrail.Run:
    parent, runs, _ = tree(client, experiment_id)
    assert len(runs) == len(MODES) == len(docs(trials))
    for doc, mode in zip(docs(trials), MODES, strict=True):
        run = runs[doc["tid"]]
        check_trial(client, doc, run, mode, parent)
        if mode == "raise":
            assert doc["state"] == JOB_STATE_ERROR
            assert "ValueError" in run.data.tags["hyperopt.traceback"]
        if mode != "slow":
            assert run.data.tags["mltrail.spark.records"] == "executor"
    metrics = parent.data.metrics
    assert metrics["n_trials_ok"] == 2
    assert metrics["n_trials_failed"] == 2  # the STATUS_FAIL trial and the one that raised
    assert metrics["n_trials_cancelled"] == 2
    assert metrics["best_loss"] == min(loss for loss in trials.losses() if loss is not None)
    assert parent.data.tags["hyperopt.best_run_id"] == runs[trials.best_trial["tid"]].info.run_id
    assert parent.data.params["timeout"] == str(TIMEOUT)
    assert parent.data.params["parallelism"] == "2"
    return parent


def test_spark_trials_on_a_local_store(
    spark: Any, autolog: None, tracking_dir: Path, tmp_path: Path
) -> None:
    experiment = mltrail.set_experiment("spark")
    trials = SparkTrials(parallelism=2, timeout=TIMEOUT, spark_session=spark)
    run_search(trials, len(MODES))
    client = mltrail.TrackingClient()
    check_spark_search(client, experiment.experiment_id, trials)
    assert not (tmp_path / "mltrail-runs").exists()  # nothing written beside the store

    # The same search with Trials() in the driver records the same four trials alike.
    mltrail.set_experiment("in-process")
    local = Trials()
    run_search(local, 4, catch_eval_exceptions=True)
    parent, runs, _ = tree(client, mltrail.get_experiment_by_name("in-process").experiment_id)
    for doc, mode in zip(docs(local), MODES[:4], strict=True):
        check_trial(client, doc, runs[doc["tid"]], mode, parent)
        spark_doc = docs(trials)[doc["tid"]]
        assert spark_doc["misc"]["vals"] == doc["misc"]["vals"]  # the same points
        assert doc["result"] == spark_doc["result"]  # hyperopt's records are unchanged


def test_spark_trials_on_an_mlflow_server(
    spark: Any, autolog: None, mlflow_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from remote_helpers import RemoteFactory, unique

    monkeypatch.chdir(tmp_path)
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    client = factory(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("spark"))
    trials = SparkTrials(parallelism=2, timeout=TIMEOUT, spark_session=spark)
    try:
        run_search(trials, len(MODES))
        assert client.flush(60)
    finally:
        factory.close()
    check_spark_search(client, experiment.experiment_id, trials)
    assert not (tmp_path / "mltrail-runs").exists()
