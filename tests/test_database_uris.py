"""Database tracking URIs (``sqlite:///``, ``postgresql://``) through MLflow's own store code.

The seeds' notebooks start with ``mlflow.set_tracking_uri("sqlite:///mlflow.db")``; with
``import mltrail as mlflow`` the same lines must log runs that MLflow's client and
``mlflow ui`` then show in full. Real parts only: a real sqlite file written by MLflow,
a real ``mlflow ui`` process, a real PostgreSQL cluster (Debian's package), and
subprocesses for what only a process can show (exit before delivery, mlflow missing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow_server import MlflowServer, free_port
from postgres_cluster import postgres_cluster

import mltrail
from mltrail import runtime
from mltrail.stores.bridge import database_uri

SRC = [str(Path(__file__).resolve().parents[1] / d) for d in ("src", "integrations")]


def unique(prefix: str = "db") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def close_store(uri: str) -> None:
    """Stop the bridge of `uri` (its helper process) and forget the store."""
    store = runtime.process.stores.pop(database_uri(uri), None)
    if store is not None:
        store.flush(60)
        store.close()


@pytest.fixture(scope="module")
def mlflow_module() -> Any:
    import mlflow

    return mlflow


@pytest.fixture(scope="module")
def sqlite_folder(tmp_path_factory: pytest.TempPathFactory, mlflow_module: Any) -> Iterator[Path]:
    """A folder holding ``mlflow.db``, migrated once for the module (MLflow's migrations
    of a new sqlite file take seconds)."""
    folder = tmp_path_factory.mktemp("sqlite")
    mlflow_module.MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    yield folder
    close_store(f"sqlite:///{folder / 'mlflow.db'}")


def _wine() -> tuple[Any, Any]:
    from sklearn.datasets import load_wine

    return load_wine(return_X_y=True)


def _seed_notebook(folder: Path, experiment: str) -> str:
    """Seed 000's lines, as written there apart from the import; returns the run id."""
    from sklearn.ensemble import RandomForestClassifier

    (folder / "models").mkdir(exist_ok=True)
    (folder / "models" / "lin_reg.bin").write_bytes(b"\x00weights\xff" * 100)
    mltrail.set_experiment(experiment)
    mltrail.autolog()
    with mltrail.start_run() as run:
        mltrail.set_tag("developer", "Wenna")
        mltrail.log_param("train-data-path", "./data/green_tripdata_2021-01.parquet")
        mltrail.log_param("alpha", 0.01)
        for step in range(5):
            mltrail.log_metric("rmse", 1.0 / (step + 1), step=step)
        mltrail.log_artifact(local_path="models/lin_reg.bin", artifact_path="models_pickle/")
    x, y = _wine()
    RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    return run.info.run_id


def _check_in_mlflow(client: Any, experiment: str, folder: Path) -> list[Any]:
    """Every run, param, metric step and artifact of `_seed_notebook`, read by MLflow."""
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    by_kind = {("manual" if "alpha" in r.data.params else "autolog"): r for r in runs}
    manual, fit = by_kind["manual"], by_kind["autolog"]
    assert manual.info.status == fit.info.status == "FINISHED"
    assert manual.data.tags["developer"] == "Wenna"
    assert manual.data.params == {
        "train-data-path": "./data/green_tripdata_2021-01.parquet",
        "alpha": "0.01",
    }
    history = client.get_metric_history(manual.info.run_id, "rmse")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / (s + 1)) for s in range(5)]
    listed = [a.path for a in client.list_artifacts(manual.info.run_id, "models_pickle")]
    assert listed == ["models_pickle/lin_reg.bin"]
    got = client.download_artifacts(manual.info.run_id, "models_pickle/lin_reg.bin", str(folder))
    assert Path(got).read_bytes() == (folder / "models" / "lin_reg.bin").read_bytes()
    assert fit.data.params["n_estimators"] == "5"
    assert fit.data.tags["mlflow.autologging"] == "sklearn"
    assert "training_accuracy_score" in fit.data.metrics
    model_files = {a.path for a in client.list_artifacts(fit.info.run_id, "model")}
    assert "model/MLmodel" in model_files
    return runs


