"""hyperopt SparkTrials on a real Spark (local[2], Java from Debian): every trial a complete run.

One search, seeded so that its six trials are, in order: an xgboost fit that
succeeds, one that returns STATUS_FAIL, one that raises, another success, and
two that sleep until the search's timeout cancels them. The objective opens its
run the course-notes way (`with mltrail.start_run(nested=True):`). It runs on a
local store and on a real `mlflow server`; each trial's run is checked against
hyperopt's own record of the trial, and against the same search run with
`Trials()` in the driver. These are marked `spark` (minutes; run with `-m spark`);
the wrapper the executors get is also checked without Spark, in the default run.
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

PARENT = "mlflow.parentRunId"
SEED = 3114  # rand.suggest then draws the modes ok, fail, raise, ok, slow, slow
MODES = ["ok", "fail", "raise", "ok", "slow", "slow"]
SPACE = {
    "max_depth": scope.int(hp.quniform("max_depth", 2, 6, 1)),
    "learning_rate": hp.loguniform("learning_rate", -3, 0),
    "mode": hp.choice("mode", ["ok", "fail", "raise", "slow"]),
}
ROUNDS = 4
TIMEOUT = 60  # seconds: the quick trials usually end before it, the slow ones never do
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
            time.sleep(180)  # until the search's timeout cancels the job
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
        # runs:/<run>/model: the run's artifacts, or on an MLflow 3 server its LoggedModel
        assert "model/MLmodel" in {f.path for f in client.list_artifacts(run.info.run_id, "model")}
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
    """Every trial has its run, as hyperopt recorded the trial. On a loaded machine the
    timeout may also cancel some of the quick trials: those are checked as cancelled."""
    parent, runs, _ = tree(client, experiment_id)
    assert len(runs) == len(docs(trials))
    done = []
    for doc, mode in zip(docs(trials), MODES, strict=False):
        run = runs[doc["tid"]]
        cancelled = doc["state"] == JOB_STATE_CANCEL
        check_trial(client, doc, run, "slow" if cancelled else mode, parent)
        if cancelled:
            continue
        done.append(mode)
        if mode == "raise":
            assert doc["state"] == JOB_STATE_ERROR
            assert "ValueError" in run.data.tags["hyperopt.traceback"]
        assert run.data.tags["mltrail.spark.records"] == "executor"
    assert "ok" in done and len(done) < len(docs(trials))  # some ran, some were cancelled
    metrics = parent.data.metrics
    assert metrics["n_trials_ok"] == done.count("ok")
    assert metrics["n_trials_failed"] == done.count("fail") + done.count("raise")
    assert metrics["n_trials_cancelled"] == len(docs(trials)) - len(done)
    assert metrics["best_loss"] == min(loss for loss in trials.losses() if loss is not None)
    assert parent.data.tags["hyperopt.best_run_id"] == runs[trials.best_trial["tid"]].info.run_id
    assert parent.data.params["timeout"] == str(TIMEOUT)
    assert parent.data.params["parallelism"] == "2"
    return parent


@pytest.mark.spark
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
        if doc["tid"] >= len(docs(trials)):
            continue  # the Spark search's timeout came before this trial was even made
        spark_doc = docs(trials)[doc["tid"]]
        assert spark_doc["misc"]["vals"] == doc["misc"]["vals"]  # the same points
        if spark_doc["state"] != JOB_STATE_CANCEL:
            assert doc["result"] == spark_doc["result"]  # hyperopt's records are unchanged


@pytest.mark.spark
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


SIGTERM_DRIVER = """
import sys
import numpy as np
sys.path[:0] = {paths!r}
import mltrail
mltrail.set_tracking_uri({uri!r})
mltrail.autolog()
mltrail.xgboost.autolog(log_datasets=False)
from hyperopt import SparkTrials, fmin, rand
from pyspark.sql import SparkSession
from test_spark_trials import SEED, SPACE, make_objective
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.python.task.killTimeout", "1s").getOrCreate())
trials = SparkTrials(parallelism=2, spark_session=spark)  # no timeout: stopped by SIGTERM
fmin(make_objective(), SPACE, rand.suggest, 6, trials=trials, rstate=np.random.default_rng(SEED),
     show_progressbar=False)
