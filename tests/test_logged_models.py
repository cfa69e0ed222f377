"""Logged models: their own id locally, MLflow 3 LoggedModels on a real 3.17 server.

On the server everything is read back with MLflow's own client and loaders, and the
UI's Models tab is looked at with headless Chromium. An older server (no logged-models
API) is stood in for by the fault proxy answering that API with Flask's 404 page, the
answer a server without the route gives; nothing else of the server is changed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faulty_proxy import FaultyProxy
from remote_helpers import RemoteFactory, unique
from system_parts import executable

import mltrail
import mltrail.pyfunc
from mltrail.exceptions import NotFoundError
from mltrail.stores.remote.spool import CLIENT_MODEL_ID_TAG

MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RemoteFactory]:
    factory = RemoteFactory(tmp_path / "spool", monkeypatch)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def mlflow_module() -> Any:
    import mlflow
    import mlflow.sklearn
    import mlflow.xgboost

    return mlflow


def _iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _fit_logistic(x: Any, y: Any) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=300).fit(x, y)


def _only_model(mlflow_module: Any, url: str, experiment_id: str) -> Any:
    server = mlflow_module.MlflowClient(tracking_uri=url)
    (model,) = server.search_logged_models([experiment_id])
    return model


# local store -----------------------------------------------------------------


def test_local_model_has_an_id_that_loads_and_registers(tracking_dir: Path) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with mltrail.start_run() as run:
        mltrail.log_param("note", "kept")
        info = mltrail.sklearn.log_model(estimator, "clf")
    assert info.model_id is not None and MODEL_ID.match(info.model_id)
    assert info.model_uri == f"runs:/{run.info.run_id}/clf"  # the run layout stays
    assert mltrail.models.read_mlmodel(
        Path(mltrail.get_run(run.info.run_id).info.artifact_uri.removeprefix("file://")) / "clf"
    )["model_id"] == info.model_id

    loaded = mltrail.pyfunc.load_model(f"models:/{info.model_id}")
    np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))

    model = mltrail.MlflowClient().get_logged_model(info.model_id)
    assert (model.source_run_id, model.name, model.status) == (run.info.run_id, "clf", "READY")
    assert model.params == {"note": "kept"}  # the run's params when it was logged

    version = mltrail.register_model(f"models:/{info.model_id}", "local-by-id")
    assert (version.source, version.run_id) == (f"models:/{info.model_id}", run.info.run_id)
    by_version = mltrail.pyfunc.load_model("models:/local-by-id/1")
    np.testing.assert_array_equal(by_version.predict(x), estimator.predict(x))

    with pytest.raises(NotFoundError):
        mltrail.pyfunc.load_model(f"models:/m-{'0' * 32}")


def test_local_autologged_model_is_indexed_by_its_id(tracking_dir: Path) -> None:
    x, y = _iris()
    mltrail.sklearn.autolog()
    estimator = _fit_logistic(x, y)
    run = mltrail.last_active_run()
    assert run is not None
    (entry,) = [json.loads(p.read_text()) for p in (tracking_dir / "logged_models").iterdir()]
    assert (entry["run_id"], entry["artifact_path"]) == (run.info.run_id, "model")
    assert entry["params"]["max_iter"] == "300"
    loaded = mltrail.pyfunc.load_model(f"models:/{entry['model_id']}")
    np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))


# MLflow 3 server -------------------------------------------------------------


def test_autologged_sklearn_model_is_an_mlflow3_logged_model(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("lm-sklearn"))
    mltrail.sklearn.autolog()
    estimator = _fit_logistic(x, y)
    run = mltrail.last_active_run()
    assert run is not None
    assert client.store.flush(60)

    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert MODEL_ID.match(model.model_id)
    assert (model.source_run_id, model.name, str(model.status)) == (
        run.info.run_id,
        "model",
        "READY",
    )
    assert model.params["max_iter"] == "300"
    assert model.artifact_location.endswith(f"/models/{model.model_id}/artifacts")
    assert model.tags["mlflow.source.type"] == run.data.tags["mlflow.source.type"]
    assert {m.key for m in model.metrics} >= {"training_score"}
    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    outputs = server.get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [model.model_id]
    # The files are the model's own, not the run's, as MLflow 3 lays them out.
    assert not [f for f in server.list_artifacts(run.info.run_id) if f.path == "model"]

    mlflow_module.set_tracking_uri(mlflow_server.url)
    try:
        by_id = mlflow_module.sklearn.load_model(f"models:/{model.model_id}")
        np.testing.assert_array_equal(by_id.predict(x), estimator.predict(x))
        by_run = mlflow_module.sklearn.load_model(f"runs:/{run.info.run_id}/model")
        np.testing.assert_array_equal(by_run.predict(x), estimator.predict(x))
        # The registry takes the logged model as its source, from either client.
        name = unique("lm-reg")
        version = mltrail.register_model(f"models:/{model.model_id}", name)
        assert version.source == f"models:/{model.model_id}"
        registered = mlflow_module.sklearn.load_model(f"models:/{name}/1")
        np.testing.assert_array_equal(registered.predict(x), estimator.predict(x))
    finally:
        mlflow_module.set_tracking_uri(None)
    for uri in (f"models:/{model.model_id}", f"runs:/{run.info.run_id}/model", f"models:/{name}/1"):
        np.testing.assert_array_equal(
            mltrail.pyfunc.load_model(uri).predict(x), estimator.predict(x)
        )


def test_logged_model_id_mltrail_gave_resolves_to_the_servers(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("lm-explicit"))
    with mltrail.start_run():
        info = mltrail.sklearn.log_model(estimator, "explicit")
    assert info.model_id is not None
    assert client.store.flush(60)
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert model.tags[CLIENT_MODEL_ID_TAG] == info.model_id
    assert mltrail.MlflowClient().get_logged_model(info.model_id).model_id == model.model_id
    loaded = mltrail.pyfunc.load_model(f"models:/{info.model_id}")
    np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))
    version = mltrail.register_model(f"models:/{info.model_id}", unique("lm-reg"))
    assert version.source == f"models:/{model.model_id}"  # the id MLflow knows


def test_xgboost_model_is_an_mlflow3_logged_model(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("lm-xgb"))
    mltrail.xgboost.autolog()
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(x, label=y),
        num_boost_round=5,
    )
    run = mltrail.last_active_run()
    assert run is not None
    assert client.store.flush(60)
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert model.source_run_id == run.info.run_id
    assert model.params["max_depth"] == "2"
    mlflow_module.set_tracking_uri(mlflow_server.url)
    try:
        loaded = mlflow_module.xgboost.load_model(f"models:/{model.model_id}")
    finally:
        mlflow_module.set_tracking_uri(None)
    np.testing.assert_array_equal(
        loaded.predict(xgb.DMatrix(x)), booster.predict(xgb.DMatrix(x))
    )


def test_logging_a_model_never_waits_for_the_server(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(unique("lm-held"))
        # Every logged-models request is answered only when the test releases it: a
        # log_model that waited for the server could not return before then.
        proxy.add("logged-models", ("hold", 60), times=None)
        try:
            with mltrail.start_run():
                info = mltrail.sklearn.log_model(estimator, "held")
            answered = sum(n for p, n in proxy.answered.items() if "logged-models" in p)
        finally:
            proxy.release_hung()
        assert answered == 0
        assert info.model_id is not None
        assert client.store.flush(60)
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert model.tags[CLIENT_MODEL_ID_TAG] == info.model_id


def test_lost_answers_make_no_second_model_or_link(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=3.0)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(unique("lm-faults"))
        proxy.add("logged-models/search", "forward")  # the first look-up goes through
        proxy.add("logged-models", "drop_after", method="POST")  # created; answer lost
        proxy.add("runs/outputs", "drop_after")  # linked; answer lost
        proxy.add("mlflow-artifacts/artifacts", ("status", 503, None))
        with pytest.warns(UserWarning):
            with mltrail.start_run() as run:
                mltrail.log_metric("acc", 0.9)
                mltrail.sklearn.log_model(estimator, "faulty")
            assert client.store.flush(120)
        creates = [
            s for s in proxy.seen if s.method == "POST" and s.path.endswith("/logged-models")
        ]
        assert len(creates) == 1  # found by its tag after the lost answer, not made again
        assert proxy.count("runs/outputs") == 2
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert str(model.status) == "READY"
    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    outputs = server.get_run(run.info.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [model.model_id]
    # The model got the run's metric though its create's answer was lost; the run's
    # history keeps one point.
    assert [(m.key, m.value) for m in model.metrics] == [("acc", 0.9)]
    assert len(server.get_metric_history(run.info.run_id, "acc")) == 1
    loaded = mltrail.pyfunc.load_model(f"models:/{model.model_id}")
    np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))


def test_a_create_answered_after_the_timeout_makes_no_second_model(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    """The create reaches the server half a second after the client gave up waiting:
    the lookups in between miss it, and none of them may lead to a second create (the
    run would show two models, one of them never READY)."""
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url, timeout=3.0)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(unique("lm-late"))
        proxy.add("logged-models/search", "forward", times=None)
        proxy.add("logged-models", ("delay_before", 3.5), method="POST")
        with pytest.warns(UserWarning, match="logged-models"):
            with mltrail.start_run():
                mltrail.sklearn.log_model(estimator, "late")
            assert client.store.flush(120)
        creates = [
            s for s in proxy.seen if s.method == "POST" and s.path.endswith("/logged-models")
        ]
        assert len(creates) == 1
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    assert str(model.status) == "READY"


def test_older_server_keeps_the_run_artifact_layout(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        mltrail.set_tracking_uri(proxy.url)
        experiment = mltrail.set_experiment(unique("lm-old"))
        proxy.add("logged-models", "no_route", times=None)
        with mltrail.start_run() as run:
            first = mltrail.sklearn.log_model(estimator, "first")
            second = mltrail.sklearn.log_model(estimator, "second")
        assert client.store.flush(60)
        assert proxy.count("logged-models") == 1  # asked once, remembered
        assert first.model_id is not None
        loaded = mltrail.pyfunc.load_model(f"models:/{first.model_id}")
        np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))
    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    assert server.search_logged_models([experiment.experiment_id]) == []
    for info in (first, second):
        listed = {f.path for f in server.list_artifacts(run.info.run_id, info.artifact_path)}
        assert f"{info.artifact_path}/MLmodel" in listed
    mlflow_module.set_tracking_uri(mlflow_server.url)
    try:
        by_run = mlflow_module.sklearn.load_model(second.model_uri)
    finally:
        mlflow_module.set_tracking_uri(None)
    np.testing.assert_array_equal(by_run.predict(x), estimator.predict(x))


def test_mlflow_ui_models_tab_lists_the_autologged_model(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any, tmp_path: Path
) -> None:
    chromium = executable("chromium", "chromium")
    x, y = _iris()
    client = remote(mlflow_server.url)
    mltrail.set_tracking_uri(mlflow_server.url)
    experiment = mltrail.set_experiment(unique("lm-ui"))
    mltrail.sklearn.autolog()
    _fit_logistic(x, y)
    assert client.store.flush(60)
    model = _only_model(mlflow_module, mlflow_server.url, experiment.experiment_id)
    url = (
        f"{mlflow_server.url}/#/experiments/{experiment.experiment_id}/models"
        "?workflowType=machine_learning"
    )
    dom = subprocess.run(
        [
            str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom",
            "--virtual-time-budget=15000", url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert model.model_id in dom  # the row links to the model
    assert "Ready" in dom


def test_refused_logged_model_keeps_its_files_as_run_artifacts(
    mlflow_server: Any, remote: RemoteFactory, mlflow_module: Any
) -> None:
    x, y = _iris()
    estimator = _fit_logistic(x, y)
    with FaultyProxy(mlflow_server.url) as proxy:
        client = remote(proxy.url)
        mltrail.set_tracking_uri(proxy.url)
        mltrail.set_experiment(unique("lm-refused"))
        proxy.add("logged-models/search", "forward")
        proxy.add("logged-models", ("status", 400, None), method="POST")  # the create
        with pytest.warns(UserWarning, match="logged model 'refused'"):
            with mltrail.start_run() as run:
                info = mltrail.sklearn.log_model(estimator, "refused")
            assert client.store.flush(60)
        assert client.store.unsent_summary() is None  # nothing left pending
    server = mlflow_module.MlflowClient(tracking_uri=mlflow_server.url)
    listed = {f.path for f in server.list_artifacts(run.info.run_id, "refused")}
    assert "refused/MLmodel" in listed
    loaded = mltrail.pyfunc.load_model(info.model_uri)
    np.testing.assert_array_equal(loaded.predict(x), estimator.predict(x))