def test_seed_notebook_logs_to_sqlite_and_mlflow_shows_everything(
    sqlite_folder: Path, mlflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_folder)
    mltrail.set_tracking_uri("sqlite:///mlflow.db")
    experiment = unique("seed000")
    run_id = _seed_notebook(sqlite_folder, experiment)
    assert mltrail.flush(180)
    # mltrail's own reads go through the same bridge, by the id the user was given.
    assert mltrail.get_run(run_id).data.params["alpha"] == "0.01"

    uri = f"sqlite:///{sqlite_folder / 'mlflow.db'}"
    runs = _check_in_mlflow(mlflow_module.MlflowClient(uri), experiment, sqlite_folder)
    model_uri = f"{next(r for r in runs if 'alpha' not in r.data.params).info.artifact_uri}/model"
    model = mlflow_module.sklearn.load_model(model_uri)
    assert model.predict(_wine()[0][:3]).shape == (3,)

    # `mlflow ui --backend-store-uri sqlite:///mlflow.db`, run where the notebook ran.
    server = MlflowServer(
        sqlite_folder, free_port(), command="ui",
        options=["--backend-store-uri", "sqlite:///mlflow.db"],
    )
    server.start(timeout=180)
    try:
        api = f"{server.url}/api/2.0/mlflow"
        exp = requests.get(
            f"{api}/experiments/get-by-name", params={"experiment_name": experiment}, timeout=30
        ).json()["experiment"]
        found = requests.post(
            f"{api}/runs/search", json={"experiment_ids": [exp["experiment_id"]]}, timeout=30
        ).json()["runs"]
        assert sorted(r["info"]["run_id"] for r in found) == sorted(r.info.run_id for r in runs)
        manual = next(r for r in found if any(p["key"] == "alpha" for p in r["data"]["params"]))
        history = requests.get(
            f"{api}/metrics/get-history",
            params={"run_id": manual["info"]["run_id"], "metric_key": "rmse"},
            timeout=30,
        ).json()["metrics"]
        assert sorted(int(m.get("step", 0)) for m in history) == [0, 1, 2, 3, 4]
        listed = requests.get(
            f"{api}/artifacts/list",
            params={"run_id": manual["info"]["run_id"], "path": "models_pickle"},
            timeout=30,
        ).json()
        assert [f["path"] for f in listed["files"]] == ["models_pickle/lin_reg.bin"]
    finally:
        server.stop()