"""


@pytest.mark.spark
def test_driver_stopped_by_sigterm_keeps_the_finished_trials(spark: Any, tmp_path: Path) -> None:
    """SIGTERM while the two slow trials run: the four finished trials keep their complete
    runs, the running ones and the search end KILLED."""
    import signal
    import subprocess
    import time

    uri = str(tmp_path / "runs")
    script = SIGTERM_DRIVER.format(
        paths=[str(ROOT / "src"), str(ROOT / "integrations"), str(ROOT / "tests")], uri=uri
    )
    log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - closed below
    driver = subprocess.Popen([sys.executable, "-c", script], stdout=log,
                              stderr=subprocess.STDOUT, cwd=tmp_path)
    client = mltrail.TrackingClient(uri)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            runs = client.search_runs(["0"]) if (tmp_path / "runs").exists() else []
            trials = [r for r in runs if PARENT in r.data.tags]
            if len(trials) == 6 and sum(r.info.end_time is not None for r in trials) == 4:
                break  # four ended, the two slow ones running
            time.sleep(1)
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(timeout=60) == -signal.SIGTERM
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        log.close()
    parent, runs, _ = tree(client, "0")
    assert parent.info.status == RunStatus.KILLED
    statuses = [runs[tid].info.status for tid in range(6)]
    assert statuses == [RunStatus.FINISHED, RunStatus.FAILED, RunStatus.FAILED,
                        RunStatus.FINISHED, RunStatus.KILLED, RunStatus.KILLED]
    for tid in (0, 3):
        history = client.get_metric_history(runs[tid].info.run_id, "validation-rmse")
        assert len(history) == ROUNDS and "loss" in runs[tid].data.metrics


@pytest.mark.spark
def test_without_mltrail_on_the_executors_the_driver_records_alone(
    spark: Any, autolog: None, tracking_dir: Path
) -> None:
    """mltrail cannot be imported where the trial runs (its import is blocked there while
    the job is unpickled): the trial still runs, and its run holds the driver's records,
    tagged, with one warning. Last in this module: a reused Python worker keeps the block."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    y = x[:, 0] + rng.normal(scale=0.1, size=100)

    class BlockMltrail:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, ("import sys; sys.modules['mltrail_hyperopt.executor'] = None",))

    block = BlockMltrail()

    def plain_objective(point: dict[str, Any]) -> Any:
        import xgboost as xgb

        assert block is None  # unpickled on the executor: the block ran
        booster = xgb.train({"max_depth": point["max_depth"]}, xgb.DMatrix(x, label=y), 2)
        return float(np.mean((booster.predict(xgb.DMatrix(x)) - y) ** 2))

    trials = SparkTrials(parallelism=2, spark_session=spark)
    with pytest.warns(mltrail.autologging.MltrailWarning, match="only what the driver sees"):
        fmin(plain_objective, SPACE, rand.suggest, 2, trials=trials,
             rstate=np.random.default_rng(SEED), show_progressbar=False)
    client = mltrail.TrackingClient()
    parent, runs, _ = tree(client, "0")
    for doc in docs(trials):
        run = runs[doc["tid"]]
        assert doc["state"] == JOB_STATE_DONE and run.info.status == RunStatus.FINISHED
        assert run.data.metrics == {"loss": doc["result"]["loss"]}  # what the driver knows
        assert run.data.params["max_depth"] == str(int(doc["misc"]["vals"]["max_depth"][0]))
        assert run.data.tags["mltrail.spark.records"] == "driver"
        assert "no report from the executor" in run.data.tags["mltrail.spark.driver_only"]
    assert parent.data.metrics["n_trials_ok"] == 2


# the executor's wrapper, without Spark --------------------------------------------


def test_executor_wrapper_ships_by_value_and_runs_where_mltrail_is_missing(
    tmp_path: Path,
) -> None:
    """Spark pickles the objective with cloudpickle: the wrapper must load and run the
    objective in a process where neither mltrail nor its integrations can be imported."""
    import subprocess

    import cloudpickle
    from mltrail_hyperopt.spark import executor_objective

    def objective(point: float) -> float:
        return point * 2

    wrapped = executor_objective(objective)
    assert wrapped(2.0) == 4.0  # outside a Spark task: straight through
    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps(wrapped))
    script = (
        "import sys, pickle\n"
        "for name in ('mltrail', 'mltrail_hyperopt', 'mltrail_hyperopt.executor'):\n"
        "    sys.modules[name] = None  # any import of them fails\n"
        f"fn = pickle.loads(open({str(tmp_path / 'job.pkl')!r}, 'rb').read())\n"
        "print(fn(21.0))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "42.0"


def test_credentials_in_the_uri_are_not_passed_to_jobs() -> None:
    from mltrail_hyperopt.spark import _without_credentials

    assert _without_credentials("https://ana:secret@host:5000/x") == "https://host:5000/x"
    assert _without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