def test_nesting_on_sqlite_names_the_parents_database_id(
    sqlite_folder: Path, mlflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child's `mlflow.parentRunId` and a search's best-trial tag were written with
    the runs' local ids, which the database never holds: MLflow showed no tree, and
    every child pointed at a run that did not exist."""
    from hyperopt import Trials, fmin, hp, tpe

    monkeypatch.chdir(sqlite_folder)
    mltrail.set_tracking_uri("sqlite:///mlflow.db")
    experiment = unique("nested")
    mltrail.set_experiment(experiment)
    with mltrail.start_run(run_name="manual-parent"), mltrail.start_run(
            run_name="manual-child", nested=True):
        mltrail.log_param("inner", 1)
    mltrail.autolog()
    fmin(lambda p: (p["x"] - 1) ** 2, {"x": hp.uniform("x", -2, 2)}, algo=tpe.suggest,
         max_evals=3, trials=Trials(), show_progressbar=False)
    assert mltrail.flush(180)

    client = mlflow_module.MlflowClient(f"sqlite:///{sqlite_folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    by_id = {r.info.run_id: r for r in runs}
    by_name = {r.info.run_name: r for r in runs}
    assert len(runs) == 6  # two manual runs, the search and its three trials
    child = by_name["manual-child"]
    assert child.data.tags["mlflow.parentRunId"] == by_name["manual-parent"].info.run_id
    trials = [r for r in runs if r.info.run_name.startswith("trial-")]
    assert len(trials) == 3
    (search,) = {by_id[t.data.tags["mlflow.parentRunId"]].info.run_id for t in trials}
    assert by_id[search].data.tags["hyperopt.best_run_id"] in {t.info.run_id for t in trials}


def test_env_uri_with_autolog_only_logs_every_fit(
    sqlite_folder: Path, mlflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_TRACKING_URI=sqlite:///... and only autolog: each fit is a run (the first
    one used to warn and the later ones were silently not logged)."""
    from sklearn.linear_model import LogisticRegression

    monkeypatch.chdir(sqlite_folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    experiment = unique("env")
    mltrail.set_experiment(experiment)
    mltrail.autolog(log_models=False)
    x, y = _wine()
    for c in (0.1, 1.0, 10.0):
        LogisticRegression(C=c, max_iter=500).fit(x, y)
    assert mltrail.flush(180)
    client = mlflow_module.MlflowClient(f"sqlite:///{sqlite_folder / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.data.params["C"] for r in runs) == ["0.1", "1.0", "10.0"]


def test_seed004_registry_lines_on_sqlite(
    sqlite_folder: Path, mlflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 004 registers a run's model and moves it to a stage, on the same sqlite URI."""
    from sklearn.linear_model import Lasso

    monkeypatch.chdir(sqlite_folder)
    mltrail.set_tracking_uri("sqlite:///mlflow.db")
    mltrail.set_experiment(unique("registry"))
    mltrail.autolog()
    x, y = _wine()
    with mltrail.start_run() as run:
        Lasso(alpha=0.01).fit(x, y)
    # The bridge has no logged-models API: the model is a run artifact, read back through
    # `runs:/` and registered from there (not refused as an unknown request).
    assert type(mltrail.sklearn.load_model(f"runs:/{run.info.run_id}/model")).__name__ == "Lasso"
    with mltrail.start_run():
        info = mltrail.sklearn.log_model(Lasso(alpha=0.1).fit(x, y), artifact_path="by_id")
    assert mltrail.sklearn.load_model(f"models:/{info.model_id}").alpha == 0.1
    name = unique("nyc-taxi-regressor")
    version = mltrail.register_model(model_uri=f"runs:/{run.info.run_id}/model", name=name)
    client = mltrail.MlflowClient()
    client.transition_model_version_stage(name, version.version, "Staging")
    client.set_registered_model_alias(name, "champion", version.version)

    theirs = mlflow_module.MlflowClient(f"sqlite:///{sqlite_folder / 'mlflow.db'}")
    [latest] = theirs.get_latest_versions(name, stages=["Staging"])
    assert str(latest.version) == "1" and latest.current_stage == "Staging"
    assert str(theirs.get_model_version_by_alias(name, "champion").version) == "1"
    db_run = theirs.get_run(latest.run_id)
    assert db_run.data.tags["mltrail.clientRunId"] == run.info.run_id
    assert client.get_model_version_by_alias(name, "champion").version == "1"


# a process exiting before the bridge is done ------------------------------------

TRAINING = textwrap.dedent(
    """
    import json, sys
    import mltrail as mlflow
    from sklearn.datasets import load_wine
    from sklearn.ensemble import RandomForestClassifier
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("exit-early")
    mlflow.autolog()
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.5)
        for step in range(3):
            mlflow.log_metric("loss", 3.0 - step, step=step)
    x, y = load_wine(return_X_y=True)
    RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y)
    print(json.dumps({"mlflow_imported": "mlflow" in sys.modules, "run": run.info.run_id}))
    """
)


def _env(spool: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(SRC), "MLTRAIL_SPOOL_DIR": str(spool)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLTRAIL_STRICT", None)
    env.update(extra)
    return env


def test_exit_before_the_bridge_is_done_then_sync_finishes(
    tmp_path: Path, mlflow_module: Any
) -> None:
    work, spool = tmp_path / "notebook", tmp_path / "spool"
    work.mkdir()
    # A new database: the helper still imports mlflow and migrates when the process
    # exits, since exit waits 0 s here (MLTRAIL_FLUSH_TIMEOUT=0).
    done = subprocess.run(
        [sys.executable, "-c", TRAINING], cwd=work, capture_output=True, text=True,
        env=_env(spool, MLTRAIL_FLUSH_TIMEOUT="0"), timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mlflow_imported"] is False  # the training process never imported mlflow
    assert "not yet on sqlite:///" in done.stderr and "mltrail sync" in done.stderr

    # `mltrail sync` from another folder: the spool knows the database's absolute path.
    sync = [sys.executable, "-m", "mltrail.cli", "sync"]
    synced = subprocess.run(
        sync, cwd=tmp_path, capture_output=True, text=True, env=_env(spool), timeout=300,
        check=False,
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr[-3000:]
    assert "2 shipped" in synced.stdout

    client = mlflow_module.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("exit-early")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    manual = next(r for r in runs if "alpha" in r.data.params)
    history = client.get_metric_history(manual.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert manual.data.tags["mltrail.clientRunId"] == out["run"]
    fit = next(r for r in runs if "alpha" not in r.data.params)
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(fit.info.run_id, "model")}

    again = subprocess.run(
        sync, cwd=tmp_path, capture_output=True, text=True, env=_env(spool), timeout=300,
        check=False,
    )
    assert again.returncode == 0 and "nothing to send" in again.stdout
    assert len(client.search_runs([exp.experiment_id])) == 2  # nothing doubled



# A helper process that takes 8 s before its first answer, as `import mlflow` plus the
# migrations of a new sqlite file do on a loaded machine: a `sitecustomize` that sleeps
# only in the bridge's worker process (the training process starts at once).
SLOW_BRIDGE = textwrap.dedent(
    """
    import sys, time
    if "mltrail.stores.bridge.worker" in sys.orig_argv:
        time.sleep(8)
    """
)
SHORT_SEED = textwrap.dedent(
    """
    import mltrail as mlflow
    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    with mlflow.start_run():
        mlflow.set_tag("developer", "Wenna")
        mlflow.log_param("alpha", 0.01)
    """
)


def test_exit_waits_a_databases_own_timeout_not_a_servers(
    tmp_path: Path, mlflow_module: Any
) -> None:
    # Without MLTRAIL_FLUSH_TIMEOUT, exit waits up to 60 s for a database (a server: 5 s).
    # A seed cell run as a script must land in sqlite, not be left in the spool.
    work, spool, hook = tmp_path / "notebook", tmp_path / "spool", tmp_path / "hook"
    work.mkdir()
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_BRIDGE)
    env = _env(spool)
    env.pop("MLTRAIL_FLUSH_TIMEOUT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(hook), *SRC])
    done = subprocess.run(
        [sys.executable, "-c", SHORT_SEED], cwd=work, capture_output=True, text=True,
        env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "not yet on" not in done.stderr, done.stderr[-3000:]
    client = mlflow_module.MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    (run,) = client.search_runs(["0"])
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.01"} and run.data.tags["developer"] == "Wenna"


# mlflow not installed ----------------------------------------------------------

# mlflow is installed here (the tests read through it), so its absence is simulated:
# an import hook in the child process refuses every `mlflow` module, as a missing
# package would.
NO_MLFLOW = textwrap.dedent(
    """
    import sys
    class NoMlflow:
        def find_spec(self, name, path=None, target=None):
            if name == "mlflow" or name.startswith("mlflow."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, NoMlflow())
    """
)


def test_without_mlflow_a_database_uri_names_the_extra(tmp_path: Path) -> None:
    script = NO_MLFLOW + textwrap.dedent(
        """
        import os
        import mltrail
        from mltrail import cli
        from mltrail.exceptions import UnsupportedUriError
        try:
            mltrail.set_tracking_uri("sqlite:///mlflow.db")
        except UnsupportedUriError as exc:
            print("SET:", exc)
        os.environ["MLFLOW_TRACKING_URI"] = "postgresql://u@127.0.0.1:1/db"
        try:
            mltrail.start_run()
        except UnsupportedUriError as exc:
            print("ENV:", exc)
        print("DOCTOR:", cli.main(["doctor", "sqlite:///mlflow.db"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        env=_env(tmp_path / "spool"), timeout=120, check=False,
    )
    lines = done.stdout.splitlines()
    hint = 'pip install "mltrail[mlflow]"'
    assert any(line.startswith("SET:") and hint in line for line in lines), done.stdout
    assert any(line.startswith("ENV:") and hint in line for line in lines), done.stdout
    assert any(line.startswith("FAIL mlflow") and hint in line for line in lines), done.stdout
    assert "DOCTOR: 1" in lines
    assert not (tmp_path / "mlflow.db").exists()


def test_doctor_prints_a_database_uri_intact(
    sqlite_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mltrail import cli

    monkeypatch.chdir(sqlite_folder)
    assert cli.main(["doctor", "sqlite:///mlflow.db"]) == 0
    out = capsys.readouterr().out
    assert "sqlite:///mlflow.db is a database" in out
    assert f"opened as sqlite:///{sqlite_folder / 'mlflow.db'}" in out
    assert "sqlite:/mlflow.db" not in out
    assert "written directly" in out  # a sqlite database's default artifact root: a folder


# PostgreSQL --------------------------------------------------------------------


def test_plain_postgresql_uri_logs_through_psycopg2(
    tmp_path: Path, mlflow_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg2", reason="psycopg2-binary is in the test extra")
    monkeypatch.chdir(tmp_path)  # the database's default artifact root, ./mlruns, is here
    with postgres_cluster() as cluster:
        try:
            import psycopg  # noqa: F401
        except ImportError:  # SQLAlchemy 2.1 would open plain postgresql:// with it
            assert database_uri(cluster.uri).startswith("postgresql+psycopg2://")
        mltrail.set_tracking_uri(cluster.uri)
        experiment = unique("pg")
        try:
            _seed_notebook(tmp_path, experiment)
            assert mltrail.flush(180)
        finally:
            close_store(cluster.uri)  # the helper lets go of the database before it stops
        client = mlflow_module.MlflowClient(database_uri(cluster.uri))
        _check_in_mlflow(client, experiment, tmp_path)
